"""Feature extraction over a pool: batched per-sample LoRA gradients → projection → feature store
(and the hidden-state embedding that ``pool.prune_embedding: hidden`` prunes on).

Under ``accelerate launch --num_processes N`` rank r computes the rows i with i % N == r (each
rank holds the whole model; nothing else to coordinate) and writes them in place; rows already
flagged done in the store are skipped, so an interrupted extraction continues where it stopped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from adapt.data.sample import Sample
from adapt.features.per_sample import LoraLinear, at_least_float32, per_sample_gradients
from adapt.features.projectors import Projector
from adapt.features.store import SCORE_COLUMNS, FeatureStore
from adapt.models.collate import Collator
from adapt.models.families import ModelFamily


def _to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def fill_store(store: FeatureStore, samples: list[Sample], family: ModelFamily, max_length: int, batch_size: int,
               compute: Callable[[list[Sample], dict[str, Any]], tuple[torch.Tensor, torch.Tensor]],
               device: torch.device, accelerator: Any = None, progress: bool = True,
               desc: str = "features") -> FeatureStore:
    """Fill every row of ``store`` not yet done (``samples[i]`` is row i) with ``compute(part,
    batch) -> (features [b, dim], scores [b, len(store.columns)])``, this rank's rows only."""
    if len(samples) != store.n:
        raise ValueError(f"{len(samples)} samples for a feature store of {store.n} rows")
    rank, world = (accelerator.process_index, accelerator.num_processes) if accelerator is not None else (0, 1)
    done = store.done_mask()
    rows = np.array([i for i in range(store.n) if not done[i] and i % world == rank], dtype=np.int64)
    collate = Collator(family, max_length)
    bar = tqdm(total=len(rows), desc=desc, unit="sample", disable=not progress or rank != 0,
               leave=False, dynamic_ncols=True)
    try:
        for s in range(0, len(rows), batch_size):
            chunk = rows[s : s + batch_size]
            part = [samples[i] for i in chunk]
            feats, scores = compute(part, _to_device(collate(part), device))
            store.write_rows(chunk, feats.float().cpu().numpy(), scores.float().cpu().numpy())
            bar.update(len(chunk))
    finally:
        bar.close()
    if accelerator is not None:
        accelerator.wait_for_everyone()
    return store


def extract_features(model: Any, family: ModelFamily, samples: list[Sample], store: FeatureStore,
                     projector: Projector, linears: list[LoraLinear], batch_size: int, max_length: int,
                     accelerator: Any = None, progress: bool = True, desc: str = "features") -> FeatureStore:
    """Projected per-sample LoRA gradients and the loss-based scores of the same pass."""

    def compute(part: list[Sample], batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        images = [len(x.images) if family.uses_images else 0 for x in part]
        sizes = [int(g.prod()) for g in batch["image_grid_thw"]] if "image_grid_thw" in batch else None
        res = per_sample_gradients(model, batch, linears, images_per_sample=images, image_sizes=sizes)
        scores = torch.stack([res.loss, res.ppl, res.el2n, res.entropy, res.grand,
                              res.answer_tokens.to(res.loss.dtype)], dim=1)
        return projector.project(res.grads), scores

    was_training = model.training
    model.eval()
    weights = [lin.module.weight for lin in linears]
    flags = [w.requires_grad for w in weights]
    for w in weights:
        w.requires_grad_(True)
    try:
        return fill_store(store, samples, family, max_length, batch_size, compute, next(model.parameters()).device,
                          accelerator, progress, desc)
    finally:
        for w, f in zip(weights, flags):
            w.requires_grad_(f)
        model.train(was_training)


def gradient_store(model: Any, family: ModelFamily, samples: list[Sample], out: Any, features: Any, seed: int,
                   max_length: int, accelerator: Any = None, progress: bool = True,
                   desc: str = "features") -> FeatureStore:
    """The projected LoRA gradients of ``samples`` under ``model`` (a peft model) in the store
    ``out``, with the ``features`` settings (``FeaturesConfig``: dim, projector, layers, batch
    size); an interrupted store of the same settings is continued. The round's features and the
    reference passes of TIVE and MLLM-Selector are made here."""
    from adapt.features.per_sample import lora_linears
    from adapt.features.projectors import PROJECTORS

    settings = {"projector": features.projector, "seed": seed, "layers": features.layers}
    uids = [s.uid for s in samples]
    if accelerator is None or accelerator.is_main_process:
        FeatureStore.create(out, uids, features.dim, **settings)
    if accelerator is not None:
        accelerator.wait_for_everyone()
    store = FeatureStore(out)
    linears = lora_linears(model, features.layers)
    extract_features(model, family, samples, store, PROJECTORS.get(features.projector)(features.dim, seed=seed),
                     linears, features.batch_size, max_length, accelerator=accelerator, progress=progress, desc=desc)
    for p in model.parameters():
        p.grad = None
    store.meta["lora_weights"] = sum(lin.numel for lin in linears)
    return store


def extract_hidden(model: Any, family: ModelFamily, samples: list[Sample], store: FeatureStore, batch_size: int,
                   max_length: int, accelerator: Any = None, progress: bool = True,
                   desc: str = "hidden states") -> FeatureStore:
    """A semantic embedding per sample for pruning (``pool.prune_embedding: hidden``): the last
    layer's hidden states averaged over the sample's tokens (attention mask), as SemDeDup embeds
    with a model (Abbas et al. 2023). The store's score columns stay zero."""

    @torch.no_grad()
    def compute(part: list[Sample], batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        out = model(**{k: v for k, v in batch.items() if k != "labels"}, output_hidden_states=True)
        h = at_least_float32(out.hidden_states[-1])
        mask = batch["attention_mask"].to(h.dtype).unsqueeze(-1)
        emb = (h * mask).sum(1) / mask.sum(1).clamp_min(1.0)
        return emb, torch.zeros(len(part), len(SCORE_COLUMNS))

    was_training = model.training
    model.eval()
    try:
        return fill_store(store, samples, family, max_length, batch_size, compute, next(model.parameters()).device,
                          accelerator, progress, desc)
    finally:
        model.train(was_training)
