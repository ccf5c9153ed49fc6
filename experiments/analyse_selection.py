"""What each run selected on the built-in stream, from the demo data's ground truth.

The built-in stream records, for every training sample, whether its label is wrong (``noisy``),
whether its question needs the image, whether it is a rare skill, and its near-duplicate group
(``meta`` in the LLaVA records). For each run and round this prints, for the selected samples
against the whole pool: % wrong labels, % text-only questions, % rare skills, and near-duplicate
groups per 100 selected (higher: more diverse); then per dataset the share of the budget.

    python experiments/analyse_selection.py runs/adapt_inf runs/random [--round 5]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from adapt.layout import RunLayout


def pool_meta(run_dir: Path) -> pd.DataFrame:
    """uid, dataset, skill, noisy, needs_image, rare, dup_group of every sample the run has seen."""
    pool = pd.read_parquet(RunLayout(run_dir).pool.samples, columns=["uid", "dataset", "record"])
    meta = [json.loads(r).get("extra", {}).get("meta", {}) for r in pool["record"]]
    df = pd.DataFrame(meta)
    df.insert(0, "uid", pool["uid"].to_numpy())
    df.insert(1, "dataset", pool["dataset"].to_numpy())
    return df


def summarise(rows: pd.DataFrame) -> dict[str, float]:
    """n, % wrong labels, % text-only questions, % rare skills and near-duplicate groups per 100 rows
    (groups counted within each round when the rows carry a ``round`` column); a figure whose
    ground-truth field the stream does not record is NaN."""
    n = max(len(rows), 1)

    def pct(flags: pd.Series) -> float:  # a missing flag (NaN) counts as False
        return 100 * float(flags.eq(True).sum()) / n

    key = [c for c in ("round", "dataset", "dup_group") if c in rows]
    return {"n": len(rows),
            "noisy %": pct(rows["noisy"]) if "noisy" in rows else float("nan"),
            "text-only %": pct(rows["needs_image"].eq(False)) if "needs_image" in rows else float("nan"),
            "rare %": pct(rows["rare"]) if "rare" in rows else float("nan"),
            "groups /100": 100 * rows.groupby(key).ngroups / n if "dup_group" in rows else float("nan")}


def selection_rows(run_dir: Path) -> pd.DataFrame:
    """Every round's pool as the selector saw it: the ground truth of :func:`pool_meta` per row, with
    ``round`` and ``selected`` (one row per sample and round)."""
    meta = pool_meta(run_dir).set_index("uid")
    layout = RunLayout(run_dir)
    frames = []
    for t in layout.trained_rounds():
        path = layout.round(t).selection
        if path.exists():
            sel = pd.read_parquet(path, columns=["uid", "selected"])
            rows = meta.reindex(sel["uid"]).reset_index()
            rows.insert(0, "round", t)
            rows["selected"] = sel["selected"].to_numpy()
            frames.append(rows)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["round", "uid", "selected"])


def over_rounds(run_dir: Path) -> dict[str, dict[str, float]]:
    """:func:`summarise` of the pool and of the selected samples, every round's pooled (a sample
    replayed in two rounds counts twice): ``{"pool": ..., "selected": ...}``."""
    rows = selection_rows(run_dir)
    return {"pool": summarise(rows), "selected": summarise(rows[rows["selected"].astype(bool)])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--round", type=int, action="append", help="rounds to show (default: all)")
    args = ap.parse_args()
    pd.set_option("display.width", 200)
    lines, shares = [], []
    for run in args.runs:
        rows = selection_rows(run)
        for t in args.round or sorted(rows["round"].unique()):
            of_round = rows[rows["round"] == t]
            picked = of_round[of_round["selected"].astype(bool)]
            lines.append({"run": run.name, "round": t, "of": "pool", **summarise(of_round)})
            lines.append({"run": run.name, "round": t, "of": "selected", **summarise(picked)})
            share = (100 * picked["dataset"].value_counts() / len(picked)).round(1).to_dict()
            pool_share = (100 * of_round["dataset"].value_counts() / len(of_round)).round(1).to_dict()
            shares.append({"run": run.name, "round": t, "of": "selected", **share})
            shares.append({"run": run.name, "round": t, "of": "pool", **pool_share})
    table = pd.DataFrame(lines)
    print(table.round(1).to_string(index=False))
    print()
    print("mean over the rounds shown")
    print(table.groupby(["run", "of"], sort=False).mean(numeric_only=True).drop(columns="round").round(1).to_string())
    print()
    print("share of each dataset (%)")
    print(pd.DataFrame(shares).fillna(0).to_string(index=False))


if __name__ == "__main__":
    main()
