"""Pseudo-skill clusters (METHODS.md, Adapt-∞ item 2): spherical k-means on the L2-normalised
gradient features with faiss (faiss-gpu is used where installed and a GPU is visible),
deterministic for a seed. ``k="auto"`` picks k by the silhouette (cosine) on a subsample.

The features may be a feature store's memory map of any size: k-means trains on every row while
they take at most :data:`TRAIN_BYTES` as float32 (every demo round), else on a seeded sample of
that size (faiss itself trains on at most 256 rows per centroid by default); the rows are then
assigned to their centroids block by block (:mod:`adapt.features.blocks`), so memory does not grow
with the pool.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from adapt.features.blocks import iter_unit_blocks, take_unit_rows
from adapt.features.store import unit_rows

TRAIN_BYTES = 1 << 30
"""k-means trains on every row while they fit in this many bytes as float32, else on a sample."""


@dataclass
class Clusters:
    labels: np.ndarray  # [n] int64, cluster of each row
    centroids: np.ndarray  # [k, d] float32, unit length
    k: int


def training_rows(n: int, d: int, k: int, seed: int = 0) -> np.ndarray | None:
    """The rows k-means trains on: None (all of them) while ``n · d`` float32 fit in
    :data:`TRAIN_BYTES`, else a seeded sorted sample of ``max(256 · k, TRAIN_BYTES / 4d)`` rows."""
    if n * d * 4 <= TRAIN_BYTES:
        return None
    size = min(n, max(256 * k, TRAIN_BYTES // (4 * d)))
    return np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))


def spherical_kmeans(features: np.ndarray, k: int, seed: int = 0, niter: int = 25) -> Clusters:
    """faiss ``Kmeans(spherical=True)`` on the unit rows (all of them, or :func:`training_rows`);
    each row goes to the centroid of highest cosine. ``k`` is capped at the number of rows."""
    import faiss

    n, d = features.shape
    if n == 0:
        return Clusters(np.zeros(0, dtype=np.int64), np.zeros((0, d), np.float32), 0)
    k = max(1, min(int(k), n))
    sample = training_rows(n, d, k, seed)
    x = take_unit_rows(features, np.arange(n) if sample is None else sample)
    if k == 1:
        mean = x.mean(0, keepdims=True) if sample is None else (sum(
            b.sum(0, keepdims=True, dtype=np.float64) for _, b in iter_unit_blocks(features)) / n)
        return Clusters(np.zeros(n, dtype=np.int64), unit_rows(mean), 1)
    use_gpu = hasattr(faiss, "get_num_gpus") and faiss.get_num_gpus() > 0
    km = faiss.Kmeans(d, k, niter=niter, seed=int(seed) % (2**31), spherical=True, gpu=use_gpu,
                      max_points_per_centroid=max(256, -(-len(x) // k)), min_points_per_centroid=1,
                      verbose=False)  # min 1: only silences faiss's "please provide at least" warning
    km.train(x)
    index = faiss.IndexFlatIP(d)
    index.add(km.centroids)
    if sample is None:
        labels = index.search(x, 1)[1][:, 0]
    else:
        del x
        labels = np.concatenate([index.search(b, 1)[1][:, 0] for _, b in iter_unit_blocks(features)])
    return Clusters(labels.astype(np.int64), np.asarray(km.centroids, dtype=np.float32), k)


def choose_k_by_silhouette(features: np.ndarray, candidates: list[int], seed: int = 0,
                           sample: int = 5000) -> int:
    """The k of ``candidates`` with the best cosine silhouette on a seeded subsample."""
    from sklearn.metrics import silhouette_score

    n = len(features)
    rng = np.random.default_rng(seed)
    rows = rng.choice(n, size=min(sample, n), replace=False) if n > sample else np.arange(n)
    x = take_unit_rows(features, rows)
    best_k, best = candidates[0], -np.inf
    for k in candidates:
        if k < 2 or k >= len(rows):
            continue
        labels = spherical_kmeans(features, k, seed).labels[rows]
        if len(np.unique(labels)) < 2:
            continue
        score = silhouette_score(x, labels, metric="cosine")
        if score > best:
            best_k, best = k, score
    return best_k


def cluster(features: np.ndarray, k: int | str = 10, seed: int = 0) -> Clusters:
    """Clusters for ``k`` (an int) or ``k="auto"`` (silhouette over k = 2..20)."""
    if k == "auto":
        k = choose_k_by_silhouette(features, list(range(2, 21)), seed)
    return spherical_kmeans(features, int(k), seed)
