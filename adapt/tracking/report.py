"""report.md and plots for one run, or a comparison of several (``adapt report RUN_DIR...``).

Reads each run's ``metrics.json`` (DESIGN.md, run directory) and writes:

- one run: ``RUN_DIR/report.md`` and ``RUN_DIR/plots/{accuracy_matrix,forgetting}.png``, plus
  ``selection_per_round.png`` (samples selected per task/dataset per round) and
  ``pool_per_round.png`` (pool size per dataset) when metrics.json has those counts;
- several runs: each run's own report, and ``OUT/report.md`` + ``OUT/plots/comparison.png``
  (OUT defaults to ``<first run's parent>/report``).

Scores are shown as percentages with one decimal; a metric that is undefined (e.g. BWT after
one round) is shown as "—".
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from adapt.errors import AdaptError, InputError
from adapt.io import read_parquet, write_text_atomic
from adapt.layout import RunLayout

DASH = "—"
_REQUIRED = ("tasks", "accuracy_matrix")
_SELECTION_KEYS = ("samples_per_task", "selected_per_dataset")


def _as_number(x: Any) -> float | None:
    """``x`` as a float, or None when it is None, not a number, or NaN."""
    if x is None:
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


def format_pct(x: Any) -> str:
    """A score in [0, 1] as a percentage with one decimal ("53.2"); "—" for None/NaN."""
    v = _as_number(x)
    return DASH if v is None else f"{100 * v:.1f}"


def format_seconds(s: Any) -> str:
    """Wall time as "12.3s", "4m 05s" or "1h 02m"; "—" if unknown."""
    s = _as_number(s)
    if s is None:
        return DASH
    if s < 60:
        return f"{s:.1f}s"
    m, sec = divmod(int(round(s)), 60)
    if m < 60:
        return f"{m}m {sec:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h {m:02d}m"


def _metrics_path(run_dir: Path) -> Path:
    return run_dir if run_dir.suffix == ".json" and not run_dir.is_dir() else RunLayout(run_dir).metrics


def load_run(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The run's ``metrics.json`` (``run_dir`` may also be the file), with defaults filled in.

    Adds ``run_dir`` and ``name`` (the directory's name). Raises AdaptError naming the file
    when it is missing, not JSON, or lacks ``tasks`` / ``accuracy_matrix``.
    """
    path = _metrics_path(Path(run_dir))
    if not path.is_file():
        raise InputError(f"{path}: not found: {run_dir} is not a run directory, or its run has not finished a "
                         "round yet")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AdaptError(f"{path}: cannot read metrics ({exc})") from None
    if not isinstance(data, dict):
        raise AdaptError(f"{path}: expected a JSON object, got {type(data).__name__}")
    for key in _REQUIRED:
        if key not in data:
            raise AdaptError(f"{path}: key '{key}' is missing")
    if not isinstance(data["tasks"], list) or not isinstance(data["accuracy_matrix"], list):
        raise AdaptError(f"{path}: 'tasks' and 'accuracy_matrix' must be lists")
    for t, row in enumerate(data["accuracy_matrix"]):
        if not isinstance(row, list) or len(row) != len(data["tasks"]):
            raise AdaptError(f"{path}: accuracy_matrix row {t} must have one score per task ({len(data['tasks'])})")
    defaults: dict[str, Any] = {
        "accuracy_before": None, "avg_accuracy": None, "maa": None, "bwt": None, "forgetting": None,
        "fwt": None, "samples_trained": [], "pool_size": [], "phase_seconds": {}, "wall_seconds": None,
        "method": None, "config": {},
    }
    for k, v in defaults.items():
        data.setdefault(k, v)
    data["run_dir"] = str(path.parent)
    data["name"] = path.parent.name
    return data


# ------------------------------------------------------------------------------------ tables
_COLUMNS = ("run", "method", "A", "MAA", "F", "BWT", "FWT", "samples trained", "wall time")


def _samples(run: dict[str, Any]) -> str:
    s = run.get("samples_trained") or []
    try:
        return str(int(sum(s))) if isinstance(s, list) else str(int(s))
    except (TypeError, ValueError):
        return DASH


def _comparison_rows(runs: Sequence[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for r in runs:
        rows.append([
            r["name"], str(r.get("method") or DASH), format_pct(r.get("avg_accuracy")), format_pct(r.get("maa")),
            format_pct(r.get("forgetting")), format_pct(r.get("bwt")), format_pct(r.get("fwt")), _samples(r),
            format_seconds(r.get("wall_seconds")),
        ])
    return rows


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]], align_right_from: int = 1) -> str:
    esc = [str(h).replace("|", "\\|") for h in header]
    lines = ["| " + " | ".join(esc) + " |",
             "| " + " | ".join("---" if i < align_right_from else "---:" for i in range(len(header))) + " |"]
    for r in rows:
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |")
    return "\n".join(lines)


def _matrix_md(run: dict[str, Any]) -> str:
    from adapt.tracking.plots import round_labels

    tasks = [str(t) for t in run["tasks"]]
    R = run["accuracy_matrix"]
    rows = []
    if run.get("accuracy_before") is not None:
        rows.append(["before training"] + [format_pct(v) for v in run["accuracy_before"]])
    for label, r in zip(round_labels(len(R), tasks, run.get("task_rounds")), R):
        rows.append([label] + [format_pct(v) for v in r])
    return _md_table(["after round"] + tasks, rows)


def _disambiguate(runs: list[dict[str, Any]]) -> None:
    """Runs with the same directory name get their parent's name too."""
    seen: dict[str, int] = {}
    for r in runs:
        seen[r["name"]] = seen.get(r["name"], 0) + 1
    for r in runs:
        if seen[r["name"]] > 1:
            r["name"] = f"{Path(r['run_dir']).parent.name}/{r['name']}"


# ------------------------------------------------------------------------------------ plots
def _selection_counts(run: dict[str, Any]) -> list[dict[str, int]] | None:
    for key in _SELECTION_KEYS:
        v = run.get(key)
        if isinstance(v, list) and v and all(isinstance(x, dict) for x in v) and any(v):
            return v
    return None


PLOTTED_CLUSTERS = 40  # more clusters than this (DataTailor's Ward cut) make no readable bar plot


def round_selection_plot(run_dir: Path, t: int, label: str) -> Path | None:
    """``plots/selection_round_<t>.png`` from ``rounds/<t>/selection.parquet`` when the round's
    selection is clustered (Adapt-∞ and other clustered selectors) into at most
    ``PLOTTED_CLUSTERS`` clusters; None otherwise."""
    import pandas as pd

    from adapt.tracking.plots import plot_round_selection

    layout = RunLayout(Path(run_dir))
    path = layout.round(t).selection
    if not path.is_file():
        return None
    try:
        table = read_parquet(path, columns=["cluster", "task", "expert", "selected"])
    except Exception as exc:  # noqa: BLE001 - a damaged file is reported, not a traceback
        raise AdaptError(f"{path}: cannot read the selection ({exc})") from None
    if not (table["cluster"] >= 0).any() or table["cluster"].nunique() > PLOTTED_CLUSTERS:
        return None
    return plot_round_selection(table, layout.selection_plot(t), f"round {t}: {label}")


def round_selection_plots(run_dir: Path, label: str) -> dict[int, Path]:
    """Every round's clustered-selection plot (``round_selection_plot``), by round."""
    out = {t: round_selection_plot(run_dir, t, label) for t in RunLayout(Path(run_dir)).trained_rounds()}
    return {t: p for t, p in out.items() if p is not None}


def write_run_plots(run: dict[str, Any]) -> dict[str, Path]:
    """The run's plots under ``RUN_DIR/plots``; returns name -> path of those written."""
    from adapt.tracking.plots import plot_accuracy_matrix, plot_composition, plot_forgetting_curves, round_labels

    layout = RunLayout(Path(run["run_dir"]))
    plots = layout.plots
    out: dict[str, Path] = {}
    R, tasks, intro = run["accuracy_matrix"], run["tasks"], run.get("task_rounds")  # intro: each task's round
    label = f"{run['name']}" + (f" ({run['method']})" if run.get("method") else "")
    if R and tasks:
        out["accuracy matrix"] = plot_accuracy_matrix(R, tasks, layout.accuracy_plot,
                                                      title=f"accuracy matrix: {label}", R0=run.get("accuracy_before"),
                                                      row_labels=round_labels(len(R), tasks, intro))
        out["score per task over rounds"] = plot_forgetting_curves(R, tasks, plots / "forgetting.png",
                                                                   introduced=intro, title=f"score per task: {label}")
    sel = _selection_counts(run)
    if sel:
        out["selected samples per round"] = plot_composition(sel, plots / "selection_per_round.png",
                                                             f"selected samples per round: {label}")
    for t, path in round_selection_plots(Path(run["run_dir"]), label).items():
        out[f"round {t}: selection by cluster, expert and task"] = path
    pool = run.get("pool_per_dataset")
    if isinstance(pool, list) and pool and all(isinstance(x, dict) for x in pool) and any(pool):
        out["pool size per dataset"] = plot_composition(pool, plots / "pool_per_round.png",
                                                        f"pool size per dataset: {label}", ylabel="active samples")
    return out


# ------------------------------------------------------------------------------------ report.md
def _rel(target: Path, start: Path) -> str:
    return Path(os.path.relpath(target.resolve(), start.resolve())).as_posix()


def _run_section(run: dict[str, Any], plots: dict[str, Path], md_dir: Path, heading: str = "##") -> list[str]:
    lines = [f"{heading} {run['name']}", ""]
    done, total = len(run["accuracy_matrix"]), run.get("rounds_total")
    facts = [f"method: {run.get('method') or DASH}", f"rounds evaluated: {done}" + (f" of {total}" if total else "")]
    if total and done < total:
        facts.append("**partial run**: A is over the tasks seen so far")
    lines += [", ".join(facts), ""]
    if run["accuracy_matrix"]:
        lines += ["Accuracy matrix (% score on each task, rows after each round):", "", _matrix_md(run), ""]
    else:
        lines += ["No round has been evaluated yet.", ""]
    extra = []
    if run.get("samples_trained"):
        extra.append(["samples trained"] + [str(v) for v in run["samples_trained"]])
    if run.get("pool_size"):
        extra.append(["pool size"] + [str(v) for v in run["pool_size"]])
    if extra:
        n = max(len(r) - 1 for r in extra)
        lines += [_md_table(["per round"] + [str(t) for t in range(n)],
                            [r + [""] * (n + 1 - len(r)) for r in extra]), ""]
    phases = run.get("phase_seconds") or {}
    if isinstance(phases, dict) and phases:
        totals: dict[str, float] = {}
        for k, v in phases.items():  # keys "<round>:<phase>" or "<phase>"
            phase = str(k).split(":")[-1]
            try:
                totals[phase] = totals.get(phase, 0.0) + float(v)
            except (TypeError, ValueError):
                continue
        lines += [_md_table(["phase", "wall time"], [[k, format_seconds(v)] for k, v in totals.items()]), ""]
    for title, p in plots.items():
        lines += [f"![{title}]({_rel(p, md_dir)})", ""]
    return lines + _ground_truth_section(Path(run["run_dir"]))


def _ground_truth_section(run_dir: Path) -> list[str]:
    """Per round, the selection against the stream's ground truth (:mod:`adapt.tracking.ground_truth`),
    and ``hindsight``'s budget per task; nothing for a stream that records no wrong labels."""
    from adapt.tracking.ground_truth import round_diagnostics, task_budget_table

    if not RunLayout(run_dir).pool.samples.is_file():
        return []
    lines = []
    diag = round_diagnostics(run_dir)
    if diag is not None:
        lines += ["Selection against the stream's ground truth (per round; % of the selected unless named):", "",
                  _frame_md(diag), ""]
    budget = task_budget_table(run_dir)
    if budget is not None:
        lines += ["`hindsight`'s budget per task (need: how far the model is from the task, measured on the pool "
                  "before the round, beside eval_error, 100 · (1 − the task's eval score) of the same model; "
                  "floor_share / need_share: the replay floor's and the need's part of the budget; flagged: wrong "
                  "labels found so far):", "", _frame_md(budget), ""]
    return lines


def _frame_md(frame: Any) -> str:
    """A data frame as a markdown table: floats with one decimal, NaN as a dash."""
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return DASH if math.isnan(v) else f"{v:.1f}"
        return str(v)
    return _md_table([str(c) for c in frame.columns], [[cell(v) for v in row] for row in frame.itertuples(index=False)])


def _header(runs: Sequence[dict[str, Any]], title: str) -> list[str]:
    return [
        f"# {title}", "",
        "Scores in %: A average accuracy after the last round, MAA mean average accuracy over rounds, "
        "F forgetting (max-based), BWT backward transfer, FWT forward transfer (vs. before training); "
        f"{DASH} where undefined. Definitions: DESIGN.md, \"Continual metrics\".", "",
        _md_table(_COLUMNS, _comparison_rows(runs), align_right_from=2), "",
    ]


def _write_single(run: dict[str, Any]) -> Path:
    run_dir = Path(run["run_dir"])
    plots = write_run_plots(run)
    lines = _header([run], f"adapt report: {run['name']}") + _run_section(run, plots, run_dir)
    path = RunLayout(run_dir).report
    write_text_atomic(path, "\n".join(lines).rstrip() + "\n")
    run["_plots"] = plots
    return path


def write_report(run_dirs: Sequence[str | os.PathLike[str]], out_dir: str | os.PathLike[str] | None = None) -> Path:
    """Write the report(s); returns the path of the report.md to read first.

    One run (and no ``out_dir``): ``RUN_DIR/report.md``. Several runs, or an ``out_dir``: every
    run's own report and a comparison ``OUT/report.md`` with ``OUT/plots/comparison.png``.
    """
    if not run_dirs:
        raise AdaptError("give at least one run directory")
    runs = [load_run(d) for d in run_dirs]
    _disambiguate(runs)
    own = [_write_single(r) for r in runs]
    if len(runs) == 1 and out_dir is None:
        return own[0]
    from adapt.tracking.plots import plot_runs_comparison

    out = Path(out_dir) if out_dir is not None else Path(runs[0]["run_dir"]).resolve().parent / "report"
    out.mkdir(parents=True, exist_ok=True)
    folder = RunLayout(out)  # the comparison folder is laid out as a run's: report.md, plots/
    comp = plot_runs_comparison({r["name"]: r for r in runs}, folder.plots / "comparison.png")
    lines = _header(runs, "adapt report: runs compared")
    lines += [f"![runs compared]({_rel(comp, out)})", ""]
    lines += ["Each run's own report: " + ", ".join(f"[{r['name']}]({_rel(p, out)})" for r, p in zip(runs, own)), ""]
    for r in runs:
        lines += _run_section(r, r["_plots"], out)
    path = folder.report
    write_text_atomic(path, "\n".join(lines).rstrip() + "\n")
    return path


def print_report(run_dirs: Sequence[str | os.PathLike[str]], console: Any = None) -> None:
    """Print the comparison table (the one at the top of report.md) with rich."""
    from rich.console import Console
    from rich.table import Table

    runs = [load_run(d) for d in run_dirs]
    _disambiguate(runs)
    table = Table(title="runs (scores in %)")
    for i, col in enumerate(_COLUMNS):
        table.add_column(col, justify="left" if i < 2 else "right")
    for row in _comparison_rows(runs):
        table.add_row(*row)
    (console or Console()).print(table)
