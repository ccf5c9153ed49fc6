"""Adapt-∞'s selection and pruning at pool scale, ours vs the authors' quadratic SemDeDup.

On a synthetic clustered feature matrix (``--n`` unit rows of ``--dim``, ``--k`` Gaussian skills,
plus exact and near duplicates) and five synthetic expert scores, each implementation runs in its
own child process (so that each peak RSS is its own):

  ours       adapt.methods.adapt_inf.adapt_inf_round (faiss spherical k-means, the experts'
             bookkeeping, the entropy choice per cluster, the uniform budget split, CCS), then
             adapt.selection.pruning.semdedup_keep: nearest earlier neighbour per cluster with a faiss
             inner-product index filled block by block, memory O(block · n_c);
  reference  the same selection, then the authors' SemDeDup: per cluster the full n_c × n_c cosine
             matrix (torch), its strict upper triangle, the column maximum; memory O(n_c²). It is
             skipped when its largest matrix would need more than ``--reference-max-gib``.

Both keep ``--keep`` of the pool (each cluster its share by size, least redundant first) and the
parent checks that they keep the same rows.

    python experiments/bench_selection.py --n 200000 --dim 256 --k 10
    python experiments/bench_selection.py --n 1000000 --dim 256 --k 10

The last line printed is JSON: seconds, peak_rss_gib, reference_seconds, reference_peak_rss_gib
(null when skipped, with reference_skipped saying why), same_kept, and each side's phase seconds.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

EXPERTS = ("ppl", "el2n", "entropy", "grand", "image_grounding")


def synthetic_pool(n: int, dim: int, k: int, seed: int = 0, dup: float = 0.05,
                   chunk: int = 100_000) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``n`` unit rows around ``k`` random centres (spread unequal, as skills are), the last
    ``dup`` of them exact or near copies of earlier rows; five expert scores of different shapes."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((k, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    spread = rng.uniform(0.6, 1.4, size=k).astype(np.float32) / np.sqrt(dim)
    x = np.empty((n, dim), dtype=np.float32)
    label = rng.integers(0, k, size=n)
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        x[s:e] = centres[label[s:e]] + spread[label[s:e], None] * rng.standard_normal((e - s, dim), dtype=np.float32)
    n_dup = int(dup * n)
    if n_dup:
        src = rng.integers(0, n - n_dup, size=n_dup)
        x[n - n_dup:] = x[src]
        near = rng.random(n_dup) < 0.5  # half exact copies, half with a little noise
        x[n - n_dup:][near] += 0.01 * spread[label[src[near]], None] * rng.standard_normal((int(near.sum()), dim),
                                                                                           dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    base = rng.standard_normal(n)
    scores = {
        "ppl": np.exp(0.5 * base),
        "el2n": rng.beta(2, 5, size=n),
        "entropy": rng.gamma(2.0, 1.0, size=n),
        "grand": np.abs(base) + 0.1 * rng.standard_normal(n),
        "image_grounding": 1 + rng.exponential(0.2, size=n),
    }
    return x, scores


def reference_semdedup_keep(x: np.ndarray, labels: np.ndarray, keep: int) -> np.ndarray:
    """The authors' SemDeDup: per cluster the full cosine matrix, triu(diagonal=1), column max, the
    cluster's share (``split_uniform``: ⌈keep/k⌉ from the smallest cluster up, as ours by default)
    with the smallest max kept (rows in arrival order, as ours)."""
    import torch

    from adapt.selection.budget import split_uniform

    clusters = np.unique(labels)
    members = [np.flatnonzero(labels == c) for c in clusters]
    shares = split_uniform([len(m) for m in members], min(int(keep), len(x)))
    kept = []
    for rows, share in zip(members, shares):
        if share <= 0:
            continue
        e = torch.from_numpy(np.ascontiguousarray(x[rows]))
        sim = e @ e.T
        triu = torch.triu(sim, diagonal=1)
        del sim
        m = triu.max(dim=0).values.numpy()
        del triu
        m[0] = -np.inf
        order = np.lexsort((np.arange(len(rows)), m))
        kept.append(rows[order[:share]])
    return np.sort(np.concatenate(kept)) if kept else np.zeros(0, dtype=np.int64)


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB


def child(args: argparse.Namespace) -> dict:
    from adapt.methods.adapt_inf import adapt_inf_round
    from adapt.selection.pruning import semdedup_keep

    x, scores = synthetic_pool(args.n, args.dim, args.k, args.seed)
    out: dict = {"data_gib": x.nbytes / 2**30}
    t0 = time.perf_counter()
    result = adapt_inf_round(x, scores, int(args.budget * args.n), k=args.k, seed=args.seed)
    out["select_seconds"] = time.perf_counter() - t0
    keep = int(args.keep * args.n)
    largest = int(np.bincount(result.labels).max())
    if args.impl == "reference":
        need = 2 * largest**2 * 4 / 2**30  # the matrix and its triangle, float32
        if need > args.reference_max_gib:
            out["skipped"] = f"the largest cluster ({largest:,} rows) needs {need:.0f} GiB for its n_c x n_c matrices"
            return out
    t1 = time.perf_counter()
    prune = reference_semdedup_keep if args.impl == "reference" else semdedup_keep
    kept = prune(x, result.labels, keep)
    out["prune_seconds"] = time.perf_counter() - t1
    out["seconds"] = time.perf_counter() - t0
    out["largest_cluster"] = largest
    out["selected"] = int(result.selected.sum())
    out["kept"] = int(len(kept))
    np.save(args.kept_out, kept)
    np.save(args.kept_out.replace(".npy", "_sel.npy"), np.flatnonzero(result.selected))
    out["peak_rss_gib"] = peak_rss_gib()
    return out


def run_child(impl: str, args: argparse.Namespace, tmp: Path) -> dict:
    cmd = [sys.executable, __file__, "--impl", impl, "--n", str(args.n), "--dim", str(args.dim), "--k", str(args.k),
           "--seed", str(args.seed), "--budget", str(args.budget), "--keep", str(args.keep),
           "--reference-max-gib", str(args.reference_max_gib), "--kept-out", str(tmp / f"{impl}.npy")]
    print(f"[{impl}] running ...", flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--budget", type=float, default=0.25, help="fraction of the pool selected")
    ap.add_argument("--keep", type=float, default=0.8, help="fraction of the pool kept by pruning")
    ap.add_argument("--reference-max-gib", type=float, default=16.0,
                    help="skip the reference when its largest cluster's matrices would need more")
    ap.add_argument("--no-reference", action="store_true")
    ap.add_argument("--impl", choices=["ours", "reference"], help=argparse.SUPPRESS)
    ap.add_argument("--kept-out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.impl:
        print(json.dumps(child(args)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ours = run_child("ours", args, tmp)
        print(f"[ours] {ours}", flush=True)
        ref = {"skipped": "--no-reference"} if args.no_reference else run_child("reference", args, tmp)
        print(f"[reference] {ref}", flush=True)
        same = None
        if (tmp / "ours.npy").is_file() and (tmp / "reference.npy").is_file():
            a, b = np.load(tmp / "ours.npy"), np.load(tmp / "reference.npy")
            same = bool(np.array_equal(a, b))
            agree = len(np.intersect1d(a, b)) / max(len(a), 1)
            same_sel = bool(np.array_equal(np.load(tmp / "ours_sel.npy"), np.load(tmp / "reference_sel.npy")))
            print(f"kept rows identical: {same} (overlap {agree:.6f}); selection identical: {same_sel}")
    r = lambda v: None if v is None else round(float(v), 3)  # noqa: E731
    print(f"n={args.n:,} dim={args.dim} k={args.k}: ours {r(ours.get('seconds'))} s, {r(ours.get('peak_rss_gib'))} GiB"
          f" | reference {r(ref.get('seconds'))} s, {r(ref.get('peak_rss_gib'))} GiB")
    print(json.dumps({
        "n": args.n, "dim": args.dim, "k": args.k,
        "seconds": r(ours.get("seconds")), "peak_rss_gib": r(ours.get("peak_rss_gib")),
        "reference_seconds": r(ref.get("seconds")), "reference_peak_rss_gib": r(ref.get("peak_rss_gib")),
        "reference_skipped": ref.get("skipped") or ref.get("error"),
        "same_kept": same, "select_seconds": r(ours.get("select_seconds")),
        "prune_seconds": r(ours.get("prune_seconds")), "reference_prune_seconds": r(ref.get("prune_seconds")),
        "largest_cluster": ours.get("largest_cluster"), "data_gib": r(ours.get("data_gib")),
    }))


if __name__ == "__main__":
    main()
