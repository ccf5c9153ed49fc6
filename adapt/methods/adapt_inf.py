"""Adapt-∞ (Maharana et al. 2024, arXiv 2410.10636; METHODS.md, Adapt-∞ items 2–6), one round:
pseudo-skill clusters of the gradient features → every expert scores the pool → each cluster
picks its expert (``entropy``: the histogram entropy of the standardised scores; ``entropy_released``:
the released code's scale-dependent version; or ``fixed:<expert>``; :mod:`adapt.selection.expert_choice`)
→ the budget is split over clusters → a sampler (CCS by default) draws each cluster's share by its
expert's score. When ``pool.max_size`` is exceeded, :meth:`AdaptInf.prune` runs SemDeDup inside the
round's clusters (:mod:`adapt.selection.pruning`; ``pool.prune_split``, ``pool.prune_order``).

Needs ``features.enabled: true`` (the round's feature store, which also holds the loss-based
scores). The experts' scores are stored in ``rounds/<t>/scores.parquet``, apart from the decisions
in ``selection.parquet``, and each cluster's expert, entropies and quota in ``experts.json``.
Settings: ``selection.adapt_inf`` (:class:`~adapt.config.AdaptInfSettings`). Reference code:
adymaharana/adapt-inf (``adapt-inf.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from adapt.errors import InputError
from adapt.io import read_parquet, write_json_atomic, write_with_atomic
from adapt.scoring import SCORERS
from adapt.selection.base import (SELECTORS, PruneContext, Pruning, Selection, SelectionContext, Selector,
                                  selection_frame)
from adapt.selection.budget import BUDGET_SPLITS
from adapt.selection.clustering import cluster
from adapt.selection.expert_choice import choose_for_cluster
from adapt.selection.inputs import round_store, scoring_context
from adapt.selection.samplers import SAMPLERS


@dataclass
class AdaptInfRound:
    """One round's decisions: the cluster of each row, the expert each cluster chose (with every
    expert's histogram entropy there), each cluster's quota, and the selected rows."""

    labels: np.ndarray                 # [n] cluster of each row
    experts: list[str]                 # [k] the expert of each cluster
    entropies: list[dict[str, float]]  # [k] every expert's entropy in the cluster ({} under fixed:; NaN possible
                                       # under entropy_released, stored as null in experts.json)
    quotas: list[int]                  # [k] samples drawn from each cluster
    selected: np.ndarray               # [n] bool

    def expert_of_rows(self) -> np.ndarray:
        return np.asarray(self.experts, dtype=object)[self.labels] if len(self.labels) else np.zeros(0, object)

    def score_of_rows(self, scores: Mapping[str, np.ndarray]) -> np.ndarray:
        """Each row's score under its cluster's expert."""
        out = np.full(len(self.labels), np.nan)
        for c, e in enumerate(self.experts):
            rows = self.labels == c
            out[rows] = np.asarray(scores[e], dtype=np.float64)[rows]
        return out


def adapt_inf_round(features: np.ndarray, scores: Mapping[str, np.ndarray], budget: int, *,
                    k: int | str = 10, expert_choice: str = "entropy", budget_split: str = "uniform",
                    sampler: str = "ccs", seed: int = 0) -> AdaptInfRound:
    """Adapt-∞'s selection on a pool's gradient ``features`` [n, d] and the experts' ``scores``
    (each [n]): spherical k-means clusters → each cluster's expert → the budget over clusters →
    the sampler inside each cluster. Deterministic for ``seed``."""
    clusters = cluster(features, k, seed)
    rng = np.random.default_rng(seed)
    members = [np.flatnonzero(clusters.labels == c) for c in range(clusters.k)]
    picks = [choose_for_cluster(expert_choice, {e: np.asarray(v)[m] for e, v in scores.items()}) for m in members]
    experts = [e for e, _ in picks]
    stds = [float(np.std(np.asarray(scores[e])[m])) if len(m) else 0.0 for e, m in zip(experts, members)]
    split = BUDGET_SPLITS.get(budget_split, "selection.adapt_inf.budget_split")
    quotas = [int(q) for q in split([len(m) for m in members], budget, stds=stds)]
    selected = np.zeros(len(clusters.labels), dtype=bool)
    draw = SAMPLERS.get(sampler, "selection.adapt_inf.sampler")
    for m, e, q in zip(members, experts, quotas):
        if q > 0:
            selected[m[draw(np.asarray(scores[e], dtype=np.float64)[m], q, rng)]] = True
    return AdaptInfRound(clusters.labels, experts, [h for _, h in picks], quotas, selected)


@SELECTORS.register("adapt_inf")
class AdaptInf(Selector):
    name = "adapt_inf"
    needs_model = True

    def needs_features(self) -> bool:
        return True

    def select(self, ctx: SelectionContext) -> Selection:
        st = ctx.settings
        if isinstance(st.k, int) and st.k > len(ctx.pool):
            raise InputError(f"selection.adapt_inf.k={st.k} clusters, but round {ctx.round}'s active pool holds "
                             f"{len(ctx.pool)} samples: give a smaller k (or k: auto)")
        store = round_store(ctx, "adapt_inf")
        sctx = scoring_context(ctx, store)
        scores = {e: SCORERS.get(e, "selection.adapt_inf.experts")(sctx) for e in st.experts}
        result = adapt_inf_round(store.features(), scores, ctx.budget, k=st.k, expert_choice=st.expert_choice,
                                 budget_split=st.budget_split, sampler=st.sampler, seed=ctx.seed)
        table = pd.DataFrame({"uid": sctx.uids, "cluster": result.labels, **scores})
        files = ctx.round_files(self.name)
        write_with_atomic(files.scores, lambda tmp: table.to_parquet(tmp, index=False))
        write_json_atomic(files.experts, {
            "experts": st.experts, "expert_choice": st.expert_choice, "budget_split": st.budget_split,
            "sampler": st.sampler, "clusters": [
                {"cluster": c, "size": int((result.labels == c).sum()), "expert": e, "quota": q,
                 "entropy": {k: round(v, 6) if np.isfinite(v) else None for k, v in h.items()}}
                for c, (e, q, h) in enumerate(zip(result.experts, result.quotas, result.entropies))]})
        return Selection(selection_frame(ctx.pool, result.selected, scores=result.score_of_rows(scores),
                                         clusters=result.labels, experts=result.expert_of_rows()))

    def prune(self, ctx: PruneContext) -> Pruning | None:
        """SemDeDup inside the round's clusters (METHODS.md item 7; :mod:`adapt.selection.pruning`)
        on the store ``ctx.embedding`` (the gradient features, or the hidden states of
        ``pool.prune_embedding: hidden``): keep ``limit`` samples, split over the clusters by
        ``pool.prune_split`` (uniform: the reference's ⌈limit/k⌉ from the smallest cluster up), each
        cluster's least redundant first, judged in ``pool.prune_order`` (arrival, or distance to
        the centroid), their nearest earlier samples found by ``pool.prune_index`` (exact, or an
        approximate index for clusters too large for it). The recorded reason names the embedding,
        the order, the split and the index."""
        from adapt.features.store import FeatureStore
        from adapt.selection.pruning import semdedup_keep

        if not FeatureStore.exists(ctx.embedding) or not ctx.files.selection.is_file():
            return None
        store = FeatureStore(ctx.embedding)
        sel = read_parquet(ctx.files.selection, columns=["uid", "cluster"])
        uids = ctx.active["uid"].tolist()
        if store.uids() != uids or sel["uid"].tolist() != uids:
            return None  # the pool changed since the features: fall back to the loop's default
        keep = semdedup_keep(store.features(), sel["cluster"].to_numpy(), ctx.limit, progress=ctx.progress,
                             order=ctx.order, split=ctx.split, index=ctx.index, seed=ctx.seed)
        dropped = np.setdiff1d(np.arange(len(uids)), keep)
        return Pruning([uids[i] for i in dropped], prune_reason(ctx))


def prune_reason(ctx: PruneContext) -> str:
    """The reason stored beside each pruned sample, e.g. ``semdedup on gradient (adapt_inf; order
    arrival, split uniform, index auto)``."""
    return f"semdedup on {ctx.embedding_name} (adapt_inf; order {ctx.order}, split {ctx.split}, index {ctx.index})"
