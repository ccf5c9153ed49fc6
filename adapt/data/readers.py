"""Readers for visual-instruction datasets: LLaVA JSON / JSONL, Parquet, and ``datasets`` folders
made by ``Dataset.save_to_disk``.

Everything is validated before anything is stored: :func:`read_dataset` either returns the whole
dataset as :class:`~adapt.data.sample.Sample` records or raises one
:class:`~adapt.errors.DataError` for the *first* problem, naming the file, the sample (its id, and
where it is: ``line N`` of a JSONL file, ``record N`` of a JSON list, ``row N`` of a table) and
what is wrong.

A LLaVA record::

    {"id": "000001", "image": "coco/0001.jpg",
     "conversations": [{"from": "human", "value": "<image>\\nWhat is this?"},
                       {"from": "gpt", "value": "A cat."}],
     ...any other field, kept untouched in Sample.extra}

``image`` (one path) or ``images`` (a list) are optional; a human turn refers to the images with
``<image>`` placeholders, one per image, in order. A record with one image and no placeholder gets
one prepended to its first human turn (the LLaVA convention). Image paths are resolved against the
image root (the data file's folder unless given; a ``save_to_disk`` folder's parent) and may not
leave it, symlinks included.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from PIL import Image
from tqdm.auto import tqdm

from adapt.data.sample import GPT, HUMAN, IMAGE_TOKEN, Sample, make_uid
from adapt.errors import DataError

__all__ = ["ROLES", "SUPPORTED", "load_records", "read_dataset", "validate_record"]

ROLES = (HUMAN, GPT)
SUPPORTED = ".json (a list of records), .jsonl (one record a line), .parquet, or a datasets save_to_disk folder"
RESERVED = ("id", "image", "images", "conversations")
HF_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")
PROGRESS_MIN = 1000  # a progress bar only for datasets at least this long

Record = tuple[str, Any]  # (where it is in the file: "record 3" / "line 4" / "row 3", the raw record)


# ---------------------------------------------------------------------------------------- loading
def _decode(path: Path, data: bytes, sample: str | None = None) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(path, f"not UTF-8 text (bad byte at offset {exc.start})", sample=sample) from None


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DataError(path, f"cannot read the file: {exc.strerror or exc}") from None


def _load_json_list(path: Path) -> list[Record]:
    text = _decode(path, _read_bytes(path))
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(path, f"invalid JSON at line {exc.lineno}, column {exc.colno} "
                              f"(character {exc.pos}): {exc.msg}") from None
    if not isinstance(data, list):
        raise DataError(path, f"the top level must be a list of records, found {_a_json_type(data)} "
                              "(one record a line? name the file .jsonl)")
    return [(f"record {i}", r) for i, r in enumerate(data)]


def _load_jsonl(path: Path) -> list[Record]:
    out = []
    for n, raw in enumerate(_read_bytes(path).splitlines(), start=1):
        line = _decode(path, raw, sample=f"line {n}")
        if not line.strip():
            continue
        try:
            out.append((f"line {n}", json.loads(line)))
        except json.JSONDecodeError as exc:  # kept as the record: read_dataset raises it or quarantines it
            out.append((f"line {n}", DataError(path, f"invalid JSON at column {exc.colno}: {exc.msg}",
                                               sample=f"line {n}")))
    return out


def _columnar_rows(path: Path, columns: list[str], rows: Iterator[dict[str, Any]]) -> list[Record]:
    """Rows of a Parquet file / datasets folder. Columns hold nulls where a record lacks the field,
    so null values are dropped (a columnar file cannot tell a missing field from a null one)."""
    missing = [c for c in ("id", "conversations") if c not in columns]
    if missing:
        raise DataError(path, f"missing column(s) {', '.join(map(repr, missing))} (columns: {', '.join(columns)})")
    return [(f"row {i}", {k: v for k, v in row.items() if v is not None}) for i, row in enumerate(rows)]


def _load_parquet(path: Path) -> list[Record]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for broken files
        raise DataError(path, f"cannot read the Parquet file: {exc}") from None
    return _columnar_rows(path, table.column_names, iter(table.to_pylist()))


def _load_hf_folder(path: Path) -> list[Record]:
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
    return _columnar_rows(path, list(ds.column_names), iter(ds.to_list()))  # raw rows: no image decoding


def load_records(path: Path) -> list[Record]:
    """``(where, record)`` pairs from any supported format, without validation (a JSONL line that
    is not JSON comes as ``(where, DataError)``)."""
    if not path.exists():
        raise DataError(path, "not found")
    if path.is_dir():
        if any((path / m).is_file() for m in HF_MARKERS):
            return _load_hf_folder(path)
        raise DataError(path, f"a folder that is not a datasets save_to_disk folder (supported: {SUPPORTED})")
    suffix = path.suffix.lower()
    if suffix == ".json":
        return _load_json_list(path)
    if suffix == ".jsonl":
        return _load_jsonl(path)
    if suffix == ".parquet":
        return _load_parquet(path)
    raise DataError(path, f"unsupported file type {suffix or path.name!r} (supported: {SUPPORTED})")


def _json_type(value: Any) -> str:
    if isinstance(value, dict):
        return "object"
    if isinstance(value, (list, tuple)):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return "null" if value is None else type(value).__name__


# ------------------------------------------------------------------------------------- validation
class _ImageChecker:
    """Resolves image paths inside the root and checks each file once (datasets share images)."""

    def __init__(self, data_path: Path, root: Path, verify: bool) -> None:
        self.data_path, self.root, self.verify = data_path, root, verify
        self._ok: set[str] = set()

    def resolve(self, value: Any, sample: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise DataError(self.data_path, f"an image path must be a non-empty string, got {_short(value)}",
                            sample=sample)
        p = Path(value).expanduser()
        full = (p if p.is_absolute() else self.root / p).resolve()  # resolves '..' and symlinks
        if not full.is_relative_to(self.root):
            raise DataError(self.data_path, f"image path {value!r} resolves to {full}, outside the image root "
                                            f"{self.root}", sample=sample)
        return str(full)

    def check(self, image: str, sample: str) -> None:
        if image in self._ok:
            return
        if not Path(image).is_file():
            raise DataError(self.data_path, f"image file missing: {image}", sample=sample)
        if self.verify:
            try:
                with Image.open(image) as im:
                    im.verify()
            except Exception as exc:
                raise DataError(self.data_path, f"unreadable image {image}: {exc}", sample=sample) from None
        self._ok.add(image)


def _a_json_type(value: Any) -> str:
    kind = _json_type(value)
    return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind}"


def _short(value: Any, n: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= n else text[: n - 3] + "..."


def _raw_images(path: Path, rec: dict[str, Any], sample: str) -> list[Any]:
    present = [k for k in ("image", "images") if rec.get(k) is not None]
    if len(present) == 2:
        raise DataError(path, "has both 'image' and 'images': give one of them", sample=sample)
    if not present:
        return []
    value = rec[present[0]]
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)):
        return list(value)
    raise DataError(path, f"field {present[0]!r} must be a path or a list of paths, got {_a_json_type(value)}",
                    sample=sample)


def validate_record(path: Path, where: str, rec: Any, name: str, task: str, images: _ImageChecker,
                    columnar: bool = False) -> Sample:
    """One raw record -> a :class:`Sample`, or a :class:`DataError` naming what is wrong."""
    if not isinstance(rec, dict):
        raise DataError(path, f"a record must be a JSON object, got {_a_json_type(rec)}", sample=where)
    rid = rec.get("id")
    if rid is None or rid == "":
        raise DataError(path, "missing field 'id'", sample=where)
    if isinstance(rid, bool) or not isinstance(rid, (str, int)):
        raise DataError(path, f"field 'id' must be a string or an integer, got {_short(rid)}", sample=where)
    sid = str(rid)
    at = f"{sid} ({where})"  # how the errors below name the sample

    conv = rec.get("conversations")
    if conv is None:
        raise DataError(path, "missing field 'conversations'", sample=at)
    if isinstance(conv, str):  # Parquet / datasets may store the turns as a JSON string
        try:
            conv = json.loads(conv)
        except json.JSONDecodeError as exc:
            raise DataError(path, f"field 'conversations' is a string but not valid JSON: {exc.msg}",
                            sample=at) from None
    if isinstance(conv, tuple):
        conv = list(conv)
    if not isinstance(conv, list):
        raise DataError(path, f"field 'conversations' must be a list of turns, got {_a_json_type(conv)}", sample=at)
    if not conv:
        raise DataError(path, "field 'conversations' is empty", sample=at)

    turns: list[dict[str, str]] = []
    for k, t in enumerate(conv):
        if not isinstance(t, dict) or "from" not in t or "value" not in t:
            raise DataError(path, f"turn {k} must be an object with 'from' and 'value', got {_short(t)}", sample=at)
        if not isinstance(t["value"], str):
            raise DataError(path, f"turn {k}: 'value' must be a string, got {_a_json_type(t['value'])}", sample=at)
        if t["from"] not in ROLES:
            raise DataError(path, f"turn {k}: unknown role {t['from']!r} (allowed roles: "
                                  f"{', '.join(map(repr, ROLES))})", sample=at)
        turns.append({"from": t["from"], "value": t["value"]})
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

    paths = [images.resolve(v, at) for v in _raw_images(path, rec, at)]
    n_placeholders = sum(t["value"].count(IMAGE_TOKEN) for t in turns)
    if len(paths) == 1 and n_placeholders == 0:  # LLaVA convention: the image goes before the first question
        turns[0] = {"from": HUMAN, "value": f"{IMAGE_TOKEN}\n{turns[0]['value']}"}
        n_placeholders = 1
    if n_placeholders != len(paths):
        raise DataError(path, f"{n_placeholders} {IMAGE_TOKEN!r} placeholder(s) for {len(paths)} image(s): "
                              "give one placeholder per image", sample=at)
    for p in paths:
        images.check(p, at)

    extra = {k: v for k, v in rec.items() if k not in RESERVED}
    if columnar and extra:
        try:
            json.dumps(extra)
        except (TypeError, ValueError) as exc:
            raise DataError(path, f"a field cannot be stored as JSON: {exc}", sample=at) from None
    return Sample(uid=make_uid(name, sid), dataset=name, id=sid, conversations=tuple(turns),
                  images=tuple(paths), task=task, extra=extra)


def read_dataset(
    path: str | Path,
    name: str,
    task: str | None = None,
    image_root: str | Path | None = None,
    check_images: bool = True,
    progress: bool = False,
    on_invalid: Callable[[DataError, Any], None] | None = None,
) -> list[Sample]:
    """Read and validate a whole dataset; raise :class:`DataError` on the first problem, or, with
    ``on_invalid``, hand each invalid record to ``on_invalid(error, raw_record)`` and go on
    (``--skip-invalid``; problems of the file as a whole still raise).

    Args:
        path: a ``.json`` list of LLaVA records, a ``.jsonl`` file, a ``.parquet`` file, or a
            folder made by ``datasets.Dataset.save_to_disk`` (a ``DatasetDict`` folder works
            when it has one split or a ``train`` split).
        name: the dataset's name; uids are ``f"{name}/{id}"``.
        task: the task label of every sample (default: ``name``).
        image_root: the folder relative image paths are resolved against, and that no image may
            leave (default: the data file's folder; for a ``save_to_disk`` folder, its parent).
        check_images: open every image with PIL and ``verify()`` it (missing files are always
            reported).
        progress: show a progress bar for long datasets.

    Returns:
        The samples, in file order.
    """
    path = Path(path).expanduser().resolve()
    if not isinstance(name, str) or not name or "/" in name or name != name.strip():
        raise DataError(path, f"invalid dataset name {name!r}: a non-empty name without '/' or outer spaces")
    records = load_records(path)
    if not records:
        raise DataError(path, "the dataset is empty (no records)")
    root = Path(image_root).expanduser().resolve() if image_root is not None else path.parent
    if image_root is not None and not root.is_dir():
        raise DataError(path, f"the image root {root} is not a folder")
    checker = _ImageChecker(path, root, verify=check_images)
    columnar = path.is_dir() or path.suffix.lower() == ".parquet"
    first_seen: dict[str, str] = {}
    out: list[Sample] = []
    bar = tqdm(records, desc=f"read {name}", unit="rec", leave=False,
               disable=not progress or len(records) < PROGRESS_MIN)
    for where, rec in bar:
        try:
            if isinstance(rec, DataError):  # a line that is not JSON
                raise rec
            s = validate_record(path, where, rec, name, task or name, checker, columnar=columnar)
            if s.id in first_seen:
                raise DataError(path, f"duplicate id {s.id!r} (first at {first_seen[s.id]})",
                                sample=f"{s.id} ({where})")
        except DataError as err:
            if on_invalid is None:
                raise
            on_invalid(err, None if isinstance(rec, DataError) else rec)
            continue
        first_seen[s.id] = where
        out.append(s)
    bar.close()
    if not out:
        raise DataError(path, "no valid sample in the dataset")
    return out
