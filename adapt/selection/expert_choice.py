"""Adapt-∞'s per-cluster expert choice (METHODS.md, Adapt-∞ item 4; reference: adymaharana/adapt-inf,
``data_selection/adapt-inf.py``, ``get_dist_entropy`` and ``get_mwp_score``). Rules are registered in
``EXPERT_CHOICES`` (``selection.adapt_inf.expert_choice``):

- ``entropy`` (default): the expert whose standardised scores have the highest entropy of a
  50-bin histogram over ±4. Standardising removes each score's location and scale, so this rewards
  the *shape* of the score's distribution in the cluster (how evenly it fills the bins once its
  spread is divided out), never its raw spread. At unit variance the bell shape fills them best (the
  normal has the largest differential entropy); flat, skewed, heavy-tailed, clumped or few-valued
  scores fill fewer (on 200k draws: normal 4.69 bits, uniform 4.46, t₃ 4.35, exponential 4.11).
- ``entropy_released``: exactly what the released ``get_dist_entropy`` computes. It standardises
  the scores and then lays its bins over ±4σ of the *raw* scores (σ their standard deviation), so
  the choice depends on each score's units: a score with σ > 1 is squeezed into a few central bins
  (entropy ≈ the fixed one − log₂ σ), one with σ < 1 has only its central |z| ≤ 4σ counted, in finer
  bins (up to log₂ 49 on a large cluster). Small raw spread wins, unless too few values land in the
  bins: none at all (σ = 0, or a small cluster with every |z| > 4σ) gives NaN, and ``np.argmax``,
  which the reference takes over the entropies, picks the first NaN.
- ``fixed:<expert>``: one expert everywhere, for ablations.
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


def released_entropy(scores: np.ndarray, bins: int = BINS) -> float:
    """The released ``get_dist_entropy``: NaN → 0 (``np.nan_to_num``); z = (x − mean)/σ with σ the
    raw scores' std; edges ``linspace(−4σ, 4σ, bins)``; bin i (1 ≤ i < bins) counts
    edges[i−1] < z ≤ edges[i] and bin 0 stays empty (49 bins counted of 50); p = counts / Σ counts,
    every p = 0 set to float64 eps; −Σ p log₂ p over all ``bins`` entries (so each empty bin adds
    52·2⁻⁵²). Computed in the scores' float dtype (float64 for integers). NaN when no value is
    counted (σ = 0, or every |z| > 4σ): 0/0 probabilities, zeroed by ``nan_to_num``, then 0·log₂ 0."""
    x = np.asarray(scores)
    x = np.nan_to_num(x if np.issubdtype(x.dtype, np.floating) else x.astype(np.float64))
    with np.errstate(divide="ignore", invalid="ignore"):
        sigma = np.std(x)
        z = (x - np.mean(x)) / sigma
        edges = np.linspace(-4 * sigma, 4 * sigma, bins)
        at = np.searchsorted(edges, z, side="left")  # edges[at − 1] < z ≤ edges[at]; NaN z sorts past the end
        counts = np.bincount(at[(at >= 1) & (at < bins)], minlength=bins).astype(np.float64)
        p = counts / np.sum(counts)
        p = np.nan_to_num(np.where(p == 0, np.finfo(float).eps, p))
        return float(-np.sum(p * np.log2(p)))


def choose_expert_released(scores: Mapping[str, np.ndarray]) -> tuple[str, dict[str, float]]:
    """The released ``get_mwp_score``: ``np.argmax`` over the experts' :func:`released_entropy`
    (the first of equal values; the first NaN if any is NaN), and every expert's entropy."""
    if not scores:
        raise ValueError("no expert scores to choose from")
    ent = {name: released_entropy(v) for name, v in scores.items()}
    return list(ent)[int(np.argmax(list(ent.values())))], ent


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


@EXPERT_CHOICES.register("entropy_released")
def _by_released_entropy(scores: Mapping[str, np.ndarray], arg: str = "") -> tuple[str, dict[str, float]]:
    if not len(next(iter(scores.values()))):  # an empty cluster: nothing to choose by
        return next(iter(scores)), {}
    return choose_expert_released(scores)


@EXPERT_CHOICES.register("fixed")
def _fixed(scores: Mapping[str, np.ndarray], arg: str = "") -> tuple[str, dict[str, float]]:
    if arg not in scores:
        from adapt.errors import ConfigError

        raise ConfigError(f"selection.adapt_inf.expert_choice: {arg!r} is not among the experts {list(scores)}")
    return arg, {}


def choose_for_cluster(rule: str, scores: Mapping[str, np.ndarray]) -> tuple[str, dict[str, float]]:
    """The cluster's expert under ``rule`` (``entropy``, ``entropy_released`` or ``fixed:<expert>``)
    and the entropies it used."""
    name, _, arg = rule.partition(":")
    return EXPERT_CHOICES.get(name, "selection.adapt_inf.expert_choice")(scores, arg)
