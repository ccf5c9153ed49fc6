"""How well ``hindsight``'s need tracks what the model gets wrong (issue 19's diagnostics).

Round t's budget splits by each task's need, measured on the pool with the model after round t−1.
A task's eval score after round t−1 says what that model gets wrong; this compares the two for every
task already trained (a new task's need is ≈ 1 whatever it is, nothing to check), over every round
and run given: the need on the whole pool (what the method uses), and on the ``--fewest`` samples
trained fewest times before the round (the never-trained first: closest to held out, since the rest
were fitted in training). Per variant: mean(need − error), the mean absolute difference and the
correlation, in points of %.

    python experiments/need_calibration.py runs/compare/{default,alt}/hindsight-s{0,1,2,3,4}
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from adapt.features.store import FeatureStore
from adapt.io import read_json, read_parquet
from adapt.layout import RunLayout
from adapt.methods.hindsight import task_need


def fewest_trained(times: np.ndarray, k: int) -> np.ndarray:
    """Positions of the samples trained fewest times, widened to whole ties until at least ``k``
    (all of them when fewer than ``k``)."""
    times = np.asarray(times)
    if len(times) <= k:
        return np.arange(len(times))
    cut = np.sort(times)[k - 1]
    return np.flatnonzero(times <= cut)


def calibration_rows(run_dir: Path, fewest: list[int]) -> list[dict]:
    """One row per (round ≥ 1, task trained before): the task's eval error after round t−1 and its
    answer-error need on the whole pool and on each ``fewest`` subset (in %), flagged samples left out."""
    layout = RunLayout(run_dir)
    rows = []
    for t in layout.trained_rounds():
        files = layout.round(t)
        detail_path = files.method("hindsight").samples
        if t == 0 or not detail_path.is_file():
            continue
        detail = read_parquet(detail_path, columns=["uid", "task", "loss", "flagged", "times_trained"])
        tokens = FeatureStore(files.features).scores()[["uid", "answer_tokens"]]
        detail = detail.merge(tokens, on="uid")
        scores = read_json(layout.round(t - 1).eval)["scores"]
        for task, g in detail[~detail["flagged"]].groupby("task"):
            if not g["times_trained"].any() or task not in scores:
                continue
            row = {"run": f"{run_dir.parent.name}/{run_dir.name}", "round": t, "task": task, "error": 100 * (1 - scores[task]),
                   "pool": 100 * task_need(g["loss"], "answer_error", g["answer_tokens"])}
            for k in fewest:
                sub = g.iloc[fewest_trained(g["times_trained"].to_numpy(), k)]
                row[f"fewest {k}"] = 100 * task_need(sub["loss"], "answer_error", sub["answer_tokens"])
            rows.append(row)
    return rows


def summary(table: pd.DataFrame, variants: list[str]) -> pd.DataFrame:
    """Per variant: bias, mean absolute difference and correlation against the eval error."""
    out = []
    for v in variants:
        d = table[v] - table["error"]
        out.append({"need on": v, "mean(need − error)": d.mean(), "mean |need − error|": d.abs().mean(),
                    "correlation": float(np.corrcoef(table[v], table["error"])[0, 1])})
    return pd.DataFrame(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path, help="run directories of selection.method=hindsight")
    ap.add_argument("--fewest", nargs="+", type=int, default=[20, 50, 200],
                    help="sizes of the fewest-trained subsets (default: %(default)s)")
    args = ap.parse_args()
    table = pd.DataFrame([r for run in args.runs for r in calibration_rows(run, args.fewest)])
    if table.empty:
        raise SystemExit("no round of a hindsight run with a task trained before: nothing to compare")
    variants = ["pool", *(f"fewest {k}" for k in args.fewest)]
    print(f"{len(table)} (run, round, task) of {table['run'].nunique()} runs; need = answer error, in %")
    print(summary(table, variants).round(3).to_string(index=False))
    print("\nper task, mean over runs and rounds:")
    print(table.groupby("task")[["error", *variants]].mean().round(1).to_string())


if __name__ == "__main__":
    main()
