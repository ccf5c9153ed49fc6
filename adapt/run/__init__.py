"""Running a continual experiment: :class:`ContinualRun` (wires the phases), the run state, the
model chain across rounds, the phases, the config checks, the metrics summary and verification."""

from adapt.run.loop import ContinualRun

__all__ = ["ContinualRun"]
