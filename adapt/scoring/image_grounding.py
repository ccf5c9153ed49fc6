"""Adapt-∞'s Image Grounding expert (METHODS.md, Adapt-∞ item 3):
``PPL(answer | text only) / PPL(answer | image, text)`` with PPL = exp(mean answer-token loss).
High = the answer needs the image. As the authors, the image is replaced by zeros (pixel values 0,
same placeholder tokens); a sample without an image gets 1 ("not grounded").
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from adapt.features.per_sample import forward_scores
from adapt.models.collate import Collator
from adapt.scoring.base import SCORERS, ScoringContext, stored_column


def answer_losses(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Each sample's mean answer-token loss in ``batch``."""
    return forward_scores(model, batch)["loss"]


@SCORERS.register("image_grounding")
def score_image_grounding(ctx: ScoringContext) -> np.ndarray:
    """The PPL ratio per sample. The loss with the image is the gradient pass's stored ``loss``
    when the round has a feature store (the same model, the same answer tokens), so only the
    forward without the image runs here, once per context."""
    return ctx.shared("image_grounding", lambda: _ppl_ratio(ctx))


def _ppl_ratio(ctx: ScoringContext) -> np.ndarray:
    if ctx.model is None or ctx.family is None:
        raise ValueError("scorer 'image_grounding' runs the model: give the round's model")
    out = np.ones(len(ctx.uids), dtype=np.float64)
    if not ctx.family.uses_images:
        return out
    stored = stored_column(ctx, "loss") if ctx.store is not None else None
    rows = [i for i, s in enumerate(ctx.samples) if s.images]
    collate = Collator(ctx.family, ctx.max_length)
    device = next(ctx.model.parameters()).device
    was_training = ctx.model.training
    ctx.model.eval()
    try:
        for k in tqdm(range(0, len(rows), ctx.batch_size), desc="image grounding", unit="batch",
                      disable=not ctx.progress, leave=False, dynamic_ncols=True):
            chunk = rows[k : k + ctx.batch_size]
            batch = {n: v.to(device) for n, v in collate([ctx.samples[i] for i in chunk]).items()}
            blind = dict(batch, pixel_values=torch.zeros_like(batch["pixel_values"]))
            without = answer_losses(ctx.model, blind).double().cpu().numpy()
            with_image = stored[chunk] if stored is not None else answer_losses(ctx.model, batch).double().cpu().numpy()
            out[chunk] = np.exp(without - with_image)  # PPL ratio
    finally:
        ctx.model.train(was_training)
    return out
