"""What a run reports: ``metrics.json`` assembled from the per-round files, the accuracy matrix on
the console, and the loggers (metrics.jsonl, wandb) fed once per round and once at the end.

What :class:`RunTracker` logs (the same events to ``metrics.jsonl`` and to wandb; step = round t):

each round t (:meth:`RunTracker.log_round`)
    ``round``, ``eval/<task>`` (``R[t][task]``, every task of the stream so far, seen or not),
    ``continual/avg_accuracy``, ``continual/maa``, ``continual/bwt``, ``continual/forgetting``,
    ``continual/fwt`` (the metrics after round t,
    :func:`adapt.evaluation.continual_metrics.metrics_after_round`; a metric not defined yet is
    left out), ``forgetting/<task>`` (``max_{s in [j, t-1]} R[s][j] - R[t][j]`` for each task
    introduced before round t), ``samples_trained``, ``train/loss_last``, ``pool_size``;
    ``accuracy_matrix/table`` (the matrix so far: a row per round ``0..t``, after a "before
    training" row when R0 was measured; a column per task), ``accuracy_matrix/heatmap`` (the same
    matrix drawn, ``plots/accuracy_matrix_round_<t>.png``; drawn only when wandb is on, as nothing
    else shows it), and where the method has them ``selection_by_cluster`` (image) and
    ``experts_per_cluster`` (table).
at the end (:meth:`RunTracker.log_final`), as the run's summary (wandb ``run.summary``)
    ``final/<metric>`` for ``avg_accuracy, maa, bwt, forgetting, fwt`` (``metrics.json``'s values,
    equal to the last round's ``continual/<metric>``), ``final/forgetting/<task>`` and
    ``final/samples_trained``.

In wandb every key is charted against ``round`` (``define_metric``); a key's summary value is its
last round's.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from adapt.config import ExperimentConfig
from adapt.evaluation.continual_metrics import metrics_after_round
from adapt.io import read_json
from adapt.layout import BEFORE_TRAINING, RunLayout, round_name
from adapt.run.state import RunState

CONTINUAL_KEYS = ("avg_accuracy", "maa", "bwt", "forgetting", "fwt")


def collect_metrics(layout: RunLayout, state: RunState, config: ExperimentConfig, method: str, tasks: list[str],
                    rounds_total: int, one_round: bool, introduced: list[int] | None = None) -> dict[str, Any]:
    """metrics.json from the per-round files (so it is the same however the run was resumed).

    The continual metrics are those after the last round evaluated (``metrics_after_round``: the
    final ones once the run is done). ``introduced[j]``: the round that brought task ``j`` (default
    ``j``; not so when a dataset without an eval split has a round of its own).
    ``one_round``: the whole stream was one round (``multitask``, or ``stream.all_at_once``): A is the
    mean of the matrix's one row over every task, and the continual metrics (MAA, BWT, F, FWT), which
    compare rounds, are None."""
    rows, samples, pool_sizes, sel_counts, pool_counts = [], [], [], [], []
    for t in range(rounds_total):
        rd = layout.round(t)
        if not state.done(t, "evaluate") or not rd.eval.is_file():
            break
        scores = read_json(rd.eval)["scores"]
        rows.append([scores.get(k, float("nan")) for k in tasks])
        tj = read_json(rd.train)
        samples.append(tj["samples"])
        sel_counts.append(tj.get("dataset_counts", {}))
        if rd.pool.is_file():
            p = read_json(rd.pool)
            pool_sizes.append(p["active"])
            pool_counts.append(p["per_dataset"])
    r0 = None
    base = layout.round(BEFORE_TRAINING).eval
    if base.is_file():
        s0 = read_json(base)["scores"]
        r0 = [s0.get(k, float("nan")) for k in tasks]
    if one_round or not rows:
        m = {k: None for k in CONTINUAL_KEYS} | {"forgetting_per_task": [None] * len(tasks)}
        if rows:
            m["avg_accuracy"] = float(np.mean(rows[0]))
    else:
        m = metrics_after_round(rows, r0, introduced=introduced)
    seconds = state.data["phase_seconds"]
    return {
        "method": method, "tasks": tasks, "task_rounds": list(introduced) if introduced is not None else
        list(range(len(tasks))), "accuracy_matrix": rows, "accuracy_before": r0,
        **m, "samples_trained": samples, "pool_size": pool_sizes, "selected_per_dataset": sel_counts,
        "pool_per_dataset": pool_counts, "rounds_done": len(rows), "rounds_total": rounds_total,
        "phase_seconds": {k: round(v, 3) for k, v in seconds.items()},
        "wall_seconds": round(sum(seconds.values()), 3),
        "config": config.to_dict(),
        "base_model": read_json(layout.base) if layout.base.is_file() else None,
    }


def print_matrix(console: Console, metrics: dict[str, Any], round_labels: list[str]) -> None:
    """The accuracy matrix so far, in percent, one row per round (and the base model's first)."""
    table = Table(title=f"accuracy matrix ({metrics['rounds_done']}/{metrics['rounds_total']} rounds)",
                  show_lines=False)
    table.add_column("after")
    for k in metrics["tasks"]:
        table.add_column(k, justify="right", overflow="fold")
    if metrics["accuracy_before"] is not None:
        table.add_row(round_name(BEFORE_TRAINING), *(f"{100 * v:.1f}" for v in metrics["accuracy_before"]))
    for t, row in enumerate(metrics["accuracy_matrix"]):
        table.add_row(round_labels[t], *("" if v != v else f"{100 * v:.1f}" for v in row))
    console.print(table)


class RunTracker:
    """The run's loggers (built on first use, continuing the same wandb run after a resume)."""

    def __init__(self, layout: RunLayout, config: ExperimentConfig, state: RunState) -> None:
        self.layout = layout
        self.config = config
        self.state = state
        self._loggers: Any = None

    @property
    def loggers(self) -> Any:
        if self._loggers is None:
            from adapt.tracking.loggers import build_loggers

            tr = self.config.tracking
            cfg = {"wandb": tr.wandb, "wandb_mode": tr.wandb_mode, "project": tr.project,
                   "run_name": tr.run_name or self.layout.root.name, "tags": tr.tags, "group": tr.group,
                   "run_id": self.state.data.get("wandb_id"), "step_metric": "round"}
            self._loggers = build_loggers(self.layout.root, cfg)
            run_id = next((lg.run_id for lg in getattr(self._loggers, "loggers", []) if hasattr(lg, "run_id")), None)
            if run_id and run_id != self.state.data.get("wandb_id"):
                self.state.set(wandb_id=run_id)
            if not self.state.data.get("config_logged"):  # once per run, not once per resume
                self._loggers.log_config(self.config.to_dict())
                self.state.set(config_logged=True)
        return self._loggers

    def _wandb_on(self) -> bool:
        from adapt.tracking.loggers import WandbLogger

        return any(isinstance(lg, WandbLogger) for lg in getattr(self.loggers, "loggers", []))

    def log_round(self, t: int, metrics: dict[str, Any], pool_size: int, round_labels: list[str] | None = None) -> None:
        """Round ``t``'s scores, continual metrics so far, forgetting per task, training and pool
        figures, the accuracy matrix so far (table and heatmap), its selection plot and experts
        table (module docstring). ``metrics``: metrics.json as collected after round ``t``;
        ``round_labels``: what each round brought (the matrix's row names; default its number)."""
        rd = self.layout.round(t)
        tasks = metrics["tasks"]
        row: dict[str, Any] = {"round": t}
        row |= {f"eval/{k}": v for k, v in read_json(rd.eval)["scores"].items()}
        row |= {f"continual/{k}": metrics[k] for k in CONTINUAL_KEYS}
        row |= {f"forgetting/{k}": f for k, f in zip(tasks, metrics.get("forgetting_per_task") or [])}
        train = read_json(rd.train)
        row |= {"samples_trained": train["samples"], "train/loss_last": train["last_loss"], "pool_size": pool_size}
        self.loggers.log({k: v for k, v in row.items() if v is not None and v == v}, step=t)

        R, R0 = metrics["accuracy_matrix"][: t + 1], metrics["accuracy_before"]
        labels = [str(x) for x in (round_labels or [])[: len(R)]]
        labels += [str(i) for i in range(len(labels), len(R))]
        rows = ([["before training", *R0]] if R0 is not None else []) + [[lab, *r] for lab, r in zip(labels, R)]
        self.loggers.log_table("accuracy_matrix/table", ["after", *tasks], rows, step=t)
        if R and tasks and self._wandb_on():
            from adapt.tracking.plots import plot_accuracy_matrix

            heat = plot_accuracy_matrix(R, tasks, self.layout.accuracy_plot_round(t), R0=R0,
                                        title=f"accuracy matrix after round {t}",
                                        row_labels=[f"after {lab}" for lab in labels])
            self.loggers.log_image("accuracy_matrix/heatmap", heat, step=t)

        plot = self.layout.selection_plot(t)
        if plot.is_file():
            self.loggers.log_image("selection_by_cluster", plot, step=t)
        if rd.experts.is_file():
            rows = [[t, c["cluster"], c["size"], c["expert"], c["quota"]] for c in read_json(rd.experts)["clusters"]]
            self.loggers.log_table("experts_per_cluster", ["round", "cluster", "size", "expert", "quota"], rows, step=t)

    def log_final(self, metrics: dict[str, Any]) -> None:
        """The final metrics as the run's summary, once per finished run (the matrix and the
        curves were logged round by round); draws ``plots/accuracy_matrix.png`` if missing."""
        from adapt.tracking.plots import plot_accuracy_matrix

        heat = self.layout.accuracy_plot
        if not heat.is_file() and metrics["accuracy_matrix"]:
            plot_accuracy_matrix(metrics["accuracy_matrix"], metrics["tasks"], heat, R0=metrics["accuracy_before"])
        if self.state.data.get("final_logged") == metrics["rounds_done"]:  # a finished run resumed: logged already
            return
        final: dict[str, Any] = {f"final/{k}": metrics[k] for k in CONTINUAL_KEYS}
        final |= {f"final/forgetting/{k}": f
                  for k, f in zip(metrics["tasks"], metrics.get("forgetting_per_task") or [])}
        final["final/samples_trained"] = int(sum(metrics["samples_trained"]))
        self.loggers.log_summary({k: v for k, v in final.items() if v is not None and v == v})

    def close(self) -> None:
        if self._loggers is not None:
            self._loggers.finish()
            self._loggers = None
