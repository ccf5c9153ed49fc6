"""The generic parts of data selection: the selector interface and registry, the budget rule,
clustering, the per-cluster expert choice, budget splits, samplers and SemDeDup pruning. The
methods themselves live in :mod:`adapt.methods`, which registers them."""

from adapt.selection.base import (SELECTORS, PruneContext, Pruning, Selection, SelectionContext, Selector,
                                  resolve_budget)

__all__ = ["SELECTORS", "PruneContext", "Pruning", "Selection", "SelectionContext", "Selector", "resolve_budget"]
