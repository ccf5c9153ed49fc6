"""SemDeDup's nearest-earlier-sample indexes (``pool.prune_index``) and the block readers that let
clustering and pruning run on a feature store's memory map of any size (issue: a 10-million-sample
pool on one small machine)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from adapt.features.blocks import iter_unit_blocks, take_unit_rows
from adapt.features.store import unit_rows
from adapt.selection.nearest_earlier import EXACT_MAX_ROWS, NEAREST_EARLIER, ivf_max_cos, max_cos_to_earlier
from adapt.selection.pruning import semdedup_keep

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
from bench_selection import synthetic_pool  # noqa: E402

from tolerances import unit_norm_atol  # noqa: E402


def dot_atol(d: int) -> float:
    """Two float32 evaluations of a cosine of unit rows (d products, each ≤ 1 in size, summed in
    another order) differ by at most 2·γ_d; unit_norm_atol is that bound (plus the rows' own
    rounding to unit length)."""
    return 2 * unit_norm_atol(d)


def pool(n: int, d: int = 24, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """One skill of the benchmark's power-law pool (float32 unit rows) and its exact copies."""
    x, _, exact = synthetic_pool(n, d, 1, seed=seed, dup=0.1)
    return x, exact


@pytest.mark.parametrize("name", NEAREST_EARLIER.names())
def test_every_index_only_looks_at_earlier_rows_and_never_overshoots(name):
    """An index may miss neighbours (M below the exact one) but never count a later row or itself:
    every M is at most the exact M (the first row's is −inf) and is the cosine of a real earlier row."""
    x, _ = pool(3000)
    exact = max_cos_to_earlier(x, "exact")
    got = max_cos_to_earlier(x, name)
    assert got[0] == -np.inf and exact[0] == -np.inf
    assert (got[1:] <= exact[1:] + dot_atol(x.shape[1])).all()
    g = x @ x.T  # each finite M is the cosine of one of the row's earlier rows
    g[np.tril_indices(len(x))] = np.nan  # row j's column: rows i < j only (upper triangle, by column)
    found = np.isfinite(got)
    gap = np.nanmin(np.abs(g[:, found] - got[found]), axis=0)
    assert (gap <= dot_atol(x.shape[1])).all()


def test_ivf_probing_every_list_is_exact():
    x, _ = pool(2000)
    got = ivf_max_cos(x, lists=16, probes=16)
    exact = max_cos_to_earlier(x, "exact")
    assert np.allclose(got, exact, rtol=0, atol=dot_atol(x.shape[1]))


def test_ivf_finds_every_exact_copy():
    """An exact copy is filed under its original's list, which it probes first: M is its cosine with
    itself, 1 up to rounding, whatever the number of lists and probes."""
    x, exact_copies = pool(5000)
    for lists, probes in [(70, 1), (70, 8), (200, 2)]:
        m = ivf_max_cos(x, lists=lists, probes=probes)
        assert (m[exact_copies] >= 1 - dot_atol(x.shape[1])).all()


def test_auto_is_exact_up_to_the_threshold_and_ivf_agrees_with_exact_above(monkeypatch):
    """A cluster above the threshold (lowered to 3000 rows here, to keep the suite fast): ``auto``
    runs the inverted file, keeps ≥ 95% of the rows exact keeps, and drops every exact copy that exact
    drops; a cluster at the threshold is judged exactly (the same rows)."""
    monkeypatch.setattr("adapt.selection.nearest_earlier.EXACT_MAX_ROWS", 3000)
    n = 8000
    x, exact_copies = pool(n, d=32, seed=3)
    labels = np.zeros(n, dtype=np.int64)
    keep = int(0.8 * n)
    exact = semdedup_keep(x, labels, keep, index="exact")
    auto = semdedup_keep(x, labels, keep, index="auto")
    assert len(auto) == len(exact) == keep
    assert len(np.intersect1d(auto, exact)) >= 0.95 * keep
    dropped_by_exact = np.setdiff1d(exact_copies, exact)
    assert len(dropped_by_exact) > 0.9 * len(exact_copies)
    assert len(np.intersect1d(dropped_by_exact, auto)) == 0
    head = np.arange(3000)
    assert np.array_equal(semdedup_keep(x[head], labels[head], 1000, index="auto"),
                          semdedup_keep(x[head], labels[head], 1000, index="exact"))
    assert EXACT_MAX_ROWS == 20_000  # the real threshold, the module's own


def test_unknown_prune_index_names_the_key():
    from adapt.errors import UnknownNameError

    with pytest.raises(UnknownNameError, match="pool.prune_index.*known: exact, hnsw, ivf"):
        semdedup_keep(np.eye(3, dtype=np.float32), np.zeros(3, dtype=np.int64), 2, index="lsh")


# ---------------------------------------------------------------------------------------------- block reads


def test_block_reads_of_a_memory_map_equal_indexing(tmp_path):
    """File reads block by block give the same unit rows as indexing the array, in the order asked,
    for a .npy memory map (a header before the data) and a raw one (a store's features.f16)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1000, 12)).astype(np.float16)
    np.save(tmp_path / "a.npy", x)
    x.tofile(tmp_path / "a.f16")
    maps = [np.load(tmp_path / "a.npy", mmap_mode="r"), np.memmap(tmp_path / "a.f16", np.float16, "r", shape=x.shape)]
    rows = rng.choice(1000, size=300, replace=False)  # unsorted
    for m in maps:
        assert np.array_equal(take_unit_rows(m, rows, block=64), unit_rows(x[rows]))
        blocks = list(iter_unit_blocks(m, block=128))
        assert [s for s, _ in blocks] == list(range(0, 1000, 128))
        assert np.array_equal(np.concatenate([b for _, b in blocks]), unit_rows(x))
    assert np.array_equal(take_unit_rows(x, rows), unit_rows(x[rows]))  # in memory: plain indexing


def test_clustering_a_memory_map_trains_on_a_sample_and_assigns_every_row(tmp_path, monkeypatch):
    """Above TRAIN_BYTES k-means trains on a seeded sample and assigns block by block: on a map of
    three well-separated skills every row lands with its skill, and the same seed gives the same
    labels; under the limit the memory map and the array give identical clusters."""
    from adapt.selection import clustering

    rng = np.random.default_rng(1)
    centres = np.eye(3, 16, dtype=np.float32) * 4
    skill = rng.integers(0, 3, size=6000)
    x = (centres[skill] + 0.3 * rng.standard_normal((6000, 16), dtype=np.float32)).astype(np.float16)
    np.save(tmp_path / "x.npy", x)
    xm = np.load(tmp_path / "x.npy", mmap_mode="r")
    full = clustering.spherical_kmeans(xm, 3, seed=2)
    assert np.array_equal(full.labels, clustering.spherical_kmeans(x, 3, seed=2).labels)
    monkeypatch.setattr(clustering, "TRAIN_BYTES", 1000 * 16 * 4)  # 1000 rows: a sample of max(768, 1000)
    assert len(clustering.training_rows(6000, 16, 3, seed=2)) == 1000
    sampled = clustering.spherical_kmeans(xm, 3, seed=2)
    assert np.array_equal(sampled.labels, clustering.spherical_kmeans(xm, 3, seed=2).labels)
    assert len(np.unique(sampled.labels)) == 3
    for c in range(3):  # each cluster is one skill
        assert len(np.unique(skill[sampled.labels == c])) == 1
