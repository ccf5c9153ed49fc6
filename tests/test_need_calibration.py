"""experiments/need_calibration.py: the need of a task trained before against its eval error, worked by hand."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from adapt.features.store import SCORE_COLUMNS, FeatureStore

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))

import need_calibration  # noqa: E402


def test_fewest_trained_widens_to_whole_ties():
    times = np.array([2, 0, 1, 1, 0, 3])
    assert need_calibration.fewest_trained(times, 1).tolist() == [1, 4]        # the two never trained
    assert need_calibration.fewest_trained(times, 3).tolist() == [1, 2, 3, 4]  # 0, 0, then both 1s
    assert need_calibration.fewest_trained(times, 9).tolist() == [0, 1, 2, 3, 4, 5]


def test_need_beside_the_eval_error_by_hand(tmp_path):
    run = tmp_path / "default" / "hindsight-s0"
    (run / "rounds" / "0").mkdir(parents=True)
    (run / "rounds" / "0" / "eval.json").write_text(json.dumps({"scores": {"a": 0.4, "b": 0.0}}))
    # round 1: task a trained before; answer error 1 − exp(−loss · tokens): a/0 1 − 1/4, a/1 1 − 1/2,
    # a/2 (never trained) 1 − 1/4, a/3 flagged (left out); task b is new (never trained: skipped)
    uids = ["a/0", "a/1", "a/2", "a/3", "b/0"]
    loss = [math.log(4) / 2, math.log(2), math.log(4), 9.0, 5.0]
    tokens = [2, 1, 1, 1, 1]
    store = FeatureStore.create(run / "rounds" / "1" / "features", uids, 2, columns=SCORE_COLUMNS)
    scores = np.zeros((5, len(SCORE_COLUMNS)), np.float32)
    scores[:, SCORE_COLUMNS.index("loss")] = loss
    scores[:, SCORE_COLUMNS.index("answer_tokens")] = tokens
    store.write_rows(np.arange(5), np.zeros((5, 2), np.float32), scores)
    (run / "rounds" / "1" / "hindsight").mkdir()
    pd.DataFrame({"uid": uids, "task": ["a"] * 4 + ["b"], "loss": loss, "flagged": [False, False, False, True, False],
                  "times_trained": [1, 1, 0, 0, 0]}).to_parquet(run / "rounds" / "1" / "hindsight" / "samples.parquet")
    rows = need_calibration.calibration_rows(run, fewest=[1, 2])
    assert len(rows) == 1
    row = rows[0]
    assert (row["run"], row["round"], row["task"]) == ("default/hindsight-s0", 1, "a")
    assert row["error"] == pytest.approx(60.0)
    assert row["pool"] == pytest.approx(100 * (0.75 + 0.5 + 0.75) / 3, rel=1e-6)  # float32 losses
    assert row["fewest 1"] == pytest.approx(75.0, rel=1e-6)                       # a/2 alone
    assert row["fewest 2"] == pytest.approx(row["pool"])                          # widened to the tie: all three
    table = pd.DataFrame([{"error": 60.0, "pool": 70.0}, {"error": 20.0, "pool": 10.0}])
    got = need_calibration.summary(table, ["pool"]).iloc[0]
    assert got["mean(need − error)"] == pytest.approx(0.0) and got["mean |need − error|"] == pytest.approx(10.0)
    assert got["correlation"] == pytest.approx(1.0)
