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
    n = max(len(rows), 1)
    groups = rows.groupby(["dataset", "dup_group"]).ngroups if "dup_group" in rows else float("nan")
    return {"n": len(rows), "noisy %": 100 * rows["noisy"].sum() / n,
            "text-only %": 100 * (~rows["needs_image"].astype(bool)).sum() / n,
            "rare %": 100 * rows["rare"].sum() / n, "groups /100": 100 * groups / n}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--round", type=int, action="append", help="rounds to show (default: all)")
    args = ap.parse_args()
    pd.set_option("display.width", 200)
    lines, shares = [], []
    for run in args.runs:
        meta = pool_meta(run).set_index("uid")
        layout = RunLayout(run)
        rounds = [t for t in layout.trained_rounds() if layout.round(t).selection.exists()]
        for t in args.round or rounds:
            sel = pd.read_parquet(layout.round(t).selection, columns=["uid", "selected"])
            rows = meta.loc[sel["uid"]]
            picked = rows[sel["selected"].to_numpy()]
            lines.append({"run": run.name, "round": t, "of": "pool", **summarise(rows)})
            lines.append({"run": run.name, "round": t, "of": "selected", **summarise(picked)})
            share = (100 * picked["dataset"].value_counts() / len(picked)).round(1).to_dict()
            pool_share = (100 * rows["dataset"].value_counts() / len(rows)).round(1).to_dict()
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
