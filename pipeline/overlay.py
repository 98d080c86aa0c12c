"""Overlays: params files that name only the keys that differ from ``params.yaml``.

``params-fast.yaml`` (every stage in minutes) and ``params-paper.yaml`` (the paper's sizes) are
overlays. ``fmae overlay FILE`` applies one the way DVC users apply params: it runs
``dvc exp run -S key=value ...`` with the overlay's leaf keys (an experiment, recorded by DVC; the
workspace's params.yaml then holds the overlaid values), ``--print`` shows that command instead,
and extra arguments after ``--`` go to ``dvc exp run`` (``-- --queue``, ``-- --name fast``).
Every key must exist in ``params.yaml``, and the overlaid params must validate, before anything runs.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from .config import PARAMS_FILE, ConfigError, UserError, load_params


def leaves(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mapping -> ``{"a.b.c": value}`` for every non-mapping value (lists are values)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            out |= leaves(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def read(path: Path, base: Path = Path(PARAMS_FILE)) -> dict[str, Any]:
    """The overlay's leaf keys, each checked to exist in ``base``, and the overlaid params validated."""
    if not path.is_file():
        raise UserError(f"{path}: no such overlay file")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, Mapping):
        raise UserError(f"{path}: expected a mapping of params.yaml sections, found a {type(data).__name__}")
    flat, known = leaves(data), leaves(yaml.safe_load(base.read_text()) or {})
    for key in flat:
        if key not in known:
            raise ConfigError(key, flat[key], f"a key of {base} (an overlay only changes existing keys)", str(path))
    try:
        load_params(base, flat)
    except ConfigError as err:
        raise ConfigError(err.key, err.value, err.expected, f"{path} over {base}") from None
    return flat


def set_args(flat: Mapping[str, Any]) -> list[str]:
    """``-S key=value`` pairs in DVC's (Hydra's) override syntax: JSON for lists and strings that need quoting."""
    args = []
    for key, value in flat.items():
        if isinstance(value, bool):
            text = str(value).lower()
        elif isinstance(value, str):
            text = value if value and all(c.isalnum() or c in "_-./" for c in value) else json.dumps(value).replace('"', "'")
        elif isinstance(value, list):
            text = "[" + ",".join(json.dumps(v).replace('"', "'") for v in value) + "]"
        else:
            text = json.dumps(value)
        args += ["-S", f"{key}={text}"]
    return args


def run(path: Path, extra: list[str], print_only: bool = False) -> int:
    args = ["exp", "run", *set_args(read(path)), *extra]
    if print_only:
        print(shlex.join(["dvc", *args]))
        return 0
    print(f"{path}: dvc exp run with {args.count('-S')} keys set", file=sys.stderr, flush=True)
    return subprocess.run([sys.executable, "-m", "dvc", *args]).returncode  # the dvc of this environment
