"""The three reference strategies of continual instruction tuning.

- ``full``: train on all of D_t each round (plain sequential fine-tuning, the forgetting baseline);
- ``random``: B samples drawn uniformly from the whole active pool (replay of a random subset);
- ``multitask``: train once on the union of all datasets (the upper reference).
"""

from __future__ import annotations

import numpy as np

from adapt.selection.base import SELECTORS, Selection, SelectionContext, Selector, selection_frame


@SELECTORS.register("full")
class FullSequential(Selector):
    """Every sample of the dataset that arrived this round; the budget is ignored."""

    name = "full"

    def select(self, ctx: SelectionContext) -> Selection:
        new = set(ctx.new_uids)
        chosen = ctx.pool["uid"].isin(new).to_numpy()
        return Selection(selection_frame(ctx.pool, chosen))


@SELECTORS.register("random")
class RandomSelector(Selector):
    """``budget`` samples uniformly without replacement from the whole active pool."""

    name = "random"

    def select(self, ctx: SelectionContext) -> Selection:
        rng = np.random.default_rng(ctx.seed)
        n = len(ctx.pool)
        chosen = np.zeros(n, dtype=bool)
        chosen[rng.choice(n, size=min(ctx.budget, n), replace=False)] = True
        return Selection(selection_frame(ctx.pool, chosen))


@SELECTORS.register("multitask")
class Multitask(Selector):
    """All datasets at once, in one round: the multitask upper reference."""

    name = "multitask"
    joint = True

    def select(self, ctx: SelectionContext) -> Selection:
        return Selection(selection_frame(ctx.pool, np.ones(len(ctx.pool), dtype=bool)))
