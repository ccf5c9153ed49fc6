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
from typing import Any, Protocol

import numpy as np
import pandas as pd

from adapt.config import ExperimentConfig
from adapt.layout import RoundLayout
from adapt.registry import Registry

SELECTORS: Registry[type["Selector"]] = Registry("selector")

SELECTION_COLUMNS = ["uid", "dataset", "task", "cluster", "expert", "score", "selected"]


def resolve_budget(budget: int | float, pool_size: int, seen: int | None = None) -> int:
    """A float is a fraction of the round's pool, or of the ``seen`` samples when given
    (``selection.budget_of: seen``), rounded, at least 1; an int is a count; both at most the pool."""
    if pool_size <= 0:
        return 0
    if isinstance(budget, bool):
        raise TypeError("budget must be an int or a float")
    if isinstance(budget, int):
        return min(budget, pool_size)
    return max(1, min(pool_size, int(round(budget * (pool_size if seen is None else seen)))))


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
    config: ExperimentConfig = field(default_factory=ExperimentConfig)  # the run's (model, features, training)
    settings: Any = None        # the method's own section, ``selection.<method>`` (None if it has none)
    data: SampleSource | None = None  # the pool's samples by uid (the run's DataPool)
    files: RoundLayout | None = None  # the round's folder in the run directory (None: keep nothing)
    model: Any = None           # the round's model bundle (None for model-free selectors)
    progress: bool = False      # progress bars for long scoring passes

    def round_files(self, method: str) -> RoundLayout:
        """The round's folder, or an error naming ``method`` that keeps files there."""
        if self.files is None:
            from adapt.errors import AdaptError

            raise AdaptError(f"selection.method={method} keeps files in the run directory: give SelectionContext.files")
        return self.files


class SampleSource(Protocol):
    """Where a selector reads samples from (the run's :class:`~adapt.data.pool.DataPool`)."""

    def samples(self, uids: list[str]) -> list[Any]: ...


@dataclass
class Selection:
    """A selector's answer: one row per candidate (SELECTION_COLUMNS), and what the method decided
    beyond the table (task budgets, ...), stored in ``rounds/<t>/selector.json`` when given."""

    table: pd.DataFrame
    summary: dict[str, Any] | None = None


@dataclass
class PruneContext:
    """What a selector's pruning may look at after round ``round``."""

    round: int
    active: pd.DataFrame        # the active pool's uids, in pool order
    limit: int                  # how many to keep
    seed: int
    files: RoundLayout          # the round's folder (its selection.parquet)
    embedding: Path             # the feature store pruning compares samples on
    embedding_name: str = "gradient"  # what it holds (``pool.prune_embedding``), for the recorded reason
    progress: bool = False
    order: str = "arrival"      # ``pool.prune_order``: the order samples are judged in
    split: str = "uniform"      # ``pool.prune_split``: how the kept samples are split over clusters
    index: str = "auto"         # ``pool.prune_index``: how each sample's nearest earlier one is found


@dataclass
class Pruning:
    """The uids a selector's pruning tombstones, and the reason recorded beside them."""

    uids: list[str]
    reason: str


class Selector(ABC):
    """Base class of data-selection methods; register subclasses with ``@SELECTORS.register``.

    ``select`` is required; ``needs_features`` and ``prune`` are declared here with their defaults
    (no features read; the loop's random pruning)."""

    name: str = ""
    #: train once on the union of all datasets (the multitask reference) instead of round by round
    joint: bool = False
    #: whether ``select`` needs the current model (the loop loads it first)
    needs_model: bool = False

    def __init__(self, config: ExperimentConfig | None = None) -> None:
        self.config = config if config is not None else ExperimentConfig()

    def needs_features(self) -> bool:
        """Whether ``select`` (with this run's config) reads the round's gradient features."""
        return False

    def needs_hidden(self) -> bool:
        """Whether ``select`` or ``prune`` reads the round's hidden-state embedding
        (``rounds/<t>/hidden``, written by the gradient pass of :meth:`needs_features`)."""
        return False

    @abstractmethod
    def select(self, ctx: SelectionContext) -> Selection:
        """One row per candidate with SELECTION_COLUMNS (and a summary, if the method has one)."""

    def prune(self, ctx: PruneContext) -> Pruning | None:
        """The samples to tombstone down to ``ctx.limit``; None: the loop prunes at random."""
        return None

    def has_own_pruning(self) -> bool:
        """Whether this selector overrides :meth:`prune` (then pruning reads an embedding store)."""
        return type(self).prune is not Selector.prune


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
