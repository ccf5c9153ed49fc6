"""Feature extraction over a pool: batched per-sample LoRA gradients → projection → feature store.

Under ``accelerate launch --num_processes N`` rank r computes the rows i with i % N == r (each
rank holds the whole model; nothing else to coordinate) and writes them in place; rows already
flagged done in the store are skipped, so an interrupted extraction continues where it stopped.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from adapt.data.sample import Sample
from adapt.features.per_sample import LoraLinear, per_sample_gradients
from adapt.features.projectors import Projector
from adapt.features.store import FeatureStore
from adapt.models.collate import Collator
from adapt.models.families import ModelFamily


def _to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def extract_features(model: Any, family: ModelFamily, samples: list[Sample], store: FeatureStore,
                     projector: Projector, linears: list[LoraLinear], batch_size: int, max_length: int,
                     accelerator: Any = None, progress: bool = True, desc: str = "features") -> FeatureStore:
    """Fill every row of ``store`` not yet done (``samples[i]`` is row i)."""
    if len(samples) != store.n:
        raise ValueError(f"{len(samples)} samples for a feature store of {store.n} rows")
    rank, world = (accelerator.process_index, accelerator.num_processes) if accelerator is not None else (0, 1)
    done = store.done_mask()
    rows = np.array([i for i in range(store.n) if not done[i] and i % world == rank], dtype=np.int64)
    collate = Collator(family, max_length)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    weights = [lin.module.weight for lin in linears]
    flags = [w.requires_grad for w in weights]
    for w in weights:
        w.requires_grad_(True)
    bar = tqdm(total=len(rows), desc=desc, unit="sample", disable=not progress or rank != 0,
               leave=False, dynamic_ncols=True)
    try:
        for s in range(0, len(rows), batch_size):
            chunk = rows[s : s + batch_size]
            part = [samples[i] for i in chunk]
            batch = _to_device(collate(part), device)
            images = [len(x.images) if family.uses_images else 0 for x in part]
            sizes = [int(g.prod()) for g in batch["image_grid_thw"]] if "image_grid_thw" in batch else None
            res = per_sample_gradients(model, batch, linears, images_per_sample=images, image_sizes=sizes)
            feats = projector.project(res.grads)
            scores = torch.stack([res.loss, res.ppl, res.el2n, res.entropy, res.grand,
                                  res.answer_tokens.to(res.loss.dtype)], dim=1)
            store.write_rows(chunk, feats.float().cpu().numpy(), scores.float().cpu().numpy())
            bar.update(len(chunk))
    finally:
        bar.close()
        for w, f in zip(weights, flags):
            w.requires_grad_(f)
        model.train(was_training)
    if accelerator is not None:
        accelerator.wait_for_everyone()
    return store
