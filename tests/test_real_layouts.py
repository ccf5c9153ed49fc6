"""Datasets laid out as the public visual-instruction sets are (tests/real_layouts.py) go through
``adapt validate``, ``adapt add-dataset`` and a round of a run, as they are (issue 20)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import yaml
from real_layouts import LAYOUTS, Layout, write_corpus
from typer.testing import CliRunner

from adapt.cli import app
from adapt.data.images import EMBEDDED_PREFIX
from adapt.data.pool import DataPool
from adapt.data.readers import ReadStats, read_dataset
from adapt.data.stream import load_stream

runner = CliRunner()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> list[Layout]:
    return write_corpus(tmp_path_factory.mktemp("corpus"))


def _turns(sample) -> list[tuple[str, str]]:
    return [(t["from"], t["value"]) for t in sample.conversations]


@pytest.mark.parametrize("k", range(len(LAYOUTS)), ids=[f.__name__ for f in LAYOUTS])
def test_each_layout_reads_to_the_samples_its_source_means(k, corpus, tmp_path):
    layout = corpus[k]
    stats = ReadStats()
    store = tmp_path / "store"
    samples = read_dataset(layout.train, layout.name, image_store=store, stats=stats)
    assert [s.uid for s in samples] == [e.uid for e in layout.expected]
    for s, e in zip(samples, layout.expected):
        assert _turns(s) == e.turns, s.uid
        assert [Path(p).read_bytes() for p in s.images] == e.images, s.uid
        assert s.system == e.system, s.uid
    n_images = sum(len(e.images) for e in layout.expected)
    assert (stats.samples, stats.images, stats.embedded_images, stats.repeated_ids) == (
        len(layout.expected), n_images, layout.embedded, layout.repeated_ids)
    stored = sorted(p for p in store.rglob("*") if p.is_file()) if store.exists() else []
    embedded = {hashlib.sha256(Path(p).read_bytes()).hexdigest() for s in samples for p in s.images
                if Path(p).is_relative_to(store)}
    assert [p.stem for p in stored] == sorted(embedded)  # each embedded image once, named by its digest
    assert len(embedded) <= layout.embedded


def test_without_a_store_embedded_images_are_checked_and_named_by_digest(corpus):
    layout = next(x for x in corpus if x.name == "hf_image_bytes")
    samples = read_dataset(layout.train, layout.name)
    assert [s.images for s in samples] == [(EMBEDDED_PREFIX + hashlib.sha256(e.images[0]).hexdigest(),)
                                           for e in layout.expected]


def test_validate_accepts_every_layout_and_counts_what_it_met(corpus):
    res = runner.invoke(app, ["validate", *(str(x.train) for x in corpus)])
    assert res.exit_code == 0, res.output
    lines = [" ".join(line.split()) for line in res.output.split("ok:")[1:]]
    assert len(lines) == len(corpus)
    for x, line in zip(corpus, lines):
        n_images = sum(len(e.images) for e in x.expected)
        assert f"{len(x.expected)} samples, {n_images} images" in line, line
        assert (f"{x.embedded} of them embedded" in line) == bool(x.embedded), line
        assert ("1 sample repeats an earlier sample's id" in line) == bool(x.repeated_ids), line


def _config(corpus: list[Layout], tmp: Path, **stream) -> Path:
    cfg = tmp / "c.yaml"
    cfg.write_text(yaml.safe_dump({
        "stream": {"builtin": None, **stream, "datasets": [
            {"name": x.name, "train": str(x.train), **({"eval": str(x.eval)} if x.eval else {})} for x in corpus]},
        "training": {"epochs": 1.0}, "evaluation": {"max_samples": 2, "max_new_tokens": 4, "before_training": False},
        "lora": {"r": 4}, "tracking": {"wandb": False}, "features": {"enabled": False},
        "selection": {"method": "random", "budget": 0.5}}))
    return cfg


def test_add_dataset_takes_every_layout_as_the_next_round(corpus, tmp_path):
    first, rest = corpus[0], corpus[1:]
    run = tmp_path / "run"
    from adapt.config import load_config
    from adapt.data.stream import resolve_stream, save_stream

    cfg = load_config(_config([first], tmp_path))
    run.mkdir()
    (run / "config.yaml").write_text(cfg.to_yaml(), encoding="utf-8")
    save_stream(run, resolve_stream(cfg, run, progress=False))
    for t, x in enumerate(rest, start=1):
        args = ["add-dataset", str(run), str(x.train), "--name", x.name, *(["--eval", str(x.eval)] if x.eval else [])]
        res = runner.invoke(app, args)
        out = " ".join(res.output.split())
        assert res.exit_code == 0, res.output
        assert f"added {x.name} ({len(x.expected)} train" in out and f"as round {t} of" in out, out
    assert [e.name for e in load_stream(run)] == [x.name for x in corpus]
    res = runner.invoke(app, ["add-dataset", str(run), str(first.train), "--name", "again"])
    assert "1 repeating an earlier sample's id (kept" in " ".join(res.output.split()), res.output


def test_one_round_over_every_layout_trains_evaluates_and_the_run_can_move(corpus, tmp_path):
    run = tmp_path / "run"
    res = runner.invoke(app, ["run", str(_config(corpus, tmp_path, all_at_once=True)), "--run-dir", str(run),
                              "--quiet"])
    assert res.exit_code == 0, res.output
    metrics = json.loads((run / "metrics.json").read_text())
    assert sorted(metrics["tasks"]) == sorted(x.name for x in corpus if x.eval)
    assert metrics["samples_trained"][0] > 0
    pool = DataPool(run / "pool")
    expected = {e.uid: e for x in corpus for e in x.expected}
    assert pool.active_uids() == list(expected)
    # the pool names its embedded images relative to the run folder, so the run folder can move
    records = [json.loads(r) for r in pool.table(status=None, columns=["record"])["record"]]
    stored = [p for r in records for p in r["images"] if not Path(p).is_absolute()]
    n_embedded = sum(len(e.images) for x in corpus if x.embedded for e in x.expected)
    assert len(stored) == n_embedded - 1  # openai_messages embeds one of its two
    assert all(p.startswith("pool/images/") and (run / p).is_file() for p in stored)
    moved = tmp_path / "elsewhere" / "run"
    moved.parent.mkdir()
    shutil.move(run, moved)
    for s in DataPool(moved / "pool").samples():
        assert [Path(p).read_bytes() for p in s.images] == expected[s.uid].images, s.uid


def test_select_writes_each_input_back_in_its_own_layout(corpus, tmp_path):
    from datasets import load_from_disk

    llava, hf = corpus[0], next(x for x in corpus if x.name == "hf_dict_multi_image")
    out = tmp_path / "picked"
    res = runner.invoke(app, ["select", str(llava.train), str(hf.train), "--model", "builtin:tiny-llava",
                              "--method", "random", "--ratio", "1.0", "--out", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    records = json.loads((out / llava.train.name).read_text())
    source = json.loads(llava.train.read_text())
    assert [r["id"] for r in records] == [r["id"] for r in source]  # the repeated id too
    images = [r["image"] for r in records if "image" in r]
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in images)  # still found from elsewhere
    assert [Path(p).read_bytes() for p in images] == [e.images[0] for e in llava.expected if e.images]
    back = load_from_disk(str(out / hf.train.name))  # a datasets folder again, its Image() features kept
    assert back.features == load_from_disk(str(hf.train))["train"].features
    assert [[im["bytes"] for im in row] for row in back.with_format("arrow")["images"].to_pylist()] == \
        [e.images for e in hf.expected]
    res = runner.invoke(app, ["validate", str(out / llava.train.name), "--image-root", str(llava.train.parent)])
    assert res.exit_code == 0, res.output


def test_a_quarantined_record_names_its_image_bytes_by_size(tmp_path):
    pool = DataPool(tmp_path / "pool")
    rec = {"id": "a", "image": {"bytes": b"\x89PNG" + bytes(96), "path": None}, "conversations": "[{oops"}
    pool.quarantine("d", "train", [{"dataset": "d", "split": "train", "reason": "x", "record": rec}])
    line = json.loads(pool.rejected_path.read_text())
    assert line["record"]["image"] == {"bytes": "<100 bytes>", "path": None}


def test_a_binary_image_column_is_read_as_embedded_bytes(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from real_layouts import image_bytes

    data = image_bytes(70)
    path = tmp_path / "vqa.parquet"
    pq.write_table(pa.table({"question_id": [7], "image": pa.array([data], pa.binary()), "conversations": [
        json.dumps([{"from": "human", "value": "What is it?"}, {"from": "gpt", "value": "noise"}])]}), path)
    [s] = read_dataset(path, "vqa", image_store=tmp_path / "store")
    assert s.uid == "vqa/0" and Path(s.images[0]).read_bytes() == data
    assert s.conversations[0]["value"] == "<image>\nWhat is it?" and s.extra == {"question_id": 7}
