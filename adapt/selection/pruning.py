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
else. The reference builds the full n_c × n_c matrix; here faiss's exact inner-product index
answers "nearest earlier sample" block by block, so memory stays O(block · n_c) instead of O(n_c²)
(time is still quadratic for the exact index).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from adapt.features.store import unit_rows
from adapt.registry import Registry
from adapt.selection.budget import split_proportional, split_uniform

BLOCK = 4096


def max_cos_to_earlier(x: np.ndarray, block: int = BLOCK) -> np.ndarray:
    """``M_j = max_{i<j} x_i · x_j`` for unit rows ``x`` (−inf for the first row)."""
    import faiss

    x = np.ascontiguousarray(x, dtype=np.float32)
    n, d = x.shape
    m = np.full(n, -np.inf, dtype=np.float32)
    index = faiss.IndexFlatIP(d)
    if hasattr(faiss, "get_num_gpus") and faiss.get_num_gpus() > 0:  # faiss-gpu installed and a GPU visible
        index = faiss.index_cpu_to_all_gpus(index)
    for s in range(0, n, block):
        xb = x[s : s + block]
        if index.ntotal:
            dist, _ = index.search(xb, 1)
            m[s : s + len(xb)] = dist[:, 0]
        g = xb @ xb.T
        g[np.triu_indices(len(xb))] = -np.inf  # row j sees columns i < j only
        if len(xb) > 1:
            m[s : s + len(xb)] = np.maximum(m[s : s + len(xb)], g.max(axis=1))
        index.add(xb)
    return m


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
    x64 = np.asarray(x, dtype=np.float64)
    dist = np.linalg.norm(x64 - x64.mean(axis=0), axis=1)
    return np.lexsort((np.arange(len(x)), -dist))


PRUNE_ORDERS: Registry[Callable[[np.ndarray], np.ndarray]] = Registry.of(
    "prune order", {"arrival": arrival_order, "centroid": centroid_order})


def cluster_keep(x: np.ndarray, share: int, order: str = "arrival") -> np.ndarray:
    """Positions (into ``x``'s rows) of the ``share`` least redundant unit rows: in ``order``, the
    smallest ``M`` first, ties by that order."""
    perm = PRUNE_ORDERS.get(order, "pool.prune_order")(x)
    m = max_cos_to_earlier(x[perm])
    return perm[np.lexsort((np.arange(len(perm)), m))[:share]]


def semdedup_keep(embeddings: np.ndarray, labels: np.ndarray, keep: int, progress: bool = False, *,
                  order: str = "arrival", split: str = "uniform") -> np.ndarray:
    """Rows to keep (sorted): ``keep`` in all, split over clusters by ``split``, each cluster keeping
    its least redundant rows judged in ``order``. ``embeddings`` may be a memory map (the feature
    store's float16 rows): one cluster at a time is read and normalised, so memory is O(n_c · d),
    not O(n · d)."""
    from tqdm.auto import tqdm

    labels = np.asarray(labels)
    PRUNE_ORDERS.check(order, "pool.prune_order")
    members = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    shares = PRUNE_SPLITS.get(split, "pool.prune_split")([len(m) for m in members], min(int(keep), len(labels)))
    kept = []
    for rows, share in tqdm(list(zip(members, shares)), desc="semdedup", unit="cluster", disable=not progress,
                            leave=False):
        if share > 0:
            kept.append(rows[cluster_keep(unit_rows(embeddings[rows]), share, order)])
    return np.sort(np.concatenate(kept)) if kept else np.zeros(0, dtype=np.int64)
