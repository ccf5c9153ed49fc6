"""The phases of one round (DESIGN.md, "One round"), each a pure function of (config, pool state,
model state on disk, seed) that writes its outputs atomically. :class:`~adapt.run.loop.ContinualRun`
decides which run and records them in ``state.json``.

Under ``accelerate launch --num_processes N`` training, evaluation and the gradient features run on
every rank; everything else, and every file of the run directory, is the main process's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console

from adapt.config import DatasetEntry, ExperimentConfig
from adapt.data.pool import DataPool
from adapt.data.sample import Sample
from adapt.data.stream import iter_entry
from adapt.errors import InputError
from adapt.evaluation.generation import EvalTask, evaluate_tasks
from adapt.io import read_json, read_parquet, write_json_atomic, write_with_atomic
from adapt.layout import RunLayout, round_label
from adapt.models.lora import count_trainable
from adapt.run.models import ModelChain
from adapt.selection import PruneContext, Pruning, SelectionContext, Selector, resolve_budget
from adapt.selection.base import phase_seed
from adapt.training.trainer import train_round


def one_round(config: ExperimentConfig, selector: Selector) -> bool:
    """Whether the whole stream is one round: a joint selector (``multitask``), or any selector under
    ``stream.all_at_once``, the one-shot setting of TIVE, MLLM-Selector, DataTailor and GDO (one
    selection of ``selection.budget`` from the union of every dataset, one training)."""
    return selector.joint or config.stream.all_at_once


@dataclass
class RoundPhases:
    """The parts every phase works with, and the phases themselves."""

    config: ExperimentConfig
    layout: RunLayout
    pool: DataPool
    models: ModelChain
    selector: Selector
    accelerator: Any
    console: Console
    stream: Callable[[], list[DatasetEntry]]
    progress: bool = True
    is_main: bool = True
    _eval_samples: dict[str, list[Sample]] = field(default_factory=dict)

    def log(self, msg: str) -> None:
        self.console.print(msg)

    # ------------------------------------------------------------------ reading the stream
    def read_split(self, e: DatasetEntry, split: str, progress: bool = False) -> Iterator[Sample]:
        """One split of a stream dataset, streaming, with the run's reading rules; under
        ``stream.skip_invalid`` its invalid samples go to ``pool/rejected.jsonl`` once it is read."""
        rejected: list[dict[str, Any]] = []
        yield from iter_entry(e, split, self.config.stream, progress=progress, image_store=self.pool.images,
                              on_invalid=lambda err, rec: rejected.append(
            {"dataset": e.name, "split": split, "file": err.path, "sample": err.sample, "reason": err.problem,
             "record": rec}))
        if self.config.stream.skip_invalid and self.is_main:
            self.pool.quarantine(e.name, split, rejected)
        if rejected:
            self.log(f"  {e.name} ({split}): {len(rejected)} invalid sample(s) quarantined in "
                     f"{self.pool.rejected_path.relative_to(self.layout.root)}")

    def eval_tasks(self, names: list[str] | None = None) -> list[EvalTask]:
        """The stream's eval splits (all, or ``names``), read once per run."""
        tasks = []
        for e in self.stream():
            if e.eval is None or (names is not None and e.name not in names):
                continue
            if e.name not in self._eval_samples:
                self._eval_samples[e.name] = list(self.read_split(e, "eval"))
            tasks.append(EvalTask(e.name, e.metric, self._eval_samples[e.name]))
        return tasks

    # ------------------------------------------------------------------ the phases
    def ingest(self, t: int, entries: list[DatasetEntry]) -> None:
        """Round t's datasets into the pool; then the budget is checked against the pool it selects from."""
        for e in entries:
            added = self.pool.ingest(self.read_split(e, "train", progress=self.progress), dataset=e.name,
                                     round_added=t, source=e.train)
            self.log(f"  ingest [bold]{e.name}[/]: {added} samples (pool: {len(self.pool)} active)")
        budget = self.config.selection.budget
        if isinstance(budget, int) and budget > len(self.pool) and not self.selector.joint:
            raise InputError(f"selection.budget={budget} is more than round {t}'s active pool ({len(self.pool)} "
                             "samples): give a smaller count, or a fraction such as 0.25")

    def features(self, t: int) -> None:
        """Projected per-sample gradients for the whole active pool, and the loss-based scores of the
        same pass (rounds/<t>/features), on the adapter :meth:`ModelChain.for_features` gives (round
        t-1's under ``merge`` + ``features.adapter: previous``, else the one round t trains). When the
        run prunes on hidden states, the same forward also writes rounds/<t>/hidden."""
        from adapt.features.extract import gradient_store

        fc = self.config.features
        bundle = self.models.for_features(t)  # the model to train is kept for the train phase
        if bundle is None:
            self.log("  features: none in a round that trains every weight (no LoRA adapter yet)")
            return
        rd = self.layout.round(t)
        uids = self.pool.table(status="active", columns=["uid"])["uid"].tolist()
        store = gradient_store(bundle.model, bundle.family, self.pool.samples(uids), rd.features, fc, self.config.seed,
                               self.config.model.max_length, accelerator=self.accelerator, progress=self.progress,
                               desc=f"round {t} features", hidden=rd.hidden if self.writes_hidden() else None)
        which = f"round {t - 1}'s adapter" if self.models.previous_adapter(t) else "the adapter to train"
        self.log(f"  features: {store.n} samples × d={fc.dim} ({fc.projector}, {store.meta['lora_weights']:,} "
                 f"LoRA weights of {which}){' + hidden states' if self.writes_hidden() else ''}")

    def own_pruning(self) -> bool:
        """Whether the prune phase runs the selector's own pruning, which reads the round's gradient
        pass: a capped pool, a selector with its own pruning, and rounds after this one (a one-round
        run never prunes)."""
        return self.config.pool.max_size is not None and self.selector.has_own_pruning() and \
            not one_round(self.config, self.selector)

    def writes_hidden(self) -> bool:
        """Whether the features phase also writes rounds/<t>/hidden: the pruning or the selector reads it."""
        return self.prunes_on_hidden() or self.selector.needs_hidden()

    def prunes_on_hidden(self) -> bool:
        """Whether the prune phase reads rounds/<t>/hidden (``pool.prune_embedding: hidden``)."""
        return self.own_pruning() and self.config.pool.prune_embedding == "hidden"

    def select(self, t: int, entries: list[DatasetEntry]) -> None:
        pool = self.pool.table(status="active", columns=["uid", "dataset", "task", "round_added"]).reset_index(drop=True)
        sc = self.config.selection
        budget = resolve_budget(sc.budget, len(pool), self.pool.num_total() if sc.budget_of == "seen" else None)
        new_names = {e.name for e in entries}
        rd = self.layout.round(t)
        ctx = SelectionContext(round=t, pool=pool, new_uids=pool.loc[pool["dataset"].isin(new_names), "uid"].tolist(),
                               budget=budget, seed=phase_seed(self.config.seed, t, "select"), config=self.config,
                               settings=getattr(self.config.selection, self.selector.name, None), data=self.pool,
                               files=rd, model=self.models.after(t - 1) if self.selector.needs_model else None,
                               progress=self.progress)
        selection = self.selector.select(ctx)
        table = selection.table
        if selection.summary is not None:  # what the method decided beyond the table (task budgets, ...)
            write_json_atomic(rd.selector, {"method": self.selector.name, **selection.summary})
        write_with_atomic(rd.selection, lambda tmp: table.to_parquet(tmp, index=False))
        self.log(f"  select [bold]{self.selector.name}[/]: {int(table['selected'].sum())} of {len(pool)} samples")
        if (table["cluster"] >= 0).any():
            from adapt.tracking.report import round_selection_plot

            round_selection_plot(self.layout.root, t, self.selector.name)
            chosen = table.groupby("cluster")["expert"].first().value_counts().to_dict()
            self.log("  experts per cluster: " + ", ".join(f"{e} ×{c}" for e, c in chosen.items()))

    def train(self, t: int) -> None:
        rd = self.layout.round(t)
        table = read_parquet(rd.selection)
        uids = table.loc[table["selected"], "uid"].tolist()
        samples = self.pool.samples(uids)
        tcfg = self.config.training
        bundle, full = self.models.to_train(t)  # built by the features phase, when it ran
        lr = (tcfg.first_round_lr or tcfg.lr) if full else tcfg.lr
        epochs = (tcfg.first_round_epochs or tcfg.epochs) if full else tcfg.epochs
        n_train, n_total = count_trainable(bundle.model)
        self.log(f"  train ({'full' if full else 'LoRA'}, {n_train:,} of {n_total:,} weights): "
                 f"{len(samples)} samples × {epochs:g} epochs")
        stats = train_round(bundle.model, bundle.family, samples, tcfg, self.accelerator,
                            phase_seed(self.config.seed, t, "train"), self.config.model.max_length, lr=lr,
                            epochs=epochs, desc=f"round {t} train", progress=self.progress)
        self.models.save(t, bundle, full)
        info = stats.to_dict() | {"mode": "full" if full else "lora", "trainable": n_train,
                                  "dataset_counts": _counts(self.pool.table(status=None, columns=["uid", "dataset"]), uids)}
        if self.is_main:
            write_json_atomic(rd.train, info)
        self.log(f"  train loss {stats.first_loss:.3f} → {stats.last_loss:.3f} in {stats.seconds:.1f}s")
        self.models.trained(t, bundle)

    def evaluate(self, t: int, names: list[str] | None = None) -> dict[str, float]:
        """Every eval split (or ``names``: datasets added after round t) on the model after round t."""
        bundle = self.models.after(t)
        results = evaluate_tasks(bundle.model, bundle.family, self.eval_tasks(names), self.config.evaluation,
                                 self.config.model.max_length, progress=self.progress, accelerator=self.accelerator)
        scores = {k: r.score for k, r in results.items()}
        if not self.is_main:
            return scores
        rd = self.layout.round(t)
        old = read_json(rd.eval) if rd.eval.is_file() and names is not None else {"scores": {}, "n": {}}
        scores = old["scores"] | scores
        write_json_atomic(rd.eval, {"round": round_label(t), "scores": scores,
                                    "n": old["n"] | {k: r.n for k, r in results.items()}})
        preds = [dict(p, task=k) for k, r in results.items() for p in r.predictions]
        write_with_atomic(rd.predictions if names is None else rd.predictions_backfill,
                          lambda tmp: pd.DataFrame(preds).to_json(tmp, orient="records", lines=True, force_ascii=False))
        return scores

    def prune(self, t: int) -> None:
        """Tombstone the pool down to ``pool.max_size``: the selector's own pruning, else at random."""
        cap = self.config.pool.max_size
        if cap is None:
            return
        active = self.pool.table(status="active", columns=["uid"])
        limit = cap if isinstance(cap, int) else int(cap * self.pool.num_total())
        excess = len(active) - limit
        if excess <= 0:
            return
        seed = phase_seed(self.config.seed, t, "prune")
        rd = self.layout.round(t)
        decision = None
        if self.selector.has_own_pruning():
            on = self.config.pool.prune_embedding  # hidden: rounds/<t>/hidden, from the features phase's pass
            pc = self.config.pool
            decision = self.selector.prune(PruneContext(t, active, limit, seed, rd, rd.hidden if on == "hidden"
                                                        else rd.features, on, self.progress, pc.prune_order,
                                                        pc.prune_split, pc.prune_index))
        if decision is None:
            rng = np.random.default_rng(seed)
            uids = active["uid"].to_numpy()[rng.choice(len(active), size=excess, replace=False)].tolist()
            decision = Pruning(uids, "max_size (random)")
        self.pool.prune(decision.uids, round=t, reason=decision.reason)
        self.log(f"  prune: {len(decision.uids)} samples tombstoned ({decision.reason}); pool {len(self.pool)}")

    def write_pool_size(self, t: int) -> int:
        """rounds/<t>/pool.json: the active pool after round t, per dataset; returns its size."""
        pool = self.pool.table(status="active", columns=["uid", "dataset"])
        write_json_atomic(self.layout.round(t).pool, {
            "round": t, "active": len(pool), "total": self.pool.num_total(),
            "per_dataset": {str(k): int(v) for k, v in pool["dataset"].value_counts(sort=False).items()},
        })
        return len(pool)


def _counts(pool: pd.DataFrame, uids: list[str]) -> dict[str, int]:
    sel = pool[pool["uid"].isin(set(uids))]
    return {str(k): int(v) for k, v in sel["dataset"].value_counts(sort=False).items()}
