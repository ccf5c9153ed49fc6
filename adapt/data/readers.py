"""Readers for visual-instruction datasets: LLaVA JSON / JSONL, Parquet, and ``datasets`` folders
made by ``Dataset.save_to_disk``.

Files are read streaming (a JSON list with ``ijson``, JSONL a line at a time, Parquet a batch at a
time): :func:`iter_dataset` yields validated :class:`~adapt.data.sample.Sample` records one by one
in bounded memory, whatever the file's size, and raises one :class:`~adapt.errors.DataError` for
the *first* problem, naming the file, the sample (its id, and where it is: ``line N`` of a JSONL
file, ``record N`` of a JSON list, ``row N`` of a table) and what is wrong. Nothing is stored
unless the whole dataset is valid: the pool's ingest is all or nothing. :func:`read_dataset` is
the same as a list.

A LLaVA record::

    {"id": "000001", "image": "coco/0001.jpg",
     "conversations": [{"from": "human", "value": "<image>\\nWhat is this?"},
                       {"from": "gpt", "value": "A cat."}],
     ...any other field, kept untouched in Sample.extra}

``image`` (one) or ``images`` (a list) are optional; a human turn refers to the images with
``<image>`` placeholders, one per image, in order. A record with one image and no placeholder gets
one prepended to its first human turn (the LLaVA convention). Image paths are resolved against the
image root (the data file's folder unless given; a ``save_to_disk`` folder's parent) and may not
leave it, symlinks included. An image may also be embedded in the record: the ``{"bytes", "path"}``
struct of ``datasets.Image()`` (Hub datasets, in ``save_to_disk`` folders and Parquet) or a data
URL (:mod:`adapt.data.images`). The OpenAI ``messages`` layout and the ShareGPT role names are read
too (:mod:`adapt.data.conversations`).

``id`` is optional (a record without one is named by its position in the file) and need not be
unique: LLaVA-style pools use the image id as the record id, so several records share one; each is
kept, its uid made unique by its position (:func:`adapt.data.sample.make_uid`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, BinaryIO

from tqdm.auto import tqdm

from adapt.data.conversations import read_chat
from adapt.data.describe import a_json_type, short
from adapt.data.images import ImageChecker, ImageStore
from adapt.data.sample import GPT, HUMAN, IMAGE_TOKEN, SYSTEM_FIELD, Sample, make_uid
from adapt.errors import DataError

__all__ = ["ROLES", "SUPPORTED", "iter_dataset", "iter_records", "load_records", "read_dataset", "validate_record"]

ROLES = (HUMAN, GPT)
SUPPORTED = ".json (a list of records), .jsonl (one record a line), .parquet, or a datasets save_to_disk folder"
CHAT_COLUMNS = ("conversations", "messages")
READ_BATCH = 128  # rows a table is read by: a row may hold its images' bytes
HF_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")
MAX_RECORD_BYTES = 8 << 20  # one record of more JSON than this is refused (stream.max_sample_mb)

Record = tuple[str, Any]  # (where it is in the file: "record 3" / "line 4" / "row 3", the raw record)


# ---------------------------------------------------------------------------------------- loading
def _decode(path: Path, data: bytes, sample: str | None = None) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(path, f"not UTF-8 text (bad byte at offset {exc.start})", sample=sample) from None


def _open(path: Path) -> BinaryIO:
    try:
        return open(path, "rb")  # noqa: SIM115 - closed by the generators that read it
    except OSError as exc:
        raise DataError(path, f"cannot read the file: {exc.strerror or exc}") from None


def _too_large(path: Path, size: int, limit: int, sample: str) -> DataError:
    return DataError(path, f"more than {_mib(limit)} of JSON in one record ({_mib(size)} read so far): a sample "
                           "this large is refused (stream.max_sample_mb)", sample=sample)


def _mib(n: int) -> str:
    return f"{n / 2**20:.3g} MiB"


class _CountingReader:
    """The file as ijson reads it, counting bytes so that one record can be held to ``limit``
    (a broken or hostile file must not fill the memory), with a leading BOM dropped."""

    def __init__(self, f: BinaryIO, path: Path, limit: int) -> None:
        self.f, self.path, self.limit = f, path, limit
        self.read_bytes = 0  # handed to the parser so far
        self.record_start = 0  # read_bytes when the current record began (roughly: chunk granularity)
        self.record = "record 0"
        head = f.read(3)
        self._pending = head[3:] if head.startswith(b"\xef\xbb\xbf") else head

    def first_char(self) -> bytes:
        """The first non-blank byte (b"" for a blank file), kept for the parser."""
        while True:
            stripped = self._pending.lstrip()
            if stripped:
                return stripped[:1]
            more = self.f.read(4096)
            if not more:
                return b""
            self._pending = more

    def read(self, n: int = -1) -> bytes:
        if n == 0:  # ijson asks for 0 bytes to learn the type of the stream
            return b""
        if self._pending:
            data, self._pending = self._pending, b""
        else:
            data = self.f.read(n)
        self.read_bytes += len(data)
        if self.read_bytes - self.record_start > self.limit + (1 << 16):
            raise _too_large(self.path, self.read_bytes - self.record_start, self.limit, self.record)
        return data


FIRST_CHAR_TYPES = {b"{": "an object", b'"': "a string", b"t": "a boolean", b"f": "a boolean", b"n": "a null"}


def _iter_json_list(path: Path, limit: int) -> Iterator[Record]:
    """Records of a JSON list, parsed streaming (``ijson``), one at a time: the file's size does
    not matter, one record's does (``limit`` bytes)."""
    import ijson

    with _open(path) as f:
        src = _CountingReader(f, path, limit)
        first = src.first_char()
        if first == b"":
            raise DataError(path, "the file is empty")
        if first != b"[":
            kind = FIRST_CHAR_TYPES.get(first, "a number" if first in b"-0123456789" else "not JSON")
            raise DataError(path, f"the top level must be a list of records, found {kind} "
                                  "(one record a line? name the file .jsonl)")
        n = 0
        try:
            for rec in ijson.items(src, "item", use_float=True):
                yield f"record {n}", rec
                n += 1
                src.record, src.record_start = f"record {n}", src.read_bytes
        except ijson.JSONError as exc:
            text = exc.args[0] if exc.args else str(exc)
            text = (text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)).strip()
            problem = text.splitlines()[0] if text else "broken JSON"
            if "UTF8" in problem:
                raise DataError(path, f"not UTF-8 text ({problem})", sample=f"record {n}") from None
            raise DataError(path, f"invalid JSON ({problem}), after {n} good record(s)",
                            sample=f"record {n}") from None


def _iter_jsonl(path: Path, limit: int) -> Iterator[Record]:
    """Records of a JSONL file, one line at a time (a line longer than ``limit`` is refused)."""
    with _open(path) as f:
        n = 0
        while True:
            raw = f.readline(limit + 1)
            if not raw:
                return
            n += 1
            where = f"line {n}"
            if len(raw) > limit and not raw.endswith(b"\n"):
                raise _too_large(path, len(raw), limit, where)
            line = _decode(path, raw, sample=where)
            if not line.strip():
                continue
            try:
                yield where, json.loads(line)
            except json.JSONDecodeError as exc:  # kept as the record: read_dataset raises it or quarantines it
                yield where, DataError(path, f"invalid JSON at column {exc.colno}: {exc.msg}", sample=where)


def _columns_present(path: Path, columns: list[str]) -> None:
    if not any(c in columns for c in CHAT_COLUMNS):
        raise DataError(path, f"no chat column: a table needs a {' or a '.join(map(repr, CHAT_COLUMNS))} column "
                              f"(columns: {', '.join(columns)})")


def _columnar(rows: Iterator[dict[str, Any]]) -> Iterator[Record]:
    """Rows of a Parquet file / datasets folder. Columns hold nulls where a record lacks the field,
    so null values are dropped (a columnar file cannot tell a missing field from a null one)."""
    for i, row in enumerate(rows):
        yield f"row {i}", {k: v for k, v in row.items() if v is not None}


def _iter_parquet(path: Path) -> Iterator[Record]:
    """Rows of a Parquet file, read a batch at a time."""
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for broken files
        raise DataError(path, f"cannot read the Parquet file: {exc}") from None
    _columns_present(path, pf.schema_arrow.names)

    def rows() -> Iterator[dict[str, Any]]:
        try:
            for batch in pf.iter_batches(batch_size=READ_BATCH):
                yield from batch.to_pylist()
        except Exception as exc:
            raise DataError(path, f"cannot read the Parquet file: {exc}") from None

    yield from _columnar(rows())


def hf_train_split(path: Path) -> Any:
    """The ``datasets.Dataset`` of a ``save_to_disk`` folder (a ``DatasetDict``'s ``train`` split, or its one split)."""
    from datasets import DatasetDict, load_from_disk

    try:
        ds = load_from_disk(str(path))
    except Exception as exc:
        raise DataError(path, f"cannot load the datasets folder: {exc}") from None
    if isinstance(ds, DatasetDict):
        if "train" in ds:
            ds = ds["train"]
        elif len(ds) == 1:
            ds = next(iter(ds.values()))
        else:
            raise DataError(path, f"a DatasetDict with splits {', '.join(sorted(ds))} and no 'train' split: "
                                  "point to one split's folder")
    return ds


def _iter_hf_folder(path: Path) -> Iterator[Record]:
    ds = hf_train_split(path)
    _columns_present(path, list(ds.column_names))
    rows = (row for batch in ds.with_format("arrow").iter(batch_size=READ_BATCH)  # Arrow batches: no image decoding
            for row in batch.to_pylist())
    yield from _columnar(rows)


def iter_records(path: Path, max_record_bytes: int = MAX_RECORD_BYTES) -> Iterator[Record]:
    """``(where, record)`` pairs from any supported format, streaming and without validation (a
    JSONL line that is not JSON comes as ``(where, DataError)``). Problems of the file as a whole
    raise :class:`DataError`, possibly after some records were yielded."""
    if not path.exists():
        raise DataError(path, "not found")
    if path.is_dir():
        if any((path / m).is_file() for m in HF_MARKERS):
            return _iter_hf_folder(path)
        raise DataError(path, f"a folder that is not a datasets save_to_disk folder (supported: {SUPPORTED})")
    suffix = path.suffix.lower()
    if suffix == ".json":
        return _iter_json_list(path, max_record_bytes)
    if suffix == ".jsonl":
        return _iter_jsonl(path, max_record_bytes)
    if suffix == ".parquet":
        return _iter_parquet(path)
    raise DataError(path, f"unsupported file type {suffix or path.name!r} (supported: {SUPPORTED})")


def load_records(path: Path, max_record_bytes: int = MAX_RECORD_BYTES) -> list[Record]:
    """Every ``(where, record)`` pair of :func:`iter_records`, in a list."""
    return list(iter_records(path, max_record_bytes))


# ------------------------------------------------------------------------------------- validation
def validate_record(path: Path, where: str, position: int, rec: Any, name: str, task: str, images: ImageChecker,
                    columnar: bool = False) -> Sample:
    """One raw record -> a :class:`Sample` (its uid as if its id were new to the dataset), or a
    :class:`DataError` naming what is wrong. ``position``: the record's place in the file (0-based),
    its id when it has none."""
    if not isinstance(rec, dict):
        raise DataError(path, f"a record must be a JSON object, got {a_json_type(rec)}", sample=where)
    rid = rec.get("id")
    if rid is None or rid == "":
        rid = position
    if isinstance(rid, bool) or not isinstance(rid, (str, int)):
        raise DataError(path, f"field 'id' must be a string or an integer, got {short(rid)}", sample=where)
    sid = str(rid)
    at = f"{sid} ({where})"  # how the errors below name the sample

    chat = read_chat(rec, path, at)
    turns = chat.turns
    if turns[0]["from"] != HUMAN:
        raise DataError(path, f"the first turn must be from {HUMAN!r}, not {turns[0]['from']!r}", sample=at)
    answers = [k for k, t in enumerate(turns) if t["from"] == GPT]
    if not answers:
        raise DataError(path, f"no answer turn (from {GPT!r})", sample=at)
    for k in answers:
        if not turns[k]["value"].strip():
            raise DataError(path, f"answer turn {k} is empty", sample=at)
        if IMAGE_TOKEN in turns[k]["value"]:
            raise DataError(path, f"answer turn {k} holds an {IMAGE_TOKEN!r} placeholder (only questions may)",
                            sample=at)

    n_placeholders = sum(t["value"].count(IMAGE_TOKEN) for t in turns)
    if len(chat.images) == 1 and n_placeholders == 0:  # LLaVA convention: the image goes before the first question
        turns[0] = {"from": HUMAN, "value": f"{IMAGE_TOKEN}\n{turns[0]['value']}"}
        n_placeholders = 1
    if n_placeholders != len(chat.images):
        raise DataError(path, f"{n_placeholders} {IMAGE_TOKEN!r} placeholder(s) for {len(chat.images)} image(s): "
                              "give one placeholder per image", sample=at)
    paths = [images.resolve(v, at) for v in chat.images]

    extra = {k: v for k, v in rec.items() if k != "id" and k not in chat.used}
    if chat.system is not None:
        extra[SYSTEM_FIELD] = chat.system
    if columnar and extra:
        try:
            json.dumps(extra)
        except (TypeError, ValueError) as exc:
            raise DataError(path, f"a field cannot be stored as JSON: {exc}", sample=at) from None
    return Sample(uid=make_uid(name, sid), dataset=name, id=sid, conversations=tuple(turns),
                  images=tuple(paths), task=task, extra=extra)


class RecordIds:
    """The uid of each record of a dataset, in file order: ``name/id``, its position for an id when
    it has none, and ``name/id#position`` for an id an earlier record (valid or not) already has."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._ids: set[str] = set()

    def uid(self, rec: Any, position: int) -> str | None:
        """The record's uid (None: its id is not a string or an integer, which validation refuses)."""
        rid = rec.get("id") if isinstance(rec, dict) else None
        if rid is None or rid == "":
            rid = position
        if isinstance(rid, bool) or not isinstance(rid, (str, int)):
            return None
        sid = str(rid)
        uid = make_uid(self.name, sid, repeat_at=position if sid in self._ids else None)
        self._ids.add(sid)
        return uid


@dataclass
class ReadStats:
    """What :func:`iter_dataset` met, counted as it reads."""

    records: int = 0  # records read, invalid ones included
    samples: int = 0  # samples yielded
    images: int = 0  # images of the samples yielded
    embedded_images: int = 0  # of which stored in the record as bytes or a data URL
    repeated_ids: int = 0  # samples whose id an earlier record of the dataset has (uid made unique)

    def summary(self) -> str:
        """``"N samples, M images"`` and the counts worth a word."""
        parts = [f"{self.samples} samples", f"{self.images} images"]
        if self.embedded_images:
            parts.append(f"{self.embedded_images} of them embedded in the records")
        if self.repeated_ids:
            many = self.repeated_ids != 1
            parts.append(f"{self.repeated_ids} sample{'s' if many else ''} repeat{'' if many else 's'} an earlier "
                         "sample's id (kept; uid id#position)")
        return ", ".join(parts)


def iter_dataset(
    path: str | Path,
    name: str,
    task: str | None = None,
    image_root: str | Path | None = None,
    check_images: bool = True,
    progress: bool = False,
    on_invalid: Callable[[DataError, Any], None] | None = None,
    max_sample_bytes: int = MAX_RECORD_BYTES,
    image_store: str | Path | None = None,
    stats: ReadStats | None = None,
) -> Iterator[Sample]:
    """Read and validate a dataset streaming, one sample at a time, in file order: memory does not
    grow with the file (the ids seen so far aside). Raises :class:`DataError` on the first problem,
    which may come after samples were yielded (a consumer that stores them must do so all or
    nothing, as :meth:`adapt.data.pool.DataPool.ingest` does); or, with ``on_invalid``, hands each
    invalid record to ``on_invalid(error, raw_record)`` and goes on (``--skip-invalid``; problems of
    the file as a whole still raise).

    A record whose id an earlier record already has is kept (LLaVA-style pools use the image id as
    the record id): its uid is ``name/id#position``; ``stats.repeated_ids`` counts them.

    Args:
        path: a ``.json`` list of records, a ``.jsonl`` file, a ``.parquet`` file, or a folder made
            by ``datasets.Dataset.save_to_disk`` (a ``DatasetDict`` folder works when it has one
            split or a ``train`` split); records in the LLaVA/ShareGPT or the OpenAI ``messages``
            layout (:mod:`adapt.data.conversations`).
        name: the dataset's name; uids are ``f"{name}/{id}"``.
        task: the task label of every sample (default: ``name``).
        image_root: the folder relative image paths are resolved against, and that no image may
            leave (default: the data file's folder; for a ``save_to_disk`` folder, its parent).
        check_images: open every image with PIL and ``verify()`` it (missing files are always
            reported).
        progress: show a progress bar (after two seconds).
        max_sample_bytes: a record of more JSON than this is refused (a JSON or JSONL file).
        image_store: where images embedded in the records (bytes, data URLs) are written, once
            each (:class:`~adapt.data.images.ImageStore`); None: they are checked, not written,
            and the sample names them ``embedded:<sha256>``.
        stats: filled with the counts of what was read, as it is read.
    """
    path = Path(path).expanduser().resolve()
    if not isinstance(name, str) or not name or "/" in name or name != name.strip():
        raise DataError(path, f"invalid dataset name {name!r}: a non-empty name without '/' or outer spaces")
    root = Path(image_root).expanduser().resolve() if image_root is not None else path.parent
    if image_root is not None and not root.is_dir():
        raise DataError(path, f"the image root {root} is not a folder")
    records = iter_records(path, max_sample_bytes)
    checker = ImageChecker(path, root, verify=check_images, store=ImageStore(image_store))
    columnar = path.is_dir() or path.suffix.lower() == ".parquet"
    stats = stats if stats is not None else ReadStats()
    ids = RecordIds(name)
    uids: set[str] = set()
    with tqdm(records, desc=f"read {name}", unit="rec", leave=False, delay=2, disable=not progress) as bar:
        for position, (where, rec) in enumerate(bar):
            stats.records += 1
            uid = ids.uid(rec, position)
            try:
                if isinstance(rec, DataError):  # a line that is not JSON
                    raise rec
                embedded_before = checker.embedded
                s = validate_record(path, where, position, rec, name, task or name, checker, columnar=columnar)
                if uid != s.uid:
                    s = replace(s, uid=uid)
                if s.uid in uids:  # only an id that itself ends in "#<position>" can clash
                    raise DataError(path, f"uid {s.uid!r} is taken by an earlier record; rename this id",
                                    sample=f"{s.id} ({where})")
            except DataError as err:
                if on_invalid is None:
                    raise
                on_invalid(err, None if isinstance(rec, DataError) else rec)
                continue
            stats.repeated_ids += s.uid != make_uid(name, s.id)
            uids.add(s.uid)
            stats.samples += 1
            stats.images += len(s.images)
            stats.embedded_images += checker.embedded - embedded_before
            yield s
    if stats.records == 0:
        raise DataError(path, "the dataset is empty (no records)")
    if stats.samples == 0:
        raise DataError(path, "no valid sample in the dataset")


def read_dataset(path: str | Path, name: str, **kwargs: Any) -> list[Sample]:
    """Every sample of :func:`iter_dataset` (same arguments), in a list: the dataset is read and
    validated whole before anything is returned."""
    return list(iter_dataset(path, name, **kwargs))
