"""experiments/reproduce_round0.py: what it compares of a run, and that a stored verdict is not re-run."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))

import reproduce_round0  # noqa: E402


def test_first_round_is_the_first_accuracy_row_and_selection():
    metrics = {"accuracy_matrix": [[0.9, 0.1], [0.8, 0.7]], "selected_per_dataset": [{"a": 3}, {"a": 1, "b": 2}]}
    assert reproduce_round0.first_round(metrics) == {"accuracy": [0.9, 0.1], "selected": {"a": 3}}


def test_a_stored_verdict_is_read_and_a_run_without_digest_is_skipped(tmp_path):
    args = argparse.Namespace(runs=tmp_path / "runs", out=tmp_path / "out", stream="default")
    assert reproduce_round0.check(args, "random", 0, threads=1) is None  # no digest: nothing to check against
    digest = tmp_path / "out" / "runs" / "default" / "random-s0.json"
    digest.parent.mkdir(parents=True)
    digest.write_text(json.dumps({"accuracy_matrix": [[0.5]], "selected_per_dataset": [{"a": 1}]}))
    stored = {"row": "random", "seed": 0, "reproduced": False, "digest": {}, "here": {}}
    verdict = tmp_path / "runs" / "default" / "round0" / "random-s0.json"
    verdict.parent.mkdir(parents=True)
    verdict.write_text(json.dumps(stored))
    assert reproduce_round0.check(args, "random", 0, threads=1) == stored  # read, no run started
    assert not (tmp_path / "runs" / "default" / "round0" / "random-s0").exists()
