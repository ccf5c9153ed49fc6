"""``state.json``: the run's progress (finished phases, current round and phase, timings), its
schema, and the phase names.

``roots`` lists the folders the run directory has lived in (:meth:`RunState.enter`), so that a
moved run still finds what its pool records name by the old path.

Every save also records ``log_bytes``, the length of ``metrics.jsonl`` (append-only) at that
moment; :meth:`RunState.trim_log` cuts the file back to it when a run starts, so the events of a
phase that a kill interrupted (and a line torn by the kill) go, and the phase logs them again.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from adapt.errors import CorruptFileError
from adapt.io import read_json, write_json_atomic
from adapt.layout import round_name

PHASES = ("ingest", "features", "select", "train", "evaluate", "prune", "checkpoint")

# state.json's fields and their JSON types
STATE_FIELDS: dict[str, tuple[type, ...]] = {
    "seed": (int,), "status": (str,), "round": (int, str), "phase": (str, type(None)),
    "finished": (list,), "phase_seconds": (dict,),
}


def state_key(t: int, phase: str) -> str:
    """``"<round>:<phase>"``, the key a finished phase is recorded under (``base:evaluate`` for R0)."""
    return f"{round_name(t)}:{phase}"


def check_state(path: Path, data: Any) -> dict[str, Any]:
    """``state.json``'s content, or a CorruptFileError naming the field that is wrong."""
    if not isinstance(data, dict):
        raise CorruptFileError(path, f"the top level must be an object, found {type(data).__name__}")
    for key, types in STATE_FIELDS.items():
        if key not in data:
            raise CorruptFileError(path, f"field {key!r} is missing")
        if not isinstance(data[key], types) or isinstance(data[key], bool):
            raise CorruptFileError(path, f"field {key!r} has the wrong type ({type(data[key]).__name__})")
    bad = next((k for k in data["finished"] if not isinstance(k, str) or ":" not in k), None)
    if bad is not None:
        raise CorruptFileError(path, f"'finished' holds {bad!r}, not a 'round:phase' key")
    return data


class RunState:
    """``state.json``, written atomically by the main process (other ranks keep it in memory)."""

    def __init__(self, path: Path, data: dict[str, Any], writer: bool = True, log: Path | None = None) -> None:
        self.path = path
        self.data = data
        self.writer = writer
        self.log = log

    @classmethod
    def load_or_new(cls, path: Path, seed: int, writer: bool = True, log: Path | None = None) -> "RunState":
        if path.is_file():
            return cls(path, check_state(path, read_json(path)), writer, log)
        return cls(path, {"seed": seed, "status": "new", "round": 0, "phase": None, "finished": [],
                          "phase_seconds": {}, "wandb_id": None}, writer, log)

    def enter(self, root: Path) -> list[Path]:
        """Record that the run directory is now ``root`` (``roots``: every folder the run has lived
        in, oldest first; written with the next save) and return the earlier ones: a moved run's pool
        records still name the images of its own ``data/`` folder where it was."""
        roots = [str(r) for r in self.data.get("roots", [])]
        if not roots or roots[-1] != str(root):
            self.data["roots"] = roots + [str(root)]
        return [Path(r) for r in dict.fromkeys(roots) if r != str(root)]

    def done(self, t: int, phase: str) -> bool:
        return state_key(t, phase) in self.data["finished"]

    def mark(self, t: int, phase: str, seconds: float) -> None:
        self.data["finished"].append(state_key(t, phase))
        ps = self.data["phase_seconds"]
        ps[phase] = ps.get(phase, 0.0) + seconds
        self.save()

    def set(self, **kw: Any) -> None:
        self.data.update(kw)
        self.save()

    def save(self) -> None:
        if self.writer:
            if self.log is not None:
                self.data["log_bytes"] = self.log.stat().st_size if self.log.is_file() else 0
            write_json_atomic(self.path, self.data)

    def trim_log(self) -> None:
        """``metrics.jsonl`` back to its length at the last save (see the module docstring); a file
        shorter than that lost events: a CorruptFileError."""
        committed = self.data.get("log_bytes")
        if self.log is None or committed is None or not self.log.is_file():
            return
        size = self.log.stat().st_size
        if size < committed:
            raise CorruptFileError(self.log, f"{size} bytes, but state.json recorded {committed}: events were lost")
        if size > committed:
            with open(self.log, "r+b") as fh:
                fh.truncate(committed)
                fh.flush()
                os.fsync(fh.fileno())
