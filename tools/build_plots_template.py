"""Write ``.dvc/plots/offline.html``: DVC's plots page with Vega inlined, so it works offline.

DVC's default page loads vega, vega-lite and vega-embed from a CDN, so on a cluster node or any
machine without the internet the curves of ``dvc plots show`` / ``diff`` vanish. This template
carries the same three libraries (the versions DVC's renderer asks for, BSD-3, licence kept in the
file) and leaves out DVC's ``{scripts}`` placeholder, so no CDN tag is added. ``.dvc/config`` points
``plots.html_template`` at it. Rebuild (needs npm and the npm registry):

    python tools/build_plots_template.py
"""

from __future__ import annotations

import subprocess
import tarfile
import tempfile
from pathlib import Path

PACKAGES = {"vega": "5.20.2", "vega-lite": "5.2.0", "vega-embed": "6.18.2"}  # dvc_render's versions
OUT = Path(__file__).resolve().parents[1] / ".dvc" / "plots" / "offline.html"

PAGE = """<!DOCTYPE html>
<html>
<head>
    {refresh_tag}
    <meta charset="utf-8">
    <title>DVC Plot</title>
    <!-- Vega, Vega-Lite and Vega-Embed inlined by tools/build_plots_template.py: no network needed -->
SCRIPTS
    <style>
        body { font-family: sans-serif; }
        table { border-spacing: 15px; }
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


def main() -> None:
    scripts = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, version in PACKAGES.items():
            subprocess.run(["npm", "pack", "--silent", f"{name}@{version}"], cwd=tmp, check=True, capture_output=True)
            with tarfile.open(Path(tmp) / f"{name}-{version}.tgz") as tar:
                code = tar.extractfile(f"package/build/{name}.min.js").read().decode()
                licence = tar.extractfile("package/LICENSE").read().decode()
            assert "</script" not in code and "{plot_divs}" not in code
            scripts.append(f"    <script>/* {name} {version}\n{licence}*/\n{code}\n    </script>")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(PAGE.replace("SCRIPTS", "\n".join(scripts)))
    print(f"wrote {OUT} ({OUT.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
