"""Reading wandb's offline ``.wandb`` run files back.

An offline wandb run writes ``RUN_DIR/wandb/offline-run-*/run-*.wandb``: a LevelDB-style
record log of serialised protobuf records. This module parses that log (wandb ships no
Python reader for it) and returns the run's history rows and its summary (the tests check a
run's wandb history with it; ``adapt report`` reads ``metrics.jsonl`` instead).
:class:`adapt.tracking.loggers.WandbLogger` uses it to wait for a run's exit record.
"""

from __future__ import annotations

import json
import os
import struct
import time
import warnings
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from adapt.errors import AdaptError
from adapt.layout import RunLayout


# ---------------------------------------------------------------------------------------------
# Reading an offline run back (wandb >= 0.19 ships no Python reader for .wandb files).
#
# A .wandb file is a LevelDB-style log: a 7-byte header (":W&B", magic 0xBEE1, version), then
# 32 KiB blocks of chunks, each with a 7-byte header (crc32 of type byte + data, length, type:
# 1 full, 2 first, 3 middle, 4 last); a block tail shorter than a header is zero padding. Each
# full record is a serialised ``wandb.proto.wandb_internal_pb2.Record``.

_LOG_HEADER = struct.Struct("<4sHB")
_CHUNK_HEADER = struct.Struct("<IHB")
_BLOCK = 32768
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def _iter_wandb_records(path: Path) -> Iterable[bytes]:
    data = path.read_bytes()
    if len(data) < _LOG_HEADER.size:
        raise AdaptError(f"{path}: too short to be a wandb run file")
    ident, magic, _version = _LOG_HEADER.unpack_from(data, 0)
    if ident != b":W&B" or magic != 0xBEE1:
        raise AdaptError(f"{path}: not a wandb run file (bad header)")
    pos = _LOG_HEADER.size
    pending: bytearray | None = None
    while pos < len(data):
        left = _BLOCK - pos % _BLOCK
        if left < _CHUNK_HEADER.size:
            pos += left
            continue
        if pos + _CHUNK_HEADER.size > len(data):
            return  # torn tail (run killed mid-write)
        crc, length, kind = _CHUNK_HEADER.unpack_from(data, pos)
        start = pos + _CHUNK_HEADER.size
        chunk = data[start : start + length]
        if len(chunk) < length or (crc == 0 and length == 0 and kind == 0):
            return  # torn tail or zero-filled end
        if zlib.crc32(chunk, zlib.crc32(bytes([kind]))) & 0xFFFFFFFF != crc:
            return  # corrupt from here on: keep what was read
        pos = start + length
        if kind == _FULL:
            pending = None
            yield chunk
        elif kind == _FIRST:
            pending = bytearray(chunk)
        elif kind == _MIDDLE and pending is not None:
            pending += chunk
        elif kind == _LAST and pending is not None:
            pending += chunk
            yield bytes(pending)
            pending = None


def _has_exit_record(path: Path) -> bool:
    from wandb.proto import wandb_internal_pb2 as pb

    try:
        for raw in _iter_wandb_records(path):
            rec = pb.Record()
            rec.ParseFromString(raw)
            if rec.WhichOneof("record_type") == "exit":
                return True
    except (AdaptError, OSError):
        pass
    return False


def _wait_for_exit_record(run_path: Path, timeout: float) -> bool:
    """Poll until ``run_path/run-*.wandb`` holds the exit record; False after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        files = list(Path(run_path).glob("run-*.wandb"))
        if files and all(_has_exit_record(f) for f in files):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def offline_run_dirs(run_dir: str | os.PathLike[str]) -> list[Path]:
    """The offline wandb runs of ``RUN_DIR`` (``RUN_DIR/wandb/offline-run-*``), oldest first.

    A resumed run has one per process that logged. ``run_dir`` may also be the ``wandb``
    folder itself.
    """
    run_dir = Path(run_dir)
    base = run_dir if run_dir.name in ("wandb", ".wandb") else RunLayout(run_dir).wandb
    dirs = [d for d in base.glob("offline-run-*") if d.is_dir()]

    def key(d: Path) -> tuple[str, float, str]:
        parts = d.name.split("-")  # offline-run-YYYYMMDD_HHMMSS-id
        stamp = parts[2] if len(parts) > 3 else ""
        files = list(d.glob("run-*.wandb"))
        return (stamp, min((f.stat().st_mtime for f in files), default=0.0), d.name)

    return sorted(dirs, key=key)


def _set_item(row: dict[str, Any], item: Any) -> None:
    """Put one history/summary item (a key or a nested key, and its JSON value) into ``row``."""
    keys = [item.key] if item.key else list(item.nested_key)
    try:
        value = json.loads(item.value_json)
    except json.JSONDecodeError:
        value = item.value_json
    node = row
    for k in keys[:-1]:  # wandb splits media and nested dicts into nested keys
        nxt = node.get(k)
        if not isinstance(nxt, dict):
            nxt = node[k] = {}
        node = nxt
    node[keys[-1]] = value


def _history_row(record: Any) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for item in record.history.item:
        _set_item(row, item)
    return row


def read_offline_wandb_history(run_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The history rows (``run.log`` calls, merged per step) of the offline wandb run(s).

    ``run_dir`` is a RUN_DIR (every ``wandb/offline-run-*`` in order), one offline run folder
    or a ``.wandb`` file. Each row maps the logged keys to their values, plus wandb's
    ``_step``, ``_runtime`` and ``_timestamp``; a logged dict comes back as a dict, and tables
    and images as wandb's description of the media file (``{"_type": "table-file", "path":
    "media/table/...", ...}``, the path relative to the run's ``files`` folder).
    """
    return [_history_row(rec) for rec in _records(run_dir, "history")]


def read_offline_wandb_summary(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The summary of the offline wandb run(s) as ``wandb sync`` would upload it: every summary
    update in order (``run.summary`` writes, and wandb's own last-value-per-history-key ones),
    later runs of a resumed RUN_DIR over earlier ones. ``run_dir`` as for
    :func:`read_offline_wandb_history`."""
    summary: dict[str, Any] = {}
    for rec in _records(run_dir, "summary"):
        for item in rec.summary.update:
            _set_item(summary, item)
        for item in rec.summary.remove:
            keys = [item.key] if item.key else list(item.nested_key)
            node = summary
            for k in keys[:-1]:
                node = node.get(k) if isinstance(node.get(k), dict) else {}
            node.pop(keys[-1], None)
    return summary


def _records(run_dir: str | os.PathLike[str], kind: str) -> list[Any]:
    """The records of one kind (``history``, ``summary``, ...) of the offline run(s), in order."""
    from wandb.proto import wandb_internal_pb2 as pb

    run_dir = Path(run_dir)
    if run_dir.is_file():
        files = [run_dir]
    elif any(run_dir.glob("run-*.wandb")):
        files = sorted(run_dir.glob("run-*.wandb"))
    else:
        files = [f for d in offline_run_dirs(run_dir) for f in sorted(d.glob("run-*.wandb"))]
    if not files:
        raise AdaptError(f"{run_dir}: no offline wandb run found (looked for wandb/offline-run-*/run-*.wandb)")
    out = []
    for f in files:
        for raw in _iter_wandb_records(f):
            rec = pb.Record()
            try:
                rec.ParseFromString(raw)
            except Exception:  # noqa: BLE001 - a record we cannot parse ends the readable part
                warnings.warn(f"{f}: unreadable record, stopped reading", stacklevel=3)
                break
            if rec.WhichOneof("record_type") == kind:
                out.append(rec)
    return out
