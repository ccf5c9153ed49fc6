"""Kill ``adapt run`` with SIGKILL at random moments, resume it, and check that nothing was lost.

    python experiments/chaos_resume.py --trials 20                      # the demo config
    python experiments/chaos_resume.py --config my.yaml --set seed=1 --trials 5 --kills 2

First an uninterrupted reference run, whose phases are timed by watching its ``state.json``.
Then each trial runs the same config into its own directory and kills it ``--kills`` times: each
kill aims at one phase of one round (the phases taken in turn over the kills, the rounds at
random, a trial's kills in run order), waits a random part of how long the reference spent there, and sends SIGKILL; the run is
resumed with ``adapt run --resume`` until it finishes. A trial is *identical* when its
``metrics.json`` (timings aside), every round's ``selection.parquet``, the pool
(``pool/samples.parquet``) and the logged events (``metrics.jsonl``, times aside) equal the
reference's. One line per trial, then a summary line; the
exit status is 1 if any trial differs.

Each finished trial is appended to ``OUT/journal.jsonl``; invoked again with the same ``--out``,
config, overrides, ``--kills``, ``--seed`` and code (the git commit of ``adapt``, no uncommitted
changes), the reference and the journaled trials are reused and the others run, so 20 trials of the
demo config (about 2.5 hours on 2 cores) can be gathered over several sittings.
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

from adapt.layout import RunLayout

PHASES = ("ingest", "features", "select", "train", "evaluate", "prune", "checkpoint")
TIMING_KEYS = {"phase_seconds", "wall_seconds"}


def _adapt(*args: str) -> subprocess.Popen:
    env = dict(os.environ, WANDB_SILENT="true", WANDB_MODE="offline", HF_HUB_OFFLINE="1")
    return subprocess.Popen([sys.executable, "-m", "adapt", *args, "--quiet"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _state(run_dir: Path) -> dict:
    try:
        return json.loads(RunLayout(run_dir).state.read_text())
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
    """SIGKILL ``proc`` ``delay`` s after its state.json enters ``target``, or as soon as it leaves
    ``target`` if that comes first (the delay is drawn from the reference's time in the phase, and a
    run on a less loaded machine is quicker: without this it could finish before its last kill); or,
    if the run passes ``target`` (already done, or too quick to see), as soon as it is seen in a
    later phase."""
    deadline = time.time() + timeout
    order = {p: i for i, p in enumerate(PHASES)}
    while proc.poll() is None and time.time() < deadline:
        s = _state(run_dir)
        rnd, phase = s.get("round"), s.get("phase")
        if isinstance(rnd, int) and phase in order:
            if (rnd, phase) == target:
                start = time.time()
                while time.time() - start < delay and proc.poll() is None:
                    now = _state(run_dir)
                    if (now.get("round"), now.get("phase")) != target:
                        break
                    time.sleep(0.01)
                where = f"round {rnd} {phase} +{time.time() - start:.2f}s"
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
    la, lb = RunLayout(a), RunLayout(b)
    ma, mb = (json.loads(layout.metrics.read_text()) for layout in (la, lb))
    keys = sorted(k for k in set(ma) | set(mb) if k not in TIMING_KEYS and ma.get(k) != mb.get(k))
    if keys:
        diffs.append(f"{la.metrics.relative_to(a).as_posix()} ({', '.join(keys)})")
    for t in sorted(la.trained_rounds(), key=str):  # in the order of the folder names, as before
        sa, sb = la.round(t).selection, lb.round(t).selection
        if not sb.is_file() or not pd.read_parquet(sa).equals(pd.read_parquet(sb)):
            diffs.append(sa.relative_to(a).as_posix())
    if not _pool(a).equals(_pool(b)):
        diffs.append("pool")
    if _events(a) != _events(b):
        diffs.append(la.events.relative_to(a).as_posix())
    return diffs


def _pool(run_dir: Path) -> pd.DataFrame:
    """The pool, its records' image paths made relative to the run directory (the demo config writes
    its data into RUN_DIR/data, so each run's samples name its own copy of the same images)."""
    pool = pd.read_parquet(RunLayout(run_dir).pool.samples)
    pool["record"] = pool["record"].str.replace(str(run_dir.resolve()), "RUN_DIR", regex=False)
    return pool


def _events(run_dir: Path) -> list[dict]:
    """metrics.jsonl's events without their times (and the config event's paths, which name the run dir)."""
    out = []
    for line in RunLayout(run_dir).events.read_text().splitlines():
        e = json.loads(line)
        e.pop("time", None)
        if e.get("event") == "config":
            e.pop("config", None)
        out.append(e)
    return out


def code_version() -> str | None:
    """The git commit of the ``adapt`` that ``python -m adapt`` runs, or None if it has changes
    not committed (then nothing is reused from an earlier invocation)."""
    import adapt

    repo = Path(adapt.__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return None if dirty else head


def plan(rng: random.Random, trials: int, kills: int, rounds: list[int],
         spans: dict[tuple[int, str], float]) -> list[list[tuple[int, str, float]]]:
    """Each trial's kills: (round, phase, delay), the phases taken in turn over all the kills, the
    rounds at random, a trial's kills in run order, each delay a random part of the reference's
    time in that phase."""
    out, k = [], 0
    for _ in range(trials):
        targets = []
        for _ in range(kills):
            targets.append((rng.choice(rounds), PHASES[k % len(PHASES)]))
            k += 1
        targets.sort(key=lambda x: (x[0], PHASES.index(x[1])))
        out.append([(t, p, rng.uniform(0, spans.get((t, p), 0.0))) for t, p in targets])
    return out


def run_trial(args: argparse.Namespace, run_dir: Path, kills: list[tuple[int, str, float]], ref: Path) -> dict:
    """One trial: run, kill and resume as planned, compare with the reference."""
    if run_dir.exists():
        shutil.rmtree(run_dir)
    where = []
    proc = _adapt("run", args.config, *args.sets, "--run-dir", str(run_dir))
    for t, phase, delay in kills:
        where.append(kill_at(proc, run_dir, (t, phase), delay, timeout=3600))
        if proc.poll() is not None and proc.returncode not in (0, -signal.SIGKILL):
            break
        if "finished" not in where[-1]:
            proc = _adapt("run", "--resume", str(run_dir))
    text = proc.communicate()[0]
    if proc.returncode != 0:
        return {"identical": False, "line": f"the run failed after kills at {'; '.join(where)}:\n{text}"}
    diffs = same_outcome(ref, run_dir)
    if not args.keep and not diffs:
        shutil.rmtree(run_dir)
    return {"identical": not diffs, "line": f"killed at {'; '.join(where)} -> "
                                            f"{'identical' if not diffs else 'DIFFERS: ' + ', '.join(diffs)}"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/demo.yaml")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="key.sub=value overrides")
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--kills", type=int, default=1, help="kills per trial")
    ap.add_argument("--out", default="runs/chaos", help="folder of the reference, the trials and the journal")
    ap.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    ap.add_argument("--keep", action="store_true", help="keep the trials' run directories")
    args = ap.parse_args()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ref, journal_path = out / "reference", out / "journal.jsonl"
    key = {"config": args.config, "sets": args.sets, "kills": args.kills, "seed": args.seed,
           "commit": code_version()}
    journal = [json.loads(line) for line in journal_path.read_text().splitlines() if line] \
        if journal_path.is_file() else []
    if not journal or journal[0] != {"key": key} or key["commit"] is None:
        journal = [{"key": key}]  # another config or another code: start over
        journal_path.write_text(json.dumps(journal[0]) + "\n")
    start = time.perf_counter()
    spans_entry = next((j for j in journal if "spans" in j), None)
    if spans_entry is None or not RunLayout(ref).metrics.is_file():
        if ref.exists():
            shutil.rmtree(ref)
        spans = reference(args.config, args.sets, ref)
        spans_entry = {"spans": [[r, p, s] for (r, p), s in spans.items()],
                       "seconds": round(time.perf_counter() - start)}
        journal = [journal[0], spans_entry]
        with journal_path.open("w") as f:
            f.writelines(json.dumps(j) + "\n" for j in journal)
    spans = {(r, p): s for r, p, s in spans_entry["spans"]}
    rounds = sorted({r for r, _ in spans})
    print(f"reference: {spans_entry['seconds']}s, {len(rounds)} rounds (code {key['commit'] or 'with changes'})",
          flush=True)
    done = {j["trial"]: j for j in journal if "trial" in j}
    if done:
        print(f"{len(done)} trial(s) taken from {journal_path} (same config, seed and code commit)", flush=True)
    results = []
    for trial, kills in enumerate(plan(random.Random(args.seed), args.trials, args.kills, rounds, spans)):
        res = done.get(trial)
        if res is None:
            res = {"trial": trial, **run_trial(args, out / f"trial-{trial}", kills, ref)}
            with journal_path.open("a") as f:
                f.write(json.dumps(res) + "\n")
        results.append(res["identical"])
        print(f"trial {trial}: {res['line']}", flush=True)
    print(f"{sum(results)}/{len(results)} trials identical to the uninterrupted run "
          f"({args.kills} kill(s) each, {time.perf_counter() - start:.0f}s this invocation)", flush=True)
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
