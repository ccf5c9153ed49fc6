"""The data-selection methods, one file each (its math, its selector, its experts), and the only
module that imports them all: importing ``adapt.methods`` fills the ``SELECTORS`` and ``SCORERS``
registries.

Adding a method: a file here with ``@SELECTORS.register("name")`` on its selector class (and
``@SCORERS.register`` on its expert, if it has one), and one line below.
"""

from adapt.methods import adapt_inf, baselines, datatailor, gdo, hindsight, mllm_selector, tive  # noqa: F401  (registration)
from adapt.scoring import SCORERS
from adapt.selection import SELECTORS

__all__ = ["SCORERS", "SELECTORS"]
