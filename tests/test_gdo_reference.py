"""GDO as its authors run it (issue 18): the released ``gdo/build_pair.py``'s image-QA rank inside a
stratum, worked out by hand from its formula, and the robust z-scores per source dataset against
those over the whole pool."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from adapt.data.sample import Sample
from adapt.methods import SCORERS
from adapt.methods.gdo import (base_score, descriptors, gdo_construct, quality, reference_rank, ref_fields, robust_z,
                               sources, standard_z, stratum_rank)
from adapt.scoring import ScoringContext

from tolerances import gamma

# Every expected value below is a float64 expression of at most ~40 operations (log, exp, tanh within a
# few ulp each) on terms of magnitude ≤ 10, evaluated by the code in another order: the two differ by
# less than γ_160·10 ≈ 1.8e-13, while a wrong constant or a wrong term moves them by ≥ 1e-3.
TOL = gamma(160, torch.float64) * 10
K = 1.349  # robust z at the ends of three values: (x − median)/(IQR/1.349), IQR half the range


def sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _s(i: str, q: str, a: str, dataset: str) -> Sample:
    return Sample(f"{dataset}/{i}", dataset, i, ({"from": "human", "value": f"<image>\n{q}"},
                                                  {"from": "gpt", "value": a}), images=("/x.png",), task=dataset)


# Tokens ([A-Za-z0-9_]+, lower case; <image> stripped):
#  s0  q: what color is the cat (5, q_tiny)                           a: black (1, a_tiny)              Open
#  s1  q: how many people are standing near the red bus in this picture (12, q_short)
#      a: the bus the bus the bus the bus (8, a_short; 2 distinct)                                       Open
#  s2  q: which of the choices best describes the trend (8, q_short)  a: b (1, a_tiny)   "choices": MCQ
THREE = [_s("0", "What color is the cat?", "Black.", "vqa"),
         _s("1", "How many people are standing near the red bus in this picture?",
            "the bus the bus the bus the bus", "vqa"),
         _s("2", "Which of the choices best describes the trend?", "B", "chart")]
VDS, PPL, DIST = np.array([0.2, 1.0, 0.6]), np.array([2.0, 4.0, 3.0]), np.array([0.5, 0.2, 0.0])


def _hand_q() -> list[float]:
    """q over the pool: VDS and PPL both sit at (low, high, median), z = (−K, K, 0)."""
    def q(z: float, d: float) -> float:
        return (0.28 * sig(z) + 0.18 * sig(0.6 * z - 0.2 * abs(z)) + 0.14 * math.exp(-abs(z))
                + 0.10 * math.exp(-d) + 0.06 * (1 - math.exp(-d)))
    return [q(-K, 0.5), q(K, 0.2), q(0.0, 0.0)]


def _hand_base() -> list[float]:
    """build_pair.py l. 1141: 1.1·naturalness + 0.85·difficulty + 0.9·alignment + 0.15·source prior."""
    ln = math.log
    # quality_score: −|ln n_q − ln 14| − 1.25·|ln n_a − ln 16| − 1.2·max(0, 0.55 − distinct/n_a)
    nat = [-(ln(14) - ln(5)) - 1.25 * (ln(16) - ln(1)),
           -(ln(14) - ln(12)) - 1.25 * (ln(16) - ln(8)) - 1.2 * (0.55 - 2 / 8),
           -(ln(14) - ln(8)) - 1.25 * (ln(16) - ln(1))]
    # difficulty_score: x = n_q + 0.5·n_a = 5.5, 16, 8.5; exp(−(ln x − ln 22)²/(2·0.85²))
    diff = [math.exp(-(ln(22) - ln(x)) ** 2 / (2 * 0.85 ** 2)) for x in (5.5, 16.0, 8.5)]
    # alignment_score: mean over 6 fields of ln(share); image and Static have share 1 (ln 1 = 0);
    # question_form Open 2/3, MCQ 1/3; q_len q_tiny 1/3, q_short 2/3; a_len a_tiny 2/3, a_short 1/3;
    # source vqa 2/3, chart 1/3
    third, two = ln(1 / 3), ln(2 / 3)
    align = [(0 + 0 + two + third + two + two) / 6,
             (0 + 0 + two + two + third + two) / 6,
             (0 + 0 + third + two + two + third) / 6]
    # source_prior: ln((N + 1)/(c + 1)), N = 3: vqa c = 2, chart c = 1
    spr = [ln(4 / 3), ln(4 / 3), ln(4 / 2)]
    return [1.1 * n + 0.85 * d + 0.9 * a + 0.15 * p for n, d, a, p in zip(nat, diff, align, spr)]


def _hand_rank(q: list[float], base: list[float]) -> list[float]:
    """build_pair.py l. 1143–1160: 0.9·tanh(base/3) + 0.15·clip(z(q), ±4)/4, z with the n − 1 std."""
    m = sum(q) / 3
    s = math.sqrt(sum((x - m) ** 2 for x in q) / 2)
    return [0.9 * math.tanh(b / 3) + 0.15 * max(-4.0, min(4.0, (x - m) / s)) / 4 for x, b in zip(q, base)]


def test_reference_rank_of_three_samples_by_hand():
    q, _ = quality(VDS, PPL, DIST)
    np.testing.assert_allclose(q, _hand_q(), rtol=0, atol=TOL)
    np.testing.assert_allclose(base_score(THREE), _hand_base(), rtol=0, atol=TOL)
    rank = stratum_rank(THREE, q, "reference", "pool")
    np.testing.assert_allclose(rank, _hand_rank(_hand_q(), _hand_base()), rtol=0, atol=TOL)
    # the text heuristics lead: q puts s2 first, the reference puts s1 (the lengths nearest 14 and 16)
    assert np.argsort(-q).tolist() == [2, 1, 0] and np.argsort(-rank).tolist() == [1, 2, 0]
    np.testing.assert_array_equal(stratum_rank(THREE, q, "quality", "pool"), q)


def test_reference_question_form_is_the_word_choice_on_the_normalised_question():
    # MCQ_RE's "\nA." alternatives cannot match after normalize_text collapses the newlines
    forms = [ref_fields(_s("0", q, "A", "d"))["question_form"]
             for q in ("Which animal?\nA. cat\nB. dog", "Which animal? Choices: cat, dog", "Pick one choice")]
    assert forms == ["Open", "MCQ", "MCQ"]


def test_rank_z_of_q_uses_the_sample_std_and_clips_at_four():
    q = np.r_[np.zeros(19), 1.0]  # mean 0.05, sample std √((19·0.05² + 0.95²)/19) = √0.05
    s = math.sqrt(0.05)
    want = np.r_[np.full(19, 0.15 * (-0.05 / s) / 4), 0.15 * 4 / 4]  # 0.95/√0.05 = 4.25, clipped at 4
    np.testing.assert_allclose(reference_rank(np.zeros(20), q), want, rtol=0, atol=TOL)
    np.testing.assert_array_equal(standard_z(np.array([3.0])), [0.0])  # one value: std 1
    # within groups: each pair on its own is at ±1/√2 of its mean
    z = reference_rank(np.zeros(4), np.array([1.0, 2.0, 10.0, 30.0]), np.array(["a", "a", "b", "b"], dtype=object))
    np.testing.assert_allclose(z, 0.15 / 4 * np.array([-1, 1, -1, 1]) / math.sqrt(2), rtol=0, atol=TOL)
    # stratum_rank takes that z per source under z_scope=source, over the pool under z_scope=pool
    four = [_s(str(i), "What is shown here?", "A small dog.", "ab"[i // 2]) for i in range(4)]
    q4 = np.array([1.0, 2.0, 10.0, 30.0])
    text = 0.9 * np.tanh(base_score(four) / 3)
    np.testing.assert_allclose(stratum_rank(four, q4, "reference", "source") - text, z, rtol=0, atol=TOL)
    m, s4 = 43 / 4, math.sqrt(sum((x - 43 / 4) ** 2 for x in q4) / 3)
    np.testing.assert_allclose(stratum_rank(four, q4, "reference", "pool") - text, 0.15 / 4 * (q4 - m) / s4,
                               rtol=0, atol=TOL)


def test_z_per_source_picks_the_new_dataset_s_mid_difficulty_sample_not_its_easiest():
    """A learned source (low perplexity) and a new one (high): one sample of each by quota. Over the
    pool, the median PPL (5) is the new source's easiest sample, which then gets the largest
    difficulty and stability terms; within the source the median is 7."""
    ppl = np.array([1.1, 1.2, 1.3, 1.4, 5.0, 6.0, 7.0, 8.0, 9.0])
    samples = [_s(str(i), "What is shown here?", "A small dog.", "old" if i < 4 else "new") for i in range(9)]
    src = sources(samples)
    # by hand: pool quartiles at positions 2, 4, 6 of the sorted nine: 1.3, 5, 7; new alone: 6, 7, 8
    np.testing.assert_allclose(robust_z(ppl)[4:], (ppl[4:] - 5.0) / (5.7 / 1.349), rtol=0, atol=TOL)
    picked = {}
    for scope in ("pool", "source"):
        q, _ = quality(np.zeros(9), ppl, np.zeros(9), groups=src if scope == "source" else None)
        rank = stratum_rank(samples, q, "reference", scope)
        keys = np.array([str(i) for i in range(9)], dtype=object)
        picked[scope] = np.flatnonzero(gdo_construct(rank, src, keys, 2)).tolist()  # quotas 1 and 1 of 4:5
    np.testing.assert_allclose(quality(np.zeros(9), ppl, np.zeros(9), groups=src)[1]["difficulty"][4:],
                               np.exp(-np.abs(ppl[4:] - 7.0) / (2 / 1.349)), rtol=0, atol=TOL)
    assert picked["pool"][1] == 4 and picked["source"][1] == 6


class _Store:
    """The two things ``descriptors`` reads of a feature store."""

    def __init__(self, uids: list[str], loss: np.ndarray, feats: np.ndarray):
        self._scores, self._feats = pd.DataFrame({"uid": uids, "loss": loss}), feats

    def scores(self) -> pd.DataFrame:
        return self._scores

    def normalized(self) -> np.ndarray:
        return self._feats


@pytest.mark.parametrize("scope", ["source", "pool"])
def test_descriptors_and_the_expert_take_z_in_the_configured_scope(scope):
    from adapt.config import SelectionConfig

    ppl = np.array([1.1, 1.2, 1.3, 1.4, 5.0, 6.0, 7.0, 8.0, 9.0])
    samples = [_s(str(i), "What is shown here?", "A small dog.", "old" if i < 4 else "new") for i in range(9)]
    feats = np.random.default_rng(0).normal(size=(9, 3))
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    ctx = ScoringContext.of_samples(samples, store=_Store([s.uid for s in samples], np.log(ppl), feats),
                                    settings=SelectionConfig(gdo={"z_scope": scope, "coverage_k": 2}))
    ctx.shared("image_grounding", lambda: np.ones(9))  # the blind forward's PPL ratio: VDS = ln 1 = 0
    q, parts, _ = descriptors(ctx)
    # by hand: within old, quartiles 1.175, 1.25, 1.325; within new 6, 7, 8; over the pool 1.3, 5, 7
    if scope == "source":
        z = np.r_[(ppl[:4] - 1.25) / (0.15 / 1.349), (ppl[4:] - 7.0) / (2 / 1.349)]
    else:
        z = (ppl - 5.0) / (5.7 / 1.349)
    np.testing.assert_allclose(parts["difficulty"], np.exp(-np.abs(z)), rtol=0, atol=TOL)
    np.testing.assert_allclose(parts["stability"], [sig(-0.2 * abs(x)) for x in z], rtol=0, atol=TOL)
    np.testing.assert_array_equal(SCORERS.get("gdo")(ctx), q)  # the expert: q


def test_a_stratum_is_filled_in_the_reference_order():
    q, _ = quality(VDS, PPL, DIST)
    one = np.array(["s"] * 3, dtype=object)
    keys = np.array(["a", "b", "c"], dtype=object)
    # hand ranks order s1 > s2 > s0, q orders s2 > s1 > s0
    assert np.flatnonzero(gdo_construct(stratum_rank(THREE, q, "reference", "pool"), one, keys, 1)).tolist() == [1]
    assert np.flatnonzero(gdo_construct(stratum_rank(THREE, q, "quality", "pool"), one, keys, 1)).tolist() == [2]
    assert np.flatnonzero(gdo_construct(stratum_rank(THREE, q, "reference", "pool"), one, keys, 2)).tolist() == [1, 2]


def test_settings_default_to_the_reference():
    from adapt.config import SelectionConfig

    st = SelectionConfig().gdo
    assert (st.ranking, st.z_scope) == ("reference", "source")
    q, _ = quality(VDS, PPL, DIST, groups=sources(THREE))
    assert stratum_rank(THREE, q).tolist() == stratum_rank(THREE, q, "reference", "source").tolist()
