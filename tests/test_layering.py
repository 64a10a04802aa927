"""Layering: no module imports a higher layer (every import counts, function-level ones included).

models < data < xc < personas < analysis < pipeline, testing (fixtures the command lines may use) < entry points
(train.py, analyze.py, `__main__` and `cli` modules) < bench, demo. The base (errors, io, runs, charts and every `config` module, plus the ModelSpec
record) may be imported from anywhere and imports nothing above it. Imports within one package are free, except
into its entry-point modules.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "crosscoder"
LAYERS = {"models": 1, "data": 2, "xc": 3, "personas": 4, "analysis": 5, "pipeline": 6, "launch": 6, "plan": 6, "testing": 6, "bench": 8,
          "demo": 8}  # fmt: skip
ENTRY = 7
BASE = {"crosscoder", "crosscoder.errors", "crosscoder.io", "crosscoder.runs", "crosscoder.charts",
        "crosscoder.models.spec"}  # fmt: skip


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> int:
    """The layer of a crosscoder module (or of the package an imported name lives in)."""
    parts = module.split(".")
    if parts[-1] in ("__main__", "cli") or module in ("train", "analyze"):
        return ENTRY
    if module in BASE or parts[-1] == "config":
        return 0
    return LAYERS.get(parts[1], 0) if len(parts) > 1 else 0


def imports(path: Path) -> list[tuple[str, int]]:
    """(imported crosscoder module, line) of every import statement in `path`, at any depth."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] if node.module != "crosscoder" else [f"crosscoder.{a.name}" for a in node.names]
            out += [(n, node.lineno) for n in names]
        elif isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
    return [(n, line) for n, line in out if n == "crosscoder" or n.startswith("crosscoder.")]


def sources() -> list[tuple[str, Path]]:
    files = sorted(PACKAGE.rglob("*.py")) + [REPO / "train.py", REPO / "analyze.py"]
    return [(module_name(p), p) for p in files]


def upward_imports() -> list[str]:
    found = []
    for mod, path in sources():
        for target, line in imports(path):
            same_package = target.split(".")[:2] == mod.split(".")[:2]
            if layer(target) > layer(mod) and not (same_package and layer(target) != ENTRY):
                found.append(f"{path.relative_to(REPO)}:{line} {mod} (layer {layer(mod)}) imports {target} "
                             f"(layer {layer(target)})")  # fmt: skip
    return found


def test_no_module_imports_a_higher_layer() -> None:
    assert upward_imports() == []


def test_the_checker_sees_function_level_imports(tmp_path: Path) -> None:
    mod = tmp_path / "m.py"
    mod.write_text("def f():\n    from crosscoder.pipeline import run_train\n    import crosscoder.bench.recovery\n")
    assert imports(mod) == [("crosscoder.pipeline", 2), ("crosscoder.bench.recovery", 3)]
    assert layer("crosscoder.models.load") < layer("crosscoder.personas.organisms") < layer("crosscoder.pipeline")
    assert layer("crosscoder.analysis.cli") == layer("crosscoder.data.__main__") == ENTRY
    assert layer("crosscoder.analysis.config") == layer("crosscoder.errors") == 0


@pytest.mark.parametrize("package", ["xc"])
def test_the_trainer_depends_only_on_errors_and_io(package: str) -> None:
    allowed = {"crosscoder.errors", "crosscoder.io"}
    for mod, path in sources():
        if mod.startswith(f"crosscoder.{package}."):
            outside = {t for t, _ in imports(path) if not t.startswith(f"crosscoder.{package}")}
            assert outside <= allowed, (mod, outside - allowed)
