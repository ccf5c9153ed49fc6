"""What the selection methods read in a round, in one place: the round's feature store and a
``ScoringContext`` over the round's pool for the experts. (A method's reference pass, a model
fine-tuned on a subset, is :mod:`adapt.methods.reference`.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from adapt.errors import AdaptError
from adapt.selection.base import SelectionContext


def round_store(ctx: SelectionContext, method: str):
    """The round's gradient feature store (``features.enabled``), checked to cover the pool."""
    from adapt.features.store import FeatureStore

    store_dir = ctx.round_files(method).features
    if not FeatureStore.exists(store_dir):
        raise AdaptError(f"selection.method={method} needs the round's gradient features: set features.enabled=true")
    store = FeatureStore(store_dir)
    if store.uids() != ctx.pool["uid"].tolist():
        raise AdaptError(f"{store_dir}: features of another pool; remove the folder to recompute")
    return store


def scoring_context(ctx: SelectionContext, store: Any = None, work_dir: Path | None = None):
    """A ScoringContext over the round's pool, in pool order, with the round's model."""
    from adapt.scoring import ScoringContext

    cfg = ctx.config
    return ScoringContext(
        uids=ctx.pool["uid"].tolist(), load_samples=ctx.data.samples if ctx.data is not None else None, store=store,
        model=ctx.model.model if ctx.model is not None else None,
        family=ctx.model.family if ctx.model is not None else None,
        max_length=cfg.model.max_length, batch_size=cfg.evaluation.batch_size, progress=ctx.progress,
        work_dir=work_dir if work_dir is not None else (ctx.files.dir if ctx.files is not None else None),
        settings=cfg.selection, seed=ctx.seed)


def per_task_rows(tasks: np.ndarray) -> dict[str, np.ndarray]:
    """Row indices of each task, tasks in order of first appearance."""
    tasks = np.asarray(tasks, dtype=object)
    names = list(dict.fromkeys(tasks.tolist()))
    return {t: np.flatnonzero(tasks == t) for t in names}
