"""The loss-based experts, computed in the gradient pass and stored beside the features
(METHODS.md, Adapt-∞ item 3; adapt.features.per_sample.per_token_scores):

- ``ppl``: log of the mean over answer tokens of exp(token loss) (the authors' mean of exponentials);
- ``el2n``: mean over answer tokens of ‖onehot(y) − softmax(z)‖₂ (Paul et al. 2021);
- ``entropy``: mean over answer tokens of the predictive entropy −Σ p log p;
- ``grand``: ‖g(x)‖₂ of the unprojected LoRA gradient (GraNd, Paul et al. 2021).
"""

from __future__ import annotations

from functools import partial

from adapt.scoring.base import SCORERS, stored_column

LOSS_BASED = ("ppl", "el2n", "entropy", "grand")

for _name in LOSS_BASED:
    SCORERS.register(_name)(partial(stored_column, column=_name))
