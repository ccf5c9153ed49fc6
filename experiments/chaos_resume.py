"""Kill ``adapt run`` with SIGKILL at random moments, resume it, and check that nothing was lost.

    python experiments/chaos_resume.py --trials 20                      # the demo config
    python experiments/chaos_resume.py --config my.yaml --set seed=1 --trials 5 --kills 2

First an uninterrupted reference run, whose phases are timed by watching its ``state.json``.
Then each trial runs the same config into its own directory and kills it ``--kills`` times: each
kill aims at one phase of one round (the phases taken in turn over the kills, the rounds at
random, a trial's kills in run order), waits a random part of how long the reference spent there, and sends SIGKILL; the run is
resumed with ``adapt run --resume`` until it finishes. A trial is *identical* when its
``metrics.json`` (timings aside), every round's ``selection.parquet`` and the pool
(``pool/samples.parquet``) equal the reference's. One line per trial, then a summary line; the
exit status is 1 if any trial differs.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

PHASES = ("ingest", "features", "select", "train", "evaluate", "prune", "checkpoint")
TIMING_KEYS = {"phase_seconds", "wall_seconds"}


def _adapt(*args: str) -> subprocess.Popen:
    env = dict(os.environ, WANDB_SILENT="true", WANDB_MODE="offline", HF_HUB_OFFLINE="1")
    return subprocess.Popen([sys.executable, "-m", "adapt", *args, "--quiet"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _state(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / "state.json").read_text())
    except (OSError, ValueError):
        return {}


def reference(config: str, sets: list[str], run_dir: Path) -> dict[tuple[int, str], float]:
    """Run once, uninterrupted; the seconds spent in each (round, phase), seen at 20 Hz."""
    proc = _adapt("run", config, *sets, "--run-dir", str(run_dir))
    spans: dict[tuple[int, str], float] = {}
    last, since = None, time.perf_counter()
    while proc.poll() is None:
        s = _state(run_dir)
        now = (s.get("round"), s.get("phase"))
        if now != last:
            t = time.perf_counter()
            if last is not None and isinstance(last[0], int) and last[1] in PHASES:
                spans[last] = spans.get(last, 0.0) + t - since
            last, since = now, t
        time.sleep(0.05)
    out = proc.stdout.read()
    if proc.returncode != 0:
        raise SystemExit(f"the reference run failed:\n{out}")
    return spans


def kill_at(proc: subprocess.Popen, run_dir: Path, target: tuple[int, str], delay: float,
            timeout: float) -> str:
    """SIGKILL ``proc`` ``delay`` s after its state.json enters ``target``; or, if the run passes
    it (already done, or too quick to see), as soon as it is seen in a later phase."""
    deadline = time.time() + timeout
    order = {p: i for i, p in enumerate(PHASES)}
    while proc.poll() is None and time.time() < deadline:
        s = _state(run_dir)
        rnd, phase = s.get("round"), s.get("phase")
        if isinstance(rnd, int) and phase in order:
            if (rnd, phase) == target:
                time.sleep(delay)
                where = f"round {rnd} {phase} +{delay:.2f}s"
                break
            if (rnd, order[phase]) > (target[0], order[target[1]]):
                where = f"round {rnd} {phase} (passed round {target[0]} {target[1]})"
                break
        time.sleep(0.01)
    else:
        return "finished before the kill" if proc.poll() is not None else "timed out"
    if proc.poll() is not None:
        return "finished before the kill"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return where


def same_outcome(a: Path, b: Path) -> list[str]:
    """What differs between two finished runs (empty: identical)."""
    diffs = []
    ma, mb = (json.loads((d / "metrics.json").read_text()) for d in (a, b))
    keys = sorted(k for k in set(ma) | set(mb) if k not in TIMING_KEYS and ma.get(k) != mb.get(k))
    if keys:
        diffs.append(f"metrics.json ({', '.join(keys)})")
    rounds = sorted(p.name for p in (a / "rounds").iterdir() if p.name.isdigit())
    for t in rounds:
        sa, sb = a / "rounds" / t / "selection.parquet", b / "rounds" / t / "selection.parquet"
        if not sb.is_file() or not pd.read_parquet(sa).equals(pd.read_parquet(sb)):
            diffs.append(f"rounds/{t}/selection.parquet")
    if not pd.read_parquet(a / "pool" / "samples.parquet").equals(pd.read_parquet(b / "pool" / "samples.parquet")):
        diffs.append("pool")
    return diffs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/demo.yaml")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="key.sub=value overrides")
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--kills", type=int, default=1, help="kills per trial")
    ap.add_argument("--out", default="runs/chaos", help="folder of the reference and the trials")
    ap.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    ap.add_argument("--keep", action="store_true", help="keep the trials' run directories")
    args = ap.parse_args()

    out = Path(args.out)
    ref = out / "reference"
    if ref.exists():
        shutil.rmtree(ref)
    start = time.perf_counter()
    spans = reference(args.config, args.sets, ref)
    rounds = sorted({r for r, _ in spans})
    print(f"reference: {time.perf_counter() - start:.0f}s, {len(rounds)} rounds", flush=True)
    rng = random.Random(args.seed)
    results = []
    k = 0
    for trial in range(args.trials):
        run_dir = out / f"trial-{trial}"
        if run_dir.exists():
            shutil.rmtree(run_dir)
        kills = []
        targets = []
        for _ in range(args.kills):  # the phases in turn, the rounds at random, then in run order
            targets.append((rng.choice(rounds), PHASES[k % len(PHASES)]))
            k += 1
        targets.sort(key=lambda x: (x[0], PHASES.index(x[1])))
        proc = _adapt("run", args.config, *args.sets, "--run-dir", str(run_dir))
        for t, phase in targets:
            delay = rng.uniform(0, spans.get((t, phase), 0.0))
            kills.append(kill_at(proc, run_dir, (t, phase), delay, timeout=3600))
            if proc.poll() is not None and proc.returncode not in (0, -signal.SIGKILL):
                break
            if "finished" not in kills[-1]:
                proc = _adapt("run", "--resume", str(run_dir))
        text = proc.communicate()[0]
        if proc.returncode != 0:
            print(f"trial {trial}: the run failed after kills at {'; '.join(kills)}:\n{text}", flush=True)
            results.append(False)
            continue
        diffs = same_outcome(ref, run_dir)
        results.append(not diffs)
        print(f"trial {trial}: killed at {'; '.join(kills)} -> {'identical' if not diffs else 'DIFFERS: ' + ', '.join(diffs)}",
              flush=True)
        if not args.keep and not diffs:
            shutil.rmtree(run_dir)
    print(f"{sum(results)}/{len(results)} trials identical to the uninterrupted run "
          f"({args.kills} kill(s) each, {time.perf_counter() - start:.0f}s)", flush=True)
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
