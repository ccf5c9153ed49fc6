"""Running a continual experiment: :class:`ContinualRun` (wires the phases), the run state, the
model chain across rounds, the phases, the config checks, the metrics summary and verification.

``ContinualRun`` is imported on first use, so that ``adapt.run.checks`` can check a config's names
without loading the training stack first."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from adapt.run.loop import ContinualRun

__all__ = ["ContinualRun"]


def __getattr__(name: str) -> Any:
    if name == "ContinualRun":
        from adapt.run.loop import ContinualRun

        return ContinualRun
    raise AttributeError(f"module 'adapt.run' has no attribute {name!r}")
