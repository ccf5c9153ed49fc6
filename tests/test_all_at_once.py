"""``stream.all_at_once``: the one-shot setting of TIVE, MLLM-Selector, DataTailor and GDO (one
selection of ``selection.budget`` from the union of every dataset, one training, evaluation on every
task), for any selector, on the tiny built-in model and a small built-in stream."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from adapt.cli import app
from adapt.config import load_config
from adapt.run import ContinualRun

from test_loop import SMALL
from tolerances import assert_sums_close

BUDGET = "0.15"


def config(tmp: Path, *extra: str):
    return load_config(None, SMALL + [f"stream.data_dir={tmp / 'data'}", "tracking.wandb=false",
                                      "evaluation.before_training=false", *extra])


@pytest.fixture(scope="module")
def one_shot(tmp_path_factory):
    """A random run at 15% with every dataset in round 0, and a pool cap that a one-round run has
    no later round to apply to."""
    tmp = tmp_path_factory.mktemp("all_at_once")
    cfg = config(tmp, "selection.method=random", f"selection.budget={BUDGET}", "stream.all_at_once=true",
                 "pool.max_size=0.5")
    metrics = ContinualRun.create(tmp / "run", cfg, progress=False).run()
    return tmp / "run", metrics


def train_sizes(run_dir: Path) -> dict[str, int]:
    """Each stream dataset's number of training records, read from its file."""
    stream = json.loads((run_dir / "stream.json").read_text())["datasets"]
    return {d["name"]: len(json.loads(Path(d["train"]).read_text())) for d in stream}


def test_one_selection_from_the_union_and_one_training(one_shot):
    run_dir, metrics = one_shot
    sizes = train_sizes(run_dir)
    n = sum(sizes.values())
    assert len(sizes) == 6
    # resolve_budget: round(0.15 · N); the stream's N is chosen so that 0.15 · N is no tie (see the report)
    exact = Fraction(BUDGET) * n
    assert exact - int(exact) != Fraction(1, 2)
    budget = int(exact + Fraction(1, 2))
    assert metrics["rounds_total"] == 1 and metrics["rounds_done"] == 1
    assert sorted(p.name for p in (run_dir / "rounds").iterdir()) == ["0"]
    sel = pd.read_parquet(run_dir / "rounds/0/selection.parquet")
    assert len(sel) == n and sel["uid"].is_unique  # every sample of every dataset is a candidate
    assert sel["uid"].str.split("/").str[0].value_counts().to_dict() == sizes
    assert int(sel["selected"].sum()) == budget
    assert metrics["samples_trained"] == [budget]
    assert sum(metrics["selected_per_dataset"][0].values()) == budget


def test_a_is_the_mean_of_the_one_row_and_no_continual_metric(one_shot):
    _, metrics = one_shot
    R = metrics["accuracy_matrix"]
    assert len(R) == 1 and len(R[0]) == len(metrics["tasks"]) == 6
    row = np.array(R[0], dtype=np.float64)
    assert_sums_close(metrics["avg_accuracy"], row.sum() / len(row), np.abs(row).sum() / len(row), len(row),
                      torch.float64)
    assert all(metrics[k] is None for k in ("maa", "bwt", "forgetting", "fwt"))


def test_no_pruning_in_a_one_round_run(one_shot):
    """pool.max_size caps the pool later rounds select from; a one-round run has none: nothing is
    tombstoned, and the prune phase does not run."""
    run_dir, metrics = one_shot
    n = sum(train_sizes(run_dir).values())
    pool = json.loads((run_dir / "rounds/0/pool.json").read_text())
    assert pool["active"] == pool["total"] == n
    assert metrics["pool_size"] == [n]
    finished = json.loads((run_dir / "state.json").read_text())["finished"]
    assert "0:prune" not in finished and "0:checkpoint" in finished


def test_add_dataset_onto_an_all_at_once_run_is_refused(one_shot):
    run_dir, _ = one_shot
    before = (run_dir / "stream.json").read_text()
    first = json.loads(before)["datasets"][0]
    res = CliRunner().invoke(app, ["add-dataset", str(run_dir), first["train"], "--name", "late",
                                   "--eval", first["eval"]])
    assert res.exit_code == 2, res.output
    assert "all-at-once run (stream.all_at_once)" in " ".join(res.output.split())
    assert (run_dir / "stream.json").read_text() == before


@pytest.mark.parametrize("extra, rounds, prune", [
    ((), [[0], [1], [2], [3], [4], [5]], True),               # continual: one dataset a round, pruned
    (("stream.all_at_once=true",), [[0, 1, 2, 3, 4, 5]], False),
    (("selection.method=multitask",), [[0, 1, 2, 3, 4, 5]], False),  # the joint selector: the same path
])
def test_rounds_and_phases(tmp_path, one_shot, extra, rounds, prune):
    data = one_shot[0].parent / "data"  # the stream the fixture wrote
    cfg = load_config(None, SMALL + [f"stream.data_dir={data}", "tracking.wandb=false", "selection.method=random",
                                     "pool.max_size=0.5", *extra])
    run = ContinualRun.create(tmp_path / "run", cfg, progress=False)
    names = [e.name for e in run.stream]
    assert [[names.index(e.name) for e in r] for r in run.rounds()] == rounds
    assert run.one_round == (len(rounds) == 1)
    assert ("prune" in [p for p, _, _ in run.phase_table(0, run.rounds()[0])]) == prune
