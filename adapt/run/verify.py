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
from adapt.layout import RunLayout, parse_round
from adapt.run.state import check_state

__all__ = ["verify_run_dir"]


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

    layout = RunLayout(Path(run_dir))
    state = check_state(layout.state, read_json(layout.state))
    load_stream(layout.root)
    if layout.pool.dir.is_dir():
        DataPool(layout.pool.dir, writable=False)
    for key in state["finished"]:
        name, phase = key.split(":", 1)
        rd = layout.round(parse_round(name))
        if phase == "select" and rd.selection.exists():
            _parquet(rd.selection, ("uid", "selected"))
        elif phase == "select":
            raise CorruptFileError(rd.selection, "missing, though state.json records the selection as finished")
        elif phase == "train":
            _weights(rd.model if rd.model.is_dir() else rd.adapter)
        elif phase == "evaluate":
            _json(rd.eval, "scores")
        elif phase == "checkpoint":
            _json(rd.pool, "active")
    for store_dir in _feature_stores(layout):
        try:
            FeatureStore(store_dir)
        except CorruptFileError:
            raise
        except AdaptError as exc:
            raise CorruptFileError(store_dir, str(exc)) from None
    return state


def _feature_stores(layout: RunLayout) -> list[Path]:
    """Every feature store of the run: each round's features and hidden states, and those of the
    methods' reference passes (``rounds/<t>/<method>/features``)."""
    from adapt.features.store import FeatureStore

    found = []
    for t in layout.trained_rounds():
        rd = layout.round(t)
        candidates = [rd.features, rd.hidden] + [rd.method(d.name).features for d in sorted(rd.dir.iterdir())
                                                 if d.is_dir()]
        found += [c for c in candidates if FeatureStore.exists(c)]
    return found
