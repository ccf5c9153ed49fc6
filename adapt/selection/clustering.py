"""Pseudo-skill clusters (METHODS.md, Adapt-∞ item 2): spherical k-means on the L2-normalised
gradient features with faiss (faiss-gpu is used where installed and a GPU is visible),
deterministic for a seed. ``k="auto"`` picks k by the silhouette (cosine) on a subsample.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from adapt.features.store import unit_rows


@dataclass
class Clusters:
    labels: np.ndarray  # [n] int64, cluster of each row
    centroids: np.ndarray  # [k, d] float32, unit length
    k: int


def spherical_kmeans(features: np.ndarray, k: int, seed: int = 0, niter: int = 25) -> Clusters:
    """faiss ``Kmeans(spherical=True)`` on the unit rows; each row goes to the centroid of highest
    cosine. ``k`` is capped at the number of rows."""
    import faiss

    x = unit_rows(features)
    n, d = x.shape
    if n == 0:
        return Clusters(np.zeros(0, dtype=np.int64), np.zeros((0, d), np.float32), 0)
    k = max(1, min(int(k), n))
    if k == 1:
        c = unit_rows(x.mean(0, keepdims=True))
        return Clusters(np.zeros(n, dtype=np.int64), c, 1)
    use_gpu = hasattr(faiss, "get_num_gpus") and faiss.get_num_gpus() > 0
    km = faiss.Kmeans(d, k, niter=niter, seed=int(seed) % (2**31), spherical=True, gpu=use_gpu,
                      max_points_per_centroid=max(256, -(-n // k)), verbose=False)
    km.train(x)
    index = faiss.IndexFlatIP(d)
    index.add(km.centroids)
    _, idx = index.search(x, 1)
    return Clusters(idx[:, 0].astype(np.int64), np.asarray(km.centroids, dtype=np.float32), k)


def choose_k_by_silhouette(features: np.ndarray, candidates: list[int], seed: int = 0,
                           sample: int = 5000) -> int:
    """The k of ``candidates`` with the best cosine silhouette on a seeded subsample."""
    from sklearn.metrics import silhouette_score

    x = unit_rows(features)
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(x), size=min(sample, len(x)), replace=False) if len(x) > sample else np.arange(len(x))
    best_k, best = candidates[0], -np.inf
    for k in candidates:
        if k < 2 or k >= len(rows):
            continue
        labels = spherical_kmeans(x, k, seed).labels[rows]
        if len(np.unique(labels)) < 2:
            continue
        score = silhouette_score(x[rows], labels, metric="cosine")
        if score > best:
            best_k, best = k, score
    return best_k


def cluster(features: np.ndarray, k: int | str = 10, seed: int = 0) -> Clusters:
    """Clusters for ``k`` (an int) or ``k="auto"`` (silhouette over k = 2..20)."""
    if k == "auto":
        k = choose_k_by_silhouette(features, list(range(2, 21)), seed)
    return spherical_kmeans(features, int(k), seed)
