"""A method's *reference pass*: a copy of the round's model fine-tuned on a subset of the pool
(TIVE's warm-up model, MLLM-Selector's seed model, hindsight's learning-rate probe) and the projected LoRA gradients of the pool under
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
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
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


# hindsight's learning-rate probe (``selection.hindsight.budget.split: gain``; ours, issue 19): how fast a
# task's need falls with the samples trained on it, measured at the task's first round, before the round
# trains it. A copy of the round's model (the model after round t−1, :func:`warm_up`) gets a fresh LoRA
# adapter trained as the round trains (``training.epochs``) on x of the task's samples; L before and
# after is the need (hindsight's ``task_need``) of as many of its other samples, and r = ln(L_before /
# L_after) / x, the rate of an exponential learning curve L(x) = L·exp(−r·x) through the two points (at
# least 0: a need that rose is no learning). The adapter stays in ``rounds/<t>/hindsight/probe-<k>/`` (a
# resumed round loads it instead of training again); the round's ``selector.json`` keeps each task's
# rate and the probe's figures.

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
