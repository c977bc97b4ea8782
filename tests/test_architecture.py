"""The layering of DESIGN.md holds: arrows point one way, and importing canao stays light."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "canao"
# package -> packages it must never import (DESIGN.md: nothing imports apps or cli;
# models know nothing of training, search or the compiler).
FORBIDDEN = {
    "models": ("canao.apps", "canao.cli", "canao.search", "canao.train", "canao.compiler", "canao.report"),
    "compiler": ("canao.apps", "canao.cli", "canao.search", "canao.train", "canao.report"),
    "latency": ("canao.apps", "canao.cli", "canao.report"),
    "train": ("canao.apps", "canao.cli", "canao.search", "canao.report"),
    "data": ("canao.apps", "canao.cli", "canao.models", "canao.train", "canao.search"),
    "search": ("canao.apps", "canao.cli", "canao.report"),
    "report": ("canao.apps", "canao.cli"),
}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_import_arrows_point_one_way():
    bad = []
    for package, forbidden in FORBIDDEN.items():
        for path in (SRC / package).rglob("*.py") if (SRC / package).exists() else []:
            for name in _imports(path):
                if name.startswith(forbidden):
                    bad.append(f"{path.relative_to(SRC)} imports {name}")
    for path in SRC.rglob("*.py"):
        if path.name != "cli.py" and "apps" not in path.parts:
            bad += [f"{path.relative_to(SRC)} imports {n}" for n in _imports(path) if n.startswith(("canao.cli", "canao.apps"))]
    assert not bad, bad


def test_importing_canao_does_not_import_torch():
    code = "import sys, canao; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
