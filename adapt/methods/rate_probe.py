"""``hindsight``'s learning-rate probe (``selection.hindsight.budget.split: gain``; ours, issue 19):
how fast a task's need falls with the samples trained on it, measured at the task's first round,
before the round trains it.

A copy of the round's model (the model after round t−1, :func:`~adapt.methods.reference.warm_up`)
gets a fresh LoRA adapter trained as the round trains (``training.epochs``) on x of the task's
samples; L before and after is the need (hindsight's ``task_need``) of as many of
its other samples, and r = ln(L_before / L_after) / x, the rate of an exponential learning curve
L(x) = L·exp(−r·x) through the two points (at least 0: a need that rose is no learning). The
adapter stays in ``rounds/<t>/hindsight/probe-<k>/`` (a resumed round loads it instead of training
again); the round's ``selector.json`` keeps each task's rate and the probe's figures.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from adapt.layout import run_model_ref
from adapt.selection.base import SelectionContext, phase_seed

NEED_FLOOR = 1e-6  # ln of a need of exactly 0


@dataclass(frozen=True)
class ProbeResult:
    """One task's probe: the samples trained and held out, the need before and after, the rate."""

    samples: int
    held_out: int
    need_before: float
    need_after: float
    rate: float

    def summary(self) -> dict[str, Any]:
        return {k: round(v, 8) if isinstance(v, float) else v for k, v in asdict(self).items()}


def learning_rate(before: float, after: float, samples: int) -> float:
    """r = max(ln(L_before / L_after), 0) / x, both needs floored at 1e-6."""
    if samples <= 0:
        raise ValueError("a learning rate needs at least one sample trained")
    return max(math.log(max(before, NEED_FLOOR) / max(after, NEED_FLOOR)), 0.0) / samples


def probe_split(rows: np.ndarray, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The rows trained on (``size``, at most half of ``rows``) and as many others held out, at random."""
    order = rng.permutation(np.asarray(rows))
    x = min(int(size), len(order) // 2)
    return np.sort(order[:x]), np.sort(order[x : 2 * x])


def probe_rate(ctx: SelectionContext, task: str, index: int, rows: np.ndarray, size: int,
               need_of: Callable[[np.ndarray, np.ndarray], float]) -> ProbeResult | None:
    """Probe ``task`` (its pool ``rows``; ``index`` names its folder) at the round's settings, the
    need of the held-out samples ``need_of(losses, answer tokens)``; None when it has fewer than two
    samples."""
    from adapt.features.extract import answer_scores
    from adapt.methods.reference import warm_up

    seed = phase_seed(ctx.seed, ctx.round, f"probe/{task}")
    train, held = probe_split(rows, size, np.random.default_rng(seed))
    if not len(train):
        return None
    uids = ctx.pool["uid"].to_numpy(dtype=object)
    held_samples = ctx.data.samples(list(uids[held]))
    cfg = ctx.config

    def need(bundle: Any) -> float:
        loss, tokens = answer_scores(bundle.model, bundle.family, held_samples, cfg.model.max_length,
                                     cfg.features.batch_size, progress=ctx.progress, desc=f"probe {task} need")
        return need_of(loss, tokens)

    before = need(ctx.model)
    probed = warm_up(ctx.model, ctx.data.samples(list(uids[train])), cfg, seed,
                     ctx.round_files("hindsight").method("hindsight").probe(index), progress=ctx.progress,
                     desc=f"probe {task}", base_ref=run_model_ref(ctx.round - 1), epochs=cfg.training.epochs)
    after = need(probed)
    del probed
    return ProbeResult(len(train), len(held), before, after, learning_rate(before, after, len(train)))
