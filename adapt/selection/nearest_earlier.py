"""SemDeDup's "nearest earlier sample": for unit rows ``x`` in judging order,
``M_j = max_{i<j} x_i · x_j`` (−inf for the first row), by one of three indexes
(``pool.prune_index``):

``exact``  faiss's exact inner-product index, filled block by block as the scan goes: what the
           reference computes (adymaharana/adapt-inf, ``semdedup``: the column maximum of the strict
           upper triangle of the n_c × n_c cosine matrix), in O(block · n_c) memory; time is
           quadratic in the cluster's size.
``ivf``    an inverted file (Jégou et al., 2011, "Product quantization for nearest neighbor search",
           §III.A): a coarse quantizer of ``lists`` centroids (faiss spherical k-means on a seeded
           sample of the cluster) files each row under its nearest centroid; a row looks for its
           earlier neighbours in the lists of its ``probes`` nearest centroids. The lists are
           scanned one at a time as one matrix product (the rows probing the list × the rows filed
           in it), masked to earlier rows, which is the same as filling a faiss ``IndexIVFFlat`` as
           the scan goes and searching it with ``nprobe = probes``, but in matrix products. Time ∝ probes · n_c² / lists = probes · n_c^1.5.
``hnsw``   faiss's ``IndexHNSWFlat`` (Malkov & Yashunin, 2018), filled block by block as the scan
           goes and searched before each block is added.

Approximate indexes only miss neighbours, so their M is a lower bound of the exact one. An exact
duplicate is always found by ``ivf``: both copies are filed under the same centroid, which the later
one probes first. ``auto`` is ``exact`` up to :data:`EXACT_MAX_ROWS` rows and ``ivf`` above.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from adapt.registry import Registry

BLOCK = 4096
EXACT_MAX_ROWS = 20_000
"""``auto`` takes the exact index up to this many rows in a cluster (every demo cluster), ``ivf``
above: on a million rows in ten clusters ``ivf`` prunes 8× faster than exact and keeps 99.4% of the
same rows (experiments/bench_selection.py, README)."""
IVF_PROBES = 8
IVF_TRAIN_PER_LIST = 64
HNSW_M = 16
HNSW_EF_SEARCH = 32
HNSW_EF_CONSTRUCTION = 40


def _within_block(m: np.ndarray, xb: np.ndarray, start: int) -> None:
    """Raise ``m[start:start+len(xb)]`` to each row's largest cosine with an earlier row of its block."""
    if len(xb) < 2:
        return
    g = xb @ xb.T
    g[np.triu_indices(len(xb))] = -np.inf  # row j sees columns i < j only
    np.maximum(m[start:start + len(xb)], g.max(axis=1), out=m[start:start + len(xb)])


def _scan(x: np.ndarray, index, block: int) -> np.ndarray:
    """Fill ``index`` block by block; each block is searched before it is added."""
    n = len(x)
    m = np.full(n, -np.inf, dtype=np.float32)
    for s in range(0, n, block):
        xb = x[s:s + block]
        if index.ntotal:
            m[s:s + len(xb)] = index.search(xb, 1)[0][:, 0]
        _within_block(m, xb, s)
        index.add(xb)
    return m


def exact_max_cos(x: np.ndarray, seed: int = 0, block: int = BLOCK) -> np.ndarray:
    """Exact ``M`` (faiss ``IndexFlatIP``; on the GPU where faiss-gpu is installed and one is visible)."""
    import faiss

    x = np.ascontiguousarray(x, dtype=np.float32)
    index = faiss.IndexFlatIP(x.shape[1])
    if hasattr(faiss, "get_num_gpus") and faiss.get_num_gpus() > 0:
        index = faiss.index_cpu_to_all_gpus(index)
    return _scan(x, index, block)


def ivf_lists(n: int) -> int:
    """The coarse quantizer's size for ``n`` rows: ⌊√n⌋ (at least 1)."""
    return max(1, int(np.sqrt(n)))


def ivf_max_cos(x: np.ndarray, seed: int = 0, lists: int | None = None, probes: int = IVF_PROBES) -> np.ndarray:
    """``M`` over the earlier rows filed in each row's ``probes`` nearest of ``lists`` coarse
    centroids (default :func:`ivf_lists`); the quantizer is trained on
    ``IVF_TRAIN_PER_LIST · lists`` rows drawn with ``seed``."""
    import faiss

    x = np.ascontiguousarray(x, dtype=np.float32)
    n, d = x.shape
    m = np.full(n, -np.inf, dtype=np.float32)
    if n < 2:
        return m
    lists = min(lists or ivf_lists(n), n)
    probes = min(probes, lists)
    if lists == 1:
        return exact_max_cos(x)
    rng = np.random.default_rng(seed)
    train = x[np.sort(rng.choice(n, size=min(n, IVF_TRAIN_PER_LIST * lists), replace=False))]
    km = faiss.Kmeans(d, lists, niter=10, seed=int(seed) % (2**31), spherical=True,
                      max_points_per_centroid=IVF_TRAIN_PER_LIST, min_points_per_centroid=1, verbose=False)
    km.train(train)
    quantizer = faiss.IndexFlatIP(d)
    quantizer.add(km.centroids)
    _, probe = quantizer.search(x, probes)  # [n, probes], nearest centroid first
    filed = probe[:, 0]
    by_list = np.argsort(filed, kind="stable")  # rows filed in list l, ascending: by_list[kb[l]:kb[l+1]]
    kb = np.searchsorted(filed[by_list], np.arange(lists + 1))
    flat = probe.ravel()
    by_probe = np.argsort(flat, kind="stable")  # (row, probe) pairs by list, rows ascending within a list
    qb = np.searchsorted(flat[by_probe], np.arange(lists + 1))
    for lst in range(lists):
        keys = by_list[kb[lst]:kb[lst + 1]]
        queries = by_probe[qb[lst]:qb[lst + 1]] // probes
        if len(keys) == 0 or len(queries) == 0 or queries[-1] <= keys[0]:
            continue
        queries = queries[queries > keys[0]]  # a row before every key has no earlier row here
        g = x[queries] @ x[keys].T
        g[keys[None, :] >= queries[:, None]] = -np.inf
        m[queries] = np.maximum(m[queries], g.max(axis=1))  # a row probes a list once: no repeats
    return m


def hnsw_max_cos(x: np.ndarray, seed: int = 0, block: int = BLOCK) -> np.ndarray:
    """``M`` from a faiss ``IndexHNSWFlat`` (inner product; M = 16, efSearch = 32,
    efConstruction = 40) filled block by block."""
    import faiss

    x = np.ascontiguousarray(x, dtype=np.float32)
    index = faiss.IndexHNSWFlat(x.shape[1], HNSW_M, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efSearch = HNSW_EF_SEARCH
    index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    return _scan(x, index, block)


NEAREST_EARLIER: Registry[Callable[..., np.ndarray]] = Registry.of(
    "prune index", {"exact": exact_max_cos, "ivf": ivf_max_cos, "hnsw": hnsw_max_cos})


def resolve_index(name: str, n: int) -> str:
    """The index ``name`` stands for at ``n`` rows: ``auto`` is exact up to :data:`EXACT_MAX_ROWS`."""
    if name == "auto":
        return "exact" if n <= EXACT_MAX_ROWS else "ivf"
    NEAREST_EARLIER.check(name, "pool.prune_index")
    return name


def max_cos_to_earlier(x: np.ndarray, index: str = "exact", seed: int = 0, **kwargs) -> np.ndarray:
    """``M_j = max_{i<j} x_i · x_j`` for unit rows ``x`` by ``index`` (exact | ivf | hnsw | auto)."""
    return NEAREST_EARLIER.get(resolve_index(index, len(x)), "pool.prune_index")(x, seed=seed, **kwargs)
