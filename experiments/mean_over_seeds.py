"""A markdown table of runs grouped by method: mean ± std over seeds of A, MAA, F, BWT, FWT
(in %), samples trained, and the score of each task right after its own round.

    python experiments/mean_over_seeds.py full=runs/full-s0,runs/full-s1 adapt_inf=runs/ai-s0,runs/ai-s1

Each argument is ``NAME=RUN_DIR[,RUN_DIR...]``; every run's ``metrics.json`` is read with
``adapt.tracking.report.load_run`` (a run that has not finished is refused).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from adapt.tracking.report import load_run  # noqa: E402
from compare import KEYS, diagonal, mean_std  # noqa: E402  (experiments/compare.py: the full grid)

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("groups", nargs="+", help="NAME=RUN_DIR[,RUN_DIR...]")
    args = ap.parse_args()
    groups = {}
    for g in args.groups:
        name, _, dirs = g.partition("=")
        runs = [load_run(d) for d in dirs.split(",") if d]
        for r in runs:
            if r["rounds_done"] < r["rounds_total"]:
                sys.exit(f"{r['run_dir']}: {r['rounds_done']} of {r['rounds_total']} rounds done")
        groups[name] = runs
    print("| run | seeds | " + " | ".join(label for _, label in KEYS) + " | samples trained |")
    print("| --- | ---: | " + " | ".join("---:" for _ in KEYS) + " | ---: |")
    for name, runs in groups.items():
        cells = [mean_std([r.get(k) for r in runs]) for k, _ in KEYS]
        samples = mean_std([float(sum(r["samples_trained"])) for r in runs], scale=1.0, digits=0)
        print(f"| {name} | {len(runs)} | " + " | ".join(cells) + f" | {samples} |")
    tasks = next(iter(groups.values()))[0]["tasks"]
    print()
    print("| run (own-round score) | " + " | ".join(tasks) + " |")
    print("| --- | " + " | ".join("---:" for _ in tasks) + " |")
    for name, runs in groups.items():
        diags = np.array([diagonal(r) for r in runs], dtype=float)
        cells = [mean_std(list(diags[:, j])) for j in range(diags.shape[1])]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print()
    print("| run (after the last round) | " + " | ".join(tasks) + " |")
    print("| --- | " + " | ".join("---:" for _ in tasks) + " |")
    for name, runs in groups.items():
        last = np.array([r["accuracy_matrix"][-1] for r in runs], dtype=float)
        print(f"| {name} | " + " | ".join(mean_std(list(last[:, j])) for j in range(last.shape[1])) + " |")


if __name__ == "__main__":
    main()
