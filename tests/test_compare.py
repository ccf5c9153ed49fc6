"""experiments/compare.py: which runs it starts or resumes, and the tables it writes from finished
runs, checked against values worked out by hand on made-up run directories."""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))

import analyse_selection  # noqa: E402
import compare  # noqa: E402

TASKS = ["a", "b"]


def fake_pool(rd: Path, selected: list[bool]) -> None:
    """The pool a/0..a/3 with the built-in stream's ground truth (a/0, a/1 rare; a/3 mislabelled;
    near-duplicate groups 0, 0, 1, 2; a/1 text-only) and round 0's selection of it."""
    meta = [{"rare": i < 2, "noisy": i == 3, "dup_group": [0, 0, 1, 2][i], "needs_image": i != 1} for i in range(4)]
    (rd / "pool").mkdir()
    (rd / "rounds" / "0").mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"uid": [f"a/{i}" for i in range(4)], "dataset": "a",
                  "record": [json.dumps({"extra": {"meta": m}}) for m in meta]}).to_parquet(
        rd / "pool" / "samples.parquet")
    pd.DataFrame({"uid": [f"a/{i}" for i in range(4)], "selected": selected}).to_parquet(
        rd / "rounds" / "0" / "selection.parquet")


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
    fake_pool(rd, [i < rare_selected or i == 3 for i in range(4)])
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
    assert "stream scale 1.0, seeds 0, 1)" in md  # the defaults: no stream seed, no overrides
    # chance: "3" scores 2 of 3 on a (numeric: "3.0" is 3), one of "no"/"yes" 1 of 2 on b; in both score tables
    assert md.count("| chance (the best constant answer) | 66.7 | 50.0 |") == 2
    # rare: selected 2 of 3 (seed 0) and 0 of 1 (seed 1): 66.7, 0.0; pool 2 of 4; rare eval item right in seed 0
    assert "| `random` | 33.3 ± 47.1 | 50.0 ± 0.0 | 50.0 ± 70.7 |" in md
    # ground truth: seed 0 took a/0, a/1, a/3: 1 of 3 mislabelled, groups 0 and 2, a/1 text-only;
    # seed 1 took a/3: mislabelled, one group; the pool: 1 of 4 mislabelled
    assert "| `random` | 66.7 ± 47.1 | 25.0 ± 0.0 | 83.3 ± 23.6 | 16.7 ± 23.6 |" in md
    rows = list(csv.DictReader(open(out / "default.csv")))
    assert [(r["row"], r["seed"], float(r["A_rel_multitask"]), r["run_dir"]) for r in rows] == \
        [("random", "0", 0.8, "default/random-s0"), ("random", "1", 0.875, "default/random-s1"),
         ("multitask", "0", 1.0, "default/multitask-s0"), ("multitask", "1", 1.0, "default/multitask-s1")]
    for png in ("accuracy_matrices", "forgetting_per_task", "accuracy_vs_samples"):
        assert (out / "default" / f"{png}.png").stat().st_size > 1000


def test_tables_are_rewritten_from_the_digests_without_the_run_directories(tmp_path, monkeypatch):
    """Each finished run's digest lands in OUT/runs; with the run directories gone (another machine, a
    fresh clone) --tables-only writes the same tables from the digests; a run finished again after its
    digest was written replaces it."""
    runs, out = tmp_path / "runs", tmp_path / "out"
    for seed, a in ((0, 0.75), (1, 0.5)):
        fake_run(runs, "random", seed, [[0.8, 0.1], [0.6, 0.9]], {"avg_accuracy": a, "samples_trained": [5, 5],
                 "wall_seconds": 60.0}, rare_selected=2 - seed)
    argv = ["compare.py", "--tables-only", "--stream", "default", "--runs", str(runs), "--out", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    compare.main()
    md, table = (out / "default.md").read_text(), (out / "default.csv").read_text()
    stored = json.loads((out / "runs" / "default" / "random-s0.json").read_text())
    # seed 0 took a/0, a/1 (rare) and a/3 (mislabelled) of the four; chance as in the hand-worked test above
    assert stored["run_dir"] == "default/random-s0" and stored["avg_accuracy"] == 0.75
    assert stored["truth"]["selected"]["n"] == 3 and stored["truth"]["pool"]["noisy %"] == 25.0
    # per round, dataset and skill (none recorded: ""): pool n, wrong, text-only, rare, groups; selected the same
    assert stored["truth_counts"]["rows"] == [[0, "a", "", 4, 1, 1, 2, 3, 3, 1, 1, 2, 2]]
    assert stored["chance"] == [2 / 3, 0.5]
    # the rare share goes through a percentage and back: two roundings, a few ulps
    assert stored["rare"] == pytest.approx([2 / 3, 0.5, 1.0, 1], rel=1e-15)
    for rd in (runs / "default").iterdir():
        rd.rename(tmp_path / f"gone-{rd.name}")
    compare.main()
    assert (out / "default.md").read_text() == md and (out / "default.csv").read_text() == table
    # seed 1 finished again (a rerun): its new metrics replace the stored digest
    fake_run(runs, "random", 1, [[0.8, 0.1], [0.6, 0.9]], {"avg_accuracy": 0.25, "samples_trained": [5, 5],
             "wall_seconds": 60.0}, rare_selected=0)
    later = (out / "runs" / "default" / "random-s1.json").stat().st_mtime + 1
    os.utime(runs / "default" / "random-s1" / "metrics.json", (later, later))
    compare.main()
    assert json.loads((out / "runs" / "default" / "random-s1.json").read_text())["avg_accuracy"] == 0.25
    assert "| `random` | 2 | 50.0 ± 35.4 |" in (out / "default.md").read_text()


def test_a_started_run_is_resumed_and_a_finished_one_is_skipped(tmp_path):
    args = argparse.Namespace(stream="alt", runs=tmp_path, config=Path("/c.yaml"), scale=0.5, sets=["x=1"],
                              rows=["tive"], seeds=[2])
    [job] = compare.continual_jobs(args)
    run = tmp_path / "alt" / "tive-s2"
    assert job == compare.Job("tive", 2, run, ("selection.method=tive", "features.enabled=false"))
    cmd = compare.command(args, job)
    assert cmd[3:] == ["run", "/c.yaml", "selection.method=tive", "features.enabled=false", "seed=2",
                       "stream.builtin=alt", "stream.scale=0.5", f"stream.data_dir={tmp_path / 'alt' / 'data'}",
                       "x=1", "--run-dir", str(run), "--quiet"]
    run.mkdir(parents=True)
    (run / "state.json").write_text(json.dumps({"status": "running"}))
    assert compare.command(args, job)[3:] == ["run", "--resume", str(run), "--quiet"]
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
    # each row against the random row that trained as many samples: adapt_inf (10 a seed) against random,
    # A -0.1, +0.1 (noise), F -0.2, -0.1 (holds); LITE (2) against random_lite, one seed, no F recorded
    against = md.split("Each row against `random`")[1].split("claims on this stream")[0]
    assert "| `adapt_inf` (pruning to half the data seen) | `random` | 0.0 ± 14.1 | 1/2 | within seed noise | " \
           "-15.0 ± 7.1 | 2/2 | holds |" in against
    assert "| `adapt_inf` LITE (a quarter of the budget) | `random_lite` | -10.0 | 0/1 | fails (1 seed) | — | — | — |" \
        in against
    assert not any(line.startswith("| `random") for line in against.splitlines())  # controls: not against themselves


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
    # --rows and --seeds narrow what runs, not the table: it holds every finished run under --runs
    for seed in (0, 1):
        fake_run(runs, "tive", seed, [[0.9, 0.1], [0.7, 0.9]], {"avg_accuracy": 0.75, "samples_trained": [5, 5]},
                 rare_selected=1)
    monkeypatch.setattr(sys, "argv", ["compare.py", "--tables-only", "--stream", "default", "--rows", "tive",
                                      "--seeds", "1", "--runs", str(runs), "--out", str(out)])
    compare.main()
    md = (out / "default.md").read_text()
    assert "seeds 0, 1)" in md and "| `random` | 1 | 50.0 |" in md and "| `tive` | 2 | 75.0 ± 0.0 |" in md
    assert "| `tive` | `random` | 25.0 | 1/1 | holds (1 seed) | — | — | — |" in md  # paired on seed 0


# ------------------------------------------------------------------------------------ one shot
def test_oneshot_rows_are_the_papers_methods_without_pruning():
    assert list(compare.ONESHOT_ROWS) == ["random", "ppl", "el2n", "entropy", "grand", "image_grounding",
                                          "adapt_inf", "tive", "mllm_selector", "datatailor", "gdo"]
    assert compare.ONESHOT_ROWS["adapt_inf"].overrides == ("selection.method=adapt_inf",)
    assert compare.ONESHOT_ROWS["grand"].overrides == ("selection.method=adapt_inf", "selection.adapt_inf.experts=[grand]",
                                                       "selection.adapt_inf.expert_choice=fixed:grand")
    assert not any("pool.max_size" in o for row in compare.ONESHOT_ROWS.values() for o in row.overrides)


def test_oneshot_run_list_names_and_commands(tmp_path):
    args = argparse.Namespace(stream="alt", runs=tmp_path, config=Path("/c.yaml"), scale=0.5, sets=["x=1"],
                              rows=["random", "tive"], ratios=[0.05, 0.5], seeds=[0, 1])
    jobs = compare.oneshot_jobs(args)
    # rows × ratios × seeds, then multitask once per seed at ratio 1: the continual grid's own run
    assert [(j.row, j.ratio, j.seed, j.run.relative_to(tmp_path).as_posix()) for j in jobs] == [
        ("random", 0.05, 0, "alt-oneshot/random-r0.05-s0"), ("random", 0.05, 1, "alt-oneshot/random-r0.05-s1"),
        ("tive", 0.05, 0, "alt-oneshot/tive-r0.05-s0"), ("tive", 0.05, 1, "alt-oneshot/tive-r0.05-s1"),
        ("random", 0.5, 0, "alt-oneshot/random-r0.5-s0"), ("random", 0.5, 1, "alt-oneshot/random-r0.5-s1"),
        ("tive", 0.5, 0, "alt-oneshot/tive-r0.5-s0"), ("tive", 0.5, 1, "alt-oneshot/tive-r0.5-s1"),
        ("multitask", 1.0, 0, "alt/multitask-s0"), ("multitask", 1.0, 1, "alt/multitask-s1")]
    tive = jobs[2]
    # the stream's data dir is the continual grid's
    assert compare.command(args, tive)[3:] == [
        "run", "/c.yaml", "selection.method=tive", "features.enabled=false", "stream.all_at_once=true",
        "selection.budget=0.05", "seed=0", "stream.builtin=alt", "stream.scale=0.5",
        f"stream.data_dir={tmp_path / 'alt' / 'data'}", "x=1", "--run-dir", str(tive.run), "--quiet"]
    assert jobs[-1].overrides == ("selection.method=multitask",)
    # each run's log beside it, one per ratio
    assert [compare.log_path(j.run).name for j in jobs[:5:4]] == ["random-r0.05-s0.log", "random-r0.5-s0.log"]


def test_run_grid_runs_only_the_jobs_not_finished(tmp_path, monkeypatch):
    """A finished run directory, or a stored digest of the run (its directory on another machine), is
    not run again; each run's digest is stored when it finishes."""
    args = argparse.Namespace(stream="default", runs=tmp_path, rows=["random"], ratios=[0.15], seeds=[0, 1],
                              jobs=2, threads=1, stream_seed=0, scale=1.0, out=tmp_path / "out")
    manifest = tmp_path / "default" / "data" / "stream.json"
    manifest.parent.mkdir(parents=True)
    manifest.write_text("{}")  # the stream's data are there: not written again
    jobs = compare.oneshot_jobs(args)
    done = jobs[1].run  # random-r0.15-s1 finished
    done.mkdir(parents=True)
    (done / "state.json").write_text(json.dumps({"status": "finished"}))
    (done / "metrics.json").write_text("{}")
    stored = tmp_path / "out" / "runs" / "default" / "multitask-s1.json"  # multitask-s1: digested elsewhere
    stored.parent.mkdir(parents=True)
    stored.write_text("{}")
    launched = []

    def launch(a, job, threads):  # each job ends finished: multitask-s0 at A 0.5, random-r0.15-s0 at A 0.25
        launched.append(job.run.name)
        row, seed = job.run.name.rsplit("-s", 1)
        fake_oneshot(tmp_path, row, int(seed), 0.5 if row == "multitask" else 0.25, 10, folder=job.run.parent.name)
        return job, 0, 0.0

    monkeypatch.setattr(compare, "launch", launch)
    compare.run_grid(args, jobs)
    assert sorted(launched) == ["multitask-s0", "random-r0.15-s0"]
    # each run's digest is stored as it finishes, not when the grid ends
    digests = tmp_path / "out" / "runs"
    assert json.loads((digests / "default" / "multitask-s0.json").read_text())["avg_accuracy"] == 0.5
    assert json.loads((digests / "default-oneshot" / "random-r0.15-s0.json").read_text())["avg_accuracy"] == 0.25
    assert stored.read_text() == "{}"  # the digest made elsewhere is kept as it was


def fake_oneshot(runs: Path, run: str, seed: int, A: float, samples: int, folder: str = "default-oneshot",
                 selected: dict | None = None, picked: list[bool] | None = None) -> None:
    """A finished one-shot run ``runs/<folder>/<run>-s<seed>``: one row, both tasks at A; with
    ``picked``, the :func:`fake_pool` and that selection of it."""
    rd = runs / folder / f"{run}-s{seed}"
    rd.mkdir(parents=True)
    if picked is not None:
        fake_pool(rd, picked)
    (rd / "state.json").write_text(json.dumps({"status": "finished"}))
    (rd / "stream.json").write_text(json.dumps({"datasets": [{"name": t} for t in TASKS]}))
    (rd / "metrics.json").write_text(json.dumps({
        "tasks": TASKS, "accuracy_matrix": [[A, A]], "avg_accuracy": A, "config": {"seed": seed},
        "samples_trained": [samples], "rounds_done": 1, "rounds_total": 1,
        **({"selected_per_dataset": [selected]} if selected is not None else {})}))


def test_oneshot_table_from_finished_runs_matches_hand_computed_values(tmp_path, monkeypatch):
    runs, out = tmp_path / "runs", tmp_path / "out"
    # dyadic scores: every quotient by multitask's A and every difference below is exact
    for seed, a in ((0, 1.0), (1, 0.5)):
        fake_oneshot(runs, "multitask", seed, a, 200, folder="default")
    for run, seed, a in (("random-r0.15", 0, 0.5), ("random-r0.15", 1, 0.25),
                         ("ppl-r0.15", 0, 0.25), ("ppl-r0.15", 2, 0.8125),  # seed 2: no multitask, no random
                         ("tive-r0.15", 0, 0.75), ("tive-r0.15", 1, 0.15625),
                         ("gdo-r0.15", 0, 0.625), ("gdo-r0.15", 1, 0.40625)):
        selected = {("tive-r0.15", 0): {"a": 20, "b": 10}, ("tive-r0.15", 1): {"a": 22, "b": 12}}.get((run, seed))
        fake_oneshot(runs, run, seed, a, 30, selected=selected,
                     picked=[True, False, False, True] if (run, seed) == ("tive-r0.15", 0) else None)
    fake_oneshot(runs, "random-r0.5", 0, 0.875, 100)
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(sys, "argv", ["compare.py", "--oneshot", "--tables-only", "--stream", "default",
                                      "--rows", "random", "ppl", "tive", "gdo", "--ratios", "0.15", "0.5",
                                      "--seeds", "0", "1", "2", "--scale", "0.05", "--runs", str(runs),
                                      "--out", str(out)])
    compare.main()
    md = (out / "default_oneshot.md").read_text()
    assert "Made by `python experiments/compare.py --oneshot --stream default --rows random ppl tive gdo " \
           "--ratios 0.15 0.5 --seeds 0 1 2 --scale 0.05` (stream scale 0.05)" in md
    # multitask: A (1.0 + 0.5) / 2 = 75.0, std 0.5 / √2 = 35.4
    assert "| `multitask` (reference: one training on the union) | 2 | 75.0 ± 35.4 | 200 ± 0 |" in md
    at15, at50 = md.split("## 15% of the union")[1].split("## 50% of the union")
    # across the ratios: the "% of multitask" column of each ratio's table (below) and the verdict
    across = md.split("A as % of `multitask`'s at each share")[1].split("## 15% of the union")[0]
    assert [line for line in across.splitlines() if line.startswith("| ")] == [
        "| method | 15% | 50% |", "| --- | ---: | ---: |",
        "| `random` | 50.0 ± 0.0 | 87.5 |",
        "| `ppl` alone, CCS | 25.0 (fails, 1 seed) | — |",
        "| `tive` | 53.1 ± 30.9 (noise) | — |",
        "| `gdo` (minloss) | 71.9 ± 13.3 (holds) | — |"]
    # random: A 0.5, 0.25 -> 37.5 ± 17.7; % of multitask 0.5/1, 0.25/0.5 -> 50.0 ± 0.0
    assert "| `random` | 2 | 37.5 ± 17.7 | 50.0 ± 0.0 | — | — | — | 30 ± 0 |" in at15
    # ppl: A 0.25, 0.8125 -> 53.1 ± 39.8; paired on seed 0 only: 0.25/1 = 25.0, 0.25 - 0.5 = -25.0
    assert "| `ppl` alone, CCS | 2 | 53.1 ± 39.8 | 25.0 | -25.0 | 0/1 | fails (1 seed) | 30 ± 0 |" in at15
    # tive: A 0.75, 0.15625 -> 45.3 ± 42.0; % 0.75, 0.3125 -> 53.1 ± 30.9; Δ 0.25, -0.09375 -> 7.8 ± 24.3 (noise)
    assert "| `tive` | 2 | 45.3 ± 42.0 | 53.1 ± 30.9 | 7.8 ± 24.3 | 1/2 | within seed noise | 30 ± 0 |" in at15
    # gdo: A 0.625, 0.40625 -> 51.6 ± 15.5; % 0.625, 0.8125 -> 71.9 ± 13.3; Δ 0.125, 0.15625 -> 14.1 ± 2.2 (holds)
    assert "| `gdo` (minloss) | 2 | 51.6 ± 15.5 | 71.9 ± 13.3 | 14.1 ± 2.2 | 2/2 | holds | 30 ± 0 |" in at15
    # per task: the mean score over the seeds; tive's mean counts selected (20 + 22) / 2, (10 + 12) / 2
    per_task = at15.split("Per task, mean over the seeds")[1]
    assert "| `multitask` (reference: one training on the union) | 75.0 | 75.0 |" in per_task
    assert "| `random` | 37.5 | 37.5 |" in per_task
    assert "| `tive` | 45.3 (21) | 45.3 (11) |" in per_task
    # ground truth, tive seed 0 alone (the others have no pool): took a/0 and a/3, 1 of 2 mislabelled,
    # groups 0 and 2, none text-only; the pool 1 of 4 mislabelled
    truth = at15.split("What each method took")[1]
    assert "| `tive` | 50.0 | 25.0 | 100.0 | 0.0 |" in truth and "`random`" not in truth
    assert at50.splitlines()[4] == "| `random` | 1 | 87.5 | 87.5 | — | — | — | 100 |"
    assert "`tive`" not in at50  # rows that did not run at a ratio: no line
    rows = list(csv.DictReader(open(out / "default_oneshot.csv")))
    assert [(r["row"], r["ratio"], r["seed"], r["A_pct_multitask"], r["A_minus_random"], r["run_dir"])
            for r in rows] == [
        ("multitask", "1.0", "0", "", "", "default/multitask-s0"),
        ("multitask", "1.0", "1", "", "", "default/multitask-s1"),
        ("random", "0.15", "0", "0.5", "", "default-oneshot/random-r0.15-s0"),
        ("random", "0.15", "1", "0.5", "", "default-oneshot/random-r0.15-s1"),
        ("ppl", "0.15", "0", "0.25", "-0.25", "default-oneshot/ppl-r0.15-s0"),
        ("ppl", "0.15", "2", "", "", "default-oneshot/ppl-r0.15-s2"),
        ("tive", "0.15", "0", "0.75", "0.25", "default-oneshot/tive-r0.15-s0"),
        ("tive", "0.15", "1", "0.3125", "-0.09375", "default-oneshot/tive-r0.15-s1"),
        ("gdo", "0.15", "0", "0.625", "0.125", "default-oneshot/gdo-r0.15-s0"),
        ("gdo", "0.15", "1", "0.8125", "0.15625", "default-oneshot/gdo-r0.15-s1"),
        ("random", "0.5", "0", "0.875", "", "default-oneshot/random-r0.5-s0")]
    assert (out / "default_oneshot" / "accuracy_vs_ratio.png").stat().st_size > 1000
    assert "![A against the share of the union selected](default_oneshot/accuracy_vs_ratio.png)" in md
    # a narrowed command tabulates every finished run all the same: the same table, not a smaller one
    monkeypatch.setattr(sys, "argv", ["compare.py", "--oneshot", "--tables-only", "--stream", "default",
                                      "--rows", "tive", "--ratios", "0.5", "--seeds", "0", "--scale", "0.05",
                                      "--runs", str(runs), "--out", str(out)])
    compare.main()
    assert (out / "default_oneshot.md").read_text() == md


def test_oneshot_refuses_a_continual_row(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["compare.py", "--oneshot", "--rows", "random_pruned"])
    with pytest.raises(SystemExit) as exc:
        compare.main()
    assert exc.value.code == 2


def test_experts_table_counts_each_experts_cluster_rounds(tmp_path):
    """Per row, the cluster-rounds and those that chose each expert (most chosen first) as the range over
    the seeds; a run with one expert configured, or without experts.json, has no row."""
    def run(name: str, experts: list[str], rounds: list[list[str]]) -> dict:
        rd = tmp_path / name
        for t, chosen in enumerate(rounds):
            (rd / "rounds" / str(t)).mkdir(parents=True)
            (rd / "rounds" / str(t) / "experts.json").write_text(json.dumps(
                {"clusters": [{"cluster": c, "expert": e} for c, e in enumerate(chosen)]}))
            (rd / "rounds" / str(t) / "train.json").write_text("{}")
        return {"run_dir": str(rd), "config": {"selection": {"adapt_inf": {"experts": experts}}}}

    both = ["ppl", "entropy"]
    s0 = compare.expert_choices(run("a-s0", both, [["entropy", "ppl", "entropy"], ["entropy"] * 3]))
    s1 = compare.expert_choices(run("a-s1", both, [["ppl", "ppl", "entropy"], ["entropy", "entropy", "ppl"]]))
    assert (s0, s1) == ({"entropy": 5, "ppl": 1}, {"entropy": 3, "ppl": 3})
    assert compare.expert_choices(run("one-s0", ["entropy"], [["entropy"] * 3])) is None
    assert compare.expert_choices({"run_dir": str(tmp_path / "none"), "config": {}}) is None
    # entropy 5 + 3 = 8 before ppl 1 + 3 = 4; cluster-rounds 6 in both seeds
    assert compare.experts_table([("`a`", [s0, s1]), ("`tive`", [None, None])]) == [
        "| run | cluster-rounds | `entropy` | `ppl` |", "| --- | ---: | ---: | ---: |", "| `a` | 6 | 3–5 | 1–3 |", ""]
    assert compare.experts_table([("`tive`", [None])]) == []


def test_analyse_selection_reads_a_digest_as_it_reads_the_run_directory(tmp_path, monkeypatch, capsys):
    """The ground truth a digest keeps (``truth_counts``) gives what the run directory gives, per
    dataset and per skill; a stream that records no near-duplicate groups gets NaN, not 0."""
    fake_run(tmp_path / "runs", "gdo", 0, [[0.5, 0.5]], {"avg_accuracy": 0.5}, rare_selected=1)
    rd = tmp_path / "runs" / "default" / "gdo-s0"
    monkeypatch.setattr(sys, "argv", ["compare.py", "--tables-only", "--stream", "default", "--runs",
                                      str(tmp_path / "runs"), "--out", str(tmp_path / "out")])
    compare.main()
    capsys.readouterr()
    printed = []
    for src in (rd, tmp_path / "out" / "runs" / "default" / "gdo-s0.json"):
        for extra in ([], ["--by", "skill"]):
            monkeypatch.setattr(sys, "argv", ["analyse_selection.py", str(src), *extra])
            analyse_selection.main()
            printed.append(capsys.readouterr().out)
    assert printed[0] == printed[2] and printed[1] == printed[3]
    # a/0 (rare) and a/3 (mislabelled) selected: 2 of 4, one wrong, one rare, groups 0 and 2
    lines = [line.split() for line in printed[0].splitlines()]
    assert ["gdo-s0", "0", "selected", "2", "50.0", "0.0", "50.0", "100.0"] in lines
    assert ["gdo-s0", "0", "pool", "4", "25.0", "25.0", "50.0", "75.0"] in lines
    assert ["gdo-s0", "all", "selected", "2", "50.0", "0.0", "50.0", "100.0"] in lines  # one round: the same
    with pytest.raises(SystemExit, match="nope.json: neither a run directory nor a readable digest"):
        analyse_selection.load_counts(tmp_path / "nope.json")  # one message naming the path, no traceback
    rows = analyse_selection.selection_rows(rd).drop(columns="dup_group")
    assert analyse_selection.summarise(analyse_selection.counts(rows), "pool")["groups /100"] != 0.0  # NaN


def test_hindsight_targets_read_the_reference_from_the_other_rows_at_the_same_seed(tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "out"
    # per seed: random 0.60 / 0.70, multitask 0.80 / 0.90 -> half the gap: 0.70 / 0.80; hindsight 0.75 / 0.82
    for seed, a_h, a_r, a_m in ((0, 0.75, 0.6, 0.8), (1, 0.82, 0.7, 0.9)):
        for name, a in (("hindsight", a_h), ("random", a_r), ("multitask", a_m)):
            fake_run(runs, name, seed, [[0.8, 0.1], [0.6, 0.9]], {"avg_accuracy": a, "forgetting": 0.1,
                     "samples_trained": [5, 5]}, rare_selected=1)
    args = argparse.Namespace(stream="default", rows=["random", "hindsight", "multitask"], seeds=[0, 1], runs=runs,
                              out=out, config=Path("configs/demo.yaml"), scale=1.0)
    md = compare.write_results(args, compare.collect(args)).read_text()
    met = md.split("`hindsight`'s targets")[1]
    # differences 0.05, 0.02: mean 3.5, std 2.1 -> holds
    assert "| A ≥ `random` + ½ (`multitask` − `random`) | 78.5 ± 4.9 | 75.0 ± 7.1 | 3.5 ± 2.1 | 2 | holds |" in met
    assert "| F no higher than `random`'s | 10.0 ± 0.0 | 10.0 ± 0.0 | 0.0 ± 0.0 | 2 | equal |" in met
    assert "pool capped at half" not in met  # hindsight_pruned did not run
    assert "claims on this stream" not in md  # no Adapt-∞ row: no empty claims table


def test_hindsight_ablation_and_overhead_tables_by_hand(tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "out"
    # full: A 0.80 / 0.70, F 0.05 / 0.01; without budget: A 0.74 / 0.69, F 0.01 / 0.00
    for seed, (a_f, f_f), (a_n, f_n) in ((0, (0.80, 0.05), (0.74, 0.01)), (1, (0.70, 0.01), (0.69, 0.00))):
        fake_run(runs, "hindsight", seed, [[0.8, 0.1], [0.6, 0.9]], {
            "avg_accuracy": a_f, "forgetting": f_f, "samples_trained": [5, 5],
            "phase_seconds": {"features": 30.0, "select": 10.0, "train": 100.0 * (seed + 1)}}, rare_selected=1)
        fake_run(runs, "hindsight_no_budget", seed, [[0.8, 0.1], [0.6, 0.9]], {
            "avg_accuracy": a_n, "forgetting": f_n, "samples_trained": [5, 5]}, rare_selected=1)
    args = argparse.Namespace(stream="default", rows=["hindsight", "hindsight_no_budget"], seeds=[0, 1], runs=runs,
                              out=out, config=Path("configs/demo.yaml"), scale=1.0)
    md = compare.write_results(args, compare.collect(args)).read_text()
    # ΔA = -6, -1 -> -3.5 ± 3.5 (within noise); ΔF = -4, -1 -> -2.5 ± 2.1: the full method forgets more, beyond noise
    assert ("| budget by need off (b_t = B·p_t) | `hindsight` | 71.5 ± 3.5 | -3.5 ± 3.5 | 2/2 | within seed noise | 0.5 ± 0.7 | "
            "-2.5 ± 2.1 | 0/2 | fails |") in md
    # (30 + 10) / 100 = 40%, (30 + 10) / 200 = 20% -> 30.0 ± 14.1; the rows without phase times are left out
    assert "| `hindsight` (ours) | 2 | 22.5 ± 10.6 | 7.5 ± 3.5 | 0.0 ± 0.0 | 30.0 ± 14.1 |" in md
    assert "| `hindsight` without budget | " not in md.split("Selection overhead")[1]


def test_header_names_the_redrawn_stream_and_every_run_s_overrides(tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "out"
    fake_run(runs, "random", 0, [[0.8, 0.1], [0.6, 0.9]], {"avg_accuracy": 0.75, "samples_trained": [10, 20]},
             rare_selected=0)
    args = argparse.Namespace(stream="default", rows=["random"], seeds=[0], runs=runs, out=out,
                              config=Path("configs/demo.yaml"), scale=1.0, stream_seed=2,
                              sets=["selection.budget=0.15", "stream.seed=2"])
    md = compare.write_results(args, compare.collect(args)).read_text()
    assert ("stream scale 1.0, stream seed 2 (`--stream-seed 2`), every run with `selection.budget=0.15`, seeds 0)"
            in md)


def test_samples_trained_per_task_summed_over_rounds_by_hand(tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "out"
    # seed 0: a 4 + 2 = 6, b 3; seed 1: a 4 + 4 = 8, b 1 -> a 7 ± 1, b 2 ± 1; random records none: no row
    for seed, rounds in ((0, [{"a": 4}, {"a": 2, "b": 3}]), (1, [{"a": 4}, {"a": 4, "b": 1}])):
        fake_run(runs, "hindsight", seed, [[0.8, 0.1], [0.6, 0.9]], {"avg_accuracy": 0.7, "samples_trained": [4, 5],
                 "selected_per_dataset": rounds}, rare_selected=1)
        fake_run(runs, "random", seed, [[0.8, 0.1], [0.6, 0.9]], {"avg_accuracy": 0.6, "samples_trained": [4, 5]},
                 rare_selected=1)
    args = argparse.Namespace(stream="default", rows=["random", "hindsight"], seeds=[0, 1], runs=runs, out=out,
                              config=Path("configs/demo.yaml"), scale=1.0)
    assert compare.trained_per_task({"selected_per_dataset": [{"a": 4}, {"a": 2, "b": 3}]}) == {"a": 6, "b": 3}
    assert compare.trained_per_task({}) is None
    table = compare.write_results(args, compare.collect(args)).read_text().split("Samples trained on each task")[1]
    assert "| `hindsight` (ours) | 7 ± 1 | 2 ± 1 |" in table.split("\n\n")[1]
    assert "| `random` |" not in table.split("\n\n")[1]


@pytest.mark.parametrize("row", list(compare.ROWS))
def test_every_row_is_a_valid_config(row):
    from adapt.config import load_config

    cfg = load_config("configs/demo.yaml", list(compare.ROWS[row].overrides))
    assert cfg.selection.method in {o.split("=", 1)[1] for o in compare.ROWS[row].overrides
                                    if o.startswith("selection.method=")}


def test_hindsight_rows_pin_the_replay_floor_they_ran_with():
    from adapt.config import load_config

    def budget(row: str):
        return load_config("configs/demo.yaml", list(compare.ROWS[row].overrides)).selection.hindsight.budget

    assert budget("hindsight").floor_weight == "pool" and budget("hindsight").weight == "task"  # the defaults
    assert budget("hindsight_task_floor").floor_weight == "task"  # the first frozen defaults (a226db2)
    assert budget("hindsight_task_floor_no_noise").floor_weight == "task"
    # the settings run before the first freeze had no floor_weight: the floor as the weight
    assert budget("hindsight_need_loss").floor_weight is None and budget("hindsight_need_loss").weight == "pool"
    # every ablation variant and the row it is paired with are rows of the grid
    assert all(v in compare.ROWS and full in compare.ROWS for v, (_, full) in compare.ABLATION.items())


def test_task_rates_read_each_rounds_selector_json(tmp_path):
    # round 0 measured a's rate, round 1 lists a's again and b's; a round without a selector.json
    # gives {}; a run whose selector keeps no rate gives None
    rd = tmp_path / "gain-s0"
    for t, tasks in ((0, {"a": {"rate": 0.002}}), (1, {"a": {"rate": 0.002}, "b": {"rate": 0.0005, "quota": 3}})):
        (rd / "rounds" / str(t)).mkdir(parents=True)
        (rd / "rounds" / str(t) / "selector.json").write_text(json.dumps({"method": "hindsight", "tasks": tasks}))
    (rd / "rounds" / "2").mkdir()
    assert compare.task_rates({"run_dir": str(rd)}) == [{"a": 0.002}, {"a": 0.002, "b": 0.0005}, {}]
    plain = tmp_path / "need-s0"
    (plain / "rounds" / "0").mkdir(parents=True)
    (plain / "rounds" / "0" / "selector.json").write_text(json.dumps({"tasks": {"a": {"quota": 3}}}))
    assert compare.task_rates({"run_dir": str(plain)}) is None


def test_bases_note_counts_pairs_on_random_s_base():
    def run(seed, sha, kernels=None):
        numerics = {} if kernels is None else {"cpu_numerics": {"torch_cpu_capability": kernels}}
        return {"config": {"seed": seed}, "base_model": None if sha is None else {"weights_sha256": sha, **numerics}}

    runs = {"random": [run(0, "aa", "AVX2"), run(1, "bb"), run(2, None), run(4, "ff", "AVX2")],
            "hindsight": [run(0, "aa"), run(1, "cc"), run(2, "dd"), run(3, "ee"), run(4, "ff", "AVX512")],
            "tive": [run(0, None), run(0, "aa", "AVX2")]}
    # s0 same (kernels recorded by one side only); s1 another; s2 random unrecorded; s3 random did not run
    # (not a pair); s4 same weights, other kernels; tive s0 unrecorded, then the same weights and kernels
    assert compare.bases_note(runs) == (
        "Pre-trained bases of the runs paired by seed with `random` (`base_model` in metrics.json): 2 on its base, "
        "2 on another (hindsight s1, hindsight s4), 2 not recorded (runs made before the record existed).")
