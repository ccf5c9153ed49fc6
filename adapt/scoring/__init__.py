"""Selector experts (one file each, registered in ``SCORERS``)."""

from adapt.scoring import image_grounding, loss_based  # noqa: F401  (registration)
from adapt.scoring.base import SCORERS, ScoringContext

import adapt.selection  # noqa: E402,F401  (tive, mllm_selector, datatailor, gdo register their experts)

__all__ = ["SCORERS", "ScoringContext"]
