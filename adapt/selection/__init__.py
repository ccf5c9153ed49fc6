"""Selectors (registry ``SELECTORS``), budget rules, and permanent pruning."""

from adapt.selection import adapt_inf as _adapt_inf  # noqa: F401  (registers adapt_inf)
from adapt.selection import baselines as _baselines  # noqa: F401  (registers full/random/multitask)
from adapt.selection import datatailor as _datatailor  # noqa: F401  (the seed papers' methods: selector + expert)
from adapt.selection import gdo as _gdo  # noqa: F401
from adapt.selection import mllm_selector as _mllm_selector  # noqa: F401
from adapt.selection import tive as _tive  # noqa: F401
from adapt.selection.base import SELECTORS, SelectionContext, Selector, resolve_budget

__all__ = ["SELECTORS", "SelectionContext", "Selector", "resolve_budget"]
