"""Selector experts: one score per sample of the round's pool (METHODS.md, Adapt-∞ item 3).

A scorer is a function ``(ctx: ScoringContext) -> np.ndarray`` registered by name; one file per
method. The loss-based experts read the scores the gradient pass stored beside the features
(``adapt.features``), so they never run the model again; the others run what they need.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from adapt.data.sample import Sample
from adapt.registry import Registry


@dataclass
class ScoringContext:
    """What a scorer may use: the pool's uids (row order of the feature store), the store with the
    gradient pass's scores, and the model of the round (with its family) for scorers that run it.
    The samples themselves are read only when a scorer asks for them (``ctx.samples``), through
    ``load_samples`` (the loop passes ``DataPool.samples``). ``work_dir`` is where a scorer may
    keep resumable intermediate files (the round's folder); ``settings`` is the run's
    ``SelectionConfig`` (per-method settings)."""

    uids: list[str]
    load_samples: Callable[[list[str]], list[Sample]] | None = None
    store: Any = None
    model: Any = None
    family: Any = None
    batch_size: int = 16
    max_length: int = 2048
    progress: bool = False
    work_dir: Path | None = None
    settings: Any = None
    seed: int = 0
    _memo: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def of_samples(cls, samples: list[Sample], **kw: Any) -> "ScoringContext":
        """A context over samples already in memory."""
        return cls(uids=[s.uid for s in samples], load_samples=lambda uids: list(samples), **kw)

    @cached_property
    def samples(self) -> list[Sample]:
        if self.load_samples is None:
            raise ValueError("this scorer reads the samples: give ScoringContext.load_samples")
        return self.load_samples(self.uids)

    def shared(self, key: str, compute: Callable[[], Any]) -> Any:
        """``compute()`` once per context: what several experts need (e.g. the blind forward of
        image grounding, which GDO's image dependence reuses) runs once."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    @cached_property
    def tasks(self) -> np.ndarray:
        """The task label of every sample."""
        return np.asarray([s.task or s.dataset for s in self.samples], dtype=object)

    def setting(self, method: str) -> Any:
        """The settings section of ``method`` (the defaults when the context has none)."""
        from adapt.config import SelectionConfig

        return getattr(self.settings if self.settings is not None else SelectionConfig(), method)


Scorer = Callable[[ScoringContext], np.ndarray]
SCORERS: Registry[Scorer] = Registry("scorer")


def stored_column(ctx: ScoringContext, column: str) -> np.ndarray:
    """A column of the gradient pass's scores, in the samples' order."""
    if ctx.store is None:
        raise ValueError(f"scorer {column!r} reads the feature store: enable features (features.enabled)")
    df = ctx.store.scores().set_index("uid")
    return df.loc[ctx.uids, column].to_numpy(dtype=np.float64)
