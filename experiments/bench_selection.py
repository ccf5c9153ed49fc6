"""Adapt-∞'s selection and pruning at pool scale: ours, the exact index, and the authors' quadratic SemDeDup.

The parent writes a synthetic clustered feature matrix (``--n`` rows of ``--dim``, ``--k`` skills,
exact and near duplicates) as a float16 file, the layout of a feature store, and five synthetic
expert scores; each implementation then runs in its own child process on a memory map of that file
(so that each peak RSS is its own, and the pool is never held whole in float32):

  ours       adapt.methods.adapt_inf.adapt_inf_round (faiss spherical k-means, trained on a sample
             when the pool is large and assigned block by block, the experts' bookkeeping, the
             entropy choice per cluster, the uniform budget split, CCS), then
             adapt.selection.pruning.semdedup_keep with ``pool.prune_index: auto`` (exact for
             clusters of up to 20,000 rows, the inverted file above);
  exact      the same with ``prune_index: exact`` (faiss's flat index, quadratic time), skipped above
             ``--exact-max-n``;
  ivf, hnsw  with ``--also``: the same with that index for every cluster, whatever its size;
  reference  the same selection, then the authors' SemDeDup: per cluster the full n_c × n_c cosine
             matrix (torch), its strict upper triangle, the column maximum; memory O(n_c²). It is
             skipped when its largest matrix would need more than ``--reference-max-gib``.

The skills' spread is, by default, a power law (``--spectrum power``): covariance eigenvalues ∝ i^-1.1
in a random basis per skill, which puts half the variance in 8 of 256 directions and 90% in ~110, as
the demo's gradient stores do (half in 9–17 of 8192, 90% in 59–104, measured on the demo's round-5
clusters); ``--spectrum flat`` is isotropic noise, the hardest case for any approximate index.

    python experiments/bench_selection.py --n 200000 --dim 256 --k 10
    python experiments/bench_selection.py --n 1000000 --dim 256 --k 10
    python experiments/bench_selection.py --n 10000000 --dim 256 --k 10

The last line printed is JSON: ours' seconds and peak_rss_gib, the exact index's and the reference's
(null when skipped, with *_skipped saying why), agree_exact (the share of the exact index's kept rows
that ours keeps), exact_duplicates_dropped and _by_exact (of the exact_duplicates planted, how many
each drops: ours should drop as many), and each side's phase seconds.
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
POWER = 1.1


def _skills(dim: int, k: int, rng: np.random.Generator, spectrum: str):
    """Each skill's centre, spread, and noise map (per-direction scales, then a rotation or None)."""
    centres = rng.standard_normal((k, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    spread = rng.uniform(0.6, 1.4, size=k).astype(np.float32)
    if spectrum == "flat":
        return centres, spread, np.full(dim, 1 / np.sqrt(dim), np.float32), None
    scale = np.arange(1, dim + 1, dtype=np.float64) ** (-POWER / 2)
    scale = (scale / np.sqrt((scale**2).sum())).astype(np.float32)  # total variance 1, as the flat one
    rotations = [np.linalg.qr(rng.standard_normal((dim, dim)))[0].astype(np.float32) for _ in range(k)]
    return centres, spread, scale, rotations


def synthetic_pool(n: int, dim: int, k: int, seed: int = 0, dup: float = 0.05, spectrum: str = "power",
                   out: str | Path | None = None, chunk: int = 100_000
                   ) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """``n`` unit rows around ``k`` random centres (spread unequal, as skills are), the last ``dup``
    of them copies of earlier rows, half exact and half with a little noise; five expert scores of
    different shapes; and the rows that are exact copies. Written chunk by chunk as float16 to
    ``out`` (returned as a read-only memory map), or float32 in memory when ``out`` is None."""
    rng = np.random.default_rng(seed)
    centres, spread, scale, rotations = _skills(dim, k, rng, spectrum)
    x = (np.lib.format.open_memmap(str(out), mode="w+", dtype=np.float16, shape=(n, dim)) if out is not None
         else np.empty((n, dim), dtype=np.float32))
    label = rng.integers(0, k, size=n)
    n_dup = int(dup * n)
    for s in range(0, n - n_dup, chunk):
        e = min(n - n_dup, s + chunk)
        z = rng.standard_normal((e - s, dim), dtype=np.float32) * scale
        block = centres[label[s:e]]
        for c in np.unique(label[s:e]):
            rows = label[s:e] == c
            block[rows] += spread[c] * (z[rows] if rotations is None else z[rows] @ rotations[c])
        x[s:e] = block / np.linalg.norm(block, axis=1, keepdims=True)
    src = rng.integers(0, n - n_dup, size=n_dup)
    near = rng.random(n_dup) < 0.5
    for s in range(0, n_dup, chunk):
        e = min(n_dup, s + chunk)
        copy = np.asarray(x[src[s:e]], dtype=np.float32)
        noisy = near[s:e]
        copy[noisy] += 0.01 * spread[label[src[s:e][noisy]], None] / np.sqrt(dim) * rng.standard_normal(
            (int(noisy.sum()), dim), dtype=np.float32)
        copy[noisy] /= np.linalg.norm(copy[noisy], axis=1, keepdims=True)
        x[n - n_dup + s:n - n_dup + e] = copy
    if out is not None:
        x.flush()
        x = np.load(str(out), mmap_mode="r")
    base = rng.standard_normal(n)
    scores = {
        "ppl": np.exp(0.5 * base),
        "el2n": rng.beta(2, 5, size=n),
        "entropy": rng.gamma(2.0, 1.0, size=n),
        "grand": np.abs(base) + 0.1 * rng.standard_normal(n),
        "image_grounding": 1 + rng.exponential(0.2, size=n),
    }
    return x, scores, n - n_dup + np.flatnonzero(~near)


def reference_semdedup_keep(x: np.ndarray, labels: np.ndarray, keep: int) -> np.ndarray:
    """The authors' SemDeDup: per cluster the full cosine matrix, triu(diagonal=1), column max, the
    cluster's share (``split_uniform``: ⌈keep/k⌉ from the smallest cluster up, as ours by default)
    with the smallest max kept (rows in arrival order, as ours)."""
    import torch

    from adapt.features.blocks import take_unit_rows
    from adapt.selection.budget import split_uniform

    clusters = np.unique(labels)
    members = [np.flatnonzero(labels == c) for c in clusters]
    shares = split_uniform([len(m) for m in members], min(int(keep), len(x)))
    kept = []
    for rows, share in zip(members, shares):
        if share <= 0:
            continue
        e = torch.from_numpy(take_unit_rows(x, rows))
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
    from adapt.selection.nearest_earlier import resolve_index
    from adapt.selection.pruning import semdedup_keep

    tmp = Path(args.tmp)
    x = np.load(tmp / "pool.npy", mmap_mode="r")
    with np.load(tmp / "scores.npz") as z:
        scores = {e: z[e] for e in EXPERTS}
    out: dict = {}
    t0 = time.perf_counter()
    result = adapt_inf_round(x, scores, int(args.budget * args.n), k=args.k, seed=args.seed)
    out["select_seconds"] = time.perf_counter() - t0
    keep = int(args.keep * args.n)
    sizes = np.bincount(result.labels)
    largest = int(sizes.max())
    if args.impl == "reference":
        need = 2 * largest**2 * 4 / 2**30  # the matrix and its triangle, float32
        if need > args.reference_max_gib:
            out["skipped"] = f"the largest cluster ({largest:,} rows) needs {need:.0f} GiB for its n_c x n_c matrices"
            return out
    t1 = time.perf_counter()
    if args.impl == "reference":
        kept = reference_semdedup_keep(x, result.labels, keep)
    else:
        index = "auto" if args.impl == "ours" else args.impl
        kept = semdedup_keep(x, result.labels, keep, index=index, seed=args.seed)
        used = [resolve_index(index, int(s)) for s in sizes if s]
        out["indexes"] = {i: used.count(i) for i in sorted(set(used))}
    out["prune_seconds"] = time.perf_counter() - t1
    out["seconds"] = time.perf_counter() - t0
    out["largest_cluster"] = largest
    out["selected"] = int(result.selected.sum())
    out["kept"] = int(len(kept))
    np.save(tmp / f"{args.impl}_kept.npy", kept)
    np.save(tmp / f"{args.impl}_sel.npy", np.flatnonzero(result.selected))
    out["peak_rss_gib"] = peak_rss_gib()
    return out


def run_child(impl: str, args: argparse.Namespace, tmp: Path) -> dict:
    cmd = [sys.executable, __file__, "--impl", impl, "--n", str(args.n), "--dim", str(args.dim), "--k", str(args.k),
           "--seed", str(args.seed), "--budget", str(args.budget), "--keep", str(args.keep),
           "--reference-max-gib", str(args.reference_max_gib), "--tmp", str(tmp)]
    print(f"[{impl}] running ...", flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def compare(tmp: Path, a: str, b: str, exact_copies: np.ndarray) -> dict:
    """How ``a``'s kept rows agree with ``b``'s: the share of ``b``'s that ``a`` keeps, whether the
    selections are identical, and how many exact copies each drops. (Where a cluster must keep
    some of its exact copies, which ones is decided by M's last bit, as exact copies all have M = 1
    up to rounding; so the count is compared, not the rows.)"""
    if not ((tmp / f"{a}_kept.npy").is_file() and (tmp / f"{b}_kept.npy").is_file()):
        return {}
    ka, kb = np.load(tmp / f"{a}_kept.npy"), np.load(tmp / f"{b}_kept.npy")
    return {"same": bool(np.array_equal(ka, kb)), "agree": len(np.intersect1d(ka, kb)) / max(len(kb), 1),
            "same_selection": bool(np.array_equal(np.load(tmp / f"{a}_sel.npy"), np.load(tmp / f"{b}_sel.npy"))),
            "exact_duplicates_dropped": int(len(np.setdiff1d(exact_copies, ka))),
            f"exact_duplicates_dropped_by_{b}": int(len(np.setdiff1d(exact_copies, kb)))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--spectrum", choices=["power", "flat"], default="power",
                    help="the skills' noise: power-law covariance (as the demo's stores) or isotropic")
    ap.add_argument("--budget", type=float, default=0.25, help="fraction of the pool selected")
    ap.add_argument("--keep", type=float, default=0.8, help="fraction of the pool kept by pruning")
    ap.add_argument("--exact-max-n", type=int, default=2_000_000,
                    help="skip the exact index above this pool size (its time is quadratic)")
    ap.add_argument("--reference-max-gib", type=float, default=16.0,
                    help="skip the reference when its largest cluster's matrices would need more")
    ap.add_argument("--no-reference", action="store_true")
    ap.add_argument("--also", nargs="*", default=[], choices=["ivf", "hnsw"],
                    help="also run pruning with this index for every cluster (its seconds and agreement with exact)")
    ap.add_argument("--impl", choices=["ours", "exact", "ivf", "hnsw", "reference"], help=argparse.SUPPRESS)
    ap.add_argument("--tmp", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.impl:
        print(json.dumps(child(args)))
        return
    with tempfile.TemporaryDirectory(prefix="bench_selection_") as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        _, scores, exact_copies = synthetic_pool(args.n, args.dim, args.k, args.seed, spectrum=args.spectrum,
                                                 out=tmp / "pool.npy")
        np.savez(tmp / "scores.npz", **scores)
        print(f"[data] {args.n:,} x {args.dim} float16 ({args.spectrum} spectrum) in {time.perf_counter() - t:.0f} s",
              flush=True)
        ours = run_child("ours", args, tmp)
        print(f"[ours] {ours}", flush=True)
        exact = ({"skipped": f"n > --exact-max-n ({args.exact_max_n:,}): quadratic time"} if args.n > args.exact_max_n
                 else run_child("exact", args, tmp))
        print(f"[exact] {exact}", flush=True)
        ref = {"skipped": "--no-reference"} if args.no_reference else run_child("reference", args, tmp)
        print(f"[reference] {ref}", flush=True)
        also = {}
        for name in args.also:
            res = run_child(name, args, tmp)
            also[name] = {"seconds": res.get("seconds"), "prune_seconds": res.get("prune_seconds"),
                          "peak_rss_gib": res.get("peak_rss_gib"), **compare(tmp, name, "exact", exact_copies)}
            print(f"[{name}] {also[name]}", flush=True)
        vs_exact = compare(tmp, "ours", "exact", exact_copies)
        ref_vs_exact = compare(tmp, "reference", "exact", exact_copies)
        if vs_exact:
            print(f"ours vs exact: {vs_exact}")
        if ref_vs_exact:
            print(f"reference vs exact: {ref_vs_exact}")
    r = lambda v: None if v is None else round(float(v), 3)  # noqa: E731
    print(f"n={args.n:,} dim={args.dim} k={args.k}: ours {r(ours.get('seconds'))} s, {r(ours.get('peak_rss_gib'))} GiB"
          f" | exact {r(exact.get('seconds'))} s | reference {r(ref.get('seconds'))} s, {r(ref.get('peak_rss_gib'))} GiB")
    print(json.dumps({
        "n": args.n, "dim": args.dim, "k": args.k, "spectrum": args.spectrum,
        "seconds": r(ours.get("seconds")), "peak_rss_gib": r(ours.get("peak_rss_gib")),
        "select_seconds": r(ours.get("select_seconds")), "prune_seconds": r(ours.get("prune_seconds")),
        "indexes": ours.get("indexes"), "largest_cluster": ours.get("largest_cluster"),
        "exact_seconds": r(exact.get("seconds")), "exact_peak_rss_gib": r(exact.get("peak_rss_gib")),
        "exact_prune_seconds": r(exact.get("prune_seconds")), "exact_skipped": exact.get("skipped") or exact.get("error"),
        "agree_exact": r(vs_exact.get("agree")), "same_selection": vs_exact.get("same_selection"),
        "exact_duplicates": int(len(exact_copies)), "exact_duplicates_dropped": vs_exact.get("exact_duplicates_dropped"),
        "exact_duplicates_dropped_by_exact": vs_exact.get("exact_duplicates_dropped_by_exact"),
        "reference_seconds": r(ref.get("seconds")), "reference_peak_rss_gib": r(ref.get("peak_rss_gib")),
        "reference_prune_seconds": r(ref.get("prune_seconds")),
        "reference_skipped": ref.get("skipped") or ref.get("error"),
        "reference_same_as_exact": ref_vs_exact.get("same"),
        "data_gib": r(args.n * args.dim * 2 / 2**30),
        **{f"{name}_{key}": r(v) if isinstance(v, float) else v for name, res in also.items()
           for key, v in res.items() if key in ("seconds", "prune_seconds", "peak_rss_gib", "agree",
                                                "exact_duplicates_dropped")},
    }))


if __name__ == "__main__":
    main()
