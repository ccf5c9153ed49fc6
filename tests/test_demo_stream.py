"""The built-in stream: deterministic bytes, the LLaVA layout, and the properties that make
selection matter (redundancy, label noise, rare skills, text-only questions)."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from adapt.data.demo_stream import DEMO_DATASETS, STREAMS, write_demo_stream
from adapt.errors import UnknownNameError
from adapt.data.readers import read_dataset

SCALE = 0.1


def tree(root: Path) -> dict[str, str]:
    """Every file under ``root`` -> its sha256."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def load(root: Path, name: str, split: str) -> list[dict[str, Any]]:
    return json.loads((root / name / f"{split}.json").read_text(encoding="utf-8"))


def image_paths(rec: dict[str, Any]) -> list[str]:
    if "image" in rec:
        return [rec["image"]]
    return list(rec.get("images", []))


@pytest.fixture(scope="module")
def stream(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("demo")
    manifest = write_demo_stream(root / "a", seed=0, scale=SCALE, progress=False)
    assert manifest == root / "a" / "stream.json"
    return root / "a"


def test_same_seed_same_bytes_other_seed_differs(stream: Path, tmp_path: Path) -> None:
    write_demo_stream(tmp_path / "b", seed=0, scale=SCALE, progress=False)
    assert tree(tmp_path / "b") == tree(stream)
    write_demo_stream(tmp_path / "c", seed=1, scale=SCALE, progress=False)
    assert tree(tmp_path / "c") != tree(stream)


def test_rewrite_at_another_scale_leaves_no_stale_files(stream: Path, tmp_path: Path) -> None:
    write_demo_stream(tmp_path, seed=0, scale=2 * SCALE, progress=False)
    write_demo_stream(tmp_path, seed=0, scale=SCALE, progress=False)
    assert tree(tmp_path) == tree(stream)


def test_manifest(stream: Path) -> None:
    meta = json.loads((stream / "stream.json").read_text())
    assert (meta["name"], meta["seed"], meta["scale"]) == ("default", 0, SCALE)
    assert [d["name"] for d in meta["datasets"]] == DEMO_DATASETS == list(STREAMS["default"].datasets)
    metrics = {d["name"]: d["metric"] for d in meta["datasets"]}
    assert metrics == {"vqa_general": "exact", "vqa_knowledge": "exact", "vqa_multilingual": "exact",
                       "grounding": "iou", "reasoning": "numeric", "multi_image": "exact"}
    for d in meta["datasets"]:
        assert d["task"] == d["name"] and d["description"]
        for split in ("train", "eval"):
            assert not Path(d[split]).is_absolute() and (stream / d[split]).is_file()
    sizes = {d["name"]: len(load(stream, d["name"], "train")) for d in meta["datasets"]}
    assert sizes == {"vqa_general": 240, "vqa_knowledge": 80, "vqa_multilingual": 80, "grounding": 80,
                     "reasoning": 80, "multi_image": 60}


@pytest.mark.parametrize("name", DEMO_DATASETS)
def test_records_are_valid_llava(stream: Path, name: str) -> None:
    ids: dict[str, set[str]] = {}
    images: dict[str, set[str]] = {}
    for split in ("train", "eval"):
        records = load(stream, name, split)
        ids[split] = {r["id"] for r in records}
        assert len(ids[split]) == len(records)
        images[split] = set()
        for r in records:
            conv = r["conversations"]
            assert len(conv) >= 2 and len(conv) % 2 == 0
            assert [t["from"] for t in conv] == ["human", "gpt"] * (len(conv) // 2)
            paths = image_paths(r)
            assert conv[0]["value"].count("<image>") == len(paths)
            assert set(r["meta"]) >= {"skill", "template", "noisy", "needs_image", "rare", "dup_group"}
            for p in paths:
                with Image.open(stream / name / p) as im:
                    assert im.size == (32, 32) and im.mode == "RGB"
            images[split].update(paths)
        assert len(read_dataset(stream / name / f"{split}.json", name)) == len(records)  # the project's reader
    assert not ids["train"] & ids["eval"]
    assert not images["train"] & images["eval"]


def test_selection_relevant_properties(stream: Path) -> None:
    train = load(stream, "vqa_general", "train")
    noisy = sum(r["meta"]["noisy"] for r in train) / len(train)
    assert 0.01 <= noisy <= 0.06
    assert any(r["meta"]["rare"] and r["meta"]["skill"] == "position" for r in train)
    text_only = [r for r in train if not r["meta"]["needs_image"]]
    assert text_only and all("image" not in r and "<image>" not in r["conversations"][0]["value"] for r in text_only)
    groups = Counter(r["meta"]["dup_group"] for r in train)
    assert 0.3 < 1 - len(groups) / len(train) < 0.7  # about half are near-duplicates
    assert any(r["meta"]["rare"] for r in load(stream, "vqa_multilingual", "train"))
    for name in DEMO_DATASETS:
        assert not any(r["meta"]["noisy"] for r in load(stream, name, "eval"))


def test_answers_match_their_metric(stream: Path) -> None:
    for split in ("train", "eval"):
        for r in load(stream, "grounding", split):
            nums = [float(x) for x in re.findall(r"[\d.]+", r["conversations"][1]["value"])]
            assert len(nums) == 4 and all(0 <= x <= 1 for x in nums) and nums[0] < nums[2] and nums[1] < nums[3]
        for r in load(stream, "reasoning", split):
            m = r["meta"]
            answer = int(r["conversations"][1]["value"])
            assert (answer == m["digit"] + m["addend"]) != m["noisy"]
    digit_images = {s: {r["meta"]["digit_index"] for r in load(stream, "reasoning", s)} for s in ("train", "eval")}
    assert not digit_images["train"] & digit_images["eval"]  # real digits split disjointly
    # eval digits are every fifth image whatever the seed: the built-in model's caption pre-training
    # (train indices only) never sees them
    assert all(i % 5 == 4 for i in digit_images["eval"]) and all(i % 5 != 4 for i in digit_images["train"])
    multi = load(stream, "multi_image", "train")
    assert all(len(r["images"]) == 2 for r in multi)


def test_unknown_stream_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(UnknownNameError, match="key 'stream.builtin': unknown built-in stream 'nope'; known: alt, default"):
        write_demo_stream(tmp_path, stream="nope")
    assert not list(tmp_path.iterdir())  # refused before anything is written


def test_the_alt_stream_has_another_order_sizes_and_draws(stream: Path, tmp_path: Path) -> None:
    write_demo_stream(tmp_path / "alt", seed=0, stream="alt", scale=SCALE, progress=False)
    meta = json.loads((tmp_path / "alt" / "stream.json").read_text())
    assert meta["name"] == "alt"
    assert [d["name"] for d in meta["datasets"]] == ["reasoning", "vqa_multilingual", "multi_image", "vqa_general",
                                                     "grounding", "vqa_knowledge"]
    sizes = {d["name"]: len(load(tmp_path / "alt", d["name"], "train")) for d in meta["datasets"]}
    assert sizes == {"reasoning": 160, "vqa_multilingual": 60, "multi_image": 80, "vqa_general": 120,
                     "grounding": 120, "vqa_knowledge": 80}
    for name in DEMO_DATASETS:  # other draws, eval included: no image is one of the default stream's
        alt = {h for f, h in tree(tmp_path / "alt" / name).items() if f.endswith(".png")}
        default = {h for f, h in tree(stream / name).items() if f.endswith(".png")}
        assert alt and default and not alt & default, name
    write_demo_stream(tmp_path / "again", seed=0, stream="alt", scale=SCALE, progress=False)
    assert tree(tmp_path / "again") == tree(tmp_path / "alt")
