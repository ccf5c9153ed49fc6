"""Every registered selector end to end: one-shot through ``adapt select`` on the built-in demo data
(the chosen records, untouched, in the input's format), and as the strategy of one round of a run;
every registered expert inside Adapt-∞."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from adapt.cli import app
from adapt.data.conversations import rebase_images
from adapt.config import DatasetEntry, load_config
from adapt.data.demo_stream import write_demo_stream
from adapt.run import ContinualRun
from adapt.methods import SCORERS
from adapt.methods import SELECTORS

runner = CliRunner()
FAST = ["features.dim=64", "lora.r=4", "training.batch_size=16", "selection.adapt_inf.k=3", "selection.mllm_selector.groups=3",
        "selection.gdo.coverage_k=3", "evaluation.batch_size=16"]
TAKES_ALL = {"full", "multitask"}
SEED_PAPERS = {"tive", "mllm_selector", "datatailor", "gdo"}


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("demo")
    write_demo_stream(d, seed=0, scale=0.03, progress=False)
    return d


def _select(files: list[Path], method: str, out: Path, work: Path, *sets: str):
    args = ["select", *map(str, files), "--model", "builtin:tiny-llava", "--method", method, "--ratio", "0.25",
            "--out", str(out), "--quiet", "--work-dir", str(work)]
    for s in [*FAST, *sets]:
        args += ["--set", s]
    return runner.invoke(app, args)


@pytest.mark.parametrize("method", SELECTORS.names())
def test_adapt_select_writes_the_chosen_records_in_the_input_format(method, demo, tmp_path):
    files = sorted(demo.glob("*/train.json"))
    res = _select(files, method, tmp_path / "picked.json", tmp_path / "work")
    assert res.exit_code == 0, res.output
    sel = pd.read_parquet(tmp_path / "work/rounds/0/selection.parquet")
    n = len(sel)
    assert n == sum(len(json.loads(f.read_text())) for f in files)
    chosen = set(sel.loc[sel["selected"], "uid"])
    assert len(chosen) == (n if method in TAKES_ALL else round(0.25 * n))
    # the input records themselves, in input order (dataset names are the folders: the stems repeat)
    # the image paths made absolute: picked.json is not in their folder
    expected = [rebase_images(r, f.parent) for f in files for r in json.loads(f.read_text())
                if f"{f.parent.name}/{r['id']}" in chosen]
    assert json.loads((tmp_path / "picked.json").read_text()) == expected
    assert f"{len(chosen)} of {n} samples" in res.output
    if method in SEED_PAPERS:
        info = json.loads((tmp_path / "work/rounds/0/selector.json").read_text())
        assert info["method"] == method
    if method == "mllm_selector":  # one shot: a seed model on 10% of the pool
        assert info["seed_samples"] == round(0.1 * n)
    if method == "tive":  # the warm-up adapter is kept for a resumed selection
        assert (tmp_path / "work/rounds/0/tive/warmup/adapter_config.json").is_file()
        assert info["warmup_samples"] == 6 * round(0.08 * n / 6)


def test_adapt_select_keeps_jsonl_and_parquet_and_refuses_other_outputs(demo, tmp_path):
    src = demo / "grounding" / "train.json"
    records = json.loads(src.read_text())
    moved = [rebase_images(r, src.parent) for r in records]  # as written outside their image folder
    jl = demo / "grounding" / "copy.jsonl"  # beside the images its paths are relative to
    jl.write_text("".join(json.dumps(r) + "\n" for r in records))
    res = _select([jl], "random", tmp_path / "out.jsonl", tmp_path / "w1")
    assert res.exit_code == 0, res.output
    lines = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert len(lines) == round(0.25 * len(records)) and all(x in moved for x in lines)
    res = _select([src], "random", tmp_path / "out.parquet", tmp_path / "w2")
    assert res.exit_code == 0, res.output
    assert len(pd.read_parquet(tmp_path / "out.parquet")) == round(0.25 * len(records))
    res = _select([src, jl], "random", tmp_path / "per_input", tmp_path / "w4")  # a folder: one file per input
    assert res.exit_code == 0, res.output
    chosen = pd.read_parquet(tmp_path / "w4/rounds/0/selection.parquet").query("selected")["uid"].tolist()
    assert json.loads((tmp_path / "per_input/train.json").read_text()) == \
        [r for r in moved if f"train/{r['id']}" in chosen]
    assert [json.loads(x) for x in (tmp_path / "per_input/copy.jsonl").read_text().splitlines()] == \
        [r for r in moved if f"copy/{r['id']}" in chosen]
    res = _select([src], "random", tmp_path / "out.csv", tmp_path / "w3")
    assert res.exit_code == 2 and "out.csv" in res.output and ".jsonl" in res.output
    assert not (tmp_path / "w3").exists()


def _one_round(demo: Path, tmp_path: Path, method: str, *extra: str):
    cfg = load_config(None, ["stream.builtin=null", "training.epochs=1", "evaluation.max_samples=8",
                             "evaluation.max_new_tokens=8", "tracking.wandb=false", f"selection.method={method}",
                             "selection.budget=0.25", *FAST, *extra])
    cfg.stream.datasets = [DatasetEntry(name="grounding", train=str(demo / "grounding/train.json"),
                                        eval=str(demo / "grounding/eval.json"))]
    cfg.features.enabled = cfg.features.enabled or SELECTORS.get(method)(cfg).needs_features()
    return ContinualRun.create(tmp_path / "run", cfg, progress=False).run()


@pytest.mark.parametrize("method", SELECTORS.names())
def test_every_selector_runs_one_round_of_a_run(method, demo, tmp_path):
    extra = [f"selection.adapt_inf.experts=[{','.join(SCORERS.names())}]"] if method == "adapt_inf" else []
    metrics = _one_round(demo, tmp_path, method, *extra)
    assert metrics["rounds_done"] == 1
    sel = pd.read_parquet(tmp_path / "run/rounds/0/selection.parquet")
    want = len(sel) if method in TAKES_ALL else round(0.25 * len(sel))
    assert int(sel["selected"].sum()) == want == metrics["samples_trained"][0]
    if method in SEED_PAPERS:
        assert json.loads((tmp_path / "run/rounds/0/selector.json").read_text())["method"] == method
        assert (sel["expert"] == method).all() and np.isfinite(sel["score"]).all()
    if method == "mllm_selector":  # a seed model on 10% of the round's pool, as in one shot
        assert json.loads((tmp_path / "run/rounds/0/selector.json").read_text())["seed_samples"] == round(0.1 * len(sel))
    if method == "adapt_inf":  # every registered expert competed
        scores = pd.read_parquet(tmp_path / "run/rounds/0/scores.parquet")
        assert set(SCORERS.names()) <= set(scores.columns)
        assert np.isfinite(scores[SCORERS.names()].to_numpy()).all()
    if method == "hindsight":  # its per-sample record, and the report's ground-truth section, worked out here
        from adapt.tracking.ground_truth import pool_meta, round_diagnostics
        from adapt.tracking.report import write_report

        detail = pd.read_parquet(tmp_path / "run/rounds/0/hindsight/samples.parquet")
        assert detail["uid"].tolist() == sel["uid"].tolist() and (detail["selected"] == sel["selected"]).all()
        assert (detail["times_trained"] == 0).all() and not detail["flagged"].any()
        meta = pool_meta(tmp_path / "run").set_index("uid").reindex(sel["uid"])
        diag = round_diagnostics(tmp_path / "run").iloc[0]
        noisy = meta["noisy"].eq(True).to_numpy()
        assert diag["% of pool"] == pytest.approx(100 * noisy.mean())
        assert diag["wrong labels, % of selected"] == pytest.approx(100 * noisy[sel["selected"].to_numpy()].mean())
        text = write_report([tmp_path / "run"]).read_text()
        assert "Selection against the stream's ground truth" in text and "`hindsight`'s budget per task" in text


def test_warm_up_is_reloaded_not_retrained(tiny_models, toy_samples, tmp_path):
    """TIVE's warm-up adapter (and MLLM-Selector's seed model) survive a restart: the saved
    adapter is loaded, not trained again, and the round's own model is not changed."""
    import torch

    from adapt.models.loading import load_model
    from adapt.models.lora import add_new_adapter
    from adapt.methods.reference import warm_up

    cfg = load_config(None, ["lora.r=4", "training.batch_size=2", "training.lr=0.01"])
    bundle = load_model(tiny_models["tiny-llava"])
    bundle.model = add_new_adapter(bundle.model, cfg.lora)
    before = {k: v.clone() for k, v in bundle.model.state_dict().items()}
    first = warm_up(bundle, toy_samples, cfg, seed=0, adapter_dir=tmp_path / "warmup")
    assert (tmp_path / "warmup" / "adapter_config.json").is_file()
    trained = {k: v for k, v in first.model.state_dict().items() if "lora_B" in k}
    assert trained and any(v.abs().sum() > 0 for v in trained.values())
    again = warm_up(bundle, toy_samples[:1], cfg, seed=5, adapter_dir=tmp_path / "warmup")  # other data: not used
    for k, v in again.model.state_dict().items():
        if "lora_" in k:
            assert torch.equal(v, first.model.state_dict()[k]), k  # loaded from safetensors: bit for bit
    for k, v in bundle.model.state_dict().items():
        assert torch.equal(v, before[k]), k  # not touched at all


@pytest.mark.parametrize("every_round", [False, True])
def test_the_features_phase_runs_only_when_something_reads_it(every_round, demo, tmp_path):
    """``random`` reads no features: with ``features.enabled`` the phase is skipped (no store, no
    state key, no seconds), unless ``features.every_round`` asks for them."""
    _one_round(demo, tmp_path, "random", "features.enabled=true", f"features.every_round={every_round}")
    state = json.loads((tmp_path / "run/state.json").read_text())
    assert ("0:features" in state["finished"]) == every_round == ("features" in state["phase_seconds"])
    assert (tmp_path / "run/rounds/0/features/meta.json").is_file() == every_round
