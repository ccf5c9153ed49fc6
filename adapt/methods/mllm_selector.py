"""MLLM-Selector (Ma et al. 2025, arXiv 2503.20502; METHODS.md, MLLM-Selector).

The paper's code is not public; this is **our reading of the paper**, as METHODS.md documents it:

- a *seed model*: a copy of the round's model fine-tuned one epoch on a random share
  ``seed_fraction`` (0.1) of the round's active pool, the new dataset included, each round
  (METHODS.md: the paper fine-tunes a seed model before it scores); its adapter and the rows it was
  trained on are kept in ``rounds/<t>/mllm_selector/`` (:mod:`adapt.methods.reference`).
  ``seed_fraction`` 0: the round's model, trained on the earlier rounds, and its features stand in
  (it has not seen the new data, so necessity then means "new");
- necessity(x) = the seed model's answer loss on x: what it still gets wrong is what it needs;
- groups = k-means clusters of the gradient features (``groups``);
- a fraction α of the budget goes to the highest necessity overall; the rest is spread over the
  groups in proportion to group size and filled by necessity inside each group (grouped sampling
  for diversity).

As an expert in Adapt-∞'s pool, ``mllm_selector`` scores each sample by its necessity under the
round's model (the stored answer loss of the round's gradient pass; no seed model).
"""

from __future__ import annotations

import numpy as np

from adapt.scoring.base import SCORERS, ScoringContext, stored_column
from adapt.selection.base import SELECTORS, Selection, SelectionContext, Selector, selection_frame
from adapt.selection.budget import split_weighted
from adapt.selection.clustering import cluster
from adapt.methods.reference import reference_store


def mllm_selector_pick(necessity: np.ndarray, groups: np.ndarray, budget: int, alpha: float = 0.5) -> np.ndarray:
    """The selected mask: the round(α·b) highest necessities, then the rest of ``b`` over the
    groups ∝ group size (largest remainder, capped at what a group has left), each group's share
    by necessity."""
    nec = np.asarray(necessity, dtype=np.float64)
    n = len(nec)
    budget = min(int(budget), n)
    order = np.lexsort((np.arange(n), -nec))  # highest necessity first, ties by row
    selected = np.zeros(n, dtype=bool)
    selected[order[: int(round(alpha * budget))]] = True
    labels = np.asarray(groups)
    names = np.unique(labels)
    left = [order[(labels[order] == g) & ~selected[order]] for g in names]  # each group's rows, best first
    quotas = split_weighted([len(r) for r in left], [float((labels == g).sum()) for g in names],
                            budget - int(selected.sum()))
    for rows, q in zip(left, quotas):
        selected[rows[:q]] = True
    return selected


def seed_rows(n: int, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """The seed model's random subset: round(fraction·n) rows."""
    m = int(round(fraction * n))
    return np.sort(rng.choice(n, size=min(m, n), replace=False)).astype(np.int64) if m > 0 else np.zeros(0, np.int64)


@SCORERS.register("mllm_selector")
def score_mllm_selector(ctx: ScoringContext) -> np.ndarray:
    """Necessity: the round's model's mean answer loss on the sample."""
    return stored_column(ctx, "loss")


@SELECTORS.register("mllm_selector")
class MllmSelector(Selector):
    """MLLM-Selector as a continual strategy (our reading of the paper; see the module docstring)."""

    name = "mllm_selector"
    needs_model = True

    def needs_features(self) -> bool:
        """Only without a seed model (``seed_fraction`` 0): then the round's features are read."""
        return self.config.selection.mllm_selector.seed_fraction == 0

    def select(self, ctx: SelectionContext) -> Selection:
        st = ctx.settings
        warm = seed_rows(len(ctx.pool), st.seed_fraction, np.random.default_rng(ctx.seed))
        store = reference_store(ctx, "mllm_selector", warm, desc=f"round {ctx.round} mllm_selector seed")
        necessity = store.scores()["loss"].to_numpy(dtype=np.float64)
        groups = cluster(store.features(), st.groups, ctx.seed).labels
        selected = mllm_selector_pick(necessity, groups, ctx.budget, st.alpha)
        return Selection(selection_frame(ctx.pool, selected, scores=necessity, clusters=groups,
                                         experts=np.full(len(groups), "mllm_selector", dtype=object)),
                         {"seed_samples": int(len(warm)), "groups": int(len(np.unique(groups))),
                          "top_overall": int(round(st.alpha * min(ctx.budget, len(necessity))))})
