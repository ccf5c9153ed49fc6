"""Permanent cluster-wise pruning: SemDeDup inside each cluster (METHODS.md, Adapt-∞ item 7).

Within a cluster, on unit-length embeddings, in arrival order (pool row order; the authors'
alternative of ordering by distance to the centroid is not used), each sample j gets
``M_j = max_{i<j} cos(i, j)``: how close it is to something already kept in mind. The cluster keeps
its share of the kept total (proportional to its size) with the smallest M, so exact and then near
duplicates go first. The authors build the full n_c × n_c matrix; here faiss's exact inner-product
index answers "nearest earlier sample" block by block, so memory stays O(block · n_c) instead of
O(n_c²) (time is still quadratic for the exact index).
"""

from __future__ import annotations

import numpy as np

from adapt.features.store import unit_rows
from adapt.selection.budget import split_proportional

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


def semdedup_keep(embeddings: np.ndarray, labels: np.ndarray, keep: int, progress: bool = False) -> np.ndarray:
    """Rows to keep (sorted): ``keep`` in all, split over clusters in proportion to their sizes,
    each cluster keeping its least redundant rows (smallest M; ties by arrival). ``embeddings``
    may be a memory map (the feature store's float16 rows): one cluster at a time is read and
    normalised, so memory is O(n_c · d), not O(n · d)."""
    from tqdm.auto import tqdm

    labels = np.asarray(labels)
    clusters = np.unique(labels)
    members = [np.flatnonzero(labels == c) for c in clusters]
    shares = split_proportional([len(m) for m in members], min(int(keep), len(labels)))
    kept = []
    for rows, share in tqdm(list(zip(members, shares)), desc="semdedup", unit="cluster", disable=not progress,
                            leave=False):
        if share <= 0:
            continue
        m = max_cos_to_earlier(unit_rows(embeddings[rows]))
        order = np.lexsort((np.arange(len(rows)), m))  # smallest M first, then arrival
        kept.append(rows[order[:share]])
    return np.sort(np.concatenate(kept)) if kept else np.zeros(0, dtype=np.int64)
