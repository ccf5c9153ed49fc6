"""Adapt-∞'s per-cluster expert choice (METHODS.md, Adapt-∞ item 4): the expert whose scores are
spread most evenly over the cluster, by the entropy of a histogram of the standardised scores
(``entropy``); or one expert everywhere (``fixed:<expert>``), for ablations. Rules are registered in
``EXPERT_CHOICES``.

The authors' code builds the 50 bins over ±4σ of the *raw* scores after standardising them, which
makes the choice depend on each score's scale; here the bins span ±4 on the standardised scores.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from adapt.registry import Registry

ExpertRule = Callable[[Mapping[str, np.ndarray], str], tuple[str, dict[str, float]]]
EXPERT_CHOICES: Registry[ExpertRule] = Registry("expert choice")

BINS = 50
RANGE = 4.0


def histogram_entropy(scores: np.ndarray, bins: int = BINS, width: float = RANGE) -> float:
    """−Σ p log₂ p of the histogram of the standardised ``scores`` (``bins`` equal bins over
    [−width, width]; values outside are not counted). A constant score has entropy 0."""
    s = np.asarray(scores, dtype=np.float64)
    s = s[np.isfinite(s)]
    if s.size < 2 or s.std() == 0:
        return 0.0
    z = (s - s.mean()) / s.std()
    counts, _ = np.histogram(z, bins=bins, range=(-width, width))
    total = counts.sum()
    if total == 0:
        return 0.0
    p = counts[counts > 0] / total
    return float(-(p * np.log2(p)).sum())


def choose_expert(scores: Mapping[str, np.ndarray]) -> tuple[str, dict[str, float]]:
    """The expert with the highest histogram entropy over the cluster (ties: the first given),
    and every expert's entropy."""
    if not scores:
        raise ValueError("no expert scores to choose from")
    ent = {name: histogram_entropy(v) for name, v in scores.items()}
    best = max(ent, key=lambda k: ent[k])  # max keeps the first of equal values
    return best, ent


@EXPERT_CHOICES.register("entropy")
def _by_entropy(scores: Mapping[str, np.ndarray], arg: str = "") -> tuple[str, dict[str, float]]:
    if not len(next(iter(scores.values()))):  # an empty cluster: nothing to choose by
        return next(iter(scores)), {}
    return choose_expert(scores)


@EXPERT_CHOICES.register("fixed")
def _fixed(scores: Mapping[str, np.ndarray], arg: str = "") -> tuple[str, dict[str, float]]:
    if arg not in scores:
        from adapt.errors import ConfigError

        raise ConfigError(f"selection.adapt_inf.expert_choice: {arg!r} is not among the experts {list(scores)}")
    return arg, {}


def choose_for_cluster(rule: str, scores: Mapping[str, np.ndarray]) -> tuple[str, dict[str, float]]:
    """The cluster's expert under ``rule`` (``entropy`` or ``fixed:<expert>``) and the entropies it used."""
    name, _, arg = rule.partition(":")
    return EXPERT_CHOICES.get(name, "selection.adapt_inf.expert_choice")(scores, arg)
