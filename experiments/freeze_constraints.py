"""Print ``constraints.txt``: every package ``adapt[dev]`` pulls in, at the version installed here.

    python experiments/freeze_constraints.py > constraints.txt

The README's install and CI use it (``pip install -e ".[dev]" -c constraints.txt``), so that a new
machine gets the versions the README's figures were measured with; ``pyproject.toml`` keeps ranges.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, distribution

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version


def closure(root: str = "adapt", extras: frozenset[str] = frozenset({"dev"})) -> dict[str, str]:
    """Installed version of every distribution ``root[extras]`` requires, directly or not."""
    seen: dict[str, set[str]] = {}
    todo: list[tuple[str, set[str]]] = [(root, set(extras))]
    while todo:
        name, wanted = todo.pop()
        try:
            dist = distribution(name)
        except PackageNotFoundError:  # an optional dependency not installed here
            continue
        key = canonicalize_name(dist.metadata["Name"])
        if key in seen and wanted <= seen[key]:
            continue
        seen[key] = seen.get(key, set()) | wanted
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in (wanted or {""})):
                todo.append((req.name, set(req.extras)))
    seen.pop(canonicalize_name(root), None)
    return {k: Version(distribution(k).version).public for k in sorted(seen)}  # 2.13.0+cpu -> 2.13.0


def main() -> None:
    print("# The versions the README's figures and CI were measured with (pip install -c constraints.txt).")
    print("# Regenerate: python experiments/freeze_constraints.py > constraints.txt")
    for name, version in closure().items():
        print(f"{name}=={version}")


if __name__ == "__main__":
    main()
