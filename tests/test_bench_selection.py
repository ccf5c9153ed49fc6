"""experiments/bench_selection.py at a small size: both implementations run, keep the same rows,
and the final JSON line has the figures the README quotes."""

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
    assert res["same_kept"] is True and "selection identical: True" in out
    for key in ("seconds", "peak_rss_gib", "reference_seconds", "reference_peak_rss_gib"):
        assert isinstance(res[key], float) and res[key] > 0, key


def test_synthetic_pool_has_the_duplicates_it_promises():
    sys.path.insert(0, str(ROOT / "experiments"))
    from bench_selection import synthetic_pool

    x, scores = synthetic_pool(2000, 16, 4, seed=1, dup=0.1)
    assert x.shape == (2000, 16) and np.allclose(np.linalg.norm(x, axis=1), 1, rtol=0, atol=unit_norm_atol(16))
    assert set(scores) == {"ppl", "el2n", "entropy", "grand", "image_grounding"}
    best = (x[1800:] @ x[:1800].T).max(axis=1)  # each copy has a near-exact twin earlier
    assert (best > 0.999).all()
