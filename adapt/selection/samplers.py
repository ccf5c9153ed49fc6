"""Choosing ``b`` samples of one cluster by their scores (METHODS.md, Adapt-∞ item 6).

``ccs`` (default, coverage-centric sampling, Zheng et al. 2023 as Adapt-∞ uses it): drop the
scores under the 5th and over the 95th percentile, cut the score range into 50 equal-width strata,
and from the highest stratum down take ⌈remaining / strata left⌉ at random from each; an
under-full stratum is taken whole, so the quota of the strata left grows. ``top`` / ``bottom``:
the highest / lowest scores; ``random``: uniform. Every sampler returns exactly
``min(b, len(scores))`` distinct positions; when trimming leaves too few, CCS fills the rest at
random from the trimmed samples.
"""

from __future__ import annotations

import math

import numpy as np

from adapt.registry import Registry

SAMPLERS: Registry = Registry("sampler")
STRATA = 50
TRIM = (5.0, 95.0)


@SAMPLERS.register("ccs")
def sample_ccs(scores: np.ndarray, b: int, rng: np.random.Generator, strata: int = STRATA,
               trim: tuple[float, float] = TRIM) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64)
    n = len(s)
    b = min(int(b), n)
    if b <= 0:
        return np.zeros(0, dtype=np.int64)
    lo, hi = np.percentile(s, trim)
    kept = np.flatnonzero((s >= lo) & (s <= hi))
    chosen: list[int] = []
    if kept.size:
        ks = s[kept]
        edges = np.linspace(ks.min(), ks.max(), strata + 1)
        # stratum of each kept sample, 0 .. strata-1 (the top edge belongs to the last stratum)
        which = np.clip(np.searchsorted(edges, ks, side="right") - 1, 0, strata - 1)
        remaining = b
        for left, k in zip(range(strata, 0, -1), range(strata - 1, -1, -1)):  # highest stratum first
            if remaining <= 0:
                break
            members = kept[which == k]
            quota = math.ceil(remaining / left)
            if len(members) <= quota:
                take = members
            else:
                take = rng.choice(members, size=quota, replace=False)
            chosen.extend(int(i) for i in take)
            remaining -= len(take)
    if len(chosen) < b:  # trimming left too few: fill at random from the rest
        rest = np.setdiff1d(np.arange(n), np.asarray(chosen, dtype=np.int64))
        chosen.extend(int(i) for i in rng.choice(rest, size=b - len(chosen), replace=False))
    return np.asarray(chosen, dtype=np.int64)


@SAMPLERS.register("top")
def sample_top(scores: np.ndarray, b: int, rng: np.random.Generator) -> np.ndarray:
    return np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")[: min(int(b), len(scores))]


@SAMPLERS.register("bottom")
def sample_bottom(scores: np.ndarray, b: int, rng: np.random.Generator) -> np.ndarray:
    return np.argsort(np.asarray(scores, dtype=np.float64), kind="stable")[: min(int(b), len(scores))]


@SAMPLERS.register("random")
def sample_random(scores: np.ndarray, b: int, rng: np.random.Generator) -> np.ndarray:
    return rng.choice(len(scores), size=min(int(b), len(scores)), replace=False).astype(np.int64)
