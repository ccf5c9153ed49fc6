"""Which stored digests does this machine reproduce? Round 0 of each run, re-run here, against the
first row of its digest's accuracy matrix.

    python experiments/reproduce_round0.py --stream default --rows random hindsight --seeds 0 1 2

A run on another base differs after its first round already (`random`, seed 0, `default`: general
VQA 85.8 on one machine's base, 82.5 on another's), so a run whose round 0 does not repeat its
digest's accuracy row and per-dataset selection was not made on this machine's base and arithmetic
(the CPU pinned, see adapt/numerics.py) and cannot be paired by seed with runs made here. One that
repeats it is on the same base, and probably the same arithmetic: round 0's answers can survive a
small difference in the fine-tuning's sums (an unpinned round 0 on this AVX-512 machine repeated the
stored `random` seed 3, made on another machine), so only a whole run repeating settles that. Each
check starts the row's ``adapt run`` exactly as experiments/compare.py does (same config, overrides,
stream data), stops it once round 0 is evaluated (about a sixth of a run), and stores the verdict in
``RUNS/<stream>/round0/<row>-s<S>.json``, so an interrupted check resumes. Prints one line a run and
a table: reproduced, or the digest's row against this machine's.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))

import compare  # noqa: E402

from adapt.data.demo_stream import STREAMS, write_demo_stream  # noqa: E402
from adapt.io import write_json_atomic  # noqa: E402
from adapt.layout import RunLayout, stream_manifest  # noqa: E402


def first_round(metrics: dict) -> dict:
    """What round 0 left in a run's metrics: its accuracy row and what it selected per dataset."""
    return {"accuracy": metrics["accuracy_matrix"][0], "selected": metrics["selected_per_dataset"][0]}


def round0_of(args: argparse.Namespace, job: compare.Job, threads: int, poll: float = 2.0) -> dict:
    """Start ``job``'s run (a fresh directory), wait until round 0's row is in its metrics.json, stop it."""
    layout = RunLayout(job.run)
    job.run.parent.mkdir(parents=True, exist_ok=True)
    with open(compare.log_path(job.run), "a") as log:
        proc = subprocess.Popen(compare.command(args, job), stdout=log, stderr=subprocess.STDOUT,
                                env=compare.job_env(threads),
                                cwd=ROOT, start_new_session=True)
        try:
            while proc.poll() is None:
                time.sleep(poll)
                try:
                    metrics = json.loads(layout.metrics.read_text())
                except (OSError, ValueError):
                    continue
                if metrics.get("rounds_done", 0) >= 1:
                    return first_round(metrics)
            raise RuntimeError(f"{job.run.name} exited ({proc.returncode}) before round 0 was evaluated; see "
                               f"{compare.log_path(job.run)}")
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait()


def check(args: argparse.Namespace, row: str, seed: int, threads: int) -> dict | None:
    """The stored verdict for (row, seed), else one made now; None without a digest to check against."""
    stored = compare.digest_path(args, compare.run_dir(args.runs, args.stream, row, seed))
    if not stored.is_file():
        return None
    verdict_path = args.runs / args.stream / "round0" / f"{row}-s{seed}.json"
    if verdict_path.is_file():
        return json.loads(verdict_path.read_text())
    job = compare.Job(row, seed, args.runs / args.stream / "round0" / f"{row}-s{seed}", compare.ROWS[row].overrides)
    if job.run.exists():  # a check cut off mid-run starts again from nothing
        import shutil

        shutil.rmtree(job.run)
    here = round0_of(args, job, threads)
    theirs = first_round(json.loads(stored.read_text()))
    verdict = {"row": row, "seed": seed, "digest": theirs, "here": here, "reproduced": here == theirs}
    write_json_atomic(verdict_path, verdict, indent=1)
    return verdict


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stream", choices=list(STREAMS), default="default")
    ap.add_argument("--rows", nargs="+", required=True, choices=list(compare.ROWS), metavar="ROW")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    ap.add_argument("--threads", type=int, default=1, help="torch threads of each check (the grid's runs: 1)")
    ap.add_argument("--config", type=Path, default=ROOT / "configs" / "demo.yaml")
    ap.add_argument("--runs", type=Path, default=Path("runs/reproduce"), help="where the checks' runs go")
    ap.add_argument("--out", type=Path, default=ROOT / "experiments" / "results", help="where the digests are")
    args = ap.parse_args()
    args.config, args.runs, args.out = args.config.resolve(), args.runs.resolve(), args.out.resolve()
    args.scale, args.stream_seed, args.sets = 1.0, 0, ["stream.seed=0"]
    if not stream_manifest(compare.data_dir(args)).is_file():
        write_demo_stream(compare.data_dir(args), seed=args.stream_seed, stream=args.stream, scale=args.scale)
    lines = ["| run | round 0 | digest's accuracy row | here |", "| --- | --- | --- | --- |"]
    for row in args.rows:
        for seed in args.seeds:
            v = check(args, row, seed, args.threads)
            if v is None:
                continue
            pct = lambda xs: " ".join(f"{100 * x:.1f}" for x in xs)  # noqa: E731
            said = "reproduced" if v["reproduced"] else "differs"
            print(f"{args.stream} {row}-s{seed}: {said}", flush=True)
            lines.append(f"| {row}-s{seed} | {said} | {pct(v['digest']['accuracy'])} | {pct(v['here']['accuracy'])} |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
