"""Adding a dataset to a run checks it with the run's own reading rules (stream.check_images,
stream.max_sample_mb, stream.skip_invalid), the rules its ingest reads it with: what add-dataset
accepts, ingest accepts, and what the run would accept, add-dataset does not refuse."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_readers import good_records, make_data_dir, write_dataset
from typer.testing import CliRunner

from adapt.cli import app
from adapt.config import DatasetEntry, load_config
from adapt.data.pool import DataPool
from adapt.data.stream import (AddedDataset, add_dataset, iter_entry, load_stream, resolve_stream,
                               save_stream)
from adapt.errors import DataError

runner = CliRunner()


def qa(i: str, answer: str = "red", image: str | None = None) -> dict:
    rec = {"id": i, "conversations": [{"from": "human", "value": ("<image>\n" if image else "") + "What color?"},
                                      {"from": "gpt", "value": answer}]}
    if image:
        rec["image"] = image
    return rec


def make_run(tmp: Path, *overrides: str) -> Path:
    """The files of a new run that add-dataset reads and writes, as ``ContinualRun.create`` writes
    them (config.yaml, stream.json), with one small dataset and the given overrides."""
    data = make_data_dir(tmp / "base")
    cfg = load_config(None, ["stream.builtin=null", "tracking.wandb=false", "selection.method=random", *overrides])
    cfg.stream.datasets = [DatasetEntry(name="base", train=str(write_dataset("jsonl", data, good_records())))]
    run = tmp / "run"
    run.mkdir()
    (run / "config.yaml").write_text(cfg.to_yaml(), encoding="utf-8")
    save_stream(run, resolve_stream(cfg, run, progress=False))
    assert load_config(run / "config.yaml").stream == cfg.stream
    return run


def garbage_png_dataset(tmp: Path) -> Path:
    data = make_data_dir(tmp / "new")
    (data / "img" / "bad.png").write_bytes(b"this is not a png" * 8)
    return write_dataset("jsonl", data, [qa("ok", image="img/a.png"), qa("g1", image="img/bad.png")], name="new")


def ingest(run: Path, entry: DatasetEntry) -> int:
    """The run's ingest of ``entry``: its rules, into its pool."""
    rules = load_config(run / "config.yaml").stream
    return DataPool(run / "pool").ingest(iter_entry(entry, "train", rules), dataset=entry.name, round_added=1,
                                         source=entry.train)


def test_check_images_false_run_accepts_an_unverifiable_image_and_ingests_it(tmp_path):
    run = make_run(tmp_path, "stream.check_images=false")
    path = garbage_png_dataset(tmp_path)
    res = runner.invoke(app, ["add-dataset", str(run), str(path), "--name", "new"])
    assert res.exit_code == 0, res.output
    assert "added new (2 train, 0 eval samples) as round 1 of" in res.output  # its index in the stream, as status lists it
    entry = load_stream(run)[-1]
    assert entry.name == "new" and entry.train == str(path.resolve())
    assert ingest(run, entry) == 2
    assert set(DataPool(run / "pool").table(status="active")["uid"]) == {"new/ok", "new/g1"}


def refused(run: Path, path: Path, name: str, words: list[str]) -> DataError:
    """The CLI exits 2 naming the file and ``words``, the library raises; stream.json is unchanged
    byte for byte after each. Returns the library's error."""
    before = (run / "stream.json").read_bytes()
    res = runner.invoke(app, ["add-dataset", str(run), str(path), "--name", name])
    assert res.exit_code == 2 and all(w in res.output for w in [str(path), *words]), res.output
    assert (run / "stream.json").read_bytes() == before
    with pytest.raises(DataError) as err:
        add_dataset(run, DatasetEntry(name=name, train=str(path)))
    assert (run / "stream.json").read_bytes() == before
    return err.value


def test_check_images_true_run_refuses_an_unverifiable_image_and_keeps_the_stream(tmp_path):
    run = make_run(tmp_path, "stream.check_images=true")
    path = garbage_png_dataset(tmp_path)
    err = refused(run, path, "new", ["g1", "unreadable image"])
    assert err.sample == "g1 (line 2)" and "unreadable image" in err.problem and err.path == str(path)
    with pytest.raises(DataError, match="unreadable image"):  # and the run's ingest would refuse it the same way
        ingest(run, DatasetEntry(name="new", train=str(path)))


def big_record_dataset(tmp: Path) -> Path:
    return write_dataset("jsonl", tmp / "big", [qa("small"), qa("huge", answer="x" * 4000)], name="big")


def test_small_max_sample_mb_refuses_a_large_record_naming_it(tmp_path):
    run = make_run(tmp_path, "stream.max_sample_mb=0.001")
    path = big_record_dataset(tmp_path)
    err = refused(run, path, "big", ["stream.max_sample_mb", "line 2"])
    assert "stream.max_sample_mb" in err.problem and "line 2" in str(err.sample)


def test_default_max_sample_mb_accepts_the_same_dataset(tmp_path):
    run = make_run(tmp_path)
    path = big_record_dataset(tmp_path)
    added = add_dataset(run, DatasetEntry(name="big", train=str(path)))
    assert (added.n_train, added.n_eval, added.n_invalid, added.round) == (2, 0, 0, 1)
    assert load_stream(run)[-1] == added.entry


def test_skip_invalid_accepts_a_dataset_with_one_invalid_record_and_counts_it(tmp_path, monkeypatch):
    run = make_run(tmp_path, "stream.skip_invalid=true")
    data = make_data_dir(tmp_path / "mixed")
    train = write_dataset("jsonl", data, [qa("a1", image="img/a.png"), qa("a2", image="img/missing.png"),
                                          qa("a3")], name="train")
    ev = write_dataset("jsonl", data, [qa("e1"), qa("e2")], name="eval")
    monkeypatch.chdir(data)  # relative paths are stored absolute
    added = add_dataset(run, DatasetEntry(name="mixed", train="train.jsonl", eval="eval.jsonl", task="colors"))
    assert isinstance(added, AddedDataset)
    assert (added.n_train, added.n_eval, added.n_invalid, added.round) == (2, 2, 1, 1)
    assert added.entry == DatasetEntry(name="mixed", train=str(train.resolve()), eval=str(ev.resolve()), metric="exact",
                                       task="colors")
    assert load_stream(run)[-1] == added.entry
    seen: list[tuple[DataError, dict]] = []  # the run's ingest reads the same, handing the invalid one over
    rules = load_config(run / "config.yaml").stream
    uids = [s.uid for s in iter_entry(added.entry, "train", rules, on_invalid=lambda e, r: seen.append((e, r)))]
    assert uids == ["mixed/a1", "mixed/a3"]
    assert [(e.sample, r["id"]) for e, r in seen] == [("a2 (line 2)", "a2")]
    assert "image file missing" in seen[0][0].problem
    res = runner.invoke(app, ["add-dataset", str(run), str(train), "--name", "mixed2"])
    assert res.exit_code == 0, res.output
    assert "(2 train, 0 eval samples, 1 invalid skipped) as round 2 of" in res.output


def test_without_skip_invalid_the_same_dataset_is_refused_and_on_invalid_is_unused(tmp_path):
    run = make_run(tmp_path)
    data = make_data_dir(tmp_path / "mixed")
    train = write_dataset("jsonl", data, [qa("a1"), qa("a2", image="img/missing.png")], name="train")
    before = (run / "stream.json").read_bytes()
    with pytest.raises(DataError, match="image file missing") as err:
        add_dataset(run, DatasetEntry(name="mixed", train=str(train)))
    assert err.value.sample == "a2 (line 2)"
    assert (run / "stream.json").read_bytes() == before
    rules = load_config(run / "config.yaml").stream
    with pytest.raises(DataError, match="image file missing"):
        list(iter_entry(DatasetEntry(name="mixed", train=str(train)), "train", rules, on_invalid=lambda e, r: None))


def test_a_duplicate_name_is_refused_before_reading(tmp_path):
    run = make_run(tmp_path)
    before = (run / "stream.json").read_bytes()
    with pytest.raises(Exception, match="already has a dataset named 'base'"):
        add_dataset(run, DatasetEntry(name="base", train=str(tmp_path / "nowhere.jsonl")))
    assert (run / "stream.json").read_bytes() == before
    assert json.loads(before)["datasets"][0]["name"] == "base"
