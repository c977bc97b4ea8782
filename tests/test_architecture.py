"""The layering of DESIGN.md holds: arrows point one way, and importing canao stays light."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "canao"
# package -> packages it must never import (DESIGN.md: nothing imports apps or cli;
# models know nothing of training, search or the compiler).
# docs/architecture.md draws the same layers.
FORBIDDEN = {
    "models": (
        "canao.apps",
        "canao.cli",
        "canao.search",
        "canao.train",
        "canao.compiler",
        "canao.report",
        "canao.latency",
    ),
    "compiler": (
        "canao.apps",
        "canao.cli",
        "canao.search",
        "canao.train",
        "canao.report",
        "canao.latency",
        "canao.optimize",
        "canao.export",
    ),
    "latency": ("canao.apps", "canao.cli", "canao.report", "canao.search", "canao.train", "canao.optimize"),
    "train": ("canao.apps", "canao.cli", "canao.search", "canao.report", "canao.optimize"),
    "data": ("canao.apps", "canao.cli", "canao.models", "canao.train", "canao.search", "canao.optimize"),
    "search": ("canao.apps", "canao.cli", "canao.report", "canao.optimize"),
    "report": ("canao.apps", "canao.cli", "canao.optimize"),
    "apps": ("canao.cli", "canao.optimize"),
    "optimize": ("canao.cli",),  # the pipeline sits under the CLI and over everything else
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
        if path.name not in ("cli.py", "__main__.py") and "apps" not in path.parts:
            bad += [
                f"{path.relative_to(SRC)} imports {n}"
                for n in _imports(path)
                if n.startswith(("canao.cli", "canao.apps"))
            ]
    assert not bad, bad


# module -> what it must never import (loading and running a model needs no passes, code generator or compiler)
FORBIDDEN_MODULES = {
    "compiler/runtime.py": (
        "canao.compiler.passes",
        "canao.compiler.codegen",
        "canao.compiler.toolchain",
        "canao.compiler.build",
        "canao.compiler.tune",
        "canao.compiler.lower",
        "torch",
    ),
    "device.py": ("canao.compiler", "canao.latency", "canao.models", "canao.train", "canao.search", "torch"),
    "storage.py": ("canao.compiler", "canao.latency", "canao.models", "torch"),
}


def test_module_boundaries():
    bad = [
        f"{module} imports {name}"
        for module, forbidden in FORBIDDEN_MODULES.items()
        for name in _imports(SRC / module)
        if name.startswith(forbidden)
    ]
    assert not bad, bad


def test_one_build_sequence():
    """Only compiler/build.py runs the pass pipeline and the C compiler for a model (explain.py shows the passes)."""
    allowed = {
        "compiler/build.py": ("run_pipeline", "build_shared_library", "build_executable"),
        "compiler/explain.py": ("run_pipeline_stages",),
        "compiler/tune.py": ("build_shared_library",),
        "compiler/passes/pipeline.py": ("run_pipeline", "run_pipeline_stages"),
        "compiler/toolchain.py": ("build_shared_library", "build_executable"),
    }
    bad = []
    for path in SRC.rglob("*.py"):
        rel = str(path.relative_to(SRC))
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
                if name in (
                    "run_pipeline",
                    "run_pipeline_stages",
                    "build_shared_library",
                    "build_executable",
                ) and name not in allowed.get(rel, ()):
                    bad.append(f"{rel} calls {name}")
    assert not bad, bad


@pytest.mark.parametrize("module", ["canao", "canao.cli"])
def test_importing_canao_does_not_import_torch(module: str):
    """The package and the CLI's start-up stay torch-free: `canao --help` and the compiled runtime must not pay
    for loading torch (the CLI shows training losses through the torch-free canao.train.progress)."""
    code = f"import sys, {module}; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
