"""The DataPool: every sample a run has seen, persisted in ``RUN_DIR/pool``.

On disk (format version 1)::

    pool/samples.parquet   one row per sample ever ingested, in ingestion order:
                           uid str, dataset str, task str, round_added int32,
                           status str ("active" | "pruned"), pruned_round int32 (null while active),
                           pruned_reason str (null while active), record str (Sample.to_json())
                           + file key-value metadata b"adapt_pool": {"version": 1, "datasets": [...]}
                           (``pq.read_metadata(path).metadata``), row groups of 8192 rows
    pool/manifest.json     {"version": 1,
                            "datasets": [{"name", "source", "task", "round_added", "num_samples",
                                          "fingerprint"}, ...],   (ingestion order)
                            "num_samples", "num_active"}

``samples.parquet`` is the source of truth: it carries the dataset entries in its metadata,
and the manifest is a readable copy. Every write replaces the Parquet file atomically (temp file
+ fsync + rename), then the manifest likewise; if a crash falls between the two renames, the next
open sees that they disagree and rewrites the manifest from the Parquet file.

Rules:

- ``ingest`` is all or nothing: a failure leaves both files byte-identical.
- A dataset name is ingested once. Ingesting it again with the same content (same fingerprint: a
  sha256 over its samples' ``to_json()``, in order) is a no-op returning 0, so a resumed ingest is
  idempotent; different content under the same name is a :class:`DataError`. uids are unique
  across the pool.
- Pruning tombstones a sample for good (status, round, reason); it never becomes active again.

Only the metadata columns are held in memory; the ``record`` column is read when samples are
asked for. Writes stream: an ingest writes the old rows and then the new dataset's a batch at a
time into the new file, so ingesting a dataset of any size takes bounded memory (its uids aside). The in-memory copy is reloaded when the files change on disk. One process writes
a pool at a time.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from adapt.data.sample import Sample
from adapt.errors import AdaptError, CorruptFileError, DataError
from adapt.io import write_json_atomic, write_text_atomic, write_with_atomic
from adapt.layout import PoolLayout

__all__ = ["ACTIVE", "PRUNED", "SCHEMA", "DataPool", "UnknownUidError", "fingerprint", "fingerprint_records"]

FORMAT_VERSION = 1
ACTIVE, PRUNED = "active", "pruned"
STATUSES = (ACTIVE, PRUNED)
META_KEY = b"adapt_pool"
WRITE_BATCH = 8192  # rows per Parquet row group, and per batch a rewrite streams

SCHEMA = pa.schema([
    ("uid", pa.string()),
    ("dataset", pa.string()),
    ("task", pa.string()),
    ("round_added", pa.int32()),
    ("status", pa.string()),
    ("pruned_round", pa.int32()),
    ("pruned_reason", pa.string()),
    ("record", pa.string()),
])
META_COLUMNS = [f.name for f in SCHEMA if f.name != "record"]
COLUMNS = SCHEMA.names


class UnknownUidError(AdaptError, KeyError):
    """A uid that the pool does not hold."""

    __str__ = AdaptError.__str__  # not KeyError's repr() of the message


def _hash_records(h: "hashlib._Hash", records: Iterable[str]) -> None:
    """Feed serialised records into the fingerprint hash, each followed by ``\\n``."""
    for r in records:
        h.update(r.encode("utf-8"))
        h.update(b"\n")


def fingerprint_records(records: Iterable[str]) -> str:
    """sha256 over serialised records (``Sample.to_json()``), in order, each followed by ``\\n``."""
    h = hashlib.sha256()
    _hash_records(h, records)
    return h.hexdigest()


def fingerprint(samples: Sequence[Sample]) -> str:
    """The fingerprint of a dataset: sha256 over its samples' ``to_json()``, in order."""
    return fingerprint_records(s.to_json() for s in samples)


def _empty_manifest() -> dict[str, Any]:
    return {"version": FORMAT_VERSION, "datasets": [], "num_samples": 0, "num_active": 0}


def _readable(obj: Any) -> Any:
    """A quarantined record's value that JSON lacks: image bytes by their size, others as text."""
    if isinstance(obj, (bytes, bytearray)):
        return f"<{len(obj)} bytes>"
    return str(obj)


def _file_signature(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)



def _fingerprint_of(samples: Iterable[Sample], dataset: str, where: str, base: Path) -> tuple[str, int]:
    """(fingerprint, count) of a stream of samples, checking that they belong to ``dataset``
    (records as the pool stores them: images in ``base`` named relative to it)."""
    n = 0

    def records() -> Iterator[str]:
        nonlocal n
        for s in samples:
            _check_dataset(s, dataset, where)
            n += 1
            yield s.to_json(base)

    return fingerprint_records(records()), n


def _check_dataset(s: Sample, dataset: str, where: str) -> None:
    if s.dataset != dataset:
        raise DataError(where, f"belongs to dataset {s.dataset!r}, not {dataset!r}", sample=s.id)


class _NewRows:
    """The rows of a dataset being ingested, turned into Parquet batches as the samples stream by;
    keeps only their uids and tasks (for the checks and the in-memory metadata) and the fingerprint."""

    def __init__(self, dataset: str, round_added: int, where: str, base: Path) -> None:
        self.dataset, self.round_added, self.where, self.base = dataset, round_added, where, base
        self.hash = hashlib.sha256()
        self.n = 0
        self.task = dataset
        self._uids: list[pa.Array] = []
        self._tasks: list[pa.Array] = []

    def batches(self, samples: Iterable[Sample]) -> Iterator[pa.RecordBatch]:
        chunk: list[Sample] = []
        for s in samples:
            _check_dataset(s, self.dataset, self.where)
            chunk.append(s)
            if len(chunk) == WRITE_BATCH:
                yield self._batch(chunk)
                chunk = []
        if chunk:
            yield self._batch(chunk)

    def _batch(self, chunk: list[Sample]) -> pa.RecordBatch:
        if self.n == 0:
            self.task = chunk[0].task or self.dataset
        records = [s.to_json(self.base) for s in chunk]
        _hash_records(self.hash, records)
        n = len(chunk)
        self.n += n
        uids = pa.array([s.uid for s in chunk], type=pa.string())
        tasks = pa.array([s.task or self.dataset for s in chunk], type=pa.string())
        self._uids.append(uids)
        self._tasks.append(tasks)
        return pa.RecordBatch.from_arrays([
            uids, pa.array([self.dataset] * n, type=pa.string()), tasks,
            pa.array(np.full(n, self.round_added, dtype=np.int32)), pa.array([ACTIVE] * n, type=pa.string()),
            pa.nulls(n, type=pa.int32()), pa.nulls(n, type=pa.string()), pa.array(records, type=pa.string()),
        ], schema=SCHEMA)

    def check_uids(self, pool_meta: pa.Table) -> None:
        """uids unique within the dataset and new to the pool (whose metadata is ``pool_meta``),
        or a DataError."""
        uids = pa.chunked_array(self._uids, type=pa.string()).combine_chunks()
        if len(pc.unique(uids)) != len(uids):
            counts = pc.value_counts(uids)
            dup = counts.field("values").filter(pc.greater(counts.field("counts"), 1))
            raise DataError(self.where, f"uid repeated within the dataset: {dup[0].as_py()!r}")
        clash = pc.is_in(uids, value_set=pool_meta["uid"].combine_chunks())
        if pc.any(clash).as_py():
            first = uids.filter(clash)[0].as_py()
            holder = pool_meta["dataset"][pc.index(pool_meta["uid"], first).as_py()].as_py()
            raise DataError(self.where, f"uid {first!r} is already in the pool (dataset {holder!r}); "
                                        f"{pc.sum(clash).as_py()} uid(s) collide")

    def meta(self) -> pa.Table:
        """The metadata columns of the new rows."""
        n = self.n
        return pa.Table.from_arrays([
            pa.chunked_array(self._uids, type=pa.string()), pa.array([self.dataset] * n, type=pa.string()),
            pa.chunked_array(self._tasks, type=pa.string()), pa.array(np.full(n, self.round_added, dtype=np.int32)),
            pa.array([ACTIVE] * n, type=pa.string()), pa.nulls(n, type=pa.int32()), pa.nulls(n, type=pa.string()),
        ], schema=SCHEMA.remove(SCHEMA.get_field_index("record")))


class DataPool:
    """The persistent pool of a run: ``RUN_DIR/pool`` (see the module docstring for the format).

    Args:
        root: the pool folder. An existing pool is opened; a missing folder is an empty pool,
            created on the first write.
        writable: False for a reader that must not repair a stale manifest (the non-main ranks
            of a multi-process run, while the main process writes).
    """

    def __init__(self, root: str | Path, writable: bool = True) -> None:
        self.root = Path(root)
        self.writable = writable  # False: a reader (another rank) that never repairs the manifest
        self._signature: tuple[Any, Any] | None = None
        self._meta: pa.Table = SCHEMA.empty_table().drop_columns(["record"])
        self._records: pa.ChunkedArray | None = None
        self._manifest: dict[str, Any] = _empty_manifest()
        self._df: pd.DataFrame | None = None  # pandas view of _meta, built on demand
        self._refresh()

    def __repr__(self) -> str:
        return f"DataPool({str(self.root)!r}, active={len(self)}, total={self.num_total()})"

    @property
    def images(self) -> Path:
        """Where the images embedded in ingested records are stored: pass it as
        ``iter_dataset(image_store=...)``."""
        return PoolLayout(self.root.resolve()).images

    @property
    def home(self) -> Path:
        """The folder that holds the pool (the run directory): the records name image files inside
        it relative to it (the embedded ones, the built-in stream's), so the run folder can move."""
        return self.root.resolve().parent

    @property
    def samples_path(self) -> Path:
        return PoolLayout(self.root).samples

    @property
    def manifest_path(self) -> Path:
        return PoolLayout(self.root).manifest

    # ------------------------------------------------------------------------------ loading
    def _disk_signature(self) -> tuple[Any, Any]:
        return (_file_signature(self.samples_path), _file_signature(self.manifest_path))

    def _refresh(self) -> None:
        """(Re)load from disk when the files changed since we last read or wrote them."""
        sig = self._disk_signature()
        if sig == self._signature:
            return
        meta, stored = self._read_meta()
        self._meta, self._records, self._df = meta, None, None
        manifest = self._expected_manifest(meta, stored)
        on_disk = self._read_manifest()
        if self.writable and on_disk != manifest and (sig[0] is not None or on_disk is not None):
            self._repair_manifest(manifest)
        self._manifest = manifest
        self._signature = self._disk_signature()

    def _read_meta(self) -> tuple[pa.Table, dict[str, Any] | None]:
        """The metadata columns and the stored dataset entries (None when the file has none)."""
        if not self.samples_path.is_file():
            return SCHEMA.empty_table().drop_columns(["record"]), {"version": FORMAT_VERSION, "datasets": []}
        try:
            pf = pq.ParquetFile(self.samples_path)
            names = pf.schema_arrow.names
            missing = [c for c in COLUMNS if c not in names]
            if missing:
                raise CorruptFileError(self.samples_path, f"not a pool file, missing columns {missing}")
            meta = pf.read(columns=META_COLUMNS).cast(pa.schema([SCHEMA.field(c) for c in META_COLUMNS]))
            raw = (pf.metadata.metadata or {}).get(META_KEY)
        except AdaptError:
            raise
        except Exception as exc:  # pyarrow raises several types for broken files
            raise CorruptFileError(self.samples_path, f"cannot read the pool: {exc}") from None
        stored = json.loads(raw) if raw else None
        if stored is not None and stored.get("version") != FORMAT_VERSION:
            raise AdaptError(f"{self.samples_path}: pool format version {stored.get('version')} "
                             f"is not supported (this adapt reads version {FORMAT_VERSION})")
        bad = pc.invert(pc.is_in(meta["status"], value_set=pa.array(STATUSES))).to_numpy(zero_copy_only=False)
        if bad.any():
            raise CorruptFileError(self.samples_path, f"bad status {meta['status'][int(np.argmax(bad))]} "
                                                      f"(allowed: {', '.join(STATUSES)})")
        return meta.combine_chunks(), stored

    def _read_manifest(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
            return None

    def _expected_manifest(self, meta: pa.Table, stored: dict[str, Any] | None) -> dict[str, Any]:
        """The manifest that the Parquet file implies (it is the source of truth)."""
        names = pc.unique(meta["dataset"]).to_pylist()  # first-appearance order = ingestion order
        counts = dict(zip(*[c.to_pylist() for c in pc.value_counts(meta["dataset"]).flatten()]))
        entries = {d["name"]: d for d in (stored or {}).get("datasets", [])}
        if set(entries) != set(names):
            entries = self._entries_from_rows(meta, names, (self._read_manifest() or {}).get("datasets", []))
        order = [d["name"] for d in (stored or {}).get("datasets", [])]
        if sorted(order) != sorted(names):
            order = names
        datasets = [dict(entries[n], num_samples=int(counts.get(n, 0))) for n in order]
        num_active = int(pc.sum(pc.equal(meta["status"], ACTIVE)).as_py() or 0)
        return {"version": FORMAT_VERSION, "datasets": datasets, "num_samples": meta.num_rows,
                "num_active": num_active}

    def _entries_from_rows(self, meta: pa.Table, names: list[str], hints: list[dict[str, Any]]) -> dict[str, Any]:
        """Dataset entries recomputed from the rows (a pool file without our metadata)."""
        known = {d.get("name"): d for d in hints if isinstance(d, dict)}
        records = self._read_records()
        out = {}
        for name in names:
            idx = pc.indices_nonzero(pc.equal(meta["dataset"], name))
            first = int(idx[0].as_py())
            out[name] = {
                "name": name, "source": str(known.get(name, {}).get("source", "")),
                "task": meta["task"][first].as_py(), "round_added": int(meta["round_added"][first].as_py()),
                "num_samples": len(idx), "fingerprint": fingerprint_records(records.take(idx).to_pylist()),
            }
        return out

    def _repair_manifest(self, manifest: dict[str, Any]) -> None:
        try:
            write_json_atomic(self.manifest_path, manifest)
        except OSError:  # a read-only run folder: the in-memory manifest is right anyway
            pass

    def _read_records(self) -> pa.ChunkedArray:
        """The whole ``record`` column (loaded once, on demand)."""
        if self._records is None:
            if not self.samples_path.is_file():
                self._records = pa.chunked_array([], type=pa.string())
            else:
                try:
                    self._records = pq.read_table(self.samples_path, columns=["record"])["record"]
                except Exception as exc:  # a damaged data page
                    raise CorruptFileError(self.samples_path, f"cannot read the records: {exc}") from None
            if len(self._records) != self._meta.num_rows:
                raise AdaptError(f"{self.samples_path}: changed while being read; open the pool again")
        return self._records

    def _frame(self) -> pd.DataFrame:
        if self._df is None:
            df = self._meta.drop_columns(["pruned_round"]).to_pandas()
            pr = self._meta["pruned_round"]
            df.insert(META_COLUMNS.index("pruned_round"), "pruned_round", pd.arrays.IntegerArray(
                pr.fill_null(0).to_numpy().astype(np.int32), pr.is_null().to_numpy(zero_copy_only=False)))
            self._df = df
        return self._df

    # ------------------------------------------------------------------------------ writing
    def _old_rows(self, meta: pa.Table) -> Iterator[pa.RecordBatch]:
        """The pool's rows with ``meta`` as their metadata columns, the records streamed from the
        file a batch at a time (so a rewrite never holds the records in memory)."""
        if not self.samples_path.is_file() or meta.num_rows == 0:
            return
        start = 0
        for batch in pq.ParquetFile(self.samples_path).iter_batches(batch_size=WRITE_BATCH, columns=["record"]):
            part = meta.slice(start, batch.num_rows).combine_chunks()
            yield pa.RecordBatch.from_arrays([*(c.chunk(0) if c.num_chunks else pa.array([], c.type)
                                                for c in part.columns), batch.column(0)], schema=SCHEMA)
            start += batch.num_rows
        if start != meta.num_rows:
            raise AdaptError(f"{self.samples_path}: changed while being read; open the pool again")

    def _write(self, meta: pa.Table, batches: Iterable[pa.RecordBatch],
               datasets: Callable[[], list[dict[str, Any]]]) -> None:
        """Write the rows of ``batches`` (whose metadata columns end up as ``meta``) as the new
        Parquet file, then the manifest, each atomically; the in-memory state changes on success
        only. ``datasets()`` is called once the batches are written (an ingest knows its
        fingerprint then); ``meta`` may be a callable likewise."""
        self.root.mkdir(parents=True, exist_ok=True)
        self._remove_stale_temp_files()
        entries: list[dict[str, Any]] = []

        def write(tmp: Path) -> None:
            with pq.ParquetWriter(tmp, SCHEMA) as writer:
                for batch in batches:
                    writer.write_batch(batch, row_group_size=WRITE_BATCH)
                entries.extend({k: d[k] for k in ("name", "source", "task", "round_added", "num_samples",
                                                  "fingerprint")} for d in datasets())
                writer.add_key_value_metadata(
                    {META_KEY: json.dumps({"version": FORMAT_VERSION, "datasets": entries}).encode("utf-8")})

        write_with_atomic(self.samples_path, write)
        self._signature = None  # the file changed: a failure below makes the next access reload
        meta = meta() if callable(meta) else meta
        manifest = self._expected_manifest(meta, {"datasets": entries})
        write_json_atomic(self.manifest_path, manifest)
        self._meta, self._manifest, self._df, self._records = meta, manifest, None, None
        self._signature = self._disk_signature()

    def _remove_stale_temp_files(self) -> None:
        """Temp files a killed writer left behind (``adapt.io.atomic_path`` names them ``.NAME.*.tmp``)."""
        for name in (self.samples_path.name, self.manifest_path.name):
            for p in self.root.glob(f".{name}.*.tmp"):
                try:
                    p.unlink()
                except OSError:
                    pass

    @property
    def rejected_path(self) -> Path:
        """The samples ``stream.skip_invalid`` quarantined, one JSON line each, with their reasons."""
        return PoolLayout(self.root).rejected

    def quarantine(self, dataset: str, split: str, rejected: list[dict[str, Any]]) -> None:
        """Replace ``dataset``/``split``'s lines of :attr:`rejected_path` with ``rejected``, atomically."""
        path = self.rejected_path
        old = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line] \
            if path.is_file() else []
        rows = [r for r in old if (r["dataset"], r["split"]) != (dataset, split)] + rejected
        if rows or path.is_file():
            write_text_atomic(path, "".join(json.dumps(r, ensure_ascii=False, default=_readable) + "\n" for r in rows))

    def ingest(self, samples: Iterable[Sample], dataset: str, round_added: int, source: str = "") -> int:
        """Append a dataset to the pool, all or nothing, streaming: ``samples`` may be a generator
        (:func:`adapt.data.readers.iter_dataset`); they are written a batch at a time into a new
        pool file that replaces the old one only once every sample is in and checked, so memory
        does not grow with the dataset (its uids and metadata aside).

        Args:
            samples: the dataset's samples; each must have ``sample.dataset == dataset``. An error
                raised while iterating them leaves the pool untouched.
            dataset: the dataset's name, unique in the pool.
            round_added: the round that ingests it.
            source: where it was read from (kept in the manifest).

        Returns:
            The number of samples added: 0 when a dataset of this name and the same content is
            already in the pool (a resumed ingest).

        Raises:
            DataError: the name is taken by different content, the samples are empty, or a uid is
                repeated or already in the pool. The pool is left untouched.
        """
        self._refresh()
        where = source or f"dataset {dataset!r}"
        known = next((d for d in self._manifest["datasets"] if d["name"] == dataset), None)
        if known is not None:  # a resumed ingest, or a name clash: only the fingerprint is needed
            fp, n = _fingerprint_of(samples, dataset, where, self.home)
            if n and fp == known["fingerprint"]:
                return 0
            if not n:
                raise DataError(where, f"no samples to ingest for dataset {dataset!r}")
            raise DataError(where, f"the pool already holds a dataset named {dataset!r} with different "
                                   f"content (ingested in round {known['round_added']} from "
                                   f"{known['source'] or 'an unnamed source'}); give this one another name")
        new = _NewRows(dataset, int(round_added), where, self.home)
        old_meta = self._meta

        def batches() -> Iterator[pa.RecordBatch]:
            yield from self._old_rows(old_meta)
            yield from new.batches(samples)
            if not new.n:
                raise DataError(where, f"no samples to ingest for dataset {dataset!r}")
            new.check_uids(old_meta)

        def datasets() -> list[dict[str, Any]]:
            return [*self._manifest["datasets"], {"name": dataset, "source": str(source), "task": new.task,
                                                  "round_added": int(round_added), "num_samples": new.n,
                                                  "fingerprint": new.hash.hexdigest()}]

        self._write(lambda: pa.concat_tables([old_meta, new.meta()]).combine_chunks(), batches(), datasets)
        return new.n

    def prune(self, uids: Iterable[str], round: int, reason: str) -> int:  # noqa: A002 - the brief's name
        """Tombstone samples for good: status ``pruned``, with the round and the reason.

        Already-pruned uids are left as they were (their first round and reason stay).

        Returns:
            The number of samples newly pruned.

        Raises:
            UnknownUidError: a uid is not in the pool (nothing is pruned then).
        """
        self._refresh()
        if isinstance(uids, str):  # one uid, not its characters
            uids = [uids]
        wanted = pa.array(list(dict.fromkeys(uids)), type=pa.string())
        if len(wanted) == 0:
            return 0
        found = pc.is_in(wanted, value_set=self._meta["uid"].combine_chunks())
        if not pc.all(found).as_py():
            missing = wanted.filter(pc.invert(found)).to_pylist()
            raise UnknownUidError(f"{self.samples_path}: cannot prune {len(missing)} unknown uid(s): "
                                  f"{', '.join(map(repr, missing[:5]))}{' ...' if len(missing) > 5 else ''}")
        mask = pc.and_(pc.is_in(self._meta["uid"], value_set=wanted), pc.equal(self._meta["status"], ACTIVE))
        n = int(pc.sum(mask).as_py() or 0)
        if n == 0:
            return 0
        meta = self._meta
        meta = meta.set_column(meta.schema.get_field_index("status"), "status",
                               pc.if_else(mask, PRUNED, meta["status"]))
        meta = meta.set_column(meta.schema.get_field_index("pruned_round"), "pruned_round",
                               pc.if_else(mask, pa.scalar(int(round), pa.int32()), meta["pruned_round"]))
        meta = meta.set_column(meta.schema.get_field_index("pruned_reason"), "pruned_reason",
                               pc.if_else(mask, pa.scalar(str(reason), pa.string()), meta["pruned_reason"]))
        meta = meta.combine_chunks()
        self._write(meta, self._old_rows(meta), lambda: self._manifest["datasets"])
        return n

    # ------------------------------------------------------------------------------ reading
    def has_dataset(self, name: str) -> bool:
        """Whether a dataset of this name was ingested."""
        self._refresh()
        return any(d["name"] == name for d in self._manifest["datasets"])

    def datasets(self) -> list[dict[str, Any]]:
        """The manifest's dataset entries, in ingestion order (copies)."""
        self._refresh()
        return [dict(d) for d in self._manifest["datasets"]]

    def manifest(self) -> dict[str, Any]:
        """A copy of the manifest (``manifest.json`` as it should be on disk)."""
        self._refresh()
        return json.loads(json.dumps(self._manifest))

    def table(self, status: str | None = ACTIVE, columns: Sequence[str] | None = None) -> pd.DataFrame:
        """Rows in ingestion order, as a new DataFrame (changing it does not change the pool).

        Args:
            status: ``"active"`` (default), ``"pruned"``, or ``None`` for every row.
            columns: the columns to return (default: all, ``record`` included; leave ``record``
                out to avoid reading the records). ``round_added`` is int32, ``pruned_round`` is
                nullable ``Int32``.
        """
        self._refresh()
        if status is not None and status not in STATUSES:
            raise AdaptError(f"unknown status {status!r} (use {', '.join(map(repr, STATUSES))} or None)")
        cols = list(COLUMNS if columns is None else columns)
        unknown = [c for c in cols if c not in COLUMNS]
        if unknown:
            raise AdaptError(f"unknown pool column(s) {unknown} (columns: {', '.join(COLUMNS)})")
        df = self._frame()
        keep = None if status is None else (df["status"] == status).to_numpy()
        out = df[[c for c in cols if c != "record"]]
        if keep is not None:
            out = out.loc[keep]
        out = out.reset_index(drop=True).copy()
        if "record" in cols:
            records = self._read_records()
            if keep is not None:
                records = records.filter(pa.array(keep))
            out.insert(cols.index("record"), "record", records.to_pandas().reset_index(drop=True))
        return out

    def active_uids(self) -> list[str]:
        """uids of the active samples, in ingestion order."""
        self._refresh()
        return self._meta["uid"].filter(pc.equal(self._meta["status"], ACTIVE)).to_pylist()

    def samples(self, uids: Sequence[str] | None = None) -> list[Sample]:
        """The active samples in ingestion order, or the samples of ``uids`` in that order
        (tombstoned ones included: they stay readable, they just never become active again)."""
        self._refresh()
        records = self._read_records()
        if uids is None:
            chosen = records.filter(pc.equal(self._meta["status"], ACTIVE))
        else:
            wanted = pa.array(list(uids), type=pa.string())
            pos = pc.index_in(wanted, value_set=self._meta["uid"].combine_chunks())
            if pos.null_count:
                missing = wanted.filter(pc.is_null(pos)).to_pylist()
                raise UnknownUidError(f"{self.samples_path}: {len(missing)} unknown uid(s): "
                                      f"{', '.join(map(repr, missing[:5]))}{' ...' if len(missing) > 5 else ''}")
            chosen = records.take(pos)
        return [Sample.from_json(r, self.home) for r in chosen.to_pylist()]

    def __len__(self) -> int:
        """The number of active samples."""
        self._refresh()
        return int(self._manifest["num_active"])

    def num_total(self) -> int:
        """The number of samples ever ingested (tombstones included)."""
        self._refresh()
        return int(self._manifest["num_samples"])

