"""Adapt-∞ as its released code runs it (issue 18; adymaharana/adapt-inf, ``data_selection/adapt-inf.py``):
SemDeDup's keep split (``assign_budget_to_cluster``) and its judging order (arrival, or the
commented-out distance to the centroid), and the released expert choice (``get_dist_entropy``,
``get_mwp_score``) beside ours. Every expected value is worked by hand in the comments."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from adapt.errors import UnknownNameError
from adapt.selection.expert_choice import (EXPERT_CHOICES, choose_expert, choose_expert_released,
                                           choose_for_cluster, histogram_entropy, released_entropy)
from adapt.selection.pruning import PRUNE_SPLITS, semdedup_keep

from tolerances import assert_sums_close

EPS = 2.0**-52  # np.finfo(float).eps; log2(EPS) = -52 exactly
EMPTY_BIN = -EPS * math.log2(EPS)  # what each empty bin adds to the released entropy: 52·2⁻⁵²


# ---------------------------------------------------------------------------------------------- keep split


def test_prune_split_uniform_and_proportional_by_hand():
    uniform, proportional = PRUNE_SPLITS.get("uniform"), PRUNE_SPLITS.get("proportional")
    # uniform, smallest first: the 3-cluster gets min(3, ⌈60/3⌉ = 20) = 3; 57 left over 2 clusters:
    # the 40-cluster gets ⌈57/2⌉ = 29; the 200-cluster the 28 left. (The reference: 20 + ⌈17/2⌉ = 29
    # for both larger clusters, 61 kept.)
    assert uniform([3, 40, 200], 60) == [3, 29, 28]
    assert uniform([200, 3, 40], 60) == [28, 3, 29]  # the same, whatever the clusters' order
    # proportional: 60·3/243 = 0.741, 60·40/243 = 9.877, 60·200/243 = 49.383 → floors 0, 9, 49 (58);
    # the 2 left by largest remainder: .877 (the 40-cluster), .741 (the 3-cluster)
    assert proportional([3, 40, 200], 60) == [1, 10, 49]
    # every cluster holds ⌈61/3⌉ = 21: 21, then ⌈40/2⌉ = 20, 20 (the reference: 21 each, 63)
    assert uniform([30, 40, 50], 61) == [21, 20, 20]


@pytest.mark.parametrize("split,want", [("uniform", [28, 3, 29]), ("proportional", [49, 1, 10])])
def test_semdedup_keeps_each_clusters_hand_worked_count(split, want):
    rng = np.random.default_rng(3)
    labels = rng.permutation(np.repeat([0, 1, 2], [200, 3, 40]))  # sizes by label 200, 3, 40, interleaved
    x = rng.normal(size=(243, 8)).astype(np.float32)
    kept = semdedup_keep(x, labels, keep=60, split=split)
    assert len(set(kept.tolist())) == len(kept) == 60
    assert np.bincount(labels[kept], minlength=3).tolist() == want
    if split == "uniform":  # the default
        assert np.array_equal(semdedup_keep(x, labels, keep=60), kept)


def test_semdedup_refuses_unknown_order_and_split():
    x, lab = np.eye(3, dtype=np.float32), np.zeros(3, dtype=int)
    with pytest.raises(UnknownNameError, match="unknown prune order 'random'; known: arrival, centroid"):
        semdedup_keep(x, lab, 2, order="random")
    with pytest.raises(UnknownNameError, match="unknown prune split 'score_std'; known: proportional, uniform"):
        semdedup_keep(x, lab, 2, split="score_std")


# ---------------------------------------------------------------------------------------------- order


def test_centroid_order_keeps_the_far_one_of_a_near_pair_2d():
    """a = (cos 10°, sin 10°), b = (1, 0), c = (0, 1), arriving a, b, c; keep 2.

    Arrival: M_a = −inf, M_b = cos 10° ≈ .985, M_c = max(cos 80°, cos 90°) ≈ .174 → keep a, c.
    Centroid m = ((1 + cos 10°)/3, (1 + sin 10°)/3); for unit rows |x − m|² = 1 − 2 x·m + |m|², so the
    farthest has the smallest x·m: c (1 + sin 10°)/3 < b (1 + cos 10°)/3 < a (1 + cos 10° + sin 10°)/3.
    Order c, b, a: M_c = −inf, M_b = cos 90° = 0, M_a = max(cos 80°, cos 10°) ≈ .985 → keep c, b."""
    t = math.radians(10)
    x = np.array([[math.cos(t), math.sin(t)], [1, 0], [0, 1]], dtype=np.float32)
    lab = np.zeros(3, dtype=int)
    assert semdedup_keep(x, lab, 2, order="arrival").tolist() == [0, 2]
    assert semdedup_keep(x, lab, 2, order="centroid").tolist() == [1, 2]
    assert semdedup_keep(x, lab, 1, order="centroid").tolist() == [2]  # c, first in the order


def test_centroid_order_ties_3d():
    """r0 = r1 = e3, r2 = e1, r3 = e2 (every number below is dyadic, so exact).

    Centroid (1/4, 1/4, 1/2): |e3 − m|² = 1/16 + 1/16 + 1/4 = 6/16, |e1 − m|² = |e2 − m|² = 9/16 + 1/16
    + 4/16 = 14/16. Farthest first, ties by arrival: r2, r3, r0, r1, with M = −inf, e2·e1 = 0,
    e3·e1 = e3·e2 = 0, e3·e3 = 1. Smallest M, ties by that order: r2, r3, r0, r1.
    Arrival: M = −inf, 1, 0, 0 → r0, r2, r3, r1."""
    x = np.array([[0, 0, 1], [0, 0, 1], [1, 0, 0], [0, 1, 0]], dtype=np.float32)
    lab = np.zeros(4, dtype=int)
    assert semdedup_keep(x, lab, 1, order="centroid").tolist() == [2]  # the distance tie r2/r3: arrival
    assert semdedup_keep(x, lab, 2, order="centroid").tolist() == [2, 3]  # the M tie r3/r0: the order's
    assert semdedup_keep(x, lab, 3, order="centroid").tolist() == [0, 2, 3]
    assert semdedup_keep(x, lab, 2, order="arrival").tolist() == [0, 2]
    assert semdedup_keep(x, lab, 3, order="arrival").tolist() == [0, 2, 3]


def test_adapt_inf_prune_passes_order_and_split_and_records_them(tmp_path):
    """The selector's prune reads the round's store and clusters and drops what semdedup_keep drops,
    in the context's order and split (the 3-D rows above as cluster 0, keep 2 of 4 + 1)."""
    from adapt.features.store import FeatureStore
    from adapt.layout import RoundLayout
    from adapt.methods.adapt_inf import AdaptInf
    from adapt.selection.base import PruneContext

    uids = [f"a/{i}" for i in range(5)]
    x = np.array([[0, 0, 1], [0, 0, 1], [1, 0, 0], [0, 1, 0], [1, 1, 1]], dtype=np.float32)
    files = RoundLayout(tmp_path / "rounds/0")
    store = FeatureStore.create(files.features, uids, 3, columns=("loss",), dtype="float32")
    store.write_rows(np.arange(5), x, np.zeros((5, 1), dtype=np.float32))
    pd.DataFrame({"uid": uids, "cluster": [0, 0, 0, 0, 1]}).to_parquet(files.selection)
    active = pd.DataFrame({"uid": uids})
    # uniform over sizes [4, 1], keep 3: the 1-cluster whole, 2 for cluster 0
    for order, dropped in [("centroid", ["a/0", "a/1"]), ("arrival", ["a/1", "a/3"])]:
        got = AdaptInf().prune(PruneContext(0, active, 3, 0, files, files.features, "gradient", order=order,
                                            split="uniform"))
        assert got.uids == dropped
        assert got.reason == f"semdedup on gradient (adapt_inf; order {order}, split uniform, index auto)"
    got = AdaptInf().prune(PruneContext(0, active, 2, 0, files, files.features, "gradient", split="proportional"))
    # proportional, keep 2: 2·4/5 = 1.6 and 2·1/5 = .4 → floors 1, 0, the 1 left to cluster 0 (.6 > .4):
    # 2 from cluster 0, arrival keeps r0, r2
    assert got.uids == ["a/1", "a/3", "a/4"] and got.reason.endswith("(adapt_inf; order arrival, split proportional, index auto)")


# ---------------------------------------------------------------------------------------------- expert choice


def test_released_entropy_by_hand():
    """[0, 0, 0, 4]: mean 1, σ = √3, z = −1/√3 (×3) and √3. Edges linspace(−4√3, 4√3, 50), 8√3/49 ≈ .283
    apart; bin 0 (never counted) is (−4√3, −4√3 + .283]: both values are counted, 2.3 apart, so in two
    bins, 3 and 1: H = −(.75 log₂ .75 + .25 log₂ .25) plus 48 empty bins at 52·2⁻⁵² each."""
    h = -(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25))
    abs_terms = h + 48 * EMPTY_BIN
    assert_sums_close(released_entropy(np.array([0, 0, 0, 4.0])), h + 48 * EMPTY_BIN, abs_terms, 50, torch.float64)
    # ×1/10: σ = √.03 ≈ .173, bins over ±.693; z unchanged, so √3 falls outside: one bin of 3, p = 1
    assert released_entropy(np.array([0, 0, 0, 0.4])) == 49 * EMPTY_BIN  # p = 1 and 49 × eps: all exact
    # [−1, 1]/8: σ = 1/8, z = ±1 outside ±.5: nothing counted, 0/0 → NaN; a constant score likewise
    assert math.isnan(released_entropy(np.array([-1, 1.0]) / 8))
    assert math.isnan(released_entropy(np.array([5.0, 5.0, 5.0])))
    # a NaN score counts as 0: [NaN, 0, 0, 4] is [0, 0, 0, 4]
    assert released_entropy(np.array([np.nan, 0, 0, 4.0])) == released_entropy(np.array([0, 0, 0, 4.0]))


def test_scale_moves_the_released_choice_not_ours():
    """Two experts that differ only by scale (×10): standardised, they are the same vector, so our
    entropies are equal (and the first expert wins the tie); the released bins follow σ, so the
    larger-σ expert keeps its 2 bins and the smaller one counts only 1 (above)."""
    small, big = np.array([0, 0, 0, 0.4]), np.array([0, 0, 0, 4.0])
    h = -(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25))
    assert histogram_entropy(small) == histogram_entropy(big)
    assert_sums_close(histogram_entropy(big), h, h, 2, torch.float64)
    scores = {"ppl": small, "el2n": big}
    assert choose_expert(scores)[0] == "ppl"
    best, ent = choose_expert_released(scores)
    assert best == "el2n" and ent["el2n"] > 0.8 > 1e-12 > ent["ppl"] > 0
    # np.argmax over the entropies, as the reference: a NaN entropy wins
    best, ent = choose_expert_released({"el2n": big, "grand": np.array([-1, 1.0]) / 8})
    assert best == "grand" and math.isnan(ent["grand"])
    assert choose_for_cluster("entropy_released", scores)[0] == "el2n"
    assert choose_for_cluster("entropy_released", {"ppl": np.zeros(0), "el2n": np.zeros(0)}) == ("ppl", {})
    assert EXPERT_CHOICES.names() == ["entropy", "entropy_released", "fixed"]


def test_adapt_inf_round_with_the_released_choice():
    from adapt.methods.adapt_inf import adapt_inf_round

    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 8))
    # ppl spread ×100 (released bins too wide), el2n ×0.05 (only the centre counted), grand ×1
    scores = {"ppl": 100 * rng.normal(size=120), "el2n": 0.05 * rng.normal(size=120), "grand": rng.normal(size=120)}
    r = adapt_inf_round(x, scores, 30, k=3, seed=0, expert_choice="entropy_released")
    for c in range(3):
        rows = r.labels == c
        assert r.experts[c] == choose_expert_released({e: v[rows] for e, v in scores.items()})[0]
        assert r.entropies[c] == choose_expert_released({e: v[rows] for e, v in scores.items()})[1]
    assert int(r.selected.sum()) == 30
