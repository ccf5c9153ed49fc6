"""experiments/compare.py: which runs it starts or resumes, and the tables it writes from finished
runs, checked against values worked out by hand on made-up run directories."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))

import compare  # noqa: E402

TASKS = ["a", "b"]


def fake_run(root: Path, name: str, seed: int, R: list[list[float]], metrics: dict, rare_selected: int,
             stream: str = "default") -> None:
    """A finished run: state.json, metrics.json, the pool (uids a/0..a/3, a/0 and a/1 rare), one
    selection, the last round's predictions on the eval items (b/e1 rare) and the stream."""
    rd = root / stream / f"{name}-s{seed}"
    (rd / "rounds" / "0").mkdir(parents=True)
    (rd / "rounds" / str(len(R) - 1)).mkdir(parents=True, exist_ok=True)
    (rd / "state.json").write_text(json.dumps({"status": "finished"}))
    (rd / "metrics.json").write_text(json.dumps({
        "tasks": TASKS, "accuracy_matrix": R, "config": {"seed": seed}, "rounds_done": len(R), "rounds_total": 2,
        **metrics}))
    records = [json.dumps({"extra": {"meta": {"rare": i < 2}}}) for i in range(4)]
    (rd / "pool").mkdir()
    pd.DataFrame({"uid": [f"a/{i}" for i in range(4)], "record": records}).to_parquet(rd / "pool" / "samples.parquet")
    selected = [i < rare_selected or i == 3 for i in range(4)]
    pd.DataFrame({"uid": [f"a/{i}" for i in range(4)], "selected": selected}).to_parquet(
        rd / "rounds" / "0" / "selection.parquet")
    eval_file = rd / "b_eval.json"
    eval_file.write_text(json.dumps([{"id": "e0", "meta": {}}, {"id": "e1", "meta": {"rare": True}}]))
    (rd / "stream.json").write_text(json.dumps({"datasets": [{"name": "a", "metric": "numeric"},
                                                              {"name": "b", "eval": str(eval_file)}]}))
    pd.DataFrame({"uid": ["a/e0", "a/e1", "a/e2", "b/e0", "b/e1"], "task": ["a", "a", "a", "b", "b"],
                  "reference": ["3", "3.0", "4", "no", "yes"], "prediction": ["3", "3", "3", "no", "no"],
                  "score": [1.0, 1.0, 0.0, 0.0, 1.0 if seed == 0 else 0.0]}).to_json(
        rd / "rounds" / str(len(R) - 1) / "predictions.jsonl", orient="records", lines=True)


def test_tables_from_finished_runs_match_hand_computed_values(tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "out"
    # random: A 0.75 / 0.65; forgetting of task a 0.2 / 0.0
    fake_run(runs, "random", 0, [[0.8, 0.1], [0.6, 0.9]], {"avg_accuracy": 0.75, "maa": 0.775, "forgetting": 0.2,
             "bwt": -0.2, "fwt": 0.1, "samples_trained": [10, 20], "wall_seconds": 60.0}, rare_selected=2)
    fake_run(runs, "random", 1, [[0.6, 0.0], [0.6, 0.7]], {"avg_accuracy": 0.65, "maa": 0.625, "forgetting": 0.0,
             "bwt": 0.0, "fwt": 0.3, "samples_trained": [10, 20], "wall_seconds": 120.0}, rare_selected=0)
    fake_run(runs, "multitask", 0, [[1.0, 0.9]], {"avg_accuracy": 0.95, "samples_trained": [40],
             "wall_seconds": 30.0}, rare_selected=1)
    fake_run(runs, "multitask", 1, [[0.8, 0.7]], {"avg_accuracy": 0.75, "samples_trained": [40],
             "wall_seconds": 30.0}, rare_selected=1)
    args = argparse.Namespace(stream="default", rows=["random", "multitask"], seeds=[0, 1], runs=runs, out=out,
                              config=Path("configs/demo.yaml"), scale=1.0)
    md = compare.write_results(args, compare.collect(args)).read_text()
    random_row = [line for line in md.splitlines() if line.startswith("| `random` | 2 |")][0]
    # A: 75, 65 -> 70.0 ± 7.1; rel. multitask: (0.6/1.0 + 0.9/0.9)/2 = 80, (0.6/0.8 + 0.7/0.7)/2 = 87.5
    assert random_row == ("| `random` | 2 | 70.0 ± 7.1 | 70.0 ± 10.6 | 10.0 ± 14.1 | -10.0 ± 14.1 | 20.0 ± 14.1 | "
                          "83.8 ± 5.3 | 30 ± 0 | 1.5 ± 0.7 |")
    assert "| `multitask` (reference: one training on the union) | 2 | 85.0 ± 14.1 | — | — | — | — | 100.0 ± 0.0 |" in md
    # forgetting per task: a: (0.2 + 0.0) / 2; b: introduced in the last round
    assert "| `random` | 10.0 | — |" in md
    # chance: "3" scores 2 of 3 on a (numeric: "3.0" is 3), one of "no"/"yes" 1 of 2 on b; in both score tables
    assert md.count("| chance (the best constant answer) | 66.7 | 50.0 |") == 2
    # rare: selected 2 of 3 (seed 0) and 0 of 1 (seed 1): 66.7, 0.0; pool 2 of 4; rare eval item right in seed 0
    assert "| `random` | 33.3 ± 47.1 | 50.0 ± 0.0 | 50.0 ± 70.7 |" in md
    rows = list(csv.DictReader(open(out / "default.csv")))
    assert [(r["row"], r["seed"], float(r["A_rel_multitask"]), r["run_dir"]) for r in rows] == \
        [("random", "0", 0.8, "default/random-s0"), ("random", "1", 0.875, "default/random-s1"),
         ("multitask", "0", 1.0, "default/multitask-s0"), ("multitask", "1", 1.0, "default/multitask-s1")]
    for png in ("accuracy_matrices", "forgetting_per_task", "accuracy_vs_samples"):
        assert (out / "default" / f"{png}.png").stat().st_size > 1000


def test_a_started_run_is_resumed_and_a_finished_one_is_skipped(tmp_path):
    args = argparse.Namespace(stream="alt", runs=tmp_path, config=Path("/c.yaml"), scale=0.5, sets=["x=1"])
    run = compare.run_dir(tmp_path, "alt", "tive", 2)
    cmd = compare.command(args, "tive", 2, run)
    assert cmd[3:] == ["run", "/c.yaml", "selection.method=tive", "features.enabled=false", "seed=2",
                       "stream.builtin=alt", "stream.scale=0.5", f"stream.data_dir={tmp_path / 'alt' / 'data'}",
                       "x=1", "--run-dir", str(run), "--quiet"]
    run.mkdir(parents=True)
    (run / "state.json").write_text(json.dumps({"status": "running"}))
    assert compare.command(args, "tive", 2, run)[3:] == ["run", "--resume", str(run), "--quiet"]
    assert not compare.finished(run)
    (run / "state.json").write_text(json.dumps({"status": "finished"}))
    (run / "metrics.json").write_text("{}")
    assert compare.finished(run)


def test_claims_are_paired_by_seed_and_judged_against_seed_noise(tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "out"
    # adapt_inf forgets 0.10 / 0.20, random 0.30 / 0.30 (seeds 0, 1), random seed 2 has no partner
    for seed, f_ai, f_rand, a_ai, a_rand in ((0, 0.1, 0.3, 0.5, 0.6), (1, 0.2, 0.3, 0.7, 0.6)):
        fake_run(runs, "adapt_inf", seed, [[0.8, 0.1], [0.6, 0.9]], {"avg_accuracy": a_ai, "forgetting": f_ai,
                 "samples_trained": [5, 5]}, rare_selected=1)
        fake_run(runs, "random", seed, [[0.8, 0.1], [0.6, 0.9]], {"avg_accuracy": a_rand, "forgetting": f_rand,
                 "samples_trained": [5, 5]}, rare_selected=1)
    fake_run(runs, "random", 2, [[0.8, 0.1], [0.6, 0.9]], {"avg_accuracy": 0.0, "forgetting": 0.9,
             "samples_trained": [5, 5]}, rare_selected=1)
    for name, a in (("adapt_inf_lite", 0.3), ("random_lite", 0.4)):  # LITE against its control, one seed
        fake_run(runs, name, 0, [[0.8, 0.1], [0.6, 0.9]], {"avg_accuracy": a, "samples_trained": [1, 1]},
                 rare_selected=1)
    args = argparse.Namespace(stream="default", rows=["random", "adapt_inf", "adapt_inf_lite", "random_lite"],
                              seeds=[0, 1, 2], runs=runs, out=out, config=Path("configs/demo.yaml"), scale=1.0)
    md = compare.write_results(args, compare.collect(args)).read_text()
    assert "| LITE: A at least `random` LITE's | `adapt_inf_lite` 30.0 | `random_lite` 40.0 | -10.0 | 1 | " \
           "fails (1 seed) |" in md
    # forgetting differences -0.2, -0.1: mean -15.0, std 7.1 -> the claim (lower) holds
    assert "| less forgetting than `random` | `adapt_inf` 15.0 ± 7.1 | `random` 30.0 ± 0.0 | -15.0 ± 7.1 | 2 | holds |" in md
    # A differences -0.1, +0.1: mean 0 -> within seed noise; rare-skill score: 1.0 vs 1.0 (seed 0), 0 vs 0
    assert "| rare skills fare better than under `random` | `adapt_inf` 50.0 ± 70.7 | `random` 50.0 ± 70.7 | " \
           "0.0 ± 0.0 | 2 | equal |" in md
    assert "`full`" not in md.split("claims on this stream")[1]  # rows that did not run: no claim


def test_verdict():
    assert compare.verdict([0.3, 0.1], +1) == "holds"          # mean 0.2 > std 0.14
    assert compare.verdict([0.3, 0.1], -1) == "fails"
    assert compare.verdict([0.0, 0.0, 0.0], +1) == "equal"
    assert compare.verdict([0.3, -0.1], +1) == "within seed noise"  # mean 0.1 < std 0.28
    assert compare.verdict([-0.05], +1) == "fails (1 seed)"


def test_one_command_writes_the_table_of_every_stream(tmp_path, monkeypatch):
    runs, out = tmp_path / "runs", tmp_path / "out"
    for stream, a in (("default", 0.5), ("alt", 0.25)):
        fake_run(runs, "random", 0, [[0.8, 0.1], [0.6, 0.9]], {"avg_accuracy": a, "samples_trained": [5, 5]},
                 rare_selected=1, stream=stream)
    monkeypatch.setattr(sys, "argv", ["compare.py", "--tables-only", "--seeds", "0", "--runs", str(runs),
                                      "--out", str(out)])
    compare.main()
    assert "| `random` | 1 | 50.0 |" in (out / "default.md").read_text()
    assert "| `random` | 1 | 25.0 |" in (out / "alt.md").read_text()
    assert (out / "alt" / "accuracy_matrices.png").is_file()
