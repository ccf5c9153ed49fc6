"""A method's *reference pass*: a copy of the round's model fine-tuned on a subset of the pool
(TIVE's warm-up model, MLLM-Selector's seed model) and the projected LoRA gradients of the pool under
it, on the LoRA layers the method takes its gradients on. Everything it computes is kept under
``rounds/<t>/<method>/`` (the adapter, the rows it was trained on, the features in the feature-store
layout), so a killed run resumes it instead of starting over.

Without a subset (TIVE's ``warmup_fraction`` 0, MLLM-Selector's ``seed_fraction`` 0) the round's
model stands in: the round's feature store when it was taken on the method's layers, otherwise the
method's own store on the round's model, in the same folder.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any, Union

import numpy as np

from adapt.errors import AdaptError
from adapt.layout import run_model_ref
from adapt.selection.base import SelectionContext, phase_seed
from adapt.selection.inputs import round_store

Layers = Union[str, list[str]]
WARM_UIDS = "warmup_uids.json"  # the uids the reference adapter was fine-tuned on, beside it


def warm_up(bundle: Any, samples: list, config: Any, seed: int, adapter_dir: Path, progress: bool = False,
            desc: str = "warm-up", base_ref: str | None = None, epochs: float = 1.0) -> Any:
    """A copy of ``bundle``'s model, adapters merged, with a fresh LoRA adapter fine-tuned for
    ``epochs`` on ``samples`` (the run's ``lora`` and ``training`` settings), saved to ``adapter_dir``
    (its adapter_config.json naming ``base_ref`` as its base, when given).
    When ``adapter_dir`` holds one already (a resumed run), it is loaded instead of trained again.
    The round's own model is left untouched. Trains in this process alone (no DDP)."""
    from peft import PeftModel

    from adapt.io import write_dir_atomic
    from adapt.models.lora import add_new_adapter, load_adapter, save_adapter
    from adapt.training.trainer import train_round

    model = copy.deepcopy(bundle.model)
    if isinstance(model, PeftModel):
        model = model.merge_and_unload()
    if (adapter_dir / "adapter_config.json").is_file():
        model = load_adapter(model, adapter_dir, trainable=False)
    else:
        model = add_new_adapter(model, config.lora, seed=seed)  # seeds the warm-up's training too
        train_round(model, bundle.family, samples, config.training, None, seed, config.model.max_length,
                    epochs=epochs, desc=desc, progress=progress)
        write_dir_atomic(adapter_dir, lambda d: save_adapter(model, d, base_ref))
    model.eval()
    return dataclasses.replace(bundle, model=model)


def round_model(ctx: SelectionContext) -> Any:
    """The round's model with a LoRA adapter to take gradients on: the round's model itself when it
    carries one (the continued adapter, or the adapter the features phase built), otherwise a copy
    with a fresh adapter seeded as the loop seeds round t's (``run/models.py``, ``_build_to_train``)."""
    from peft import PeftModel

    from adapt.models.lora import add_new_adapter

    if isinstance(ctx.model.model, PeftModel):
        return ctx.model
    model = add_new_adapter(copy.deepcopy(ctx.model.model), ctx.config.lora,
                            seed=phase_seed(ctx.config.seed, ctx.round, "train"))
    return dataclasses.replace(ctx.model, model=model)


def reference_store(ctx: SelectionContext, name: str, warm_rows: np.ndarray, desc: str, layers: Layers | None = None):
    """The pool's gradient features on the LoRA layers ``layers`` (default ``features.layers``)
    under a copy of the round's model fine-tuned on the rows ``warm_rows`` of the pool, in
    ``rounds/<t>/<name>/`` (resumable). No rows: the round's store when ``layers`` are the round's,
    else the method's own store on the round's model (:func:`round_model`)."""
    from adapt.features.extract import gradient_store
    from adapt.features.store import FeatureStore
    from adapt.io import write_json_atomic

    features = ctx.config.features
    if layers is not None and layers != features.layers:
        features = features.model_copy(update={"layers": layers})
    if len(warm_rows) == 0 and features.layers == ctx.config.features.layers:
        return round_store(ctx, name)
    if ctx.model is None:
        raise AdaptError(f"selection.method={name} takes gradients on a reference model: the selector needs the "
                         "round's model")
    out = ctx.round_files(name).method(name)
    if FeatureStore.exists(out.features) and FeatureStore(out.features).complete:
        return FeatureStore(out.features)
    if ctx.data is None:
        raise AdaptError(f"selection.method={name} takes gradients on a reference model: give SelectionContext.data")
    uids = ctx.pool["uid"].tolist()
    if len(warm_rows):
        warm_uids = [uids[i] for i in warm_rows]
        write_json_atomic(out.dir / WARM_UIDS, warm_uids)
        model = warm_up(ctx.model, ctx.data.samples(warm_uids), ctx.config, ctx.seed, out.adapter,
                        progress=ctx.progress, desc=f"{desc} warm-up", base_ref=run_model_ref(ctx.round - 1))
    else:
        model = round_model(ctx)
    store = gradient_store(model.model, model.family, ctx.data.samples(uids), out.features, features,
                           ctx.config.seed, ctx.config.model.max_length, progress=ctx.progress,
                           desc=f"{desc} features")
    del model
    return store
