"""Adapt-∞'s Image Grounding expert (METHODS.md, Adapt-∞ item 3):
``PPL(answer | text only) / PPL(answer | image, text)`` with PPL = exp(mean answer-token loss).
High = the answer needs the image. As the authors, the image is replaced by zeros (pixel values 0,
same placeholder tokens); a sample without an image gets 1 ("not grounded").
"""

from __future__ import annotations

import numpy as np
import torch

from adapt.features.per_sample import per_token_scores
from adapt.models.collate import Collator
from adapt.scoring.base import SCORERS, ScoringContext


@torch.no_grad()
def answer_losses(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    labels = batch["labels"]
    out = model(**{k: v for k, v in batch.items() if k != "labels"})
    return per_token_scores(out.logits, labels)["loss"]


@SCORERS.register("image_grounding")
def score_image_grounding(ctx: ScoringContext) -> np.ndarray:
    if ctx.model is None or ctx.family is None:
        raise ValueError("scorer 'image_grounding' runs the model: give the round's model")
    out = np.ones(len(ctx.samples), dtype=np.float64)
    rows = [i for i, s in enumerate(ctx.samples) if s.images and ctx.family.uses_images]
    collate = Collator(ctx.family, ctx.max_length)
    device = next(ctx.model.parameters()).device
    was_training = ctx.model.training
    ctx.model.eval()
    try:
        for k in range(0, len(rows), ctx.batch_size):
            chunk = rows[k : k + ctx.batch_size]
            batch = {n: v.to(device) for n, v in collate([ctx.samples[i] for i in chunk]).items()}
            with_image = answer_losses(ctx.model, batch)
            blind = dict(batch, pixel_values=torch.zeros_like(batch["pixel_values"]))
            without = answer_losses(ctx.model, blind)
            out[chunk] = torch.exp(without - with_image).double().cpu().numpy()  # PPL ratio
    finally:
        ctx.model.train(was_training)
    return out
