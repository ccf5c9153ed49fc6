"""Splitting a round's budget over clusters (METHODS.md, Adapt-∞ item 5).

Every split returns integer counts that sum to ``min(budget, Σ sizes)`` and never exceed a
cluster's size: a cluster smaller than its share is taken whole and the shortfall goes to the rest.
"""

from __future__ import annotations

import math

import numpy as np

from adapt.registry import Registry


def split_uniform(sizes: list[int], budget: int) -> list[int]:
    """The authors' split: ⌈B/k⌉ each, from the smallest cluster up; a cluster smaller than its
    share is taken whole and the share of the clusters left is recomputed."""
    sizes = [int(s) for s in sizes]
    remaining = min(int(budget), sum(sizes))
    out = [0] * len(sizes)
    order = sorted(range(len(sizes)), key=lambda i: (sizes[i], i))
    for left, i in zip(range(len(order), 0, -1), order):
        take = min(sizes[i], math.ceil(remaining / left)) if remaining > 0 else 0
        out[i] = take
        remaining -= take
    return out


def split_weighted(sizes: list[int], weights: list[float], budget: int) -> list[int]:
    """Shares proportional to ``weights`` (largest remainder), capped at each size, the excess
    given again to the uncapped clusters in proportion to their weights."""
    sizes_a = np.asarray(sizes, dtype=np.int64)
    w = np.asarray(weights, dtype=np.float64)
    w = np.where(np.isfinite(w) & (w > 0), w, 0.0)
    remaining = min(int(budget), int(sizes_a.sum()))
    out = np.zeros(len(sizes_a), dtype=np.int64)
    open_ = sizes_a > 0
    while remaining > 0 and open_.any():
        ww = np.where(open_, w, 0.0)
        if ww.sum() == 0:  # no weight left: spread evenly over what is open
            ww = open_.astype(np.float64)
        ideal = remaining * ww / ww.sum()
        share = np.floor(ideal).astype(np.int64)
        rest = remaining - int(share.sum())
        order = np.lexsort((np.arange(len(ideal)), -(ideal - share)))  # largest remainder, then index
        for i in order[:rest]:
            share[i] += 1
        room = sizes_a - out
        take = np.minimum(share, room)
        out += take
        remaining -= int(take.sum())
        open_ = (sizes_a - out) > 0
        if (take == share).all():
            break
    return out.tolist()


def split_proportional(sizes: list[int], budget: int) -> list[int]:
    """Shares proportional to cluster size."""
    return split_weighted(sizes, [float(s) for s in sizes], budget)


def split_score_std(sizes: list[int], stds: list[float], budget: int) -> list[int]:
    """Shares proportional to the spread (std) of the chosen expert's scores in each cluster."""
    return split_weighted(sizes, stds, budget)


BUDGET_SPLITS: Registry = Registry("budget split")
BUDGET_SPLITS.register("uniform")(lambda sizes, budget, stds=None: split_uniform(sizes, budget))
BUDGET_SPLITS.register("proportional")(lambda sizes, budget, stds=None: split_proportional(sizes, budget))
BUDGET_SPLITS.register("score_std")(
    lambda sizes, budget, stds=None: split_score_std(sizes, stds if stds is not None else [1.0] * len(sizes), budget))
