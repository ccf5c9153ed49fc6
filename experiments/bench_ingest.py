"""Ingest of a large LLaVA JSON file into a run's pool: streaming (ours) vs loading it whole.

Writes a LLaVA-format JSON list of ``--samples`` records (one to three question/answer turns of
LLaVA-like lengths, 95% with one image out of ``--images`` small PNGs, the rest text-only), then
ingests it the way ``adapt run`` does, each side in its own child process so that each peak RSS
is its own:

  ours       adapt.data.readers.iter_dataset (ijson, one record at a time, every check of a run's
             ingest: fields, roles, placeholders, image paths inside the root, duplicate ids) into
             adapt.data.pool.DataPool.ingest (Parquet written a batch at a time): bounded memory;
  reference  the load-it-whole way (LLaVA's own loaders, and adapt before streaming): ``json.load``
             of the file, then every sample validated into a list, then the same ingest.

The reference runs on the first ``--reference-samples`` records (its memory grows with the file),
ours on those and on the whole file; both pools must hold the same samples.

    python experiments/bench_ingest.py                       # 1,000,000 samples
    python experiments/bench_ingest.py --samples 200000 --reference-samples 200000

The last line printed is JSON: samples, seconds, samples_per_s, peak_rss_gib (ours, whole file),
and the side-by-side figures at the reference size.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

WORDS = ("the a of on in to with and what is are there how many color left right top bottom picture "
         "image shows man woman dog cat car street table red blue green white black two three small "
         "large near behind holding sitting standing wearing describe detail scene object region").split()


def _text(rng: random.Random, lo: int, hi: int) -> str:
    return " ".join(rng.choices(WORDS, k=rng.randint(lo, hi)))


def write_llava_json(path: Path, n: int, n_images: int, seed: int = 0) -> None:
    """A LLaVA JSON list of ``n`` records written streaming, and ``n_images`` PNGs beside it."""
    from PIL import Image

    img_dir = path.parent / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    for i in range(n_images):
        Image.new("RGB", (8, 8), (i % 256, (7 * i) % 256, (13 * i) % 256)).save(img_dir / f"{i:05d}.png")
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as f:
        f.write("[\n")
        for i in range(n):
            turns = []
            for k in range(rng.randint(1, 3)):
                q = _text(rng, 6, 20) + "?"
                turns += [{"from": "human", "value": ("<image>\n" + q) if k == 0 else q},
                          {"from": "gpt", "value": _text(rng, 3, 60) + "."}]
            rec: dict = {"id": f"{i:09d}", "conversations": turns}
            if rng.random() < 0.95:
                rec["image"] = f"images/{rng.randrange(n_images):05d}.png"
            else:
                turns[0]["value"] = turns[0]["value"].removeprefix("<image>\n")
            f.write(("" if i == 0 else ",\n") + json.dumps(rec))
        f.write("\n]\n")


def _head(src: Path, dst: Path, n: int) -> None:
    """The first ``n`` records of ``src`` (a list written one record a line) as a file of its own."""
    with open(src, encoding="utf-8") as fin, open(dst, "w", encoding="utf-8") as fout:
        fout.write(fin.readline())  # "["
        for i in range(n):
            fout.write(fin.readline().rstrip(",\n") + (",\n" if i < n - 1 else "\n"))
        fout.write("]\n")


def child(impl: str, data: Path, pool_dir: Path) -> dict:
    from adapt.data.pool import DataPool
    from adapt.data.readers import _ImageChecker, iter_dataset, validate_record

    start = time.perf_counter()
    pool = DataPool(pool_dir)
    if impl == "ours":
        n = pool.ingest(iter_dataset(data, "llava"), "llava", round_added=0, source=str(data))
    else:
        records = json.loads(data.read_text(encoding="utf-8"))
        checker = _ImageChecker(data, data.parent.resolve(), verify=True)
        samples, seen = [], set()
        for i, rec in enumerate(records):
            s = validate_record(data, f"record {i}", rec, "llava", "llava", checker)
            if s.id in seen:
                raise SystemExit(f"duplicate id {s.id}")
            seen.add(s.id)
            samples.append(s)
        n = pool.ingest(samples, "llava", round_added=0, source=str(data))
    seconds = time.perf_counter() - start
    return {"impl": impl, "samples": n, "seconds": seconds, "samples_per_s": n / seconds,
            "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
            "fingerprint": pool.datasets()[0]["fingerprint"]}


def run_child(impl: str, data: Path, pool_dir: Path) -> dict:
    shutil.rmtree(pool_dir, ignore_errors=True)
    cmd = [sys.executable, __file__, "--child", impl, "--data", str(data), "--pool", str(pool_dir)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{impl} failed:\n{proc.stdout}\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=1_000_000)
    ap.add_argument("--reference-samples", type=int, default=200_000)
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--out", default=None, help="working folder (default: a temp folder, removed after)")
    ap.add_argument("--child", choices=["ours", "reference"], help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    ap.add_argument("--pool", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, Path(args.data), Path(args.pool))))
        return

    work = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bench_ingest_"))
    try:
        data = work / "full" / "llava.json"
        data.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        write_llava_json(data, args.samples, args.images)
        print(f"wrote {args.samples:,} samples ({data.stat().st_size / 2**20:.0f} MiB) in "
              f"{time.perf_counter() - t0:.0f}s", flush=True)
        n_ref = min(args.reference_samples, args.samples)
        small = data.parent / "head.json"  # beside it: the same image root
        _head(data, small, n_ref)
        ref = run_child("reference", small, work / "pool-reference")
        ours_small = run_child("ours", small, work / "pool-ours-head")
        if ours_small["fingerprint"] != ref["fingerprint"]:
            raise SystemExit("ours and the reference stored different samples")
        print(f"{n_ref:,} samples     ours {ours_small['samples_per_s']:,.0f} samples/s, "
              f"{ours_small['peak_rss_gib']:.2f} GiB | reference {ref['samples_per_s']:,.0f} samples/s, "
              f"{ref['peak_rss_gib']:.2f} GiB | RSS ratio {ours_small['peak_rss_gib'] / ref['peak_rss_gib']:.2f}, "
              f"speed ratio {ours_small['samples_per_s'] / ref['samples_per_s']:.2f}", flush=True)
        ours = run_child("ours", data, work / "pool-ours") if args.samples != n_ref else ours_small
        print(f"{args.samples:,} samples  ours {ours['samples_per_s']:,.0f} samples/s, "
              f"{ours['peak_rss_gib']:.2f} GiB, {ours['seconds']:.0f}s", flush=True)
        print(json.dumps({
            "samples": ours["samples"], "seconds": round(ours["seconds"], 1),
            "samples_per_s": round(ours["samples_per_s"]), "peak_rss_gib": round(ours["peak_rss_gib"], 3),
            "file_mib": round(data.stat().st_size / 2**20),
            "at_reference_size": {"samples": n_ref, "ours_peak_rss_gib": round(ours_small["peak_rss_gib"], 3),
                                  "reference_peak_rss_gib": round(ref["peak_rss_gib"], 3),
                                  "ours_samples_per_s": round(ours_small["samples_per_s"]),
                                  "reference_samples_per_s": round(ref["samples_per_s"]),
                                  "same_samples": True},
        }))
    finally:
        if not args.out:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
