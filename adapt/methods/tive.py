"""TIVE (Liu et al. 2024, arXiv 2403.09559; METHODS.md, TIVE): task-level and instance-level
value from gradient features.

1. A warm-up reference model: a copy of the round's model fine-tuned one epoch on the same number of
   samples from every task, n = ``warmup_fraction``·|D| / #tasks (the authors' 8%).
2. Its per-sample LoRA gradients on ``layers`` (default every self-attention LoRA layer of the
   language model, as simplelifetime/TIVE ``compute_gradient_features.py`` marks ``'lora' in n and
   'self_attn' in n`` trainable): projected features ĝ and the unprojected norm ‖∇ℓ‖₂ (``grand``).
   With ``warmup_fraction`` 0 the round's model stands in: the round's store when
   ``features.layers`` are TIVE's, else TIVE's own store on the round's model (``rounds/<t>/tive/``).
3. Task value V(T) = mean_{s∈T} ‖∇ℓ(s)‖₂ (paper eq. 3).
4. Budget per task n_T ∝ V(T) (paper eq. 5). Where the authors repeat a task whose n_T exceeds |T|,
   we take it whole and give the excess to the other tasks by value: the selection table holds each
   sample once, and repeating samples is what ``training.epochs`` does.
5. Instance value I(s) = mean_{s'∈T} cos(ĝ_s, ĝ_s') (paper eq. 4), computed as Ĝ·mean(Ĝ) in O(N·d)
   instead of the authors' N×N matrix.
6. n_T samples of T drawn without replacement with weights softmax(q·I) (the released q = 0.001 makes
   the draw almost uniform), by Gumbel top-n.

As an expert in Adapt-∞'s pool, ``tive`` scores each sample by its instance value on the round's
features (the round's model stands in for the warm-up model, ``features.layers`` for TIVE's layers).
"""

from __future__ import annotations

import numpy as np

from adapt.features.store import unit_rows
from adapt.scoring.base import SCORERS, ScoringContext, stored_column
from adapt.selection.base import SELECTORS, Selection, SelectionContext, Selector, selection_frame
from adapt.selection.budget import split_weighted
from adapt.methods.reference import reference_store
from adapt.selection.inputs import per_task_rows, scoring_context


def task_values(grad_norms: np.ndarray, tasks: np.ndarray) -> dict[str, float]:
    """V(T): the mean unprojected gradient norm of each task's samples."""
    norms = np.asarray(grad_norms, dtype=np.float64)
    return {t: float(norms[rows].mean()) for t, rows in per_task_rows(tasks).items()}


def instance_values(features: np.ndarray, tasks: np.ndarray) -> np.ndarray:
    """I(s) = mean over s' of the same task of cos(g_s, g_s') (s' = s included) = ĝ_s · mean_T ĝ."""
    out = np.zeros(len(features), dtype=np.float64)
    for rows in per_task_rows(tasks).values():
        g = unit_rows(np.asarray(features)[rows]).astype(np.float64)
        out[rows] = g @ g.mean(axis=0)
    return out


def task_budgets(tasks: np.ndarray, values: dict[str, float], budget: int) -> dict[str, int]:
    """n_T ∝ V(T), a task never above its size, summing to min(budget, N) (largest remainder)."""
    rows = per_task_rows(tasks)
    names = list(rows)
    quotas = split_weighted([len(rows[t]) for t in names], [values[t] for t in names], budget)
    return dict(zip(names, quotas))


def softmax_draw(values: np.ndarray, n: int, q: float, rng: np.random.Generator) -> np.ndarray:
    """n positions drawn one after another without replacement, each with probability ∝
    exp(q · value) among those left — as Gumbel top-n (Efraimidis & Spirakis), which stays exact
    when a large q makes most weights underflow to 0."""
    keys = q * np.asarray(values, dtype=np.float64) + rng.gumbel(size=len(values))
    return np.argsort(-keys, kind="stable")[: min(n, len(keys))]


def warmup_rows(tasks: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """The warm-up set: round(fraction·N / #tasks) random samples of every task (all of a smaller task)."""
    groups = per_task_rows(tasks)
    if fraction <= 0 or not groups:
        return np.zeros(0, dtype=np.int64)
    per_task = max(1, int(round(fraction * len(tasks) / len(groups))))
    picked = [rng.choice(rows, size=min(per_task, len(rows)), replace=False) for rows in groups.values()]
    return np.sort(np.concatenate(picked)).astype(np.int64)


def tive_select(features: np.ndarray, grad_norms: np.ndarray, tasks: np.ndarray, budget: int, q: float = 0.001,
                seed: int = 0) -> tuple[np.ndarray, np.ndarray, dict[str, float], dict[str, int]]:
    """TIVE's choice of ``budget`` rows: (selected mask, instance values, task values, task budgets)."""
    rng = np.random.default_rng(seed)
    values = task_values(grad_norms, tasks)
    inst = instance_values(features, tasks)
    quotas = task_budgets(tasks, values, budget)
    selected = np.zeros(len(tasks), dtype=bool)
    for t, rows in per_task_rows(tasks).items():
        if quotas[t]:
            selected[rows[softmax_draw(inst[rows], quotas[t], q, rng)]] = True
    return selected, inst, values, quotas


@SCORERS.register("tive")
def score_tive(ctx: ScoringContext) -> np.ndarray:
    """TIVE's instance value on the round's gradient features, inside each sample's task."""
    if ctx.store is None:
        raise ValueError("scorer 'tive' reads the feature store: enable features (features.enabled)")
    return instance_values(ctx.store.normalized(), ctx.tasks)


@SELECTORS.register("tive")
class Tive(Selector):
    """TIVE as a continual strategy: each round, a warm-up model on the active pool, then task
    budgets by task value and instances by instance value."""

    name = "tive"
    needs_model = True

    def needs_features(self) -> bool:
        """No warm-up and the round's features taken on TIVE's layers: those features are TIVE's."""
        st = self.config.selection.tive
        return st.warmup_fraction == 0 and st.layers == self.config.features.layers

    def select(self, ctx: SelectionContext) -> Selection:
        st = ctx.settings
        sctx = scoring_context(ctx)
        tasks = sctx.tasks
        rng = np.random.default_rng(ctx.seed)
        warm = warmup_rows(tasks, st.warmup_fraction, rng)
        store = reference_store(ctx, "tive", warm, desc=f"round {ctx.round} tive", layers=st.layers)
        sctx.store = store
        selected, inst, values, quotas = tive_select(store.normalized(), stored_column(sctx, "grand"), tasks,
                                                     ctx.budget, q=st.q, seed=ctx.seed)
        summary = {"warmup_samples": int(len(warm)), "task_value": values, "task_budget": quotas,
                   "layers": store.meta.get("layers"), "lora_weights": store.meta.get("lora_weights")}
        experts = np.full(len(inst), "tive", dtype=object)
        return Selection(selection_frame(ctx.pool, selected, scores=inst, experts=experts), summary)
