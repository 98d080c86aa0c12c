"""The code a stage runs: the import closure of its entry module inside the ``pipeline`` package.

The closure is read statically from the sources (every ``import`` and ``from ... import`` statement,
function-level imports included, plus the ``__init__`` of every package on the way), so a lazy
import inside a function counts as much as one at the top. It is the single source of a stage's code
dependencies: provenance records hash it, and ``tests/test_stage_deps.py`` checks that each stage's
``dvc.yaml`` deps cover it, so DVC re-runs a stage whenever code it can execute changes.
"""

from __future__ import annotations

import ast
from functools import lru_cache
from pathlib import Path

PACKAGE = "pipeline"
PACKAGE_DIR = Path(__file__).resolve().parent
ROOT = PACKAGE_DIR.parent


def module_file(name: str) -> Path | None:
    """The source file of the dotted module ``name`` inside the package (a package's ``__init__.py``)."""
    base = ROOT.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _package_of(name: str, path: Path) -> str:
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


@lru_cache(maxsize=None)
def _direct_imports(name: str) -> frozenset[str]:
    """The package modules ``name`` imports anywhere in its source (``from x import y`` may name a module y)."""
    path = module_file(name)
    tree = ast.parse(path.read_text(), str(path))
    here, found = _package_of(name, path), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")[: len(here.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{a.name}" for a in node.names)
    return frozenset(m for m in found if (m == PACKAGE or m.startswith(PACKAGE + ".")) and module_file(m))


def closure(entry: str) -> list[Path]:
    """Source files of ``entry`` and everything it imports inside the package, with parent packages."""
    seen: set[str] = set()
    todo = [entry]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        parts = name.split(".")
        todo += [".".join(parts[:k]) for k in range(1, len(parts))]  # importing a.b.c runs a and a.b first
        todo += _direct_imports(name)
    return sorted(module_file(m) for m in seen)


def relative(paths: list[Path]) -> list[str]:
    """Paths as dvc.yaml writes them (from the project root, POSIX)."""
    return [p.relative_to(ROOT).as_posix() for p in paths]
