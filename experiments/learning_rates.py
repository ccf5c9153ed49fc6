"""How fast each task is learned in its own round, from the runs' digests (issue 19's diagnostics).

The round a task's dataset arrives, its eval error goes from e₀ (the model before the round: the
accuracy matrix's previous row, or the base model's score in round 0) to e₁ (the round's row), with
x of its samples trained. Under a learning curve e = e₀·exp(−r·x) its rate is r = ln(e₀ / e₁) / x per
sample (errors floored at ``--floor``: a score of 100% is one eval split's worth of learning, not
infinite). Per stream and task, for each row given: x, e₀ → e₁ and r (per 1,000 samples), mean ±
std over the seeds. The digests are the ones the results tables read (``experiments/results/runs``),
so a fresh clone prints what the README quotes:

    python experiments/learning_rates.py --rows random hindsight

A second table per stream covers the whole run: per task, the samples of it trained over all the
rounds, its score after the last round and, for a row whose selector measured rates (``hindsight``
with ``budget.split: gain``), the rate it used (per 1,000 samples), mean ± std over the seeds; the
README's paragraph on that candidate quotes

    python experiments/learning_rates.py --rows hindsight_gain hindsight --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
from compare import mean_std, trained_per_task  # the results tables' mean ± std (sample std)

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "experiments" / "results" / "runs"


def own_round_rates(digest: dict, floor: float) -> dict[str, tuple[int, float, float, float]]:
    """Per task, in the round its dataset arrives: (samples of it trained, error before, error after,
    rate per sample ln(e₀ / e₁) / x with both errors floored at ``floor``)."""
    acc, before = digest["accuracy_matrix"], digest["accuracy_before"]
    out = {}
    for j, task in enumerate(digest["tasks"]):
        e0 = 1.0 - (acc[j - 1][j] if j > 0 else before[j])
        e1 = 1.0 - acc[j][j]
        x = int(digest["selected_per_dataset"][j].get(task, 0))
        rate = math.log(max(e0, floor) / max(e1, floor)) / x if x else math.nan
        out[task] = (x, e0, e1, rate)
    return out


def whole_run(digest: dict) -> dict[str, tuple[int, float, float]]:
    """Per task: (samples of it trained over all the rounds, its score after the last round, the
    learning rate per sample the selector used for it, NaN where the digest keeps none)."""
    last = digest["accuracy_matrix"][-1]
    rates: dict[str, float] = {}
    for used in digest.get("task_rates") or []:
        for task, rate in used.items():
            rates.setdefault(task, rate)  # measured once, at the task's first round
    trained = trained_per_task(digest) or {}
    return {task: (int(trained.get(task, 0)), last[j], rates.get(task, math.nan))
            for j, task in enumerate(digest["tasks"])}


def digests(runs: Path, stream: str, row: str, seeds: list[int] | None) -> list[dict]:
    """The row's digests on the stream, those of ``seeds`` only when given, in seed order."""
    paths = sorted((runs / stream).glob(f"{row}-s*.json"), key=lambda p: int(p.stem.rsplit("-s", 1)[1]))
    return [json.loads(p.read_text()) for p in paths if seeds is None or int(p.stem.rsplit("-s", 1)[1]) in seeds]


def whole_run_table(runs: Path, stream: str, rows: list[str], seeds: list[int] | None) -> list[list[str]]:
    """Markdown rows: task, then per row samples trained over the run, the last score (%) and the
    rate the selector used (per 1,000 samples; "—" where none), mean ± std over its seeds."""
    per_row = {row: [whole_run(d) for d in digests(runs, stream, row, seeds)] for row in rows}
    tasks = next((list(d[0]) for d in per_row.values() if d), [])
    out = []
    for task in tasks:
        cells = [task]
        for row in rows:
            vals = [d[task] for d in per_row[row]]
            cells += [mean_std([v[0] for v in vals], scale=1.0, digits=0), mean_std([v[1] for v in vals]),
                      mean_std([v[2] for v in vals], scale=1000.0, digits=2)]
        out.append(cells)
    return out


def rate_table(runs: Path, stream: str, rows: list[str], floor: float, seeds: list[int] | None = None) -> list[list[str]]:
    """Markdown rows: task, then per row x, e₀ → e₁ (%) and r per 1,000 samples, mean ± std over its seeds."""
    per_row = {row: [own_round_rates(d, floor) for d in digests(runs, stream, row, seeds)] for row in rows}
    tasks = next((list(d[0]) for d in per_row.values() if d), [])
    out = []
    for task in tasks:
        cells = [f"{task}"]
        for row in rows:
            vals = np.asarray([d[task] for d in per_row[row]], dtype=np.float64)
            if not len(vals):
                cells += ["—"] * 3
                continue
            x, e0, e1, r = vals.T
            cells += [f"{x.mean():.0f}", f"{100 * e0.mean():.1f} → {100 * e1.mean():.1f}",
                      mean_std(r.tolist(), scale=1000.0, digits=2)]
        out.append(cells)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stream", nargs="+", default=["default", "alt"])
    ap.add_argument("--rows", nargs="+", default=["random", "hindsight"])
    ap.add_argument("--runs", type=Path, default=RUNS, help="the digests, <runs>/<stream>/<row>-s<S>.json")
    ap.add_argument("--floor", type=float, default=0.005, help="errors below this count as this (a fraction)")
    ap.add_argument("--seeds", nargs="+", type=int, help="these seeds only (default: every digest of the row)")
    args = ap.parse_args()
    for stream in args.stream:
        seeds = {row: len(digests(args.runs, stream, row, args.seeds)) for row in args.rows}
        counts = ", ".join(f"{row} {n}" for row, n in seeds.items())
        print(f"\n{stream} (each task in its own round; seeds: {counts})\n")
        print_table(["task"] + [f"{row} {c}" for row in args.rows for c in ("x", "error %", "r per 1,000")],
                    rate_table(args.runs, stream, args.rows, args.floor, args.seeds))
        print(f"\n{stream} (over the whole run; seeds: {counts})\n")
        print_table(["task"] + [f"{row} {c}" for row in args.rows for c in ("trained", "last score %", "rate used per 1,000")],
                    whole_run_table(args.runs, stream, args.rows, args.seeds))


def print_table(head: list[str], rows: list[list[str]]) -> None:
    print("| " + " | ".join(head) + " |")
    print("| --- |" + " ---: |" * (len(head) - 1))
    for cells in rows:
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
