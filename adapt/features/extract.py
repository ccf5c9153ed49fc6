"""Feature extraction over a pool: batched per-sample LoRA gradients → projection → feature store
(and, from the same forward, the hidden-state embedding that ``pool.prune_embedding: hidden``
prunes on).

Under ``accelerate launch --num_processes N`` rank r computes the rows i with i % N == r (each
rank holds the whole model; nothing else to coordinate) and writes them in place; rows already
flagged done in the store are skipped, so an interrupted extraction continues where it stopped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from adapt.data.sample import Sample
from adapt.features.per_sample import LoraLinear, at_least_float32, per_sample_gradients
from adapt.features.projectors import Projector
from adapt.features.store import FeatureStore
from adapt.models.collate import Collator
from adapt.models.families import ModelFamily


def _to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def fill_store(store: FeatureStore | Sequence[FeatureStore], samples: list[Sample], family: ModelFamily,
               max_length: int, batch_size: int, compute: Callable[[list[Sample], dict[str, Any]], Any],
               device: torch.device, accelerator: Any = None, progress: bool = True,
               desc: str = "features") -> FeatureStore:
    """Fill every row not yet done (``samples[i]`` is row i) of ``store`` with ``compute(part,
    batch) -> (features [b, dim], scores [b, len(store.columns)])``, this rank's rows only; returns
    the store. Several stores of the same samples filled by one pass: ``compute`` returns one
    (features, scores) pair per store, a row is computed while any store lacks it and written to
    those that lack it; the first store is returned."""
    stores = [store] if isinstance(store, FeatureStore) else list(store)
    if any(len(samples) != s.n for s in stores):
        raise ValueError(f"{len(samples)} samples for a feature store of {stores[0].n} rows")
    rank, world = (accelerator.process_index, accelerator.num_processes) if accelerator is not None else (0, 1)
    done = np.stack([s.done_mask() for s in stores])  # [stores, n]
    rows = np.array([i for i in range(len(samples)) if not done[:, i].all() and i % world == rank], dtype=np.int64)
    collate = Collator(family, max_length)
    bar = tqdm(total=len(rows), desc=desc, unit="sample", disable=not progress or rank != 0,
               leave=False, dynamic_ncols=True)
    try:
        for s in range(0, len(rows), batch_size):
            chunk = rows[s : s + batch_size]
            part = [samples[i] for i in chunk]
            out = compute(part, _to_device(collate(part), device))
            for st, lacks, (feats, scores) in zip(stores, ~done[:, chunk], [out] if len(stores) == 1 else out):
                if lacks.any():
                    st.write_rows(chunk[lacks], _numpy(feats)[lacks], _numpy(scores)[lacks])
            bar.update(len(chunk))
    finally:
        bar.close()
    if accelerator is not None:
        accelerator.wait_for_everyone()
    return stores[0]


def _numpy(x: torch.Tensor) -> np.ndarray:
    """float64 stays float64 (a float64 model's rows are normalised and rounded once), else float32."""
    return at_least_float32(x.detach()).cpu().numpy()


def extract_features(model: Any, family: ModelFamily, samples: list[Sample], store: FeatureStore,
                     projector: Projector, linears: list[LoraLinear], batch_size: int, max_length: int,
                     accelerator: Any = None, progress: bool = True, desc: str = "features",
                     hidden: FeatureStore | None = None) -> FeatureStore:
    """Projected per-sample LoRA gradients and the scores of the same pass (SCORE_COLUMNS, the
    projected norm ``proj_norm`` among them); with ``hidden``, that store gets each sample's mean
    last hidden state from the same forward (its one score: the tokens averaged over)."""

    def compute(part: list[Sample], batch: dict[str, Any]) -> Any:
        images = [len(x.images) if family.uses_images else 0 for x in part]
        sizes = [int(g.prod()) for g in batch["image_grid_thw"]] if "image_grid_thw" in batch else None
        res = per_sample_gradients(model, batch, linears, images_per_sample=images, image_sizes=sizes,
                                   hidden=hidden is not None)
        proj = projector.project(res.grads)
        by_name = {"loss": res.loss, "ppl": res.ppl, "el2n": res.el2n, "entropy": res.entropy, "grand": res.grand,
                   "answer_tokens": res.answer_tokens, "entropy_all": res.entropy_all,
                   "proj_norm": at_least_float32(proj).norm(dim=1).to(res.loss.device)}
        scores = torch.stack([by_name[c].to(res.loss.dtype) for c in store.columns], dim=1)
        if hidden is None:
            return proj, scores
        tokens = batch["attention_mask"].sum(1).to(res.hidden.dtype)[:, None]
        return [(proj, scores), (res.hidden, tokens)]

    was_training = model.training
    model.eval()
    weights = [lin.module.weight for lin in linears]
    flags = [w.requires_grad for w in weights]
    for w in weights:
        w.requires_grad_(True)
    try:
        return fill_store(store if hidden is None else [store, hidden], samples, family, max_length, batch_size,
                          compute, next(model.parameters()).device, accelerator, progress, desc)
    finally:
        for w, f in zip(weights, flags):
            w.requires_grad_(f)
        model.train(was_training)


HIDDEN_COLUMNS = ("tokens",)
"""The hidden-state store's one score: how many positions (attention mask 1) each row averages."""


def gradient_store(model: Any, family: ModelFamily, samples: list[Sample], out: Any, features: Any, seed: int,
                   max_length: int, accelerator: Any = None, progress: bool = True,
                   desc: str = "features", hidden: Any = None) -> FeatureStore:
    """The projected LoRA gradients of ``samples`` under ``model`` (a peft model) in the store
    ``out``, with the ``features`` settings (``FeaturesConfig``: dim, projector, layers, batch
    size, store dtype): a unit store (rows of norm 1, the norm in ``proj_norm``). An interrupted
    store of the same settings is continued. With ``hidden`` (a folder), the same pass also fills
    the hidden-state embedding store there (raw rows, ``pool.prune_embedding: hidden``). The
    round's features and the reference passes of TIVE and MLLM-Selector are made here."""
    from adapt.features.per_sample import lora_linears
    from adapt.features.projectors import PROJECTORS

    linears = lora_linears(model, features.layers)
    settings = {"projector": features.projector, "seed": seed, "layers": features.layers,
                "lora_weights": sum(lin.numel for lin in linears)}
    uids = [s.uid for s in samples]
    if accelerator is None or accelerator.is_main_process:
        FeatureStore.create(out, uids, features.dim, unit=True, dtype=features.store_dtype, **settings)
        if hidden is not None:
            FeatureStore.create(hidden, uids, model.get_input_embeddings().embedding_dim, columns=HIDDEN_COLUMNS,
                                projector="hidden-mean", layers="last")
    if accelerator is not None:
        accelerator.wait_for_everyone()
    store = FeatureStore(out)
    extract_features(model, family, samples, store, PROJECTORS.get(features.projector)(features.dim, seed=seed),
                     linears, features.batch_size, max_length, accelerator=accelerator, progress=progress, desc=desc,
                     hidden=FeatureStore(hidden) if hidden is not None else None)
    for p in model.parameters():
        p.grad = None
    return store


@torch.no_grad()
def answer_scores(model: Any, family: ModelFamily, samples: list[Sample], max_length: int, batch_size: int,
                  progress: bool = False, desc: str = "answer losses") -> tuple[np.ndarray, np.ndarray]:
    """Each sample's mean answer-token loss and its number of answer tokens under ``model`` in eval
    mode, forward only: the ``loss`` and ``answer_tokens`` columns the gradient pass stores
    (:func:`~adapt.features.per_sample.per_token_scores`), without the gradients."""
    from adapt.features.per_sample import batches, forward_scores

    collate = Collator(family, max_length)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    loss, tokens = [], []
    try:
        for part in tqdm(list(batches(samples, batch_size)), desc=desc, unit="batch", disable=not progress,
                         leave=False, dynamic_ncols=True):
            scores = forward_scores(model, _to_device(collate(part), device))
            loss.append(_numpy(scores["loss"]).astype(np.float64))
            tokens.append(scores["answer_tokens"].cpu().numpy().astype(np.int64))
    finally:
        model.train(was_training)
    empty = np.zeros(0)
    return (np.concatenate(loss) if loss else empty), (np.concatenate(tokens) if tokens else empty.astype(np.int64))
