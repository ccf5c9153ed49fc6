"""A run directory that was moved: what its files name by the old path, found in the new place.

stream.json and the adapters name what lives in the run directory relative to it, but the pool's
records keep the absolute image paths their reader gave them at ingest, and the built-in stream's
images live in ``RUN_DIR/data``. :class:`MovedPool` hands its samples out with those paths moved
into the run directory as it is now (``state.json``'s ``roots`` says where it was); paths outside
the run directory, and records that name their images otherwise, are left as they are.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from adapt.data.pool import DataPool
from adapt.data.sample import Sample


def moved_path(path: str, earlier: Sequence[Path], root: Path) -> str:
    """``path`` under one of the ``earlier`` run folders, made the same path under ``root``."""
    for old in earlier:
        prefix = str(old) + os.sep
        if path.startswith(prefix):
            return str(root / path[len(prefix):])
    return path


class MovedPool(DataPool):
    """The run's :class:`DataPool`, its samples' image paths under an ``earlier`` run folder moved into ``root``."""

    def __init__(self, pool_dir: str | Path, root: Path, earlier: Sequence[Path], **kwargs: Any) -> None:
        super().__init__(pool_dir, **kwargs)
        self.run_root = Path(root)
        self.earlier = list(earlier)

    def samples(self, *args: Any, **kwargs: Any) -> list[Sample]:
        out = super().samples(*args, **kwargs)
        if not self.earlier:
            return out
        return [s if not s.images else
                dataclasses.replace(s, images=tuple(moved_path(p, self.earlier, self.run_root) for p in s.images))
                for s in out]
