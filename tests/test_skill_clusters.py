"""experiments/skill_clusters.py: the adjusted Rand index of Adapt-∞'s clusters against the built-in
stream's skills and datasets, checked against values worked out by hand from the formula."""

from __future__ import annotations

import json
import sys
from math import comb
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))

import skill_clusters  # noqa: E402

# clusters {0: a a b, 1: b c c}: pairs together in both Σ C(n_ij, 2) = C(2,2) + C(2,2) = 2; in the
# clusters Σ C(a_i, 2) = 3 + 3 = 6, in the labels Σ C(b_j, 2) = 1 + 1 + 1 = 3, of C(6, 2) = 15 pairs:
# ARI = (2 − 6·3/15) / (½(6 + 3) − 6·3/15) = 0.8 / 3.3 = 8/33
CLUSTERS = [0, 0, 0, 1, 1, 1]
SKILLS = ["a", "a", "b", "b", "c", "c"]


def ari_by_formula(x: list, y: list) -> float:
    """Hubert & Arabie's adjusted Rand index from the contingency table, written out."""
    n_ij = pd.crosstab(pd.Series(x), pd.Series(y)).to_numpy()
    index = sum(comb(int(v), 2) for v in n_ij.ravel())
    a = sum(comb(int(v), 2) for v in n_ij.sum(1))
    b = sum(comb(int(v), 2) for v in n_ij.sum(0))
    expected = a * b / comb(len(x), 2)
    return (index - expected) / ((a + b) / 2 - expected)


def test_adjusted_rand_index_by_hand():
    assert ari_by_formula(CLUSTERS, SKILLS) == pytest.approx(8 / 33, rel=1e-15)
    assert skill_clusters.cluster_agreement(np.array(CLUSTERS), np.array(SKILLS)) == pytest.approx(8 / 33, rel=1e-12)
    assert skill_clusters.cluster_agreement(np.array([5, 5, 7, 7]), np.array(["x", "x", "y", "y"])) == 1.0  # renamed
    # one cluster against two labels: every pair is together in the clusters, so the index is its expectation
    assert skill_clusters.cluster_agreement(np.zeros(4, int), np.array(["x", "x", "y", "y"])) == 0.0


def fake_run(root: Path) -> Path:
    """A run directory: six pooled samples of two datasets with meta.skill (one without), round 0
    clustered as CLUSTERS, round 1 without clusters (-1)."""
    uids = [f"d{1 + i // 3}/{i}" for i in range(6)]
    skills = ["a", "a", "b", "b", "c", None]  # d1/a d1/a d1/b | d2/b d2/c (no skill)
    records = [json.dumps({"uid": u, "extra": {"meta": {} if s is None else {"skill": s}}}) for u, s in zip(uids, skills)]
    (root / "pool").mkdir(parents=True)
    pd.DataFrame({"uid": uids, "dataset": [u.split("/")[0] for u in uids], "record": records}).to_parquet(
        root / "pool" / "samples.parquet")
    for t, clusters in ((0, CLUSTERS), (1, [-1] * 6)):
        (root / "rounds" / str(t)).mkdir(parents=True)
        pd.DataFrame({"uid": uids, "cluster": clusters}).to_parquet(root / "rounds" / str(t) / "selection.parquet")
    return root


def test_rounds_table_of_a_run(tmp_path):
    table = skill_clusters.rounds_table(fake_run(tmp_path / "run"))
    assert table["round"].tolist() == [0]  # round 1 has no clusters
    row = table.iloc[0]
    assert (row["n"], row["k"]) == (6, 2)
    # datasets d1 d1 d1 | d2 d2 d2 are exactly the clusters
    assert row["ari_dataset"] == pytest.approx(1.0, rel=1e-12)
    # skills d1/a d1/a d1/b d2/b d2/c, the sample without a skill left out; labels are dataset/skill, so
    # d1/b and d2/b differ: clusters {0: d1/a d1/a d1/b, 1: d2/b d2/c}; Σ C(n_ij, 2) = 1, clusters
    # C(3,2) + C(2,2) = 4, labels C(2,2) = 1, of C(5,2) = 10 pairs: (1 − 0.4) / (2.5 − 0.4) = 2/7
    assert ari_by_formula(CLUSTERS[:5], ["d1/a", "d1/a", "d1/b", "d2/b", "d2/c"]) == pytest.approx(2 / 7, rel=1e-15)
    assert row["ari_skill"] == pytest.approx(2 / 7, rel=1e-12)


def test_rows_over_seeds(tmp_path):
    """Runs named <row>-s<seed> are summarised per row: the mean over rounds of each ARI and A, mean ±
    std over the seeds; a run without metrics.json has no A."""
    runs = [fake_run(tmp_path / name) for name in ("prev-s0", "prev-s1", "solo")]
    # prev-s1's round 0 in clusters [0 0 1 1 2 2]: the samples with a skill are {0: d1/a d1/a, 1: d1/b d2/b,
    # 2: d2/c}; d1/b and d2/b differ, so C(2,2) = 1 pair is together in both, clusters C(2,2) + C(2,2) = 2,
    # labels C(2,2) = 1, of C(5,2) = 10 pairs: (1 − 0.2) / (1.5 − 0.2) = 8/13; against
    # the datasets d1 d1 d1 | d2 d2 d2: clusters [0 0 1 1 2 2]: Σ C(n_ij,2) = 1 + 1 = 2, clusters 3, datasets
    # 6, of 15 pairs: (2 − 1.2) / (4.5 − 1.2) = 8/33
    pd.DataFrame({"uid": [f"d{1 + i // 3}/{i}" for i in range(6)], "cluster": [0, 0, 1, 1, 2, 2]}).to_parquet(
        runs[1] / "rounds" / "0" / "selection.parquet")
    assert ari_by_formula([0, 0, 1, 1, 2], ["d1/a", "d1/a", "d1/b", "d2/b", "d2/c"]) == pytest.approx(8 / 13)
    assert ari_by_formula([0, 0, 1, 1, 2, 2], ["d1"] * 3 + ["d2"] * 3) == pytest.approx(8 / 33)
    for run, a in ((runs[0], 0.70), (runs[1], 0.74)):
        (run / "metrics.json").write_text(json.dumps({"avg_accuracy": a}))
    table = pd.concat([skill_clusters.rounds_table(r) for r in runs], ignore_index=True)
    summary = skill_clusters.over_seeds(table, {r.name: skill_clusters.final_accuracy(r) for r in runs})
    # prev: skill ARI 2/7 = 0.2857 and 8/13 = 0.6154: mean 0.4505, std |2/7 − 8/13|/√2 = 0.2331;
    # datasets 1 and 8/33: mean 0.6212, std 0.5357; A 70 and 74: 72.0 ± 2.8
    assert summary.to_dict("records") == [
        {"row": "prev", "seeds": 2, "ari_skill": "0.451 ± 0.233", "ari_dataset": "0.621 ± 0.536", "A": "72.0 ± 2.8"},
        {"row": "solo", "seeds": 1, "ari_skill": "0.286", "ari_dataset": "1.000", "A": "—"}]
    assert skill_clusters.row_name("adapt_inf_fresh-s12") == "adapt_inf_fresh"
    assert skill_clusters.row_name("adapt_inf-r0.15-s2") == "adapt_inf-r0.15"
