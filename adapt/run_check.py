"""Before a run is resumed: do the files it will read back still read? (issue 6, bad input)

Everything adapt writes into a run directory is atomic (temp file + fsync + rename), or the
feature store's preallocated files with their done flags, or ``metrics.jsonl`` whose committed
length ``state.json`` records; so a kill never leaves a damaged file. A file damaged from outside
(a disk fault, a copy cut short, a hand edit) is found here, before anything runs, and reported as
one :class:`~adapt.errors.CorruptFileError` naming the file and the problem, instead of a
traceback halfway through a round. The checks read headers and small files only: a Parquet
footer and schema, a safetensors header (which also checks that the file is as long as the
header says), the feature store's sizes; a run of any size is checked in a moment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from adapt.errors import AdaptError, CorruptFileError
from adapt.io import read_json

__all__ = ["STATE_FIELDS", "check_state", "verify_run_dir"]

# state.json's fields and their JSON types (adapt.loop.RunState)
STATE_FIELDS: dict[str, tuple[type, ...]] = {
    "seed": (int,), "status": (str,), "round": (int, str), "phase": (str, type(None)),
    "finished": (list,), "phase_seconds": (dict,),
}


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


def _parquet(path: Path, columns: tuple[str, ...]) -> None:
    import pyarrow.parquet as pq

    try:
        names = pq.read_schema(path).names
    except FileNotFoundError:
        raise CorruptFileError(path, "missing, though state.json records the phase that writes it as finished") from None
    except Exception as exc:  # pyarrow raises several types for broken files
        raise CorruptFileError(path, f"not a readable Parquet file: {exc}") from None
    missing = [c for c in columns if c not in names]
    if missing:
        raise CorruptFileError(path, f"missing column(s) {', '.join(missing)}")


def _json(path: Path, key: str | None = None) -> None:
    if not path.is_file():
        raise CorruptFileError(path, "missing, though state.json records the phase that writes it as finished")
    data = read_json(path)
    if key is not None and not (isinstance(data, dict) and key in data):
        raise CorruptFileError(path, f"no {key!r} field")


def _weights(folder: Path) -> None:
    from safetensors import safe_open

    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise CorruptFileError(folder, "no .safetensors weights, though state.json records the training as finished")
    for f in files:
        try:
            with safe_open(str(f), "pt") as g:
                g.keys()
        except Exception as exc:
            raise CorruptFileError(f, f"unreadable safetensors weights: {exc}") from None


def verify_run_dir(run_dir: str | Path) -> dict[str, Any]:
    """Check what a resumed run reads back; returns ``state.json``'s content.

    Raises:
        CorruptFileError: the first file that does not read back, and why.
    """
    from adapt.data.pool import DataPool
    from adapt.data.stream import load_stream
    from adapt.features.store import FeatureStore

    run_dir = Path(run_dir)
    state_path = run_dir / "state.json"
    state = check_state(state_path, read_json(state_path))
    load_stream(run_dir)
    if (run_dir / "pool").is_dir():
        DataPool(run_dir / "pool", writable=False)
    for key in state["finished"]:
        t, phase = key.split(":", 1)
        rd = run_dir / "rounds" / t
        if phase == "select" and (rd / "selection.parquet").exists():
            _parquet(rd / "selection.parquet", ("uid", "selected"))
        elif phase == "select":
            raise CorruptFileError(rd / "selection.parquet", "missing, though state.json records the selection as finished")
        elif phase == "train":
            _weights(rd / "model" if (rd / "model").is_dir() else rd / "adapter")
        elif phase == "evaluate":
            _json(rd / "eval.json", "scores")
        elif phase == "checkpoint":
            _json(rd / "pool.json", "active")
    for meta in sorted((run_dir / "rounds").glob("*/**/features/meta.json")):
        try:
            FeatureStore(meta.parent)
        except CorruptFileError:
            raise
        except AdaptError as exc:
            raise CorruptFileError(meta.parent, str(exc)) from None
    return state
