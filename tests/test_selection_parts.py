"""Adapt-∞'s selection parts on constructed data, against hand computations: the entropy
criterion, the budget splits, and the samplers (CCS strata, under-full strata, exact budgets)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from adapt.selection.budget import BUDGET_SPLITS, split_proportional, split_uniform, split_weighted
from adapt.selection.expert_choice import choose_expert, histogram_entropy
from adapt.selection.samplers import SAMPLERS, sample_ccs

from tolerances import assert_sums_close, unit_norm_atol


def test_histogram_entropy_by_hand():
    # z = [-1, -1, 1, 1]: two bins of two -> 1 bit
    assert histogram_entropy(np.array([0, 0, 1, 1.0])) == pytest.approx(1.0)
    # z = [-0.577 x3, 1.732]: p = (3/4, 1/4)
    assert histogram_entropy(np.array([0, 0, 0, 1.0])) == pytest.approx(-(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25)))
    assert histogram_entropy(np.array([5.0, 5.0, 5.0])) == 0.0
    # bins over ±4 of the standardised scores: the scale of a score does not matter
    x = np.random.default_rng(0).normal(size=500)
    assert histogram_entropy(1000 * x + 7) == pytest.approx(histogram_entropy(x))


def test_choose_expert_picks_the_most_evenly_filled_histogram():
    best, ent = choose_expert({"ppl": np.array([0, 0, 0, 1.0]), "el2n": np.array([0, 0, 1, 1.0]),
                               "entropy": np.array([2.0, 2, 2, 2])})
    assert best == "el2n" and ent["entropy"] == 0.0
    assert choose_expert({"a": np.array([0, 1.0]), "b": np.array([3, 4.0])})[0] == "a"  # tie: the first


def test_uniform_split_by_hand():
    assert split_uniform([2, 10, 10], 12) == [2, 5, 5]  # 2 < ceil(12/3) = 4: taken whole, 10 left for two
    assert split_uniform([50, 1, 1], 30) == [28, 1, 1]
    assert split_uniform([2, 3], 10) == [2, 3]  # the budget is larger than the pool
    assert split_uniform([4, 4, 4], 10) == [4, 3, 3]  # ceil(10/3) = 4 for the first (by index on ties)
    assert split_uniform([], 5) == []


def test_weighted_splits_by_hand():
    assert split_proportional([10, 30, 60], 10) == [1, 3, 6]
    # cluster 0 wants 10 of 12 but holds 1; the other 11 split 5.5 / 5.5, the remainder to the first
    assert split_weighted([1, 100, 100], [10, 1, 1], 12) == [1, 6, 5]
    assert BUDGET_SPLITS.get("score_std")([5, 5], 4, stds=[3.0, 1.0]) == [3, 1]


@pytest.mark.parametrize("name", BUDGET_SPLITS.names())
@pytest.mark.parametrize("sizes,budget", [([3, 7, 20, 1], 15), ([5, 5], 100), ([0, 9, 4], 9)])
def test_every_split_gives_exactly_the_budget(name, sizes, budget):
    out = BUDGET_SPLITS.get(name)(sizes, budget, stds=[1.0 + i for i in range(len(sizes))])
    assert sum(out) == min(budget, sum(sizes)) and all(0 <= o <= s for o, s in zip(out, sizes))


def test_ccs_takes_one_per_stratum_from_the_top():
    scores = np.arange(100, dtype=float)  # kept after trimming: 5..94; 50 strata of width 1.78
    picked = sample_ccs(scores, 10, np.random.default_rng(0))
    edges = np.linspace(5, 94, 51)
    strata = np.clip(np.searchsorted(edges, scores[picked], side="right") - 1, 0, 49)
    assert sorted(strata.tolist()) == list(range(40, 50))  # one from each of the 10 highest strata


def test_ccs_under_full_strata_and_trimmed_fill():
    scores = np.arange(20, dtype=float)  # trimming drops 0 and 19; every stratum holds at most one
    assert set(sample_ccs(scores, 18, np.random.default_rng(0)).tolist()) == set(range(1, 19))
    got = set(sample_ccs(scores, 19, np.random.default_rng(0)).tolist())
    assert set(range(1, 19)) < got and len(got - set(range(1, 19))) == 1  # one of the trimmed ones


@pytest.mark.parametrize("name", SAMPLERS.names())
@pytest.mark.parametrize("b", [0, 1, 7, 40, 60])
def test_every_sampler_returns_exactly_b_distinct_and_is_seeded(name, b):
    scores = np.random.default_rng(1).gamma(2.0, size=40)
    a = SAMPLERS.get(name)(scores, b, np.random.default_rng(3))
    assert len(a) == min(b, 40) and len(set(a.tolist())) == len(a)
    assert np.array_equal(a, SAMPLERS.get(name)(scores, b, np.random.default_rng(3)))


def test_top_and_bottom():
    s = np.array([0.3, 0.9, 0.1, 0.5])
    assert SAMPLERS.get("top")(s, 2, None).tolist() == [1, 3]
    assert SAMPLERS.get("bottom")(s, 2, None).tolist() == [2, 0]


def _three_skills(n_per: int = 60, d: int = 32, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = np.eye(d)[:3] * 5
    x = np.concatenate([c + rng.normal(scale=0.6, size=(n_per, d)) for c in centres])
    return x, np.repeat(np.arange(3), n_per)


@pytest.mark.numeric
def test_spherical_kmeans_recovers_constructed_clusters_and_is_seeded():
    from sklearn.metrics import adjusted_rand_score

    from adapt.selection.clustering import cluster, spherical_kmeans

    x, truth = _three_skills()
    a = spherical_kmeans(x, 3, seed=5)
    assert adjusted_rand_score(truth, a.labels) == 1.0
    np.testing.assert_allclose(np.linalg.norm(a.centroids, axis=1), 1.0, rtol=0, atol=unit_norm_atol(x.shape[1]))
    assert np.array_equal(a.labels, spherical_kmeans(x, 3, seed=5).labels)  # same seed, same clusters
    assert cluster(x, "auto", seed=0).k == 3
    assert spherical_kmeans(x[:2], 10).k == 2  # k capped at the number of rows


@pytest.mark.numeric
def test_max_cos_to_earlier_equals_the_quadratic_reference():
    from adapt.selection.pruning import max_cos_to_earlier

    x = np.random.default_rng(0).normal(size=(50, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    g = x @ x.T
    ref = np.array([-np.inf] + [g[j, :j].max() for j in range(1, 50)], dtype=np.float32)
    got = max_cos_to_earlier(x, block=7)  # blocks of 7: across and within
    assert got[0] == -np.inf
    # each cosine is a float32 sum of 8 terms with Σ|terms| ≤ 1 (unit rows), and so is their max
    assert_sums_close(got[1:], ref[1:], abs_terms=1.0 + unit_norm_atol(8), n_terms=8)


def test_semdedup_drops_exact_then_near_duplicates_and_keeps_the_cap():
    from adapt.selection.pruning import semdedup_keep

    rng = np.random.default_rng(1)
    base = rng.normal(size=(20, 16))
    exact = base[[2, 5, 9]]  # rows 20, 21, 22: exact repeats
    near = base[[0, 7]] + rng.normal(scale=0.01, size=(2, 16))  # rows 23, 24: near repeats
    x = np.concatenate([base, exact, near])
    labels = np.zeros(len(x), dtype=int)
    kept = semdedup_keep(x, labels, keep=20)
    assert kept.tolist() == list(range(20))  # the 5 later copies go, the originals stay
    kept22 = semdedup_keep(x, labels, keep=22)
    assert set(range(20)) < set(kept22.tolist()) and set(kept22.tolist()) - set(range(20)) <= {23, 24}
    # two clusters of 25 and 75 rows, keep 20: proportional 5 and 15; uniform (the default) ⌈20/2⌉ = 10 each
    y = rng.normal(size=(100, 16))
    lab = np.array([0] * 25 + [1] * 75)
    k = semdedup_keep(y, lab, keep=20, split="proportional")
    assert len(k) == 20 and (k < 25).sum() == 5
    k = semdedup_keep(y, lab, keep=20)
    assert len(k) == 20 and (k < 25).sum() == 10


def _toy_pool(n: int = 240, d: int = 16, k: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((k, d))
    x = (centres[rng.integers(0, k, n)] + 0.2 * rng.standard_normal((n, d))).astype(np.float32)
    scores = {"ppl": rng.random(n), "el2n": rng.beta(2, 5, n), "grand": (rng.random(n) > 0.5).astype(float)}
    return x, scores


def test_adapt_inf_round_is_deterministic_for_a_seed():
    from adapt.methods.adapt_inf import adapt_inf_round

    x, scores = _toy_pool()
    a = adapt_inf_round(x, scores, 60, k=4, seed=3)
    b = adapt_inf_round(x.copy(), {k: v.copy() for k, v in scores.items()}, 60, k=4, seed=3)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.selected, b.selected)
    assert a.experts == b.experts and a.quotas == b.quotas
    assert int(a.selected.sum()) == 60 == sum(a.quotas)
    c = adapt_inf_round(x, scores, 60, k=4, seed=4)
    assert not np.array_equal(a.selected, c.selected)  # another seed draws other samples


def test_adapt_inf_round_entropy_and_fixed_expert():
    from adapt.errors import AdaptError
    from adapt.methods.adapt_inf import adapt_inf_round

    x, scores = _toy_pool()
    r = adapt_inf_round(x, scores, 60, k=4, seed=0)
    for c in range(4):
        rows = r.labels == c
        assert r.experts[c] == choose_expert({e: v[rows] for e, v in scores.items()})[0]
        assert r.quotas[c] == int(r.selected[rows].sum())
    assert "grand" not in r.experts  # a two-valued score fills two bins: lowest entropy
    np.testing.assert_array_equal(r.score_of_rows(scores), np.where(
        np.asarray(r.experts, dtype=object)[r.labels] == "ppl", scores["ppl"], scores["el2n"]))
    f = adapt_inf_round(x, scores, 60, k=4, seed=0, expert_choice="fixed:grand")
    assert f.experts == ["grand"] * 4 and int(f.selected.sum()) == 60
    np.testing.assert_array_equal(f.labels, r.labels)
    with pytest.raises(AdaptError, match="'tive' is not among the experts"):
        adapt_inf_round(x, scores, 60, k=4, expert_choice="fixed:tive")
    with pytest.raises(AdaptError, match="unknown expert choice 'best'; known: entropy, entropy_released, fixed"):
        adapt_inf_round(x, scores, 60, k=4, expert_choice="best")
