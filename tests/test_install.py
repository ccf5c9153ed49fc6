"""The README's install and CI's install are the same, and both take the tested versions (issue 20, item 8)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _pins() -> dict[str, str]:
    lines = (ROOT / "constraints.txt").read_text().splitlines()
    return dict(line.split("==") for line in lines if line and not line.startswith("#"))


def test_readme_quick_start_and_ci_install_with_the_constraints():
    quick = re.search(r"```bash\n(pip install .*)\n", (ROOT / "README.md").read_text()).group(1)
    ci = (ROOT / ".ci/run").read_text()
    assert 'pip install -e ".[dev]" -c constraints.txt' in quick
    assert 'pip install -e ".[dev]" -c constraints.txt' in ci
    torch_pin = re.search(r"pip install torch==(\S+)", quick).group(1)
    assert f"pip install torch=={torch_pin}" in ci and _pins()["torch"] == torch_pin


def test_the_constraints_pin_every_direct_dependency():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    direct = [Requirement(r) for r in [*project["dependencies"], *project["optional-dependencies"]["dev"]]]
    pins = _pins()
    assert {canonicalize_name(r.name) for r in direct} <= set(pins)
    assert all(r.specifier.contains(pins[canonicalize_name(r.name)]) for r in direct)  # inside the ranges
