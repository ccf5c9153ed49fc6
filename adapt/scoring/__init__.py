"""Selector experts (one file each, registered in ``SCORERS``): the loss-based ones and image
grounding here; the seed papers' methods register theirs from :mod:`adapt.methods`."""

from adapt.scoring import image_grounding, loss_based  # noqa: F401  (registration)
from adapt.scoring.base import SCORERS, ScoringContext

__all__ = ["SCORERS", "ScoringContext"]
