"""What the selection methods read in a round, in one place: the round's feature store, a
``ScoringContext`` over the round's pool for the experts, and a *reference pass* — a copy of the
round's model fine-tuned on a subset (TIVE's warm-up model, MLLM-Selector's seed model) and the
projected LoRA gradients of the pool under it.

Everything a reference pass computes is kept under ``rounds/<t>/<method>/`` (the adapter in
``warmup/``, the features in the feature-store layout), so a killed run resumes it instead of
starting over.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from adapt.errors import AdaptError
from adapt.selection.base import SelectionContext


def round_dir(ctx: SelectionContext) -> Path:
    if ctx.run_dir is None:
        raise AdaptError("this selector keeps files in the run directory: give SelectionContext.run_dir")
    return Path(ctx.run_dir) / "rounds" / str(ctx.round)


def round_store(ctx: SelectionContext, method: str):
    """The round's gradient feature store (``features.enabled``), checked to cover the pool."""
    from adapt.features.store import FeatureStore

    store_dir = round_dir(ctx) / "features"
    if not (store_dir / "meta.json").is_file():
        raise AdaptError(f"selection.method={method} needs the round's gradient features: set features.enabled=true")
    store = FeatureStore(store_dir)
    if store.uids() != ctx.pool["uid"].tolist():
        raise AdaptError(f"{store_dir}: features of another pool; remove the folder to recompute")
    return store


def scoring_context(ctx: SelectionContext, store: Any = None, work_dir: Path | None = None):
    """A ScoringContext over the round's pool, in pool order, with the round's model."""
    from adapt.scoring import ScoringContext

    pool = ctx.extras.get("pool")
    cfg = ctx.config
    return ScoringContext(
        uids=ctx.pool["uid"].tolist(), load_samples=pool.samples if pool is not None else None, store=store,
        model=ctx.model.model if ctx.model is not None else None,
        family=ctx.model.family if ctx.model is not None else None,
        max_length=cfg.model.max_length, batch_size=cfg.evaluation.batch_size, progress=ctx.progress,
        work_dir=work_dir if work_dir is not None else (round_dir(ctx) if ctx.run_dir is not None else None),
        settings=cfg.selection, seed=ctx.seed)


def warm_up(bundle: Any, samples: list, config: Any, seed: int, adapter_dir: Path, progress: bool = False,
            desc: str = "warm-up") -> Any:
    """A copy of ``bundle``'s model, adapters merged, with a fresh LoRA adapter fine-tuned for one
    epoch on ``samples`` (the run's ``lora`` and ``training`` settings), saved to ``adapter_dir``.
    When ``adapter_dir`` holds one already (a resumed run), it is loaded instead of trained again.
    The round's own model is left untouched. Trains in this process alone (no DDP)."""
    from accelerate.utils import set_seed
    from peft import PeftModel

    from adapt.io import write_dir_atomic
    from adapt.models.lora import add_new_adapter, load_adapter
    from adapt.training.trainer import train_round

    model = copy.deepcopy(bundle.model)
    if isinstance(model, PeftModel):
        model = model.merge_and_unload()
    if (adapter_dir / "adapter_config.json").is_file():
        model = load_adapter(model, adapter_dir, trainable=False)
    else:
        set_seed(seed)
        model = add_new_adapter(model, config.lora)
        train_round(model, bundle.family, samples, config.training, None, seed, config.model.max_length,
                    epochs=1.0, desc=desc, progress=progress)
        write_dir_atomic(adapter_dir, model.save_pretrained)
    model.eval()
    return dataclasses.replace(bundle, model=model)


def reference_store(ctx: SelectionContext, name: str, warm_rows: np.ndarray, desc: str):
    """The pool's gradient features under a copy of the round's model fine-tuned on the rows
    ``warm_rows`` of the pool, in ``rounds/<t>/<name>/`` (resumable). No rows: the round's store."""
    from adapt.features.extract import gradient_store
    from adapt.features.store import FeatureStore

    if len(warm_rows) == 0:
        return round_store(ctx, name)
    if ctx.model is None:
        raise AdaptError(f"selection.method={name} fine-tunes a reference model: the selector needs the round's model")
    out = round_dir(ctx) / name
    if (out / "features" / "meta.json").is_file() and FeatureStore(out / "features").complete:
        return FeatureStore(out / "features")
    pool = ctx.extras["pool"]
    uids = ctx.pool["uid"].tolist()
    warm = warm_up(ctx.model, pool.samples([uids[i] for i in warm_rows]), ctx.config, ctx.seed, out / "warmup",
                   progress=ctx.progress, desc=f"{desc} warm-up")
    store = gradient_store(warm.model, warm.family, pool.samples(uids), out / "features", ctx.config.features,
                           ctx.config.seed, ctx.config.model.max_length, progress=ctx.progress,
                           desc=f"{desc} features")
    del warm
    return store


def per_task_rows(tasks: np.ndarray) -> dict[str, np.ndarray]:
    """Row indices of each task, tasks in order of first appearance."""
    tasks = np.asarray(tasks, dtype=object)
    names = list(dict.fromkeys(tasks.tolist()))
    return {t: np.flatnonzero(tasks == t) for t in names}
