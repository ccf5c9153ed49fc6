"""A method's *reference pass*: a copy of the round's model fine-tuned on a subset of the pool
(TIVE's warm-up model, MLLM-Selector's seed model) and the projected LoRA gradients of the pool under
it. Everything it computes is kept under ``rounds/<t>/<method>/`` (the adapter, the features in the
feature-store layout), so a killed run resumes it instead of starting over.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from adapt.errors import AdaptError
from adapt.selection.base import SelectionContext
from adapt.selection.inputs import round_store


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
    out = ctx.round_files(name).method(name)
    if FeatureStore.exists(out.features) and FeatureStore(out.features).complete:
        return FeatureStore(out.features)
    if ctx.data is None:
        raise AdaptError(f"selection.method={name} fine-tunes a reference model: give SelectionContext.data")
    uids = ctx.pool["uid"].tolist()
    warm = warm_up(ctx.model, ctx.data.samples([uids[i] for i in warm_rows]), ctx.config, ctx.seed, out.adapter,
                   progress=ctx.progress, desc=f"{desc} warm-up")
    store = gradient_store(warm.model, warm.family, ctx.data.samples(uids), out.features, ctx.config.features,
                           ctx.config.seed, ctx.config.model.max_length, progress=ctx.progress,
                           desc=f"{desc} features")
    del warm
    return store
