"""Readers: the four formats read to the same samples, and every bad input gives one clear error.

``BAD`` (every bad-input case) is also used by test_pool.py to check that a failed ingest leaves
the pool byte-identical.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from adapt.data.readers import read_dataset
from adapt.data.sample import Sample
from adapt.errors import DataError


def png(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(path)
    return path


def make_data_dir(root: Path) -> Path:
    """``root/data`` with ``img/a.png``, ``img/b.png``; ``root/outside.png`` lies outside it."""
    data = root / "data"
    png(data / "img" / "a.png", 0)
    png(data / "img" / "b.png", 1)
    png(root / "outside.png", 2)
    return data


def good_records() -> list[dict]:
    return [
        {"id": "a", "image": "img/a.png", "conversations": [
            {"from": "human", "value": "<image>\nWhat color?"}, {"from": "gpt", "value": "red"}], "source": "x"},
        {"id": 2, "images": ["img/a.png", "img/b.png"], "conversations": [
            {"from": "human", "value": "<image>\n<image>\nSame?"}, {"from": "gpt", "value": "no"},
            {"from": "human", "value": "Why?"}, {"from": "gpt", "value": "colours differ"}]},
        {"id": "c", "conversations": [{"from": "human", "value": "Sky colour?"}, {"from": "gpt", "value": "blue"}],
         "source": "y"},
    ]


def _columnar_rows(records: list[dict], conversations_as_json: bool = False) -> list[dict]:
    keys = ["id", "image", "images", "conversations", "source"]
    rows = [{k: r.get(k) for k in keys} for r in records]
    for r in rows:
        r["id"] = str(r["id"])
        if conversations_as_json:
            r["conversations"] = json.dumps(r["conversations"])
    return rows


def write_dataset(fmt: str, folder: Path, records: list, name: str = "d") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if fmt == "json":
        p = folder / f"{name}.json"
        p.write_text(json.dumps(records))
    elif fmt == "jsonl":
        p = folder / f"{name}.jsonl"
        p.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    elif fmt in ("parquet", "parquet-json"):
        p = folder / f"{name}.parquet"
        pq.write_table(pa.Table.from_pylist(_columnar_rows(records, fmt == "parquet-json")), p)
    elif fmt == "hf":
        from datasets import Dataset

        p = folder / name
        Dataset.from_list(_columnar_rows(records)).save_to_disk(str(p))
    else:
        raise ValueError(fmt)
    return p


# ---------------------------------------------------------------------------------- good input
@pytest.mark.parametrize("fmt", ["json", "jsonl", "parquet", "parquet-json", "hf"])
def test_all_formats_read_to_equal_samples(fmt, tmp_path):
    data = make_data_dir(tmp_path)
    samples = read_dataset(write_dataset(fmt, data, good_records()), name="toy")
    a, b = str(data / "img" / "a.png"), str(data / "img" / "b.png")
    h, g = "human", "gpt"
    expected = [
        Sample("toy/a", "toy", "a", ({"from": h, "value": "<image>\nWhat color?"}, {"from": g, "value": "red"}),
               images=(a,), task="toy", extra={"source": "x"}),
        Sample("toy/2", "toy", "2", ({"from": h, "value": "<image>\n<image>\nSame?"}, {"from": g, "value": "no"},
                                     {"from": h, "value": "Why?"}, {"from": g, "value": "colours differ"}),
               images=(a, b), task="toy", extra={}),
        Sample("toy/c", "toy", "c", ({"from": h, "value": "Sky colour?"}, {"from": g, "value": "blue"}),
               task="toy", extra={"source": "y"}),
    ]
    assert samples == expected
    assert [s.extra for s in samples] == [s.extra for s in expected]
    assert [Sample.from_json(s.to_json()) for s in samples] == expected


def test_formats_agree_with_each_other(tmp_path):
    data = make_data_dir(tmp_path)
    reads = {fmt: read_dataset(write_dataset(fmt, data / fmt, good_records()), "toy", image_root=data)
             for fmt in ("json", "jsonl", "parquet", "hf")}
    ref = [s.to_json() for s in reads["json"]]
    for fmt, samples in reads.items():
        assert [s.to_json() for s in samples] == ref, fmt


def test_hf_folder_image_root_defaults_to_its_parent_and_datasetdict_train_split(tmp_path):
    from datasets import Dataset, DatasetDict

    data = make_data_dir(tmp_path)
    rows = _columnar_rows(good_records())
    DatasetDict({"train": Dataset.from_list(rows), "test": Dataset.from_list(rows[:1])}).save_to_disk(str(data / "dd"))
    DatasetDict({"only": Dataset.from_list(rows[:2])}).save_to_disk(str(data / "one"))
    assert [s.id for s in read_dataset(data / "dd", "x")] == ["a", "2", "c"]
    one = read_dataset(data / "one", "x")
    assert [s.id for s in one] == ["a", "2"] and one[0].images == (str(data / "img" / "a.png"),)


def test_options_task_image_root_and_placeholder_convention(tmp_path):
    data = make_data_dir(tmp_path)
    rec = {"id": 7, "image": "a.png", "conversations": [{"from": "human", "value": "What?"},
                                                       {"from": "gpt", "value": "x"}], "meta": {"k": [1, 2]}}
    p = write_dataset("json", tmp_path / "elsewhere", [rec])
    (s,) = read_dataset(p, "t", task="vqa", image_root=data / "img")
    assert s.uid == "t/7" and s.id == "7" and s.task == "vqa"
    assert s.conversations[0]["value"] == "<image>\nWhat?"  # one image, no placeholder: LLaVA convention
    assert s.images == (str(data / "img" / "a.png"),) and s.extra == {"meta": {"k": [1, 2]}}
    # an absolute path inside the root is fine
    rec2 = dict(rec, image=str(data / "img" / "b.png"))
    assert read_dataset(write_dataset("json", data, [rec2]), "t")[0].images == (str(data / "img" / "b.png"),)


def test_symlink_inside_the_root_is_followed(tmp_path):
    data = make_data_dir(tmp_path)
    (data / "img" / "link.png").symlink_to(data / "img" / "a.png")
    rec = {"id": "a", "image": "img/link.png", "conversations": [{"from": "human", "value": "<image>Q"},
                                                                {"from": "gpt", "value": "A"}]}
    assert read_dataset(write_dataset("json", data, [rec]), "t")[0].images == (str(data / "img" / "a.png"),)


def test_check_images_off_skips_decoding_but_not_existence(tmp_path):
    data = make_data_dir(tmp_path)
    (data / "img" / "bad.png").write_bytes(b"not a png")
    conv = [{"from": "human", "value": "<image>Q"}, {"from": "gpt", "value": "A"}]
    p = write_dataset("json", data, [{"id": "a", "image": "img/bad.png", "conversations": conv}])
    assert read_dataset(p, "t", check_images=False)[0].images == (str(data / "img" / "bad.png"),)
    p = write_dataset("json", data, [{"id": "a", "image": "img/none.png", "conversations": conv}])
    with pytest.raises(DataError, match="missing"):
        read_dataset(p, "t", check_images=False)


def test_progress_bar_and_many_records(tmp_path, capsys):
    data = make_data_dir(tmp_path)
    recs = [{"id": i, "image": "img/a.png", "conversations": [{"from": "human", "value": f"<image>q{i}"},
                                                            {"from": "gpt", "value": "a"}]} for i in range(3000)]
    samples = read_dataset(write_dataset("jsonl", data, recs), "big", progress=True)
    assert len(samples) == 3000 and samples[-1].uid == "big/2999"


def test_the_first_failure_is_reported(tmp_path):
    data = make_data_dir(tmp_path)
    ok = {"id": "ok", "conversations": [{"from": "human", "value": "Q"}, {"from": "gpt", "value": "A"}]}
    bad1 = {"id": "b1", "conversations": [{"from": "robot", "value": "Q"}]}
    bad2 = {"id": "b2"}
    with pytest.raises(DataError) as info:
        read_dataset(write_dataset("jsonl", data, [ok, bad1, bad2]), "t")
    assert info.value.sample == "b1 (line 2)" and "unknown role 'robot'" in info.value.problem
    assert str(info.value).count("\n") == 0


# ----------------------------------------------------------------------------------- bad input
def _conv(q: str = "<image>\nQ?", a: str = "A") -> list[dict]:
    return [{"from": "human", "value": q}, {"from": "gpt", "value": a}]


def _json(d: Path, records, name: str = "d") -> Path:
    return write_dataset("json", d, records, name)


def _text(d: Path, name: str, text: str | bytes) -> Path:
    p = d / name
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    return p


def _symlink_out(d: Path) -> Path:
    (d / "img" / "link.png").symlink_to(d.parent / "outside.png")
    return _json(d, [{"id": "a", "image": "img/link.png", "conversations": _conv()}])


def _unreadable(d: Path) -> Path:
    (d / "img" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    return _json(d, [{"id": "a", "image": "img/bad.png", "conversations": _conv()}])


def _zero_byte_image(d: Path) -> Path:
    (d / "img" / "zero.png").write_bytes(b"")
    return _json(d, [{"id": "a", "image": "img/zero.png", "conversations": _conv()}])


def _dict_two_splits(d: Path) -> Path:
    from datasets import Dataset, DatasetDict

    rows = _columnar_rows(good_records())
    DatasetDict({"a": Dataset.from_list(rows), "b": Dataset.from_list(rows)}).save_to_disk(str(d / "dd"))
    return d / "dd"


def _parquet(d: Path, rows: list[dict]) -> Path:
    p = d / "d.parquet"
    pq.write_table(pa.Table.from_pylist(rows), p)
    return p


BadCase = tuple[Callable[[Path], Path], list[str], "str | None"]

# case: (write the bad input into the data folder and return its path,
#        words the message must contain, the sample it must name: "sample <this>", or None)
BAD: dict[str, BadCase] = {
    "json_invalid": (lambda d: _text(d, "d.json", '[\n' + json.dumps({"id": "a", "conversations": _conv("Q")})
                                                  + ',\n {"id": oops}\n]'),
                     ["invalid JSON", "after 1 good record"], "record 1"),
    "json_truncated": (lambda d: _text(d, "d.json", json.dumps(good_records())[:-40]),
                       ["invalid JSON", "premature EOF"], f"record {len(good_records()) - 1}"),
    "json_not_utf8": (lambda d: _text(d, "d.json", b'[{"id": "\xff"}]'), ["not UTF-8"], "record 0"),
    "json_empty_file": (lambda d: _text(d, "d.json", " \n"), ["the file is empty"], None),
    "json_huge_record": (lambda d: _text(d, "d.json", '[{"id": "a", "conversations": [{"from": "human", "value": "'
                                                      + "x" * (9 << 20) + '"}]}]'),
                         ["more than 8 MiB of JSON in one record", "stream.max_sample_mb"], "record 0"),
    "jsonl_huge_line": (lambda d: _text(d, "d.jsonl", json.dumps({"id": "a", "conversations": _conv("Q")}) + "\n"
                                        + '{"id": "b", "x": "' + "y" * (9 << 20) + '"}\n'),
                        ["more than 8 MiB of JSON in one record"], "line 2"),
    "jsonl_invalid_line": (lambda d: _text(d, "d.jsonl", json.dumps({"id": "a", "conversations": _conv("Q")})
                                           + "\n{oops\n"), ["invalid JSON"], "line 2"),
    "top_level_not_a_list": (lambda d: _text(d, "d.json", '{"id": "a"}'), ["must be a list", "object"], None),
    "record_not_an_object": (lambda d: _json(d, [["a"]]), ["must be a JSON object", "array"], "record 0"),
    "jsonl_record_not_an_object": (lambda d: _text(d, "d.jsonl", "42\n"), ["must be a JSON object"], "line 1"),
    "bad_id_type": (lambda d: _json(d, [{"id": [1], "conversations": _conv("Q")}]),
                    ["'id' must be a string or an integer"], "record 0"),
    "missing_conversations": (lambda d: _json(d, [{"id": "a"}]), ["no chat", "'conversations'", "'messages'"],
                              "a (record 0)"),
    "conversations_and_messages": (lambda d: _json(d, [{"id": "a", "conversations": _conv(), "messages": []}]),
                                   ["both 'conversations' and 'messages'"], "a (record 0)"),
    "empty_conversations": (lambda d: _json(d, [{"id": "a", "conversations": []}]), ["'conversations' is empty"],
                            "a (record 0)"),
    "conversations_not_a_list": (lambda d: _json(d, [{"id": "a", "conversations": {"from": "human"}}]),
                                 ["must be a list of turns"], "a (record 0)"),
    "turn_not_an_object": (lambda d: _json(d, [{"id": "a", "conversations": ["hi", {"from": "gpt", "value": "A"}]}]),
                           ["turn 0 must be an object"], "a (record 0)"),
    "turn_without_value": (lambda d: _json(d, [{"id": "a", "conversations": [{"from": "human"}]}]),
                           ["turn 0 must be an object with 'from' and 'value'"], "a (record 0)"),
    "turn_value_not_a_string": (lambda d: _json(d, [{"id": "a", "conversations": [{"from": "human", "value": 5},
                                                                                  {"from": "gpt", "value": "A"}]}]),
                                ["turn 0: 'value' must be a string"], "a (record 0)"),
    "unknown_role": (lambda d: _json(d, [{"id": "a", "conversations": [{"from": "bot", "value": "Q"},
                                                                      {"from": "assistant", "value": "A"}]}]),
                     ["unknown role 'bot'", "allowed roles: human/user, gpt/assistant, system"], "a (record 0)"),
    "system_turn_not_first": (lambda d: _json(d, [{"id": "a", "conversations": [*_conv(), {"from": "system",
                                                                                            "value": "S"}]}]),
                              ["turn 2: a system turn may only come first"], "a (record 0)"),
    "system_turn_and_field": (lambda d: _json(d, [{"id": "a", "system": "S", "conversations": [
        {"from": "system", "value": "T"}, *_conv()]}]), ["a system turn and a 'system' field"], "a (record 0)"),
    "message_without_content": (lambda d: _json(d, [{"id": "a", "messages": [{"role": "user"}]}]),
                                ["message 0 must be an object with 'role' and 'content'"], "a (record 0)"),
    "message_bad_part": (lambda d: _json(d, [{"id": "a", "messages": [
        {"role": "user", "content": [{"type": "audio", "audio": "x.wav"}]}, {"role": "assistant", "content": "A"}]}]),
                         ["message 0, part 0: expected", "'audio'"], "a (record 0)"),
    "message_content_not_text": (lambda d: _json(d, [{"id": "a", "messages": [{"role": "user", "content": 5}]}]),
                                 ["message 0: 'content' must be a string or a list of parts, got a number"],
                                 "a (record 0)"),
    "message_more_images_than_listed": (lambda d: _json(d, [{"id": "a", "images": ["img/a.png"], "messages": [
        {"role": "user", "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "Q"}]},
        {"role": "assistant", "content": "A"}]}]), ["message 0: more images referred to than the record's 1"],
                                        "a (record 0)"),
    "message_listed_images_unused": (lambda d: _json(d, [{"id": "a", "images": ["img/a.png", "img/b.png"],
                                                          "messages": [
        {"role": "user", "content": [{"type": "image", "image": "img/a.png"}, {"type": "image"}]},
        {"role": "assistant", "content": "A"}]}]), ["1 of the record's 'images' are not referred to"],
                                     "a (record 0)"),
    "web_image": (lambda d: _json(d, [{"id": "a", "image": "https://example.com/a.png", "conversations": _conv()}]),
                  ["is a web address", "does not download"], "a (record 0)"),
    "data_url_not_base64": (lambda d: _json(d, [{"id": "a", "image": "data:image/png;base64,@@@",
                                                 "conversations": _conv()}]), ["not valid base64"], "a (record 0)"),
    "data_url_not_an_image": (lambda d: _json(d, [{"id": "a", "image": "data:image/png;base64,aGVsbG8=",
                                                   "conversations": _conv()}]),
                              ["embedded image bytes (5 bytes) are not a readable image"], "a (record 0)"),
    "embedded_bytes_not_an_image": (lambda d: _parquet(d, [{"id": "a", "conversations": json.dumps(_conv()),
                                                            "image": {"bytes": b"\x00" * 7, "path": None}}]),
                                    ["embedded image bytes (7 bytes) are not a readable image"], "a (row 0)"),
    "first_turn_not_human": (lambda d: _json(d, [{"id": "a", "conversations": [{"from": "gpt", "value": "A"},
                                                                              {"from": "human", "value": "Q"}]}]),
                             ["first turn must be from 'human'"], "a (record 0)"),
    "no_answer_turn": (lambda d: _json(d, [{"id": "a", "conversations": [{"from": "human", "value": "Q"}]}]),
                       ["no answer turn"], "a (record 0)"),
    "empty_answer": (lambda d: _json(d, [{"id": "a", "conversations": _conv("Q", " \n")}]),
                     ["answer turn 1 is empty"], "a (record 0)"),
    "placeholder_in_answer": (lambda d: _json(d, [{"id": "a", "conversations": _conv("Q", "<image> A")}]),
                              ["answer turn 1 holds an '<image>' placeholder"], "a (record 0)"),
    "too_many_placeholders": (lambda d: _json(d, [{"id": "a", "image": "img/a.png",
                                                   "conversations": _conv("<image><image>Q")}]),
                              ["2 '<image>' placeholder(s) for 1 image(s)"], "a (record 0)"),
    "two_images_no_placeholder": (lambda d: _json(d, [{"id": "a", "images": ["img/a.png", "img/b.png"],
                                                       "conversations": _conv("Q")}]),
                                  ["0 '<image>' placeholder(s) for 2 image(s)"], "a (record 0)"),
    "placeholder_without_image": (lambda d: _json(d, [{"id": "a", "conversations": _conv("<image>Q")}]),
                                  ["1 '<image>' placeholder(s) for 0 image(s)"], "a (record 0)"),
    "image_and_images": (lambda d: _json(d, [{"id": "a", "image": "img/a.png", "images": ["img/a.png"],
                                              "conversations": _conv()}]), ["both 'image' and 'images'"],
                         "a (record 0)"),
    "image_not_a_path": (lambda d: _json(d, [{"id": "a", "image": 3, "conversations": _conv()}]),
                         ["must be an image or a list of images", "got a number"], "a (record 0)"),
    "missing_image": (lambda d: _json(d, [{"id": "a", "image": "img/nope.png", "conversations": _conv()}]),
                      ["image file missing", "nope.png"], "a (record 0)"),
    "unreadable_image": (_unreadable, ["unreadable image", "bad.png"], "a (record 0)"),
    "zero_byte_image": (_zero_byte_image, ["unreadable image", "zero.png"], "a (record 0)"),
    "image_escapes_root": (lambda d: _json(d, [{"id": "a", "image": "../outside.png", "conversations": _conv()}]),
                           ["'../outside.png'", "outside the image root"], "a (record 0)"),
    "absolute_image_outside_root": (lambda d: _json(d, [{"id": "a", "image": str(d.parent / "outside.png"),
                                                         "conversations": _conv()}]),
                                    ["outside the image root"], "a (record 0)"),
    "symlink_escapes_root": (_symlink_out, ["'img/link.png'", "outside the image root"], "a (record 0)"),
    "uid_clash": (lambda d: _json(d, [{"id": i, "conversations": _conv("Q")} for i in ("a", "a", "a#1")]),
                  ["uid 'bad/a#1' is taken by an earlier record"], "a#1 (record 2)"),
    "empty_json": (lambda d: _text(d, "d.json", "[]"), ["empty"], None),
    "empty_jsonl": (lambda d: _text(d, "d.jsonl", "\n\n"), ["empty"], None),
    "unsupported_type": (lambda d: _text(d, "d.csv", "id,conversations\n"), ["unsupported file type '.csv'"], None),
    "not_found": (lambda d: d / "nope.json", ["not found"], None),
    "folder_not_a_dataset": (lambda d: (d / "folder").mkdir() or d / "folder", ["not a datasets save_to_disk"], None),
    "parquet_broken": (lambda d: _text(d, "d.parquet", b"PAR1 garbage"), ["cannot read the Parquet"], None),
    "parquet_missing_column": (lambda d: _parquet(d, [{"id": "a", "turns": "x"}]),
                               ["no chat column", "'conversations'", "'messages'", "columns: id, turns"], None),
    "parquet_conversations_bad_json": (lambda d: _parquet(d, [{"id": "a", "conversations": "[{oops"}]),
                                       ["'conversations' is a string but not valid JSON"], "a (row 0)"),
    "parquet_unknown_role": (lambda d: _parquet(d, [{"id": "a", "conversations": [{"from": "bot", "value": "x"}]}]),
                             ["unknown role 'bot'"], "a (row 0)"),
    "hf_two_splits_no_train": (_dict_two_splits, ["DatasetDict", "no 'train' split"], None),
}


def bad_input(case: str, data: Path) -> Path:
    """Write case ``case`` into ``data`` (made by :func:`make_data_dir`) and return its path."""
    return BAD[case][0](data)


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_gives_one_clear_error(case, tmp_path):
    data = make_data_dir(tmp_path)
    path = bad_input(case, data)
    _, words, sample = BAD[case]
    with pytest.raises(DataError) as info:
        read_dataset(path, "bad")
    msg = str(info.value)
    assert msg.startswith(str(path.resolve())), msg  # the file first
    for w in words:
        assert w in msg, msg
    if sample is not None:
        assert f", sample {sample}: " in msg, msg
    else:
        assert ", sample " not in msg, msg
    assert "\n" not in msg and "Traceback" not in msg


def test_bad_dataset_name(tmp_path):
    data = make_data_dir(tmp_path)
    p = write_dataset("json", data, good_records())
    for name in ("", "a/b", " a"):
        with pytest.raises(DataError, match="invalid dataset name"):
            read_dataset(p, name)


def test_missing_image_root(tmp_path):
    data = make_data_dir(tmp_path)
    with pytest.raises(DataError, match="image root .* is not a folder"):
        read_dataset(write_dataset("json", data, good_records()), "x", image_root=tmp_path / "nope")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads unreadable files")
def test_unreadable_file(tmp_path):
    p = write_dataset("json", make_data_dir(tmp_path), good_records())
    p.chmod(0)
    with pytest.raises(DataError, match="cannot read"):
        read_dataset(p, "x")
