"""The selector interface every data-selection method plugs into, and the budget rule.

A selector sees the round's active pool and the current model and returns, for every candidate
sample, a row (uid, cluster, expert, score, selected). Scores are kept apart from the keep/drop
decision, as data-juicer does, so that one stored table explains the round's choice.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from adapt.registry import Registry

SELECTORS: Registry[type["Selector"]] = Registry("selector")

SELECTION_COLUMNS = ["uid", "dataset", "task", "cluster", "expert", "score", "selected"]


def resolve_budget(budget: int | float, pool_size: int) -> int:
    """A float is a fraction of the round's pool (rounded, at least 1); an int is a count (capped)."""
    if pool_size <= 0:
        return 0
    if isinstance(budget, bool):
        raise TypeError("budget must be an int or a float")
    if isinstance(budget, int):
        return min(budget, pool_size)
    return max(1, min(pool_size, int(round(budget * pool_size))))


def phase_seed(seed: int, round_idx: int, phase: str) -> int:
    """A seed for one phase of one round that does not depend on what ran before in the process."""
    h = hashlib.sha256(f"{seed}/{round_idx}/{phase}".encode()).digest()
    return int.from_bytes(h[:4], "little")


@dataclass
class SelectionContext:
    """What a selector may look at in round ``round``."""

    round: int
    pool: pd.DataFrame          # active pool: uid, dataset, task, round_added (ingestion order)
    new_uids: list[str]         # uids of the dataset(s) that arrived this round
    budget: int                 # resolved number of samples to select
    seed: int
    run_dir: Path | None = None
    model: Any = None           # the current model bundle (None for model-free selectors)
    config: Any = None          # the ExperimentConfig
    extras: dict[str, Any] = field(default_factory=dict)
    progress: bool = False      # progress bars for long scoring passes


class Selector(ABC):
    """Base class of data-selection methods; register subclasses with ``@SELECTORS.register``."""

    name: str = ""
    #: train once on the union of all datasets (the multitask reference) instead of round by round
    joint: bool = False
    #: whether ``select`` needs the current model (the loop loads it first)
    needs_model: bool = False
    #: whether ``select`` reads the round's gradient features (``features.enabled``)
    needs_features: bool = False

    def __init__(self, config: Any = None) -> None:
        self.config = config

    @classmethod
    def needs_features_for(cls, config: Any) -> bool:
        """Whether this selector, with ``config``, reads the round's gradient features."""
        return cls.needs_features

    @abstractmethod
    def select(self, ctx: SelectionContext) -> pd.DataFrame:
        """Return one row per candidate with SELECTION_COLUMNS."""


def selection_frame(
    pool: pd.DataFrame, selected: np.ndarray, scores: np.ndarray | None = None,
    clusters: np.ndarray | None = None, experts: list[str] | np.ndarray | None = None,
) -> pd.DataFrame:
    """Assemble the stored selection table from the pool rows and per-row decisions."""
    n = len(pool)
    return pd.DataFrame({
        "uid": pool["uid"].to_numpy(),
        "dataset": pool["dataset"].to_numpy(),
        "task": pool["task"].to_numpy(),
        "cluster": np.full(n, -1, dtype=np.int32) if clusters is None else np.asarray(clusters, dtype=np.int32),
        "expert": np.full(n, "", dtype=object) if experts is None else np.asarray(experts, dtype=object),
        "score": np.full(n, np.nan) if scores is None else np.asarray(scores, dtype=np.float64),
        "selected": np.asarray(selected, dtype=bool),
    })
