"""``ContinualRun``: one continual experiment in a run directory. It wires the parts (the pool, the
model chain, the phases, the state, the tracker) and walks the phase table round by round; it does
no work of its own (torchtune's recipe style).

Each phase of each round is a pure function of (config, pool state, model state on disk, seed): its
outputs are written atomically and ``state.json`` records it as finished. A killed run resumes at the
first unfinished phase and ends with the same metrics.json as an uninterrupted run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console

from adapt.config import DatasetEntry, ExperimentConfig, load_config
from adapt.data.stream import load_stream, resolve_stream, save_stream
from adapt.errors import AdaptError
from adapt.io import read_json, read_parquet, write_json_atomic, write_text_atomic
from adapt.layout import BEFORE_TRAINING, RunLayout, round_label
from adapt.run.checks import check_config
from adapt.run.models import ModelChain
from adapt.run.phases import RoundPhases, one_round
from adapt.run.relocate import MovedPool
from adapt.run.state import RunState
from adapt.run.summary import RunTracker, collect_metrics, print_matrix
from adapt.run.verify import verify_run_dir
from adapt.runlock import RunLock
from adapt.methods import SELECTORS
from adapt.training.trainer import get_accelerator, process_state


class ContinualRun:
    """One continual experiment in a run directory (DESIGN.md, "Run directory")."""

    def __init__(self, run_dir: Path, config: ExperimentConfig, progress: bool = True,
                 console: Console | None = None) -> None:
        self.layout = RunLayout(Path(run_dir))
        self.run_dir = self.layout.root
        self.config = config
        self.is_main = process_state().is_main_process
        self.progress = progress and self.is_main
        self.console = console if console is not None and self.is_main else \
            Console(stderr=True, quiet=not self.progress)
        self.state = RunState.load_or_new(self.layout.state, config.seed, writer=self.is_main, log=self.layout.events)
        here = self.run_dir.resolve()  # a moved run's pool records name images where it was
        self.pool = MovedPool(self.layout.pool.dir, here, self.state.enter(here), writable=self.is_main)
        self.selector = SELECTORS.get(config.selection.method)(config)
        self.accelerator = get_accelerator(config.training)
        self.models = ModelChain(config, self.layout, self.accelerator, self.progress)
        self.tracker = RunTracker(self.layout, config, self.state)
        self._frozen_stream: list[DatasetEntry] | None = None
        self.phases = RoundPhases(config, self.layout, self.pool, self.models, self.selector, self.accelerator,
                                  self.console, lambda: self.stream, self.progress, self.is_main)

    # ------------------------------------------------------------------ creation and resume
    @classmethod
    def create(cls, run_dir: str | Path, config: ExperimentConfig, config_dir: Path | None = None,
               progress: bool = True, console: Console | None = None) -> "ContinualRun":
        """Start a new run in ``run_dir`` (which must not hold a run already). Every name the config
        gives a registry is checked first, before anything is written or read."""
        layout = RunLayout(Path(run_dir).resolve())
        check_config(config)
        dist = process_state()
        if dist.is_main_process:
            with RunLock(layout.root, "create"):
                if layout.state.exists():
                    raise AdaptError(f"{layout.root}: already holds a run; use `adapt run --resume {layout.root}` "
                                     "or another --run-dir")
                entries = resolve_stream(config, layout.root, base_dir=config_dir, progress=progress)
                check_config(config, entries, str(layout.stream))
                write_text_atomic(layout.config, config.to_yaml())
                save_stream(layout.root, entries)
                RunState.load_or_new(layout.state, config.seed).save()
        dist.wait_for_everyone()
        return cls(layout.root, config, progress, console)

    @classmethod
    def resume(cls, run_dir: str | Path, progress: bool = True, console: Console | None = None,
               skip_invalid: bool = False) -> "ContinualRun":
        """Continue the run in ``run_dir`` with its stored config; ``skip_invalid`` turns on
        ``stream.skip_invalid`` from here on (written back to config.yaml)."""
        layout = RunLayout(Path(run_dir).resolve())
        if not layout.state.is_file():
            raise AdaptError(f"{layout.root}: no state.json; not a run directory")
        verify_run_dir(layout.root)  # a damaged file is reported now, not halfway through a round
        config = load_config(layout.config)
        check_config(config, load_stream(layout.root), str(layout.stream))
        if skip_invalid and not config.stream.skip_invalid:
            config.stream.skip_invalid = True
            if process_state().is_main_process:
                write_text_atomic(layout.config, config.to_yaml())
        return cls(layout.root, config, progress, console)

    # ------------------------------------------------------------------ the stream
    @property
    def stream(self) -> list[DatasetEntry]:
        """The run's datasets, read from stream.json each time (``adapt add-dataset`` may append
        while the run goes on); under several processes, the stream as it was at the first read,
        so that every rank walks the same rounds."""
        if self._frozen_stream is not None:
            return self._frozen_stream
        entries = load_stream(self.run_dir)
        if process_state().num_processes > 1:
            self._frozen_stream = entries
        return entries

    @property
    def one_round(self) -> bool:
        """Whether the whole stream is one round (:func:`adapt.run.phases.one_round`)."""
        return one_round(self.config, self.selector)

    def rounds(self) -> list[list[DatasetEntry]]:
        """Datasets ingested at each round: one per round, or all of them in round 0 (:attr:`one_round`)."""
        entries = self.stream
        return [entries] if self.one_round else [[e] for e in entries]

    # ------------------------------------------------------------------ the phase table
    def phase_table(self, t: int, entries: list[DatasetEntry]) -> list[tuple[str, Callable[[], Any], bool]]:
        """Round ``t``'s phases in order: (name, what runs, whether every rank runs it). The
        features phase is there only when something reads it (the selector or the pruning); the
        prune phase not in a one-round run, where no later round selects from the pool it caps."""
        p = self.phases
        table = [("ingest", lambda: p.ingest(t, entries), False)]
        if self.config.features.enabled and self.needs_features():
            table.append(("features", lambda: p.features(t), True))
        table += [
            ("select", lambda: p.select(t, entries), False),
            ("train", lambda: p.train(t), True),
            ("evaluate", lambda: p.evaluate(t), True),
        ]
        if not self.one_round:
            table.append(("prune", lambda: p.prune(t), False))
        return table + [("checkpoint", lambda: self.checkpoint(t), False)]

    def needs_features(self) -> bool:
        """Whether a round's gradient pass is read: by the selector, by its own pruning (on the
        gradient features, or on the hidden states the same pass writes under
        ``pool.prune_embedding: hidden``), or because ``features.every_round`` asks for it (analysis)."""
        return self.config.features.every_round or self.selector.needs_features() or self.phases.own_pruning()

    def run(self) -> dict[str, Any]:
        """Run (or continue) every round; returns metrics.json's content. The run directory is
        locked for the duration (``adapt.runlock``); a dataset added to the stream meanwhile
        (``adapt add-dataset``) is ingested as the next round."""
        lock = RunLock(self.run_dir).acquire() if self.is_main else None
        if self.is_main:
            self.state.trim_log()
        self.state.set(status="running")
        try:
            self.models.base_path()  # a built-in model is built (and cached) here, outside the timed phases
            if self.config.evaluation.before_training:
                self._timed(BEFORE_TRAINING, "evaluate", lambda: self.phases.evaluate(BEFORE_TRAINING), True)
            t = 0
            while t < len(rounds := self.rounds()):  # the stream is read again each round
                self._backfill()
                if not self.state.done(t, "checkpoint"):
                    self.console.rule(f"round {t + 1}/{len(rounds)}: {', '.join(e.name for e in rounds[t])}")
                    for phase, fn, every_rank in self.phase_table(t, rounds[t]):
                        self._timed(t, phase, fn, every_rank)
                t += 1
            if not self.is_main:
                self.accelerator.wait_for_everyone()
                return read_json(self.layout.metrics)
            metrics = self.finish()
            self.accelerator.wait_for_everyone()
            return metrics
        finally:
            self.tracker.close()
            if lock is not None:
                lock.release()

    def select_only(self) -> pd.DataFrame:
        """One round over every dataset of the stream, up to its selection (``adapt select``);
        returns ``rounds/0/selection.parquet``. Resumable like a run."""
        with RunLock(self.run_dir, "select"):
            self.state.set(status="running")
            self.models.base_path()
            for phase, fn, every_rank in self.phase_table(0, self.stream):
                self._timed(0, phase, fn, every_rank)
                if phase == "select":
                    break
            self.state.set(status="selected", phase=None)
            return read_parquet(self.layout.round(0).selection)

    def _timed(self, t: int, phase: str, fn: Callable[[], Any], every_rank: bool = False) -> None:
        """Run one phase unless state.json has it; only the main process runs it unless ``every_rank``."""
        if self.state.done(t, phase):
            return
        self.state.set(round=round_label(t), phase=phase)
        start = time.perf_counter()
        if every_rank or self.is_main:
            fn()
        self.accelerator.wait_for_everyone()
        self.state.mark(t, phase, time.perf_counter() - start)

    def _backfill(self) -> None:
        """Evaluate earlier rounds' saved models on datasets added to the stream after them."""
        names = [e.name for e in self.stream if e.eval is not None]
        done = [BEFORE_TRAINING] + [t for t in range(len(self.rounds())) if self.state.done(t, "evaluate")]
        for t in done:
            path = self.layout.round(t).eval
            if not path.is_file():
                continue
            missing = [n for n in names if n not in read_json(path)["scores"]]
            if missing:
                self.console.print(f"  evaluating round {t}'s model on new datasets: {', '.join(missing)}")
                self.phases.evaluate(t, names=missing)

    # ------------------------------------------------------------------ what the run reports
    def collect_metrics(self) -> dict[str, Any]:
        """metrics.json's content from the per-round files."""
        return collect_metrics(self.layout, self.state, self.config, self.selector.name,
                               [e.name for e in self.stream if e.eval is not None], len(self.rounds()),
                               self.one_round)

    def checkpoint(self, t: int) -> None:
        """The end of round ``t``: pool size, metrics.json, the loggers, the matrix on the console."""
        pool_size = self.phases.write_pool_size(t)
        metrics = self.collect_metrics()
        write_json_atomic(self.layout.metrics, metrics)
        self.tracker.log_round(t, metrics, pool_size)
        labels = ["+".join(e.name for e in r) if len(r) < 3 else "all" for r in self.rounds()]
        print_matrix(self.console, metrics, labels)

    def finish(self) -> dict[str, Any]:
        from adapt.tracking.report import write_report

        metrics = self.collect_metrics()
        write_json_atomic(self.layout.metrics, metrics)
        report = write_report([self.run_dir])
        self.tracker.log_final(metrics)
        self.state.set(status="finished", phase=None, final_logged=metrics["rounds_done"])
        self.console.print(f"[green]done[/]: {self.layout.metrics}, report {report}")
        return metrics
