"""experiments/bench_selection.py at a small size: the three implementations run (every cluster is
small, so ``auto`` is exact), keep the same rows, and the final JSON line has the figures the README
quotes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from tolerances import unit_norm_atol

ROOT = Path(__file__).resolve().parents[1]


def test_bench_selection_small_run_agrees_with_the_quadratic_reference():
    out = subprocess.run([sys.executable, str(ROOT / "experiments" / "bench_selection.py"), "--n", "6000", "--dim", "32",
                          "--k", "5"], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    res = json.loads(out.strip().splitlines()[-1])
    assert res["indexes"] == {"exact": 5} and res["agree_exact"] == 1.0 and res["same_selection"] is True
    assert res["reference_same_as_exact"] is True
    # 300 rows are copies, each exact with probability 1/2; both sides keep the same rows, so drop the
    # same exact copies: nearly all (a cluster under its uniform share, ⌈4800/5⌉, is kept whole)
    assert 100 < res["exact_duplicates"] < 200
    assert 0.9 * res["exact_duplicates"] <= res["exact_duplicates_dropped"] == res["exact_duplicates_dropped_by_exact"]
    for key in ("seconds", "peak_rss_gib", "exact_seconds", "reference_seconds", "reference_peak_rss_gib"):
        assert isinstance(res[key], float) and res[key] > 0, key


def test_synthetic_pool_has_the_duplicates_it_promises():
    sys.path.insert(0, str(ROOT / "experiments"))
    from bench_selection import synthetic_pool

    for spectrum in ("power", "flat"):
        x, scores, exact = synthetic_pool(2000, 16, 4, seed=1, dup=0.1, spectrum=spectrum)
        assert x.shape == (2000, 16) and np.allclose(np.linalg.norm(x, axis=1), 1, rtol=0, atol=unit_norm_atol(16))
        assert set(scores) == {"ppl", "el2n", "entropy", "grand", "image_grounding"}
        best = (x[1800:] @ x[:1800].T).max(axis=1)  # each copy has a near-exact twin earlier
        assert (best > 0.999).all()
        assert len(exact) == len(set(exact)) and exact.min() >= 1800  # the exact ones: a row equal to an earlier one
        assert all((x[j] == x[:1800]).all(axis=1).any() for j in exact)


def test_power_spectrum_puts_half_the_variance_in_few_directions():
    """``--spectrum power``: eigenvalues ∝ i^-1.1 in one skill, half the variance in the first
    directions whose share sums to one half (8 of 256 for i^-1.1, worked from the series); the flat
    one needs about half of them."""
    from bench_selection import synthetic_pool

    share = np.arange(1, 257) ** -1.1
    want = int(np.searchsorted(np.cumsum(share) / share.sum(), 0.5)) + 1
    for spectrum, lo, hi in (("power", want - 3, want + 3), ("flat", 100, 160)):
        x, _, _ = synthetic_pool(20000, 256, 1, seed=0, dup=0.0, spectrum=spectrum)
        sv = np.linalg.svd(x - x.mean(0), compute_uv=False) ** 2
        half = int(np.searchsorted(np.cumsum(sv) / sv.sum(), 0.5)) + 1
        assert lo <= half <= hi, (spectrum, half)
