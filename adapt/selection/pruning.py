"""Permanent cluster-wise pruning: SemDeDup inside each cluster (METHODS.md, Adapt-∞ item 7;
reference: adymaharana/adapt-inf, ``data_selection/adapt-inf.py``, ``semdedup``).

**How much each cluster keeps** (``pool.prune_split``): ``uniform`` (default, the reference's
``assign_budget_to_cluster`` without ``score_weighted``): ⌈keep/k⌉ each from the smallest cluster
up, a cluster smaller than that kept whole and its shortfall spread over the larger ones, so the
largest clusters are pruned hardest; or ``proportional`` to cluster size (our variant).

**The order samples are judged in** (``pool.prune_order``): ``arrival`` (default, pool row order:
what the reference runs), or ``centroid``: the rows by Euclidean distance of their unit embeddings
to the cluster's centroid (the mean of the cluster's unit rows), farthest first, ties by arrival
(the reference's commented-out ``np.argsort(dist_from_centroid)[::-1]``, which measures the raw
rows against the k-means centre of the clustering space; here both sides are the pruning
embedding's unit rows, so the centroid lives where the cosines are taken).

Within a cluster, on unit-length embeddings, in that order, each sample j gets
``M_j = max_{i before j} cos(i, j)``: how close it is to something judged before it. The cluster
keeps its share with the smallest M (ties by that order), so exact and then near duplicates go
first. The reference takes the column maximum of the strict upper triangle of the cosine matrix,
whose zeros below the diagonal clamp M at 0 (the first sample, and any whose earlier cosines are all
≤ 0, tie at M = 0, in ``torch.argsort``'s unspecified order); here M is the exact maximum (−inf for
the first sample), which orders those samples by their largest cosine instead and changes nothing
else. The reference builds the full n_c × n_c matrix; here an index answers "nearest earlier
sample" (``pool.prune_index``, :mod:`adapt.selection.nearest_earlier`): faiss's exact inner-product
index block by block, so memory stays O(block · n_c) instead of O(n_c²) but time is quadratic, or an
inverted file (``ivf``) or HNSW graph, approximate, for clusters of hundreds of thousands of rows;
``auto`` (default) is exact for every cluster of up to 20,000 rows.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from adapt.features.blocks import BLOCK_ROWS, take_unit_rows
from adapt.registry import Registry
from adapt.selection.budget import split_proportional, split_uniform
from adapt.selection.nearest_earlier import max_cos_to_earlier, resolve_index

__all__ = ["max_cos_to_earlier", "cluster_keep", "semdedup_keep", "PRUNE_ORDERS", "PRUNE_SPLITS"]


def keep_uniform(sizes: list[int], keep: int) -> list[int]:
    """The reference's SemDeDup keep split (``assign_budget_to_cluster``, uniform branch) as
    :func:`~adapt.selection.budget.split_uniform`: ⌈keep/k⌉ each from the smallest cluster up, a
    smaller cluster kept whole. It sums exactly to ``keep``. The reference can keep a few more:
    when every cluster holds ⌈keep/k⌉ it returns k·⌈keep/k⌉ (sizes [30, 40, 50], keep 61: 21 each,
    63); otherwise it raises the running share by ⌈shortfall / clusters left⌉ and gives that share
    to every larger cluster (sizes [3, 40, 200], keep 60: ⌈60/3⌉ = 20, the 3-cluster short by 17,
    share 20 + ⌈17/2⌉ = 29 → [3, 29, 29] = 61), where here each next share is ⌈what is left /
    clusters left⌉ ([3, ⌈57/2⌉ = 29, 28] = 60)."""
    return split_uniform(sizes, keep)


PRUNE_SPLITS: Registry[Callable[[list[int], int], list[int]]] = Registry.of(
    "prune split", {"uniform": keep_uniform, "proportional": split_proportional})


def arrival_order(x: np.ndarray) -> np.ndarray:
    """The cluster's rows as they are (pool order)."""
    return np.arange(len(x))


def centroid_order(x: np.ndarray) -> np.ndarray:
    """The unit rows ``x`` by Euclidean distance to their mean, farthest first, ties by arrival
    (float64 distances)."""
    centre = np.asarray(x).mean(axis=0, dtype=np.float64)
    dist = np.concatenate([np.linalg.norm(np.asarray(x[s:s + BLOCK_ROWS], dtype=np.float64) - centre, axis=1)
                           for s in range(0, len(x), BLOCK_ROWS)]) if len(x) else np.zeros(0)
    return np.lexsort((np.arange(len(x)), -dist))


PRUNE_ORDERS: Registry[Callable[[np.ndarray], np.ndarray]] = Registry.of(
    "prune order", {"arrival": arrival_order, "centroid": centroid_order})


def cluster_keep(x: np.ndarray, share: int, order: str = "arrival", index: str = "exact",
                 seed: int = 0) -> np.ndarray:
    """Positions (into ``x``'s rows) of the ``share`` least redundant unit rows: in ``order``, the
    smallest ``M`` first (by ``index``, :mod:`adapt.selection.nearest_earlier`), ties by that order."""
    perm = PRUNE_ORDERS.get(order, "pool.prune_order")(x)
    in_order = x if np.array_equal(perm, np.arange(len(x))) else x[perm]  # arrival: no copy of the cluster
    m = max_cos_to_earlier(in_order, index, seed)
    return perm[np.lexsort((np.arange(len(perm)), m))[:share]]


def semdedup_keep(embeddings: np.ndarray, labels: np.ndarray, keep: int, progress: bool = False, *,
                  order: str = "arrival", split: str = "uniform", index: str = "auto", seed: int = 0) -> np.ndarray:
    """Rows to keep (sorted): ``keep`` in all, split over clusters by ``split``, each cluster keeping
    its least redundant rows judged in ``order``, its nearest earlier samples found by ``index``
    (``auto``: exact for a cluster of up to ``EXACT_MAX_ROWS`` rows, ivf above; ``seed`` draws an
    approximate index's training rows). ``embeddings`` may be a memory map (the feature store's
    float16 rows): one cluster at a time is read (file reads, block by block) and normalised, so
    memory is O(n_c · d), not O(n · d)."""
    from tqdm.auto import tqdm

    labels = np.asarray(labels)
    PRUNE_ORDERS.check(order, "pool.prune_order")
    resolve_index(index, 0)  # an unknown index fails before any cluster is read
    members = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    shares = PRUNE_SPLITS.get(split, "pool.prune_split")([len(m) for m in members], min(int(keep), len(labels)))
    kept = []
    for rows, share in tqdm(list(zip(members, shares)), desc="semdedup", unit="cluster", disable=not progress,
                            leave=False):
        if share > 0:
            kept.append(rows[cluster_keep(take_unit_rows(embeddings, rows), share, order, index, seed)])
    return np.sort(np.concatenate(kept)) if kept else np.zeros(0, dtype=np.int64)
