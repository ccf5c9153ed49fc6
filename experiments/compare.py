"""The results table: strategies × seeds on a built-in stream, one command.

    python experiments/compare.py                      # both built-in streams, every row, seeds 0 1 2
    python experiments/compare.py --stream alt         # one stream
    python experiments/compare.py --stream default --rows random adapt_inf --seeds 0 --scale 0.05 \\
        --runs runs/try --out /tmp/try                        # a quick look at two rows

Each (row, seed) is ``adapt run CONFIG <the row's overrides> seed=S stream.builtin=STREAM`` into
``RUNS/<stream>/<row>-s<S>``, run as its own process, ``--jobs`` at a time (each with
``cores / jobs`` threads). It is resumable: a finished run is read, not rerun; an interrupted one
continues with ``adapt run --resume``; a run's output goes to ``RUNS/<stream>/<row>-s<S>.log``.
The stream's data are written once into ``RUNS/<stream>/data`` and shared.

Then, in ``OUT`` (``experiments/results``): ``<stream>.md`` (mean ± std over the seeds of A, MAA,
F, BWT, FWT, A relative to multitask, samples trained, wall time; each task's score after its own
round and after the last; the rare skills; Adapt-∞'s claims tested, paired by seed), ``<stream>.csv`` (one line per run) and
``<stream>/`` with the plots: the accuracy matrices side by side (seed of the first run), the
forgetting per task, A against the samples trained.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from adapt.data.demo_stream import STREAMS, write_demo_stream  # noqa: E402
from adapt.evaluation.continual_metrics import forgetting_per_task, relative_score  # noqa: E402
from adapt.layout import RunLayout, stream_manifest  # noqa: E402
from adapt.tracking.report import load_run  # noqa: E402

PRUNE = "pool.max_size=0.5"  # Adapt-∞ keeps at most half of every sample seen (permanent pruning)


@dataclass(frozen=True)
class Row:
    label: str
    overrides: tuple[str, ...]


def _expert_alone(expert: str) -> Row:
    return Row(f"`{expert}` alone, CCS", ("selection.method=adapt_inf", f"selection.adapt_inf.experts=[{expert}]",
                                           f"selection.adapt_inf.expert_choice=fixed:{expert}"))


ROWS: dict[str, Row] = {
    "full": Row("`full` (sequential, every new sample)", ("selection.method=full",)),
    "random": Row("`random`", ("selection.method=random",)),
    # controls at Adapt-∞'s sample counts: the same pool cap, pruned at random instead of by SemDeDup
    "random_pruned": Row("`random`, pruning to half at random", ("selection.method=random", "features.enabled=false",
                                                                 PRUNE)),
    "random_lite": Row("`random` LITE (a quarter of the budget, pruning at random)",
                       ("selection.method=random", "selection.budget=0.0625", "features.enabled=false", PRUNE)),
    **{e: _expert_alone(e) for e in ("ppl", "el2n", "entropy", "grand", "image_grounding")},
    "tive": Row("`tive`", ("selection.method=tive", "features.enabled=false")),
    "mllm_selector": Row("`mllm_selector`", ("selection.method=mllm_selector",)),
    "datatailor": Row("`datatailor`", ("selection.method=datatailor", "features.enabled=false")),
    "gdo": Row("`gdo` (minloss)", ("selection.method=gdo",)),
    "adapt_inf": Row("`adapt_inf` (pruning to half the data seen)", ("selection.method=adapt_inf", PRUNE)),
    "adapt_inf_lite": Row("`adapt_inf` LITE (a quarter of the budget)",
                          ("selection.method=adapt_inf", "selection.budget=0.0625", PRUNE)),
    "adapt_inf_no_prune": Row("`adapt_inf` without pruning", ("selection.method=adapt_inf",)),
    "multitask": Row("`multitask` (reference: one training on the union)", ("selection.method=multitask",)),
}
KEYS = (("avg_accuracy", "A"), ("maa", "MAA"), ("forgetting", "F"), ("bwt", "BWT"), ("fwt", "FWT"))


# ------------------------------------------------------------------------------------ running
def run_dir(runs: Path, stream: str, row: str, seed: int) -> Path:
    return runs / stream / f"{row}-s{seed}"


def finished(run: Path) -> bool:
    layout = RunLayout(run)
    try:
        state = json.loads(layout.state.read_text())
    except (OSError, ValueError):
        return False
    return state.get("status") == "finished" and layout.metrics.is_file()


def command(args: argparse.Namespace, row: str, seed: int, run: Path) -> list[str]:
    if RunLayout(run).state.is_file():
        return [sys.executable, "-m", "adapt", "run", "--resume", str(run), "--quiet"]
    return [sys.executable, "-m", "adapt", "run", str(args.config), *ROWS[row].overrides, f"seed={seed}",
            f"stream.builtin={args.stream}", f"stream.scale={args.scale}", f"stream.data_dir={data_dir(args)}",
            *args.sets, "--run-dir", str(run), "--quiet"]


def data_dir(args: argparse.Namespace) -> Path:
    return (args.runs / args.stream / "data").resolve()


def launch(args: argparse.Namespace, row: str, seed: int, threads: int) -> tuple[str, int, int, float]:
    run = run_dir(args.runs, args.stream, row, seed)
    run.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), WANDB_SILENT="true",
               WANDB_MODE="offline", HF_HUB_OFFLINE="1")
    start = time.perf_counter()
    with open(run.with_suffix(".log"), "a") as log:
        rc = subprocess.run(command(args, row, seed, run), stdout=log, stderr=subprocess.STDOUT, env=env,
                            cwd=ROOT).returncode
    return row, seed, rc, time.perf_counter() - start


def run_grid(args: argparse.Namespace) -> None:
    from tqdm.auto import tqdm

    todo = [(r, s) for r in args.rows for s in args.seeds if not finished(run_dir(args.runs, args.stream, r, s))]
    if not todo:
        return
    manifest = stream_manifest(data_dir(args))
    if not manifest.is_file():
        write_demo_stream(data_dir(args), seed=args.stream_seed, stream=args.stream, scale=args.scale)
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.jobs)
    print(f"{len(todo)} run(s) to do, {args.jobs} at a time, {threads} thread(s) each", flush=True)
    failed = []
    with ThreadPoolExecutor(args.jobs) as pool, tqdm(total=len(todo), unit="run") as bar:
        futures = [pool.submit(launch, args, r, s, threads) for r, s in todo]
        for f in as_completed(futures):
            row, seed, rc, seconds = f.result()
            bar.update(1)
            bar.write(f"{row} seed {seed}: {'done' if rc == 0 else f'FAILED (exit {rc})'} in {seconds / 60:.1f} min")
            if rc != 0:
                failed.append(f"{row}-s{seed} (see {run_dir(args.runs, args.stream, row, seed).with_suffix('.log')})")
    if failed:
        sys.exit("failed: " + ", ".join(failed))


# ------------------------------------------------------------------------------------ tables
def mean_std(values: list[float | None], scale: float = 100.0, digits: int = 1) -> str:
    """``mean ± std`` (sample std) of the values that are there, times ``scale``; "—" if none."""
    v = [scale * x for x in values if x is not None and not np.isnan(x)]
    if not v:
        return "—"
    if len(v) == 1:
        return f"{v[0]:.{digits}f}"
    return f"{np.mean(v):.{digits}f} ± {np.std(v, ddof=1):.{digits}f}"


def diagonal(run: dict) -> list[float]:
    """Score of task j after round j (a joint run: its one row)."""
    R = run["accuracy_matrix"]
    return list(R[0]) if len(R) == 1 else [R[j][j] for j in range(min(len(R), len(run["tasks"])))]


def _md(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "| --- | " + " | ".join("---:" for _ in header[1:]) + " |",
            *("| " + " | ".join(r) + " |" for r in rows), ""]


def last_predictions(rd: Path) -> "pd.DataFrame | None":
    """The last round's ``predictions.jsonl`` of a run directory as a DataFrame (None if no round has one)."""
    import pandas as pd

    layout = RunLayout(rd)
    last = [layout.round(t).predictions for t in layout.trained_rounds() if layout.round(t).predictions.exists()]
    return pd.read_json(last[-1], lines=True, dtype={"prediction": str, "reference": str}) if last else None


def chance(run: dict, tasks: list[str]) -> list[float | None]:
    """Chance level of each task on the items the run was evaluated on: the best score one constant
    answer gets (:func:`adapt.evaluation.answer_scorers.best_constant`, with the task's metric)."""
    from adapt.evaluation.answer_scorers import best_constant

    rd = Path(run["run_dir"])
    metric = {d.get("task", d["name"]): d.get("metric", "exact")
              for d in json.loads(RunLayout(rd).stream.read_text())["datasets"]}
    preds = last_predictions(rd)
    if preds is None or "reference" not in preds:
        return [None] * len(tasks)
    refs = preds.groupby("task")["reference"].apply(list).to_dict()
    return [best_constant(metric.get(t, "exact"), refs[t])[1] if t in refs else None for t in tasks]


def rare_skills(run: dict) -> tuple[float | None, float | None, float | None, int]:
    """(share of rare-skill samples among the selected, among the pool, over all rounds; score on
    the rare-skill eval items after the last round; how many such items): from the built-in
    stream's ``meta.rare`` flags."""
    import pandas as pd

    rd = Path(run["run_dir"])
    layout = RunLayout(rd)
    pool = pd.read_parquet(layout.pool.samples, columns=["uid", "record"])
    rare = {u: bool(json.loads(r).get("extra", {}).get("meta", {}).get("rare", False))
            for u, r in zip(pool["uid"], pool["record"])}
    sel_n = sel_rare = pool_n = pool_rare = 0
    selections = [layout.round(t).selection for t in layout.trained_rounds()]
    for path in sorted(p for p in selections if p.exists()):
        sel = pd.read_parquet(path, columns=["uid", "selected"])
        flags = sel["uid"].map(rare).fillna(False).astype(bool)
        pool_n, pool_rare = pool_n + len(sel), pool_rare + int(flags.sum())
        sel_n, sel_rare = sel_n + int(sel["selected"].sum()), sel_rare + int(flags[sel["selected"]].sum())
    eval_rare: set[str] = set()
    for d in json.loads(layout.stream.read_text())["datasets"]:
        if d.get("eval"):
            eval_rare |= {f"{d['name']}/{r['id']}" for r in json.loads(Path(d["eval"]).read_text())
                          if r.get("meta", {}).get("rare")}
    preds = last_predictions(rd)
    score = None
    if preds is not None and eval_rare:
        hit = preds[preds["uid"].isin(eval_rare)]
        score = float(hit["score"].mean()) if len(hit) else None
    return (sel_rare / sel_n if sel_n else None, pool_rare / pool_n if pool_n else None, score, len(eval_rare))


# Adapt-∞'s claims (arXiv 2410.10636), each as (question, metric, claimed row, other row, sign): the
# claim holds when sign · (claimed − other) > 0. Metric: a metrics.json key or "rare" (rare-skill score).
CLAIMS = (
    ("A at least `full`'s", "avg_accuracy", "adapt_inf", "full", +1),
    ("A at least `multitask`'s", "avg_accuracy", "adapt_inf", "multitask", +1),
    ("less forgetting than `full`", "forgetting", "adapt_inf", "full", -1),
    ("less forgetting than `random`", "forgetting", "adapt_inf", "random", -1),
    ("rare skills fare better than under `random`", "rare", "adapt_inf", "random", +1),
    ("A at least `random`'s with the same pool cap and samples", "avg_accuracy", "adapt_inf", "random_pruned", +1),
    ("LITE: A at least `random` LITE's", "avg_accuracy", "adapt_inf_lite", "random_lite", +1),
)


def verdict(diffs: list[float], sign: int) -> str:
    """The claim, given the per-seed differences (claimed − other): "holds" when the mean difference
    is on the claimed side by more than its sample std over the seeds, "fails" when on the other side
    by more than that, "equal" when every seed's difference is 0, otherwise "within seed noise"; one
    seed: the side of the difference alone."""
    if not any(diffs):
        return "equal"
    m = float(np.mean(diffs))
    noise = float(np.std(diffs, ddof=1)) if len(diffs) > 1 else 0.0
    if abs(m) <= noise:
        return "within seed noise"
    return ("holds" if sign * m > 0 else "fails") + (" (1 seed)" if len(diffs) == 1 else "")


def claims(runs: dict[str, list[dict]], rare: dict[str, list[tuple]]) -> list[list[str]]:
    """Table rows for :data:`CLAIMS`: the two rows' values and their difference, paired by seed over
    the seeds both rows have, and the :func:`verdict`. Claims whose rows did not run are left out."""
    out = []
    for question, metric, a, b, sign in CLAIMS:
        if a not in runs or b not in runs:
            continue
        value = {n: {r["config"].get("seed"): (x[2] if metric == "rare" else r.get(metric))
                     for r, x in zip(runs[n], rare[n])} for n in (a, b)}
        seeds = [s for s in value[a] if s in value[b] and value[a][s] is not None and value[b][s] is not None]
        if not seeds:
            continue
        va, vb = [value[a][s] for s in seeds], [value[b][s] for s in seeds]
        diffs = [x - y for x, y in zip(va, vb)]
        out.append([question, f"`{a}` {mean_std(va)}", f"`{b}` {mean_std(vb)}", mean_std(diffs),
                    str(len(seeds)), verdict(diffs, sign)])
    return out


def collect(args: argparse.Namespace) -> dict[str, list[dict]]:
    runs: dict[str, list[dict]] = {}
    for r in args.rows:
        done = [load_run(run_dir(args.runs, args.stream, r, s)) for s in args.seeds
                if finished(run_dir(args.runs, args.stream, r, s))]
        if done:
            runs[r] = done
    return runs


def write_results(args: argparse.Namespace, runs: dict[str, list[dict]]) -> Path:
    from adapt.io import write_text_atomic
    from adapt.tracking.plots import plot_accuracy_matrices, plot_accuracy_vs_samples, plot_forgetting_per_task

    out = args.out
    plots = out / args.stream
    plots.mkdir(parents=True, exist_ok=True)
    reference = {r["config"].get("seed"): r["accuracy_matrix"][-1] for r in runs.get("multitask", [])}
    tasks = next(iter(runs.values()))[0]["tasks"]

    def rel(r: dict) -> float | None:
        ref = reference.get(r["config"].get("seed"))
        v = relative_score(r["accuracy_matrix"][-1], ref) if ref is not None else None
        return None if v is None else v / 100.0

    csv_rows, md_rows = [], []
    for name, rs in runs.items():
        for r in rs:
            csv_rows.append({"row": name, "seed": r["config"].get("seed"), **{label: r.get(k) for k, label in KEYS},
                             "A_rel_multitask": rel(r), "samples_trained": int(sum(r["samples_trained"])),
                             "wall_seconds": r.get("wall_seconds"),
                             "run_dir": os.path.relpath(r["run_dir"], args.runs)})  # no machine's paths in the csv
        md_rows.append([ROWS[name].label, str(len(rs)), *(mean_std([r.get(k) for r in rs]) for k, _ in KEYS),
                        mean_std([rel(r) for r in rs]),
                        mean_std([float(sum(r["samples_trained"])) for r in rs], scale=1.0, digits=0),
                        mean_std([(r.get("wall_seconds") or np.nan) / 60 for r in rs], scale=1.0)])
    csv_path = out / f"{args.stream}.csv"
    with open(csv_path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(csv_rows[0]))
        w.writeheader()
        w.writerows(csv_rows)

    lines = [f"# Results on the `{args.stream}` stream", "",
             f"`python experiments/compare.py` (this stream alone: `--stream {args.stream}`; config "
             f"`{args.config.relative_to(ROOT) if args.config.is_relative_to(ROOT) else args.config}`, stream scale "
             f"{args.scale}, seeds {', '.join(map(str, args.seeds))}); scores in %, mean ± std over the seeds; "
             "A rel. multitask: 100 · mean_j R[T-1][j] / R_multitask[j] (same seed); wall time in minutes, as measured "
             "(a run that shared the cores with others took longer).", ""]
    lines += _md(["run", "seeds", *(label for _, label in KEYS), "A rel. multitask", "samples trained",
                  "wall (min)"], md_rows)
    chance_row = ["chance (the best constant answer)",
                  *(mean_std([c]) for c in chance(next(iter(runs.values()))[0], tasks))]
    lines += ["Score on each task right after its own round (`multitask`: its one row):", ""]
    lines += _md(["run", *tasks], [[ROWS[n].label, *(mean_std([diagonal(r)[j] for r in rs]) for j in range(len(tasks)))]
                                   for n, rs in runs.items()] + [chance_row])
    lines += ["Score on each task after the last round:", ""]
    lines += _md(["run", *tasks], [[ROWS[n].label, *(mean_std([r["accuracy_matrix"][-1][j] for r in rs])
                                                     for j in range(len(tasks)))] for n, rs in runs.items()] + [chance_row])
    forgetting = {n: [float(np.nanmean([np.nan if f is None else f for f in x]))
                      if any(f is not None for f in x) else None
                      for x in zip(*[forgetting_per_task(r["accuracy_matrix"]) for r in rs])]
                  for n, rs in runs.items() if len(rs[0]["accuracy_matrix"]) > 1}
    lines += ["Forgetting per task (max over earlier rounds minus the last round; mean over the seeds):", ""]
    lines += _md(["run", *tasks], [[ROWS[n].label, *("—" if v is None else f"{100 * v:.1f}" for v in f)]
                                   for n, f in forgetting.items()])
    rare = {n: [rare_skills(r) for r in rs] for n, rs in runs.items()}
    n_items = next(iter(rare.values()))[0][3]
    lines += [f"Rare skills (the stream's `meta.rare` samples): their share of what was selected and of the "
              f"pool, over all rounds, and the score on the {n_items} rare-skill eval items after the last round:", ""]
    lines += _md(["run", "% of selected", "% of pool", "rare-skill score"],
                 [[ROWS[n].label, mean_std([x[0] for x in v]), mean_std([x[1] for x in v]),
                   mean_std([x[2] for x in v])] for n, v in rare.items()])
    lines += ["Adapt-∞'s claims on this stream (`adapt_inf` with pruning, or its LITE, against the other row, paired "
              "by seed; difference = mean ± std over the seeds of the per-seed difference; a claim holds or fails "
              "when the mean difference exceeds its std, otherwise it is within seed noise):", ""]
    lines += _md(["claim", "Adapt-∞", "other", "difference", "seeds", "verdict"], claims(runs, rare))

    first = {n: rs[0] for n, rs in runs.items()}
    plot_accuracy_matrices({n: (r["accuracy_matrix"], r["tasks"]) for n, r in first.items()},
                           plots / "accuracy_matrices.png")
    plot_forgetting_per_task(forgetting, tasks, plots / "forgetting_per_task.png")
    plot_accuracy_vs_samples({n: (float(np.mean([sum(r["samples_trained"]) for r in rs])),
                                  float(np.mean([r["avg_accuracy"] for r in rs])),
                                  float(np.std([r["avg_accuracy"] for r in rs], ddof=1)) if len(rs) > 1 else np.nan)
                              for n, rs in runs.items()}, plots / "accuracy_vs_samples.png")
    lines += [f"![accuracy matrices, seed {next(iter(first.values()))['config'].get('seed')}]"
              f"({args.stream}/accuracy_matrices.png)", "",
              f"![forgetting per task]({args.stream}/forgetting_per_task.png)", "",
              f"![A against samples trained]({args.stream}/accuracy_vs_samples.png)", ""]
    md_path = out / f"{args.stream}.md"
    write_text_atomic(md_path, "\n".join(lines))
    return md_path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stream", "--streams", dest="streams", nargs="+", default=list(STREAMS), choices=list(STREAMS),
                    metavar="STREAM", help=f"built-in streams, one table each (default: all): {', '.join(STREAMS)}")
    ap.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS), metavar="ROW",
                    help=f"rows to run (default: all): {', '.join(ROWS)}")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--jobs", type=int, default=2, help="runs at a time")
    ap.add_argument("--threads", type=int, default=None, help="torch threads per run (default: cores / jobs)")
    ap.add_argument("--config", type=Path, default=Path("configs/demo.yaml"))
    ap.add_argument("--scale", type=float, default=1.0, help="stream.scale (train split sizes)")
    ap.add_argument("--stream-seed", type=int, default=0, help="stream.seed (the data generator's)")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="extra key=value for every run")
    ap.add_argument("--runs", type=Path, default=Path("runs/compare"), help="where the runs go")
    ap.add_argument("--out", type=Path, default=ROOT / "experiments" / "results", help="where the tables go")
    ap.add_argument("--tables-only", action="store_true", help="only (re)write the tables from finished runs")
    args = ap.parse_args()
    args.sets = [*args.sets, f"stream.seed={args.stream_seed}"]
    args.config, args.runs, args.out = args.config.resolve(), args.runs.resolve(), args.out.resolve()
    for stream in args.streams:
        one = argparse.Namespace(**vars(args), stream=stream)
        if not args.tables_only:
            run_grid(one)
        runs = collect(one)
        if not runs:
            sys.exit(f"no finished run to tabulate on the {stream!r} stream")
        print(f"wrote {write_results(one, runs)}", flush=True)


if __name__ == "__main__":
    main()
