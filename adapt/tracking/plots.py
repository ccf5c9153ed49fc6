"""Run plots (PNG) for report.md and wandb: accuracy matrix, forgetting, composition, a clustered
round's selection, comparison.

Drawn with matplotlib's object API on the Agg canvas (``matplotlib.figure.Figure``), never
pyplot: no global backend switch, no display needed, safe in threads and in a user's notebook.
Every plot is written atomically (temp file + rename) so a killed run never leaves half a PNG.
Scores are in [0, 1] and shown as percentages.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib import colormaps
from matplotlib.figure import Figure

from adapt.io import write_with_atomic

_DPI = 120


def _save(fig: Figure, path: str | os.PathLike[str], tight: bool = True) -> Path:
    path = Path(path)
    if tight:
        fig.tight_layout()
    write_with_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=_DPI))
    return path


def _nan(v: Any) -> float:
    try:
        return math.nan if v is None else float(v)
    except (TypeError, ValueError):
        return math.nan


def round_labels(n_rows: int, tasks: Sequence[str], introduced: Sequence[int] | None = None) -> list[str]:
    """``"after <task of round t>"`` per row; ``"after round t"`` where no task is introduced at t."""
    intro = list(range(len(tasks))) if introduced is None else list(introduced)
    labels = []
    for t in range(n_rows):
        names = [str(tasks[j]) for j in range(len(tasks)) if intro[j] == t]
        labels.append("after " + "+".join(names) if names else f"after round {t}")
    return labels


def _draw_matrix(ax: Any, R: Sequence[Sequence[float]], tasks: Sequence[str], R0: Sequence[float] | None,
                 row_labels: Sequence[str] | None, title: str, fontsize: int = 8) -> Any:
    """One accuracy-matrix heatmap on ``ax`` (see :func:`plot_accuracy_matrix`); returns the image."""
    import matplotlib
    import numpy as np

    rows = [[_nan(v) for v in r] for r in R]
    labels = list(row_labels) if row_labels is not None else round_labels(len(rows), tasks)
    if R0 is not None:
        rows = [[_nan(v) for v in R0]] + rows
        labels = ["before training"] + labels
    n_cols = len(tasks)
    data = np.full((max(len(rows), 1), max(n_cols, 1)), np.nan)
    for i, r in enumerate(rows):
        data[i, : len(r)] = r[:n_cols]
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="white")
    im = ax.imshow(np.ma.masked_invalid(data * 100.0), cmap=cmap, vmin=0.0, vmax=100.0, aspect="auto")
    ax.set_xticks(range(n_cols), [str(t) for t in tasks], rotation=30, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    for i in range(data.shape[0]):
        for j in range(data.shape[1]):
            v = data[i, j]
            if not math.isnan(v):
                ax.text(j, i, f"{100 * v:.1f}", ha="center", va="center", fontsize=fontsize,
                        color="black" if v > 0.6 else "white")
    if R0 is not None and len(rows) > 1:
        ax.axhline(0.5, color="black", linewidth=1.0)
    ax.set_title(title)
    return im


def plot_accuracy_matrix(
    R: Sequence[Sequence[float]],
    tasks: Sequence[str],
    path: str | os.PathLike[str],
    title: str | None = None,
    R0: Sequence[float] | None = None,
    row_labels: Sequence[str] | None = None,
) -> Path:
    """Heatmap of ``R[t][j]``: rows "after <task of round t>" (plus "before training" for
    ``R0``), columns the tasks, each cell annotated with its percentage; NaN cells blank."""
    n_rows = len(R) + (R0 is not None)
    fig = Figure(figsize=(max(4.5, 1.1 * len(tasks) + 2.8), max(2.6, 0.55 * n_rows + 1.6)))
    ax = fig.add_subplot()
    im = _draw_matrix(ax, R, tasks, R0, row_labels, title or "accuracy matrix")
    ax.set_xlabel("task evaluated")
    fig.colorbar(im, ax=ax).set_label("score (%)")
    return _save(fig, path)


def plot_accuracy_matrices(panels: Mapping[str, tuple[Sequence[Sequence[float]], Sequence[str]]],
                           path: str | os.PathLike[str], ncols: int = 4) -> Path:
    """Accuracy matrices side by side, one panel per run (title: the mapping's key), one colour scale."""
    n = max(len(panels), 1)
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    first = next(iter(panels.values()), ([[]], []))
    tasks = first[1]
    fig = Figure(figsize=(ncols * (0.42 * len(tasks) + 1.6) + 1.2, nrows * (0.3 * len(first[0]) + 1.8)),
                 layout="constrained")
    im = None
    for k, (name, (R, panel_tasks)) in enumerate(panels.items()):
        ax = fig.add_subplot(nrows, ncols, k + 1)
        labels = [f"{t + 1}" for t in range(len(R))] if len(R) > 1 else ["joint"]
        im = _draw_matrix(ax, R, panel_tasks, None, labels, name, fontsize=6)
        ax.tick_params(labelsize=7)
        if k % ncols:
            ax.set_ylabel("")
        else:
            ax.set_ylabel("after round")
    if im is not None:
        fig.colorbar(im, ax=fig.axes, shrink=0.8, aspect=30).set_label("score (%)")
    return _save(fig, path, tight=False)


def plot_forgetting_per_task(values: Mapping[str, Sequence[float | None]], tasks: Sequence[str],
                             path: str | os.PathLike[str], title: str = "forgetting per task") -> Path:
    """Grouped bars: per task, each run's forgetting (percentage points; a missing value: no bar)."""
    import numpy as np

    names = list(values)
    n = max(len(names), 1)
    width = 0.85 / n
    fig = Figure(figsize=(max(6.0, 1.3 * len(tasks) + 0.12 * n * len(tasks)), 4.0))
    ax = fig.add_subplot()
    xs = np.arange(len(tasks))
    for i, name in enumerate(names):
        ax.bar(xs - 0.425 + width * (i + 0.5), [100 * _nan(v) for v in values[name]], width, label=name)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(xs, [str(t) for t in tasks], rotation=20, ha="right")
    ax.set_ylabel("forgetting (points)")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    if names:
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return _save(fig, path)


def spread_labels(ys: Sequence[float], gap: float) -> list[float]:
    """Label heights for points at heights ``ys``, in the same order, at least ``gap`` apart and in
    the points' order: a sweep upward from the lowest point, then the whole column moved down by the
    labels' mean displacement so that it stays centred on the points it labels."""
    order = sorted(range(len(ys)), key=lambda i: ys[i])
    out = [0.0] * len(ys)
    prev = -math.inf
    for i in order:
        prev = out[i] = max(ys[i], prev + gap)
    shift = (sum(out) - sum(ys)) / len(ys) if ys else 0.0
    return [v - shift for v in out]


def plot_accuracy_vs_samples(points: Mapping[str, tuple[float, float, float]], path: str | os.PathLike[str],
                             title: str = "final accuracy vs samples trained") -> Path:
    """One point per run: (samples trained, A, std of A over seeds) with an error bar and a label;
    labels of points at about the same x are spread apart (:func:`spread_labels`) with a leader line."""
    fig = Figure(figsize=(7.0, 4.6))
    ax = fig.add_subplot()
    tab20 = colormaps["tab20"].colors
    colors = tab20[0::2] + tab20[1::2]  # the ten strong colours first
    xs = [x for x, _, _ in points.values()]
    lo, hi = (min(xs), max(xs)) if xs else (0.0, 1.0)
    span = (hi - lo) or 1.0
    ys = [100 * _nan(y) for _, y, _ in points.values()]
    finite = [y for y in ys if not math.isnan(y)]
    gap = 0.035 * max(max(finite) - min(finite), 10.0) if finite else 1.0
    label_y = list(ys)
    groups: dict[int, list[int]] = {}
    for i, x in enumerate(xs):  # points within 3% of the x range share a column of labels
        groups.setdefault(round((x - lo) / (0.03 * span)), []).append(i)
    for members in groups.values():
        members = [i for i in members if not math.isnan(ys[i])]
        for i, pos in zip(members, spread_labels([ys[i] for i in members], gap)):
            label_y[i] = pos
    for k, (name, (x, y, err)) in enumerate(points.items()):
        color = colors[k % len(colors)]
        ax.errorbar([x], [100 * y], yerr=[100 * _nan(err)] if not math.isnan(_nan(err)) else None, fmt="o",
                    capsize=3, color=color)
        ax.annotate(name, (x, 100 * y), xytext=(x + 0.04 * span, label_y[k]), fontsize=7, va="center",
                    color="0.15", arrowprops={"arrowstyle": "-", "color": color, "lw": 0.6})
    ax.set_xlim(lo - 0.05 * span, hi + 0.35 * span)
    ax.set_xlabel("samples trained (all rounds)")
    ax.set_ylabel("A, final average accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_forgetting_curves(
    R: Sequence[Sequence[float]],
    tasks: Sequence[str],
    path: str | os.PathLike[str],
    introduced: Sequence[int] | None = None,
    title: str | None = None,
) -> Path:
    """One line per task: its score over the rounds from the round it was introduced on."""
    rows = [[_nan(v) for v in r] for r in R]
    T = len(rows)
    intro = list(range(len(tasks))) if introduced is None else list(introduced)
    fig = Figure(figsize=(max(5.0, 0.9 * T + 3.0), 3.6))
    ax = fig.add_subplot()
    for j, name in enumerate(tasks):
        xs = [t for t in range(intro[j], T) if j < len(rows[t]) and not math.isnan(rows[t][j])]
        if not xs:
            continue
        ax.plot(xs, [100 * rows[t][j] for t in xs], marker="o", label=str(name))
    ax.set_xticks(range(T), round_labels(T, tasks, intro), rotation=30, ha="right")
    if T:
        ax.set_xlim(-0.3, T - 0.7)
    ax.set_ylim(0, 105)
    ax.set_ylabel("score (%)")
    ax.grid(alpha=0.3)
    ax.set_title(title or "score per task over rounds")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return _save(fig, path)


def _stacked_bars(ax: Any, groups: Sequence[Mapping[str, float]], keys: Sequence[str] | None = None) -> Any:
    """One bar per group, stacked by key (in first-seen order unless ``keys``); returns the tops."""
    import numpy as np

    if keys is None:
        keys = list(dict.fromkeys(k for g in groups for k in g))
    bottom = np.zeros(len(groups))
    for k in keys:
        vals = np.array([float(g.get(k, 0) or 0) for g in groups])
        ax.bar(range(len(groups)), vals, bottom=bottom, label=str(k))
        bottom += vals
    if keys:
        ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    ax.grid(axis="y", alpha=0.3)
    return bottom


def plot_composition(
    rounds: Sequence[Mapping[str, int]],
    path: str | os.PathLike[str],
    title: str,
    ylabel: str = "samples",
    xlabels: Sequence[str] | None = None,
) -> Path:
    """Stacked bars, one per round, of the counts per dataset/task (selection, pool size...)."""
    n = len(rounds)
    fig = Figure(figsize=(max(5.0, 0.7 * n + 3.5), 3.6))
    ax = fig.add_subplot()
    _stacked_bars(ax, rounds)
    ax.set_xticks(range(n), list(xlabels) if xlabels is not None else [f"round {t}" for t in range(n)],
                  rotation=30 if n > 6 else 0, ha="right" if n > 6 else "center")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    return _save(fig, path)


def plot_round_selection(table: Any, path: str | os.PathLike[str], title: str) -> Path:
    """One round of a clustered selection (``selection.parquet``: cluster, task, expert, selected):
    per cluster, the pool's samples and the selected ones stacked by task, each cluster labelled
    with the expert that chose its samples."""
    clusters = sorted(int(c) for c in table["cluster"].unique())
    tasks = list(dict.fromkeys(str(t) for t in table["task"]))
    pool = [table.loc[table["cluster"] == c, "task"].astype(str).value_counts().to_dict() for c in clusters]
    chosen = table[table["selected"]]
    sel = [chosen.loc[chosen["cluster"] == c, "task"].astype(str).value_counts().to_dict() for c in clusters]
    experts = [str(table.loc[table["cluster"] == c, "expert"].iloc[0]) for c in clusters]
    n = len(clusters)
    fig = Figure(figsize=(max(9.0, 1.1 * n + 5.0), 3.8))
    for i, (groups, what) in enumerate(((pool, "pool"), (sel, "selected"))):
        ax = fig.add_subplot(1, 2, i + 1)
        _stacked_bars(ax, groups, tasks)
        if i == 0:
            ax.get_legend().remove()
        ax.set_xticks(range(n), [f"{c}: {e}" for c, e in zip(clusters, experts)], rotation=40, ha="right",
                      fontsize=8)
        ax.set_xlabel("cluster: its expert")
        ax.set_ylabel("samples")
        ax.set_title(f"{what} by cluster and task")
    fig.suptitle(title)
    return _save(fig, path)


_COMPARED = (("avg_accuracy", "A"), ("maa", "MAA"), ("forgetting", "F"), ("bwt", "BWT"))


def plot_runs_comparison(runs: Mapping[str, Mapping[str, Any]], path: str | os.PathLike[str]) -> Path:
    """Grouped bars of A, MAA, F and BWT (percent) per run; a metric a run lacks has no bar."""
    import numpy as np

    names = list(runs)
    n = max(len(names), 1)
    width = 0.8 / n
    fig = Figure(figsize=(max(5.5, 1.6 * len(_COMPARED) + 0.5 * n), 3.8))
    ax = fig.add_subplot()
    xs = np.arange(len(_COMPARED))
    for i, name in enumerate(names):
        vals = [100 * _nan(runs[name].get(k)) for k, _ in _COMPARED]
        bars = ax.bar(xs - 0.4 + width * (i + 0.5), vals, width, label=name)
        for b, v in zip(bars, vals):
            if not math.isnan(v):
                ax.annotate(f"{v:.1f}", (b.get_x() + b.get_width() / 2, v), ha="center",
                            va="bottom" if v >= 0 else "top", fontsize=7)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(xs, [label for _, label in _COMPARED])
    ax.set_ylabel("%")
    ax.set_title("runs compared")
    ax.grid(axis="y", alpha=0.3)
    if names:
        ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return _save(fig, path)
