"""Adapt-∞ (Maharana et al. 2024, arXiv 2410.10636; METHODS.md, Adapt-∞ items 2–6), one round:
pseudo-skill clusters of the gradient features → every expert scores the pool → each cluster
picks its expert (entropy criterion, or ``fixed:<expert>``) → the budget is split over clusters →
a sampler (CCS by default) draws each cluster's share by its expert's score.

Needs ``features.enabled: true`` (the round's feature store, which also holds the loss-based
scores). The experts' scores are stored in ``rounds/<t>/scores.parquet``, apart from the decisions
in ``selection.parquet``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from adapt.errors import AdaptError
from adapt.io import write_with_atomic
from adapt.selection.base import SELECTORS, SelectionContext, Selector, selection_frame
from adapt.selection.budget import BUDGET_SPLITS
from adapt.selection.clustering import cluster
from adapt.selection.expert_choice import choose_expert
from adapt.selection.samplers import SAMPLERS


@SELECTORS.register("adapt_inf")
class AdaptInf(Selector):
    name = "adapt_inf"
    needs_model = True
    needs_features = True

    def select(self, ctx: SelectionContext) -> pd.DataFrame:
        from adapt.features.store import FeatureStore
        from adapt.scoring import SCORERS, ScoringContext

        sc = ctx.config.selection
        store_dir = ctx.run_dir / "rounds" / str(ctx.round) / "features"
        if not (store_dir / "meta.json").is_file():
            raise AdaptError("selection.method=adapt_inf needs the round's gradient features: set features.enabled=true")
        store = FeatureStore(store_dir)
        uids = ctx.pool["uid"].tolist()
        if store.uids() != uids:
            raise AdaptError(f"{store_dir}: features of another pool; remove the folder to recompute")
        clusters = cluster(store.normalized(), sc.k, ctx.seed)
        samples = ctx.extras["pool"].samples(uids) if "image_grounding" in sc.experts else []
        sctx = ScoringContext(samples=samples or [_Uid(u) for u in uids], store=store,
                              model=ctx.model.model if ctx.model is not None else None,
                              family=ctx.model.family if ctx.model is not None else None,
                              max_length=ctx.config.model.max_length,
                              batch_size=ctx.config.evaluation.batch_size)
        scores = {e: SCORERS.get(e)(sctx) for e in sc.experts}
        table = pd.DataFrame({"uid": uids, "cluster": clusters.labels, **scores})
        write_with_atomic(ctx.run_dir / "rounds" / str(ctx.round) / "scores.parquet",
                          lambda tmp: table.to_parquet(tmp, index=False))

        rng = np.random.default_rng(ctx.seed)
        members = [np.flatnonzero(clusters.labels == c) for c in range(clusters.k)]
        chosen = [self._expert(sc.expert_choice, {e: v[m] for e, v in scores.items()}) for m in members]
        stds = [float(np.std(scores[e][m])) if len(m) else 0.0 for e, m in zip(chosen, members)]
        quotas = BUDGET_SPLITS.get(sc.budget_split)([len(m) for m in members], ctx.budget, stds=stds)
        selected = np.zeros(len(uids), dtype=bool)
        expert_col = np.empty(len(uids), dtype=object)
        score_col = np.full(len(uids), np.nan)
        for m, e, q in zip(members, chosen, quotas):
            expert_col[m] = e
            score_col[m] = scores[e][m]
            if q > 0:
                selected[m[SAMPLERS.get(sc.sampler)(scores[e][m], q, rng)]] = True
        return selection_frame(ctx.pool, selected, scores=score_col, clusters=clusters.labels, experts=expert_col)

    def prune(self, active: pd.DataFrame, limit: int, seed: int, round_dir) -> tuple[list[str], str] | None:
        """SemDeDup inside the round's clusters on the gradient features (METHODS.md item 7): keep
        ``limit`` samples, each cluster its share by size, the least redundant first."""
        from adapt.features.store import FeatureStore
        from adapt.selection.pruning import semdedup_keep

        store_dir = round_dir / "features"
        sel_path = round_dir / "selection.parquet"
        if not (store_dir / "meta.json").is_file() or not sel_path.is_file():
            return None
        store = FeatureStore(store_dir)
        sel = pd.read_parquet(sel_path, columns=["uid", "cluster"])
        uids = active["uid"].tolist()
        if store.uids() != uids or sel["uid"].tolist() != uids:
            return None  # the pool changed since the features: fall back to the loop's default
        keep = semdedup_keep(store.normalized(), sel["cluster"].to_numpy(), limit)
        dropped = np.setdiff1d(np.arange(len(uids)), keep)
        return [uids[i] for i in dropped], "semdedup (adapt_inf)"

    @staticmethod
    def _expert(rule: str, scores: dict[str, np.ndarray]) -> str:
        if rule.startswith("fixed:"):
            name = rule.split(":", 1)[1]
            if name not in scores:
                raise AdaptError(f"selection.expert_choice: {name!r} is not among selection.experts")
            return name
        if rule != "entropy":
            raise AdaptError(f"selection.expert_choice: {rule!r} (use entropy or fixed:<expert>)")
        return choose_expert(scores)[0] if len(next(iter(scores.values()))) else next(iter(scores))


class _Uid:
    """A stand-in sample carrying only a uid (the stored-score experts need nothing else)."""

    def __init__(self, uid: str) -> None:
        self.uid = uid
        self.images = ()
