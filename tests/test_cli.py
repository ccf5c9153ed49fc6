"""The command line: clear one-line errors and non-zero exits on bad input."""

import json

import pytest
import yaml
from typer.testing import CliRunner

from adapt.cli import app

runner = CliRunner()


def test_unknown_config_key_exits_non_zero_naming_key_and_file(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("training:\n  learning_rate: 0.1\n")
    res = runner.invoke(app, ["run", str(cfg), "--run-dir", str(tmp_path / "run")])
    assert res.exit_code == 2
    assert "training.learning_rate" in res.output and "c.yaml" in res.output
    assert not (tmp_path / "run").exists()


def test_add_dataset_rejects_a_bad_dataset_and_keeps_the_stream(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    stream = {"datasets": [{"name": "a", "train": "/x/a.json", "eval": None, "metric": "exact", "task": None,
                            "image_root": None}]}
    (run / "stream.json").write_text(json.dumps(stream))
    before = (run / "stream.json").read_bytes()
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "q1", "conversations": [{"from": "human", "value": "hi"}, {"from": "bot", "value": "x"}]}\n')
    res = runner.invoke(app, ["add-dataset", str(run), str(bad), "--name", "b"])
    assert res.exit_code == 2
    assert str(bad) in res.output and "q1" in res.output and "unknown role" in res.output
    assert (run / "stream.json").read_bytes() == before
    res = runner.invoke(app, ["add-dataset", str(run), str(bad), "--name", "a"])
    assert res.exit_code == 2 and "already has a dataset named 'a'" in res.output


@pytest.mark.parametrize("command", [["run", "--resume", "{d}"], ["status", "{d}"], ["report", "{d}"],
                                     ["add-dataset", "{d}", "{d}/x.json", "--name", "x"]])
def test_a_folder_that_is_not_a_run_is_bad_input(command, tmp_path):
    (tmp_path / "x.json").write_text("[]")
    res = runner.invoke(app, [c.format(d=tmp_path) for c in command])
    assert res.exit_code == 2, res.output
    assert str(tmp_path) in res.output and "run directory" in res.output


def test_missing_files_stop_a_run_before_its_folder_exists(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative paths of a config are taken from the working folder
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"stream": {"builtin": None, "datasets": [
        {"name": "a", "train": "nope/train.json", "eval": "nope/eval.json"},
        {"name": "b", "train": str(cfg), "image_root": "no_images"}]}}))
    run = tmp_path / "run"
    res = runner.invoke(app, ["run", str(cfg), "--run-dir", str(run)])
    out = " ".join(res.output.split())
    assert res.exit_code == 2, res.output
    assert f"stream.datasets[0].train (a): {tmp_path}/nope/train.json not found" in out, out
    assert f"stream.datasets[0].eval (a): {tmp_path}/nope/eval.json not found" in out, out
    assert f"stream.datasets[1].image_root (b): {tmp_path}/no_images is not a folder" in out, out
    assert not run.exists()
    (tmp_path / "model").mkdir()  # a folder, but no checkpoint in it
    res = runner.invoke(app, ["run", str(cfg), "--run-dir", str(run), f"model.name_or_path={tmp_path / 'model'}"])
    assert res.exit_code == 2 and "has no config.json" in res.output and not run.exists(), res.output


def test_status_of_a_run_whose_process_is_gone_says_stopped(tmp_path):
    (tmp_path / "state.json").write_text(json.dumps({"seed": 0, "status": "running", "round": 1, "phase": "train",
                                                      "finished": ["0:ingest"]}))
    (tmp_path / "stream.json").write_text(json.dumps({"datasets": []}))
    res = runner.invoke(app, ["status", str(tmp_path)], env={"COLUMNS": "300"})
    out = " ".join(res.output.split())
    assert res.exit_code == 0, res.output
    assert "stopped (continue with: adapt run --resume" in out and "no process is running it now" in out, out


@pytest.mark.parametrize(("args", "words"), [(["--stream", "nosuch"], "key '--stream': unknown built-in stream"),
                                             (["--scale", "-1"], "--scale must be > 0"),
                                             (["--scale", "0"], "--scale must be > 0")])
def test_demo_data_refuses_bad_arguments(args, words, tmp_path):
    res = runner.invoke(app, ["demo-data", str(tmp_path / "d"), *args])
    assert res.exit_code == 2 and words in res.output, res.output
    assert not (tmp_path / "d").exists()


def test_faiss_says_nothing_when_it_clusters_few_points(capfd):
    import numpy as np

    from adapt.selection.clustering import spherical_kmeans

    x = np.random.default_rng(0).normal(size=(12, 8)).astype(np.float32)
    spherical_kmeans(x, 4, seed=0)
    assert capfd.readouterr().err == ""


def test_atomic_folders_get_the_usual_permissions(tmp_path):
    import os

    from adapt.io import write_dir_atomic

    def writer(tmp):
        tmp.mkdir()
        os.close(os.open(tmp / "adapter_model.safetensors", os.O_CREAT | os.O_WRONLY, 0o600))

    write_dir_atomic(tmp_path / "adapter", writer)
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "adapter" / "adapter_model.safetensors").stat().st_mode & 0o777 == 0o666 & ~mask


def test_demo_data_writes_the_stream(tmp_path):
    res = runner.invoke(app, ["demo-data", str(tmp_path / "d"), "--scale", "0.02"])
    assert res.exit_code == 0, res.output
    meta = json.loads((tmp_path / "d" / "stream.json").read_text())
    assert len(meta["datasets"]) == 6 and meta["scale"] == 0.02


def test_select_help_documents_the_one_shot_use_with_an_example():
    res = runner.invoke(app, ["select", "--help"], env={"COLUMNS": "200"})
    assert res.exit_code == 0
    assert "--method datatailor --ratio 0.15 --out selected.json" in res.output
    assert "--ratio" in res.output and "--out" in res.output and "--work-dir" in res.output
    assert "builtin:tiny-llava, builtin:tiny-qwen2-vl, builtin:tiny-causal-lm" in " ".join(res.output.split())


def test_one_shot_dataset_names_are_unique_and_readable(tmp_path):
    from adapt.oneshot import dataset_names

    for d in ("color", "count"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "train.json").write_text("[]")
    (tmp_path / "extra.jsonl").write_text("")
    paths = [tmp_path / "color/train.json", tmp_path / "count/train.json", tmp_path / "extra.jsonl"]
    assert dataset_names(paths) == ["color", "count", "extra"]
    assert dataset_names([tmp_path / "color/train.json", tmp_path / "color/train.json"]) == ["color-0", "color-1"]


def test_validate_reports_each_dataset_and_exits_2_on_a_bad_one(tmp_path):
    from adapt.data.demo_stream import write_demo_stream

    write_demo_stream(tmp_path / "demo", seed=0, scale=0.01, progress=False)
    good = tmp_path / "demo" / "grounding" / "train.json"
    n = len(json.loads(good.read_text()))
    res = runner.invoke(app, ["validate", str(good)])
    assert res.exit_code == 0 and f"ok: {good}: {n} samples, {n} images" in res.output
    bad = tmp_path / "demo" / "grounding" / "bad.json"
    bad.write_text('[{"id": "q7", "image": "images/none.png", "conversations": '
                   '[{"from": "human", "value": "<image>"}, {"from": "gpt", "value": "a"}]}]')
    before = sorted(p.name for p in tmp_path.rglob("*"))
    res = runner.invoke(app, ["validate", str(good), str(bad)])
    assert res.exit_code == 2
    assert f"ok: {good}" in res.output and "invalid:" in res.output
    assert "q7" in res.output and "image file missing" in res.output and "bad.json" in res.output
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing written anywhere


def test_bad_settings_exit_2_naming_the_key_before_anything_is_trained(tmp_path):
    """A count budget above the pool, k above the number of samples, a model path that does not
    exist: exit status 2, one message naming the setting, and the pool as it was."""
    base = ["stream.scale=0.01", f"stream.data_dir={tmp_path / 'data'}", "tracking.wandb=false",
            "evaluation.before_training=false", "training.epochs=1", "lora.r=4"]
    cfg = tmp_path / "c.yaml"
    cfg.write_text("{}\n")
    res = runner.invoke(app, ["run", str(cfg), *base, "model.name_or_path=/no/such/ckpt", "--run-dir",
                              str(tmp_path / "r0")])
    assert res.exit_code == 2 and "model.name_or_path: /no/such/ckpt" in res.output
    assert not (tmp_path / "r0").exists()
    for i, (extra, words, phase) in enumerate([  # the budget is checked once the pool is known, right after ingest
        (["selection.method=random", "selection.budget=100000"], "selection.budget=100000 is more than round 0",
         "ingest"),
        (["selection.method=adapt_inf", "features.enabled=true", "features.dim=16", "selection.adapt_inf.k=500"],
         "selection.adapt_inf.k=500 clusters, but round 0's active pool holds", "select"),
    ]):
        run = tmp_path / f"r{i + 1}"
        res = runner.invoke(app, ["run", str(cfg), *base, *extra, "--run-dir", str(run)])
        assert res.exit_code == 2 and words in res.output, res.output
        pool = (run / "pool/samples.parquet").read_bytes()
        state = json.loads((run / "state.json").read_text())
        assert state["phase"] == phase and f"0:{phase}" not in state["finished"]
        res = runner.invoke(app, ["run", "--resume", str(run)])
        assert res.exit_code == 2 and (run / "pool/samples.parquet").read_bytes() == pool
