"""Metric loggers (torchtune-style): one small interface, a disk and a wandb implementation.

Every run logs to ``RUN_DIR/metrics.jsonl`` (:class:`DiskLogger`) and, unless the config says
otherwise, to a wandb run under ``RUN_DIR/wandb`` in **offline** mode (:class:`WandbLogger`);
``wandb sync RUN_DIR/wandb/offline-run-*`` uploads it later. :func:`build_loggers` builds both
from the ``tracking`` section of the config.

``metrics.jsonl`` has one JSON object per line::

    {"event": "metrics", "step": 3, "time": 1700000000.0, "metrics": {"avg_accuracy": 0.5}}
    {"event": "table",   "step": 3, "time": ..., "name": "...", "columns": [...], "rows": [[...]]}
    {"event": "image",   "step": 3, "time": ..., "name": "...", "path": "plots/x.png"}
    {"event": "summary", "step": null, "time": ..., "metrics": {"final/avg_accuracy": 0.5}}
    {"event": "config",  "step": null, "time": ..., "config": {...}}

``log`` is a history row at a step (a curve per key in wandb); ``log_summary`` sets the run's
summary values (wandb's ``run.summary``: the runs table, sweeps, comparisons), not a step.

Non-finite floats are written as null so every line is strict JSON.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from adapt.errors import AdaptError
from adapt.layout import RunLayout
from adapt.tracking.wandb_file import _wait_for_exit_record

Scalar = float | int | str


@runtime_checkable
class MetricLogger(Protocol):
    """What the round loop logs through."""

    def log(self, metrics: dict[str, Scalar], step: int) -> None: ...

    def log_table(self, name: str, columns: list[str], rows: list[list], step: int) -> None: ...

    def log_image(self, name: str, path: Path, step: int) -> None: ...

    def log_summary(self, metrics: dict[str, Scalar]) -> None: ...

    def log_config(self, config: dict) -> None: ...

    def finish(self) -> None: ...


def _plain(obj: Any) -> Any:
    """JSON-safe copy: numpy scalars/arrays to Python, NaN/inf to None, Paths to str."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, (str, int, bool)) or obj is None:
        return obj
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    tolist = getattr(obj, "tolist", None)  # numpy scalar / array, torch tensor
    if callable(tolist):
        return _plain(tolist())
    return str(obj)


class NullLogger:
    """Logs nothing."""

    def log(self, metrics: dict[str, Scalar], step: int) -> None:
        pass

    def log_table(self, name: str, columns: list[str], rows: list[list], step: int) -> None:
        pass

    def log_image(self, name: str, path: Path, step: int) -> None:
        pass

    def log_summary(self, metrics: dict[str, Scalar]) -> None:
        pass

    def log_config(self, config: dict) -> None:
        pass

    def finish(self) -> None:
        pass


class DiskLogger:
    """Appends one JSON line per event to ``RUN_DIR/metrics.jsonl``; each line is fsynced.

    The file is opened per line, so a killed run loses at most the line being written and a
    resumed run keeps appending to the same file.
    """

    def __init__(self, run_dir: str | os.PathLike[str]) -> None:
        self.run_dir = Path(run_dir)
        self.path = RunLayout(self.run_dir).events

    def _write(self, event: str, step: int | None, **fields: Any) -> None:
        record = {"event": event, "step": None if step is None else int(step), "time": round(time.time(), 3)}
        record |= _plain(fields)
        line = json.dumps(record, allow_nan=False, ensure_ascii=False)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def log(self, metrics: dict[str, Scalar], step: int) -> None:
        self._write("metrics", step, metrics=dict(metrics))

    def log_table(self, name: str, columns: list[str], rows: list[list], step: int) -> None:
        self._write("table", step, name=name, columns=list(columns), rows=[list(r) for r in rows])

    def log_image(self, name: str, path: Path, step: int) -> None:
        path = Path(path)
        try:
            shown = path.resolve().relative_to(self.run_dir.resolve())
        except ValueError:
            shown = path
        self._write("image", step, name=name, path=str(shown))

    def log_summary(self, metrics: dict[str, Scalar]) -> None:
        self._write("summary", None, metrics=dict(metrics))

    def log_config(self, config: dict) -> None:
        self._write("config", None, config=dict(config))

    def finish(self) -> None:
        pass

    def read(self) -> list[dict[str, Any]]:
        """Every event logged so far (a torn last line from a killed run is skipped)."""
        return read_metrics_jsonl(self.path)


def read_metrics_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The events of a ``metrics.jsonl``; a torn last line (killed run) is skipped."""
    path = Path(path)
    if not path.is_file():
        return []
    out = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                break
            raise AdaptError(f"{path}, line {i + 1}: not valid JSON") from None
    return out


# Settings that keep an offline wandb run quick and local: no system-metrics sampler, no
# metadata/git/code/requirements capture, no console capture, no output.
_QUIET_SETTINGS: dict[str, Any] = {
    "silent": True,
    "quiet": True,
    "console": "off",
    "save_code": False,
    "disable_code": True,
    "disable_git": True,
    "disable_job_creation": True,
    "x_disable_stats": True,
    "x_disable_meta": True,
    "x_disable_machine_info": True,
    "x_save_requirements": False,
}


def _wandb_settings(wandb: Any, mode: str) -> Any:
    fields = getattr(wandb.Settings, "model_fields", None)
    wanted = {"mode": mode, **_QUIET_SETTINGS}
    if fields is not None:  # keep only what this wandb version knows
        wanted = {k: v for k, v in wanted.items() if k in fields}
    return wandb.Settings(**wanted)


class WandbLogger:
    """Logs to a wandb run in ``RUN_DIR/wandb`` (offline by default: nothing goes to the network).

    Uses the Run object returned by ``wandb.init(reinit="create_new")``, never the global
    ``wandb.run``, so several runs can log from one process (tests, sweeps in a notebook).
    ``step_metric``: a logged key that every other key is charted against in the wandb UI
    (``run.define_metric(key, step_metric=...)``), e.g. ``"round"``.
    """

    def __init__(
        self,
        run_dir: str | os.PathLike[str],
        project: str = "adapt",
        mode: str = "offline",
        name: str | None = None,
        tags: Sequence[str] = (),
        group: str | None = None,
        config: dict | None = None,
        step_metric: str | None = None,
        **init_kwargs: Any,
    ) -> None:
        if mode not in ("offline", "online", "disabled"):
            raise AdaptError(f"tracking.wandb_mode must be offline, online or disabled (got {mode!r})")
        import wandb

        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.mode = mode
        self._wandb = wandb
        self._finished = False
        kwargs: dict[str, Any] = {
            "dir": str(self.run_dir),
            "project": project,
            "name": name,
            "tags": list(tags) or None,
            "group": group,
            "config": _plain(config) if config else None,
            "reinit": "create_new",
            "settings": _wandb_settings(wandb, mode),
        }
        kwargs |= init_kwargs
        self.run = wandb.init(**{k: v for k, v in kwargs.items() if v is not None})
        if step_metric:
            self.run.define_metric(step_metric)
            self.run.define_metric("*", step_metric=step_metric)

    @property
    def run_id(self) -> str:
        """The wandb run id (store it to continue the same wandb run after a resume)."""
        return str(self.run.id)

    @property
    def run_path(self) -> Path | None:
        """This run's folder (``RUN_DIR/wandb/offline-run-...``), when wandb wrote one."""
        d = getattr(getattr(self.run, "settings", None), "sync_dir", None)
        return Path(d) if d else None

    def log(self, metrics: dict[str, Scalar], step: int) -> None:
        data = {k: v for k, v in _plain(dict(metrics)).items() if v is not None}
        if data:
            self.run.log(data, step=int(step))

    def log_table(self, name: str, columns: list[str], rows: list[list], step: int) -> None:
        # NaN/inf cells as None: wandb would write them as bare NaN, which is not JSON
        table = self._wandb.Table(columns=list(columns), data=[_plain(list(r)) for r in rows], allow_mixed_types=True)
        self.run.log({name: table}, step=int(step))

    def log_image(self, name: str, path: Path, step: int) -> None:
        self.run.log({name: self._wandb.Image(str(path))}, step=int(step))

    def log_summary(self, metrics: dict[str, Scalar]) -> None:
        data = {k: v for k, v in _plain(dict(metrics)).items() if v is not None}
        if data:
            self.run.summary.update(data)

    def log_config(self, config: dict) -> None:
        self.run.config.update(_plain(dict(config)), allow_val_change=True)

    def finish(self, timeout: float = 60.0) -> None:
        """Finish the run. Offline, also wait (up to ``timeout`` s) until wandb's service has
        written the run's exit record: ``run.finish()`` (wandb 0.31) can return before the
        ``.wandb`` file is flushed, and a reader or ``wandb sync`` right after would see a run
        without its history."""
        if self._finished:
            return
        self._finished = True
        self.run.finish()
        if self.mode == "offline" and self.run_path is not None:
            _wait_for_exit_record(self.run_path, timeout)


class MultiLogger:
    """Fans every call out to several loggers."""

    def __init__(self, loggers: Iterable[MetricLogger]) -> None:
        self.loggers: list[MetricLogger] = list(loggers)

    def log(self, metrics: dict[str, Scalar], step: int) -> None:
        for lg in self.loggers:
            lg.log(metrics, step)

    def log_table(self, name: str, columns: list[str], rows: list[list], step: int) -> None:
        for lg in self.loggers:
            lg.log_table(name, columns, rows, step)

    def log_image(self, name: str, path: Path, step: int) -> None:
        for lg in self.loggers:
            lg.log_image(name, path, step)

    def log_summary(self, metrics: dict[str, Scalar]) -> None:
        for lg in self.loggers:
            lg.log_summary(metrics)

    def log_config(self, config: dict) -> None:
        for lg in self.loggers:
            lg.log_config(config)

    def finish(self) -> None:
        for lg in self.loggers:
            lg.finish()

    def __iter__(self):
        return iter(self.loggers)

    def __len__(self) -> int:
        return len(self.loggers)


def build_loggers(run_dir: str | os.PathLike[str], tracking_cfg: dict | None = None) -> MultiLogger:
    """A :class:`DiskLogger` always, plus a :class:`WandbLogger` unless switched off.

    ``tracking_cfg`` keys: ``wandb`` (default True), ``wandb_mode`` (offline | online |
    disabled; default offline, or ``$WANDB_MODE`` when the key is absent), ``project``
    (default "adapt"), ``run_name``, ``tags``, ``group``, ``step_metric`` (see
    :class:`WandbLogger`), and optionally ``run_id``: a wandb
    run id to continue (``resume="allow"``; a resumed RUN_DIR then gets one more
    ``offline-run-*-<id>`` folder that ``wandb sync`` appends to the same run). ``WANDB_MODE=disabled`` or
    ``WANDB_DISABLED=true`` in the environment switch wandb off too.
    """
    cfg = dict(tracking_cfg or {})
    loggers: list[MetricLogger] = [DiskLogger(run_dir)]
    mode = cfg.get("wandb_mode") or os.environ.get("WANDB_MODE") or "offline"
    env_off = os.environ.get("WANDB_MODE") == "disabled" or os.environ.get("WANDB_DISABLED", "").lower() in (
        "1", "true", "yes",
    )
    if cfg.get("wandb", True) and mode != "disabled" and not env_off:
        loggers.append(
            WandbLogger(
                run_dir,
                project=cfg.get("project") or "adapt",
                mode=mode,
                name=cfg.get("run_name"),
                tags=tuple(cfg.get("tags") or ()),
                group=cfg.get("group"),
                step_metric=cfg.get("step_metric"),
                **({"id": str(cfg["run_id"]), "resume": "allow"} if cfg.get("run_id") else {}),
            )
        )
    return MultiLogger(loggers)
