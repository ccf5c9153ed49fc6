"""``hindsight``'s learning-rate probe (``selection.hindsight.budget.split: gain``,
adapt/methods/reference.py) in a two-round run on the built-in demo data: each task probed once, at
its first round, its rate read back after; the probe's adapter kept; the forward pass it measures
the need with gives the gradient pass's losses."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from adapt.config import DatasetEntry, load_config
from adapt.data.demo_stream import write_demo_stream
from adapt.run import ContinualRun

FAST = ["features.dim=64", "lora.r=4", "training.batch_size=16", "training.epochs=1", "evaluation.max_samples=8",
        "evaluation.max_new_tokens=8", "evaluation.batch_size=16", "tracking.wandb=false"]


@pytest.fixture(scope="module")
def gain_run(tmp_path_factory) -> Path:
    demo = tmp_path_factory.mktemp("demo")
    write_demo_stream(demo, seed=0, scale=0.03, progress=False)
    cfg = load_config(None, ["stream.builtin=null", "selection.method=hindsight", "selection.budget=0.5",
                             "selection.hindsight.budget.split=gain", "selection.hindsight.budget.probe=6", "features.enabled=true",
                             *FAST])
    cfg.stream.datasets = [DatasetEntry(name=n, train=str(demo / n / "train.json"), eval=str(demo / n / "eval.json"))
                           for n in ("vqa_knowledge", "reasoning")]
    run = tmp_path_factory.mktemp("run") / "run"
    ContinualRun.create(run, cfg, progress=False).run()
    return run


def _tasks(run: Path, t: int) -> dict:
    return json.loads((run / "rounds" / str(t) / "selector.json").read_text())["tasks"]


def test_each_task_is_probed_once_at_its_first_round_and_keeps_its_rate(gain_run):
    from adapt.methods.reference import learning_rate

    r0, r1 = _tasks(gain_run, 0), _tasks(gain_run, 1)
    probe = r0["vqa_knowledge"]["probe"]
    assert probe["samples"] == probe["held_out"] == 6
    assert r0["vqa_knowledge"]["rate"] == pytest.approx(
        learning_rate(probe["need_before"], probe["need_after"], 6), rel=1e-6)
    assert (gain_run / "rounds/0/hindsight/probe-0/adapter_config.json").is_file()
    # round 1: the old task keeps round 0's rate, unprobed; the new one (the pool's 2nd task) is probed
    assert "probe" not in r1["vqa_knowledge"] and r1["vqa_knowledge"]["rate"] == r0["vqa_knowledge"]["rate"]
    assert r1["reasoning"]["probe"]["samples"] == 6 and r1["reasoning"]["rate"] >= 0
    assert (gain_run / "rounds/1/hindsight/probe-1/adapter_config.json").is_file()
    assert not (gain_run / "rounds/1/hindsight/probe-0").exists()
    # the quotas fill the budget
    sel = pd.read_parquet(gain_run / "rounds/1/selection.parquet")
    assert sum(t["quota"] for t in r1.values()) == int(sel["selected"].sum()) == round(0.5 * len(sel))


def test_answer_scores_give_the_gradient_pass_s_losses(gain_run):
    """Round 0's model is the base model (its gradient pass on a fresh adapter, B = 0: the same
    function), so the forward-only losses equal the stored ones up to float32 summation order."""
    from adapt.config import load_config as load
    from adapt.data.pool import DataPool
    from adapt.features.extract import answer_scores
    from adapt.features.store import FeatureStore
    from adapt.layout import RunLayout
    from adapt.run.models import ModelChain
    from adapt.training.trainer import get_accelerator

    cfg = load(gain_run / "config.yaml")
    store = FeatureStore(gain_run / "rounds/0/features")
    uids = store.uids()
    samples = DataPool(gain_run / "pool").samples(uids)
    bundle = ModelChain(cfg, RunLayout(gain_run), get_accelerator(cfg.training), progress=False).after(-1)
    loss, tokens = answer_scores(bundle.model, bundle.family, samples, cfg.model.max_length, 4)
    scores = store.scores()
    assert tokens.tolist() == scores["answer_tokens"].astype(int).tolist()
    assert np.allclose(loss, scores["loss"].to_numpy(), rtol=1e-5, atol=1e-6)  # seen: 1e-6 at 5.6 nats, a few ulps
    assert math.isfinite(float(loss.sum()))


def test_the_report_s_budget_table_shows_the_rates(gain_run):
    from adapt.tracking.ground_truth import task_budget_table

    table = task_budget_table(gain_run)
    assert "probe" not in table.columns
    rates = [1000 * _tasks(gain_run, t)[task]["rate"] for t, task in zip(table["round"], table["task"])]
    assert table["rate (per 1000 samples)"].tolist() == pytest.approx(rates)
