"""Selector experts: one score per sample of the round's pool (METHODS.md, Adapt-∞ item 3).

A scorer is a function ``(ctx: ScoringContext) -> np.ndarray`` registered by name; one file per
method. The loss-based experts read the scores the gradient pass stored beside the features
(``adapt.features``), so they never run the model again; the others run what they need.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from adapt.data.sample import Sample
from adapt.registry import Registry


@dataclass
class ScoringContext:
    """What a scorer may use: the pool's samples (row order of the feature store), the store with
    the gradient pass's scores, and the model of the round (with its family) for scorers that run it."""

    samples: list[Sample]
    store: Any = None
    model: Any = None
    family: Any = None
    batch_size: int = 16
    max_length: int = 2048


Scorer = Callable[[ScoringContext], np.ndarray]
SCORERS: Registry[Scorer] = Registry("scorer")


def stored_column(ctx: ScoringContext, column: str) -> np.ndarray:
    """A column of the gradient pass's scores, in the samples' order."""
    if ctx.store is None:
        raise ValueError(f"scorer {column!r} reads the feature store: enable features (features.enabled)")
    df = ctx.store.scores().set_index("uid")
    return df.loc[[s.uid for s in ctx.samples], column].to_numpy(dtype=np.float64)
