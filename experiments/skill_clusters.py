"""How well Adapt-∞'s pseudo-skill clusters recover the built-in stream's known skills.

For each run and round: the adjusted Rand index (Hubert & Arabie 1985; sklearn's
``adjusted_rand_score``) of the clusters in ``rounds/<t>/selection.parquet`` (column ``cluster``)
against each sample's skill (``dataset/skill``, from ``meta.skill`` of the built-in stream's
records) and against its dataset. 1 is the same partition, about 0 no better than chance. Run it on
two runs that differ only in ``features.adapter`` (under ``lora.between_rounds: merge``) to see
whether the previous round's adapter (the reference's) or a fresh one (B = 0: only B-gradients)
gives features that separate skills better:

    python experiments/skill_clusters.py runs/merge-previous runs/merge-fresh

Runs named as compare.py names them (``<row>-s<seed>``) are also summarised per row: the mean over
rounds of each ARI and the run's A, mean ± std over the seeds:

    python experiments/skill_clusters.py runs/compare/default/adapt_inf_{no_prune,fresh}-s{0,1,2}
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import adjusted_rand_score

from adapt.layout import RunLayout
from compare import mean_std


def cluster_agreement(clusters: np.ndarray, labels: np.ndarray) -> float:
    """The adjusted Rand index of two partitions of the same samples (symmetric in its arguments)."""
    return float(adjusted_rand_score(np.asarray(labels).astype(str), np.asarray(clusters)))


def skill_labels(run_dir: Path) -> pd.DataFrame:
    """uid, dataset and skill label (``dataset/skill``; None where the record carries no
    ``meta.skill``) of every sample the run has seen."""
    pool = pd.read_parquet(RunLayout(run_dir).pool.samples, columns=["uid", "dataset", "record"])
    skills = [json.loads(r).get("extra", {}).get("meta", {}).get("skill") for r in pool["record"]]
    return pd.DataFrame({"uid": pool["uid"].to_numpy(), "dataset": pool["dataset"].astype(str).to_numpy(),
                         "skill": [None if s is None else f"{d}/{s}" for d, s in zip(pool["dataset"], skills)]})


def rounds_table(run_dir: Path) -> pd.DataFrame:
    """One row per round with clusters: samples clustered, clusters, ARI against skills and datasets."""
    labels = skill_labels(run_dir).set_index("uid")
    layout = RunLayout(run_dir)
    rows = []
    for t in layout.trained_rounds():
        path = layout.round(t).selection
        if not path.is_file():
            continue
        sel = pd.read_parquet(path, columns=["uid", "cluster"])
        sel = sel[sel["cluster"] >= 0]  # -1: a selector without clusters
        if sel.empty:
            continue
        lab = labels.loc[sel["uid"]]
        known = lab["skill"].notna().to_numpy()
        clusters = sel["cluster"].to_numpy()
        rows.append({"run": Path(run_dir).name, "round": t, "n": len(sel), "k": int(sel["cluster"].nunique()),
                     "ari_skill": cluster_agreement(clusters[known], lab["skill"].to_numpy()[known])
                     if known.any() else float("nan"),
                     "ari_dataset": cluster_agreement(clusters, lab["dataset"].to_numpy())})
    return pd.DataFrame(rows, columns=["run", "round", "n", "k", "ari_skill", "ari_dataset"])


def row_name(run: str) -> str:
    """The row of a run named as compare.py names them, ``<row>-s<seed>``; any other name as it is."""
    return re.sub(r"-s\d+$", "", run)


def over_seeds(table: pd.DataFrame, accuracy: dict[str, float | None]) -> pd.DataFrame:
    """Per row (runs grouped by :func:`row_name`): seeds, the mean over rounds of each ARI and A (in %,
    ``accuracy`` by run name), each as mean ± std over the row's runs."""
    per_run = table.groupby("run", sort=False)[["ari_skill", "ari_dataset"]].mean()
    per_run["A"] = [accuracy.get(run) for run in per_run.index]
    rows = []
    for row, runs in per_run.groupby(row_name, sort=False):
        rows.append({"row": row, "seeds": len(runs), "ari_skill": mean_std(runs["ari_skill"].tolist(), 1.0, 3),
                     "ari_dataset": mean_std(runs["ari_dataset"].tolist(), 1.0, 3),
                     "A": mean_std(runs["A"].tolist())})
    return pd.DataFrame(rows, columns=["row", "seeds", "ari_skill", "ari_dataset", "A"])


def final_accuracy(run_dir: Path) -> float | None:
    """The run's A after its last round (``metrics.json``'s ``avg_accuracy``), None before there is one."""
    path = RunLayout(run_dir).metrics
    return json.loads(path.read_text()).get("avg_accuracy") if path.is_file() else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path)
    args = ap.parse_args()
    table = pd.concat([rounds_table(r) for r in args.runs], ignore_index=True)
    pd.set_option("display.width", 200)
    print(table.round(3).to_string(index=False))
    print()
    print("mean over rounds")
    print(table.groupby("run", sort=False)[["ari_skill", "ari_dataset"]].mean().round(3).to_string())
    summary = over_seeds(table, {Path(r).name: final_accuracy(r) for r in args.runs})
    if (summary["seeds"] > 1).any():
        print()
        print("per row, mean ± std over the seeds (A in %)")
        print(summary.to_string(index=False))


if __name__ == "__main__":
    main()
