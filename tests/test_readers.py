"""Readers of the four formats, and every bad-input case: one clear error, the pool untouched."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from adapt.data.pool import DataPool
from adapt.data.readers import read_dataset
from adapt.errors import DataError


def _png(path: Path, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(path)


def good_records() -> list[dict]:
    return [
        {"id": "a", "image": "img/a.png", "conversations": [
            {"from": "human", "value": "<image>\nWhat color?"}, {"from": "gpt", "value": "red"}], "source": "x"},
        {"id": 2, "images": ["img/a.png", "img/b.png"], "conversations": [
            {"from": "human", "value": "<image>\n<image>\nSame?"}, {"from": "gpt", "value": "no"},
            {"from": "human", "value": "Why?"}, {"from": "gpt", "value": "colours differ"}]},
        {"id": "c", "conversations": [{"from": "human", "value": "Sky colour?"}, {"from": "gpt", "value": "blue"}]},
    ]


@pytest.fixture()
def data_dir(tmp_path):
    _png(tmp_path / "img" / "a.png", 0)
    _png(tmp_path / "img" / "b.png", 1)
    return tmp_path


def _write(fmt: str, folder: Path, records: list[dict]) -> Path:
    if fmt == "json":
        p = folder / "d.json"
        p.write_text(json.dumps(records))
    elif fmt == "jsonl":
        p = folder / "d.jsonl"
        p.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    else:
        rows = [{"id": str(r["id"]), "image": r.get("image"), "images": r.get("images"),
                 "conversations": r["conversations"]} for r in records]
        if fmt == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            p = folder / "d.parquet"
            pq.write_table(pa.Table.from_pylist(rows), p)
        else:
            from datasets import Dataset

            p = folder / "hf"
            Dataset.from_list(rows).save_to_disk(str(p))
    return p


@pytest.mark.parametrize("fmt", ["json", "jsonl", "parquet", "hf"])
def test_all_formats_read_to_the_same_samples(fmt, data_dir):
    path = _write(fmt, data_dir, good_records())
    samples = read_dataset(path, name="toy", image_root=data_dir)
    assert [s.uid for s in samples] == ["toy/a", "toy/2", "toy/c"]
    assert samples[0].images == (str(data_dir / "img" / "a.png"),)
    assert samples[1].images == (str(data_dir / "img/a.png"), str(data_dir / "img/b.png"))
    assert samples[1].num_turns == 2 and samples[1].last_answer == "colours differ"
    assert samples[2].images == () and samples[2].task == "toy"
    if fmt == "json":
        assert samples[0].extra == {"source": "x"}


def test_single_image_without_placeholder_gets_one(data_dir):
    rec = {"id": "a", "image": "img/a.png", "conversations": [{"from": "human", "value": "What?"},
                                                             {"from": "gpt", "value": "x"}]}
    p = _write("json", data_dir, [rec])
    assert read_dataset(p, "t")[0].conversations[0]["value"] == "<image>\nWhat?"


def _conv(q="<image>\nQ?", a="A"):
    return [{"from": "human", "value": q}, {"from": "gpt", "value": a}]


# (name, how to write the bad file, words the message must contain, sample named)
BAD = {
    "invalid_json": (lambda d: (d / "d.json").write_text('[{"id": "a",'), ["invalid JSON"], None),
    "invalid_jsonl_line": (lambda d: (d / "d.jsonl").write_text(json.dumps({"id": "a", "conversations": _conv("Q")}) + "\n{oops\n"),
                           ["invalid JSON"], "line 2"),
    "not_a_list": (lambda d: (d / "d.json").write_text('{"id": "a"}'), ["must be a list"], None),
    "missing_id": (lambda d: (d / "d.json").write_text(json.dumps([{"conversations": _conv("Q")}])), ["missing field 'id'"], "#0"),
    "missing_conversations": (lambda d: (d / "d.json").write_text(json.dumps([{"id": "a"}])), ["conversations"], "a"),
    "unknown_role": (lambda d: (d / "d.json").write_text(json.dumps([{"id": "a", "conversations": [
        {"from": "human", "value": "Q"}, {"from": "robot", "value": "A"}]}])), ["unknown role", "robot"], "a"),
    "no_answer_turn": (lambda d: (d / "d.json").write_text(json.dumps([{"id": "a", "conversations": [
        {"from": "human", "value": "Q"}]}])), ["no answer turn"], "a"),
    "empty_answer": (lambda d: (d / "d.json").write_text(json.dumps([{"id": "a", "conversations": _conv("Q", " ")}])),
                     ["answer turn is empty"], "a"),
    "missing_image": (lambda d: (d / "d.json").write_text(json.dumps([{"id": "a", "image": "img/nope.png",
                                                                      "conversations": _conv()}])), ["missing"], "a"),
    "unreadable_image": (lambda d: ((d / "img" / "bad.png").write_bytes(b"not a png"), (d / "d.json").write_text(
        json.dumps([{"id": "a", "image": "img/bad.png", "conversations": _conv()}])))[-1], ["unreadable image"], "a"),
    "image_outside_root": (lambda d: (d / "d.json").write_text(json.dumps([{"id": "a", "image": "../outside.png",
                                                                           "conversations": _conv()}])),
                           ["outside the dataset root"], "a"),
    "duplicate_ids": (lambda d: (d / "d.json").write_text(json.dumps([{"id": "a", "conversations": _conv("Q")}] * 2)),
                      ["duplicate id"], "a"),
    "placeholder_mismatch": (lambda d: (d / "d.json").write_text(json.dumps([{"id": "a", "image": "img/a.png",
                                                                             "conversations": _conv("<image><image>Q")}])),
                             ["placeholders"], "a"),
    "first_turn_not_human": (lambda d: (d / "d.json").write_text(json.dumps([{"id": "a", "conversations": [
        {"from": "gpt", "value": "A"}, {"from": "human", "value": "Q"}]}])), ["first turn"], "a"),
    "empty_dataset": (lambda d: (d / "d.json").write_text("[]"), ["empty"], None),
}


def _tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_gives_one_clear_error_and_leaves_the_pool_byte_identical(case, tmp_path):
    data = tmp_path / "data"
    _png(data / "img" / "a.png", 0)
    _png(data / "img" / "b.png", 1)
    _png(data / "outside.png", 2)
    good = _write("json", data, good_records())
    pool = DataPool(tmp_path / "run" / "pool")
    pool.ingest(read_dataset(good, "good", image_root=data), "good", round_added=0, source=str(good))
    before = _tree_digest(tmp_path / "run")

    bad_dir = data / "bad"
    bad_dir.mkdir()
    _png(bad_dir / "img" / "a.png")
    writer, words, sample = BAD[case]
    writer(bad_dir)
    bad_file = next(p for p in bad_dir.iterdir() if p.name.startswith("d."))
    with pytest.raises(DataError) as info:
        samples = read_dataset(bad_file, "bad")
        DataPool(tmp_path / "run" / "pool").ingest(samples, "bad", round_added=1, source=str(bad_file))
    msg = str(info.value)
    assert str(bad_file.resolve()) in msg
    for w in words:
        assert w in msg
    if sample is not None:
        assert f"sample {sample}" in msg
    assert _tree_digest(tmp_path / "run") == before
    assert len(DataPool(tmp_path / "run" / "pool")) == 3


def test_unsupported_and_missing_paths(tmp_path):
    (tmp_path / "d.csv").write_text("a,b\n")
    with pytest.raises(DataError, match="unsupported file type"):
        read_dataset(tmp_path / "d.csv", "x")
    with pytest.raises(DataError, match="not found"):
        read_dataset(tmp_path / "nope.json", "x")
