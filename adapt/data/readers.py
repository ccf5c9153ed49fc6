"""Readers for visual-instruction datasets: LLaVA JSON / JSONL, Parquet, and ``datasets`` folders
made by ``Dataset.save_to_disk``. Everything is validated before anything is stored; the first
problem raises one :class:`~adapt.errors.DataError` naming the file, the sample and the problem."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from PIL import Image
from tqdm.auto import tqdm

from adapt.data.sample import GPT, HUMAN, IMAGE_TOKEN, Sample, make_uid
from adapt.errors import DataError

ROLES = (HUMAN, GPT)


def _load_json_list(path: Path) -> list[tuple[Any, Any]]:
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(path, f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    if not isinstance(data, list):
        raise DataError(path, f"the top level must be a list of records, found {type(data).__name__}")
    return [(f"#{i}", r) for i, r in enumerate(data)]


def _load_jsonl(path: Path) -> list[tuple[Any, Any]]:
    out = []
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                out.append((f"line {n}", json.loads(line)))
            except json.JSONDecodeError as exc:
                raise DataError(path, f"invalid JSON: {exc.msg} (column {exc.colno})", sample=f"line {n}") from None
    return out


def _from_rows(rows: Iterable[dict[str, Any]]) -> list[tuple[Any, Any]]:
    out = []
    for i, row in enumerate(rows):
        rec = {k: v for k, v in row.items() if v is not None}
        conv = rec.get("conversations")
        if isinstance(conv, str):
            try:
                rec["conversations"] = json.loads(conv)
            except json.JSONDecodeError:
                pass  # reported by validation as a bad conversations field
        elif conv is not None and not isinstance(conv, list):
            rec["conversations"] = list(conv)
        if "images" in rec and not isinstance(rec["images"], (list, str)):
            rec["images"] = list(rec["images"])
        out.append((f"row {i}", rec))
    return out


def _load_parquet(path: Path) -> list[tuple[Any, Any]]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for broken files
        raise DataError(path, f"cannot read Parquet: {exc}") from None
    return _from_rows(table.to_pylist())


def _load_hf_folder(path: Path) -> list[tuple[Any, Any]]:
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
            raise DataError(path, f"a DatasetDict with splits {sorted(ds)}: point to one split (or have a 'train' split)")
    return _from_rows(ds.to_list())


def load_records(path: Path) -> list[tuple[Any, Any]]:
    """(where, record) pairs from any supported format, without validation."""
    if not path.exists():
        raise DataError(path, "not found")
    if path.is_dir():
        if (path / "dataset_info.json").is_file() or (path / "state.json").is_file() or (path / "dataset_dict.json").is_file():
            return _load_hf_folder(path)
        raise DataError(path, "a folder that is not a datasets save_to_disk folder")
    suffix = path.suffix.lower()
    if suffix == ".json":
        return _load_json_list(path)
    if suffix == ".jsonl":
        return _load_jsonl(path)
    if suffix == ".parquet":
        return _load_parquet(path)
    raise DataError(path, f"unsupported file type {suffix!r} (use .json, .jsonl, .parquet or a save_to_disk folder)")


def _resolve_image(path: Path, root: Path, value: Any, where: Any) -> str:
    if not isinstance(value, str) or not value:
        raise DataError(path, f"image path must be a non-empty string, got {value!r}", sample=where)
    p = Path(value)
    full = (p if p.is_absolute() else root / p).resolve()
    if not full.is_relative_to(root):
        raise DataError(path, f"image path {value!r} is outside the dataset root {root}", sample=where)
    return str(full)


def _check_image(path: Path, image: str, where: Any) -> None:
    if not Path(image).is_file():
        raise DataError(path, f"image file missing: {image}", sample=where)
    try:
        with Image.open(image) as im:
            im.verify()
    except Exception as exc:
        raise DataError(path, f"unreadable image {image}: {exc}", sample=where) from None


def validate_record(path: Path, where: Any, rec: Any, name: str, task: str, root: Path, check_images: bool) -> Sample:
    """One record -> a Sample, or a DataError naming what is wrong."""
    if not isinstance(rec, dict):
        raise DataError(path, f"a record must be an object, got {type(rec).__name__}", sample=where)
    if rec.get("id") is None or rec.get("id") == "":
        raise DataError(path, "missing field 'id'", sample=where)
    sid = str(rec["id"])
    conv = rec.get("conversations")
    if not isinstance(conv, list) or not conv:
        raise DataError(path, "missing or empty field 'conversations'", sample=sid)
    turns = []
    for k, t in enumerate(conv):
        if not isinstance(t, dict) or not isinstance(t.get("value"), str) or "from" not in t:
            raise DataError(path, f"turn {k} must be {{'from': ..., 'value': str}}", sample=sid)
        if t["from"] not in ROLES:
            raise DataError(path, f"turn {k}: unknown role {t['from']!r} (allowed: {', '.join(ROLES)})", sample=sid)
        turns.append({"from": t["from"], "value": t["value"]})
    if turns[0]["from"] != HUMAN:
        raise DataError(path, "the first turn must be from 'human'", sample=sid)
    answers = [t for t in turns if t["from"] == GPT]
    if not answers:
        raise DataError(path, "no answer turn (from 'gpt')", sample=sid)
    if any(not t["value"].strip() for t in answers):
        raise DataError(path, "an answer turn is empty", sample=sid)
    raw_images = rec.get("images", rec.get("image"))
    if raw_images is None:
        raw_images = []
    elif isinstance(raw_images, str):
        raw_images = [raw_images]
    elif not isinstance(raw_images, list):
        raise DataError(path, "'image' must be a path and 'images' a list of paths", sample=sid)
    images = [_resolve_image(path, root, v, sid) for v in raw_images]
    n_placeholders = sum(t["value"].count(IMAGE_TOKEN) for t in turns if t["from"] == HUMAN)
    if images and n_placeholders == 0 and len(images) == 1:
        turns[0] = {"from": HUMAN, "value": f"{IMAGE_TOKEN}\n{turns[0]['value']}"}  # LLaVA convention
        n_placeholders = 1
    if n_placeholders != len(images):
        raise DataError(path, f"{n_placeholders} '<image>' placeholders for {len(images)} images", sample=sid)
    if check_images:
        for im in images:
            _check_image(path, im, sid)
    extra = {k: v for k, v in rec.items() if k not in ("id", "image", "images", "conversations")}
    return Sample(uid=make_uid(name, sid), dataset=name, id=sid, conversations=tuple(turns),
                  images=tuple(images), task=task, extra=extra)


def read_dataset(
    path: str | Path, name: str, task: str | None = None, image_root: str | Path | None = None,
    check_images: bool = True, progress: bool = False,
) -> list[Sample]:
    """Read and validate a whole dataset; raises DataError on the first problem."""
    path = Path(path).expanduser().resolve()
    records = load_records(path)
    if not records:
        raise DataError(path, "the dataset is empty")
    root = Path(image_root).expanduser().resolve() if image_root else path.parent
    seen: set[str] = set()
    out = []
    for where, rec in tqdm(records, desc=f"read {name}", disable=not progress or len(records) < 2000, leave=False):
        s = validate_record(path, where, rec, name, task or name, root, check_images)
        if s.id in seen:
            raise DataError(path, "duplicate id", sample=s.id)
        seen.add(s.id)
        out.append(s)
    return out
