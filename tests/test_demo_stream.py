"""The built-in stream: deterministic bytes, the LLaVA layout, and the properties that make
selection matter (redundancy, label noise, rare skills, text-only questions)."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from adapt.data.demo_stream import DEMO_DATASETS, write_demo_stream
from adapt.data.readers import read_dataset


def tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def stream(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    write_demo_stream(root / "a", seed=0, scale=0.1, progress=False)
    return root / "a"


def test_same_seed_same_bytes_other_seed_differs(stream, tmp_path):
    write_demo_stream(tmp_path / "b", seed=0, scale=0.1, progress=False)
    assert tree(tmp_path / "b") == tree(stream)
    write_demo_stream(tmp_path / "c", seed=1, scale=0.1, progress=False)
    assert tree(tmp_path / "c") != tree(stream)


def test_layout(stream):
    meta = json.loads((stream / "stream.json").read_text())
    assert [d["name"] for d in meta["datasets"]] == DEMO_DATASETS
    assert {d["metric"] for d in meta["datasets"]} == {"exact", "numeric", "iou"}
    for d in meta["datasets"]:
        ids = {}
        for split in ("train", "eval"):
            records = json.loads((stream / d[split]).read_text())
            samples = read_dataset(stream / d[split], d["name"])  # validates roles, placeholders, images
            assert len(samples) == len(records)
            ids[split] = {r["id"] for r in records}
            assert len(ids[split]) == len(records)
            for s in samples:
                for p in s.images:
                    with Image.open(p) as im:
                        assert im.size == (32, 32) and im.mode == "RGB"
        assert not ids["train"] & ids["eval"]


def test_selection_relevant_properties(stream):
    train = json.loads((stream / "vqa_general/train.json").read_text())
    noisy = sum(r["meta"]["noisy"] for r in train) / len(train)
    assert 0.0 < noisy < 0.08
    assert any(r["meta"]["rare"] for r in train)
    assert any(not r["meta"]["needs_image"] and "image" not in r for r in train)
    groups = Counter(r["meta"]["dup_group"] for r in train)
    assert max(groups.values()) > 1  # near-duplicates
    for name in DEMO_DATASETS:
        ev = json.loads((stream / name / "eval.json").read_text())
        assert not any(r["meta"]["noisy"] for r in ev)


def test_answers_match_their_metric(stream):
    for r in json.loads((stream / "grounding/train.json").read_text()):
        nums = [float(x) for x in re.findall(r"[\d.]+", r["conversations"][1]["value"])]
        assert len(nums) == 4 and all(0 <= x <= 1 for x in nums) and nums[0] < nums[2] and nums[1] < nums[3]
    for r in json.loads((stream / "reasoning/eval.json").read_text()):
        m = r["meta"]
        assert int(r["conversations"][1]["value"]) == m["digit"] + m["addend"]
    multi = json.loads((stream / "multi_image/train.json").read_text())  # two images each
    assert all(len(r["images"]) == 2 for r in multi)


def test_unknown_stream_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="known: default"):
        write_demo_stream(tmp_path, stream="nope")
