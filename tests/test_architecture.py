"""The package's shape holds: imports go down DESIGN.md's table (import-linter's contracts in
pyproject.toml, and they fail when an upward import is planted), only ``adapt/layout.py`` spells a
file name of the run directory, ``ContinualRun`` only wires, and adding a method is one file and one
line (every registered selector and expert is found through the one hub)."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "adapt"

# every name of DESIGN.md's run-directory contract: file names, and folder names joined onto a path
RUN_DIR_FILES = {"config.yaml", "state.json", "stream.json", "metrics.json", "metrics.jsonl", "report.md", "run.lock",
                 "stream.lock", "samples.parquet", "manifest.json", "rejected.jsonl", "selection.parquet",
                 "scores.parquet", "experts.json", "selector.json", "train.json", "eval.json", "predictions.jsonl",
                 "predictions_backfill.jsonl", "pool.json", "accuracy_matrix.png"}
RUN_DIR_FOLDERS = {"rounds", "features", "hidden", "adapter", "model", "plots", "wandb", "pool", "warmup", "base",
                   "data"}


def _lint(cwd: Path, pythonpath: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` (import-linter's command, from the interpreter running the tests) in ``cwd``,
    finding the package ``adapt`` in ``pythonpath`` first."""
    cmd = [sys.executable, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()",
           "--no-cache"]
    env = {"PATH": str(Path(sys.executable).parent), "PYTHONPATH": str(pythonpath), "HOME": str(cwd)}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_the_import_contracts_hold():
    res = _lint(ROOT, ROOT)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert "3 kept, 0 broken" in res.stdout


@pytest.mark.parametrize("module,planted,contract", [
    ("data/sample.py", "from adapt.run import loop as _up", "Layers"),              # data reaching up to run/
    ("models/loading.py", "import adapt.training.trainer as _up", "Layers"),       # models reaching up
    ("selection/samplers.py", "import adapt.methods.tive as _m", "import no method"),  # a generic part importing a method
])
def test_a_planted_upward_import_breaks_the_contract(tmp_path, module, planted, contract):
    shutil.copytree(PACKAGE, tmp_path / "adapt", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / "adapt" / module
    target.write_text(target.read_text() + f"\n{planted}  # planted by the test\n")
    res = _lint(tmp_path, tmp_path)
    assert res.returncode != 0, res.stdout[-3000:]
    broken = res.stdout[res.stdout.index("Broken contracts"):]
    assert contract in broken and "adapt." + module[:-3].replace("/", ".") in broken


def _run_dir_names(path: Path) -> list[str]:
    """Run-directory names spelled in ``path``: a contract file name anywhere, or a contract folder
    name joined onto a path (``x / "rounds"``)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in RUN_DIR_FILES:
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}")
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            for side in (node.left, node.right):
                if isinstance(side, ast.Constant) and side.value in RUN_DIR_FOLDERS:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}: / {side.value!r}")
    return found


# the same names where they mean something else than the run directory
NOT_RUN_DIR = {"adapt/data/readers.py": {"'state.json'"}}  # the marker file of a datasets save_to_disk folder


def test_only_the_layout_spells_run_directory_names():
    spelled = [hit for p in sorted(PACKAGE.rglob("*.py")) if p.name != "layout.py" for hit in _run_dir_names(p)
               if hit.rsplit(": ", 1)[1] not in NOT_RUN_DIR.get(hit.split(":", 1)[0], ())]
    assert spelled == []
    assert len(_run_dir_names(PACKAGE / "layout.py")) >= len(RUN_DIR_FILES)  # the check sees them where they are


def test_continual_run_only_wires():
    tree = ast.parse((PACKAGE / "run" / "loop.py").read_text(encoding="utf-8"))
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "ContinualRun")
    assert cls.end_lineno - cls.lineno + 1 < 300


def test_every_method_registers_through_the_one_hub():
    """Each file of adapt/methods (but the shared reference pass) is imported by methods/__init__.py
    on one line, and registers a selector: adding a method is one file and one line."""
    import adapt.methods as hub
    from adapt.methods import SELECTORS

    files = sorted(p.stem for p in (PACKAGE / "methods").glob("*.py") if p.stem not in ("__init__", "reference"))
    hub_imports = {a.name for n in ast.walk(ast.parse(Path(hub.__file__).read_text())) if isinstance(n, ast.ImportFrom)
                   and n.module == "adapt.methods" for a in n.names}
    assert hub_imports == set(files)
    registered_in = {sys.modules[SELECTORS.get(name).__module__].__name__.rsplit(".", 1)[1] for name in SELECTORS}
    assert registered_in == set(files)
