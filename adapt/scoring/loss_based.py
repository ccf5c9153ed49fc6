"""The loss-based experts, computed in the gradient pass and stored beside the features
(METHODS.md, Adapt-∞ item 3; adapt.features.per_sample):

- ``ppl``: log of the mean over answer tokens of exp(token loss) (the authors' mean of exponentials);
- ``el2n``: mean over answer tokens of ‖onehot(y) − softmax(z)‖₂ (Paul et al. 2021);
- ``entropy``: the mean predictive entropy −Σ p log p over every position of the sequence (prompt
  and image included: adymaharana/adapt-inf ``llava/grad_utils.py``, ``obtain_entropy_score``; the
  stored ``entropy_all``) under ``selection.adapt_inf.entropy_over: all`` (default), or over the
  answer tokens (the stored ``entropy``) under ``answer``;
- ``grand``: ‖g(x)‖₂ of the unprojected LoRA gradient (GraNd, Paul et al. 2021).
"""

from __future__ import annotations

from functools import partial

import numpy as np

from adapt.scoring.base import SCORERS, ScoringContext, stored_column

LOSS_BASED = ("ppl", "el2n", "entropy", "grand")
ENTROPY_COLUMNS = {"all": "entropy_all", "answer": "entropy"}
"""``selection.adapt_inf.entropy_over`` → the stored column the ``entropy`` expert reads."""

for _name in ("ppl", "el2n", "grand"):
    SCORERS.register(_name)(partial(stored_column, column=_name))


@SCORERS.register("entropy")
def entropy(ctx: ScoringContext) -> np.ndarray:
    """The predictive entropy over the positions ``selection.adapt_inf.entropy_over`` names."""
    return stored_column(ctx, ENTROPY_COLUMNS[ctx.setting("adapt_inf").entropy_over])
