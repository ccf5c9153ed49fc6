"""The round loop (DESIGN.md, "One round"), resume and phase bookkeeping.

Each phase of each round is a pure function of (config, pool state, model state on disk, seed): its
outputs are written atomically and ``state.json`` records it as finished. A killed run resumes at the
first unfinished phase and ends with the same metrics.json as an uninterrupted run.

Under ``accelerate launch --num_processes N`` every rank walks the same phases: training (DDP) and
evaluation (the eval samples split over ranks, answers gathered) run on every rank; ingest, selection,
pruning, checkpoints and every file of the run directory are the main process's, with a barrier after
each phase so the other ranks read what it wrote.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from adapt.config import ExperimentConfig, load_config
from adapt.data.pool import DataPool
from adapt.data.readers import iter_dataset
from adapt.data.sample import Sample
from adapt.data.stream import StreamEntry, load_stream, resolve_stream, save_stream
from adapt.errors import AdaptError, CorruptFileError, InputError
from adapt.evaluation.continual_metrics import continual_metrics
from adapt.evaluation.generation import EvalTask, evaluate_tasks
from adapt.io import read_json, read_parquet, write_dir_atomic, write_json_atomic, write_text_atomic, write_with_atomic
from adapt.models.loading import ModelBundle, load_model
from adapt.models.lora import add_new_adapter, count_trainable, load_adapter
from adapt.models.tiny import BUILTIN_PREFIX, build_builtin, builtin_cache_key
from adapt.run_check import check_state, verify_run_dir
from adapt.runlock import RunLock
from adapt.selection import SELECTORS, SelectionContext, Selector, resolve_budget
from adapt.selection.base import phase_seed
from adapt.tracking.loggers import DiskLogger
from adapt.training.trainer import get_accelerator, process_state, train_round

PHASES = ("ingest", "features", "select", "train", "evaluate", "prune", "checkpoint")
BASE = "base"  # the pseudo-round of the evaluation before any training (R0)
REJECTED = "rejected.jsonl"  # pool/: the samples ``stream.skip_invalid`` quarantined, with their reasons


def local_checkpoint(name: str) -> Path:
    """``model.name_or_path`` as a local checkpoint folder, or an InputError."""
    path = Path(name).expanduser()
    if not path.is_dir():
        raise InputError(f"model.name_or_path: {path} is not a local checkpoint folder")
    return path


class RunState:
    """``state.json``: finished phases, current round/phase, timings; written atomically.

    Every save also records ``log_bytes``, the length of ``metrics.jsonl`` (append-only) at that
    moment; :meth:`trim_log` cuts the file back to it when a run starts, so the events of a phase
    that a kill interrupted (and a line torn by the kill) go, and the phase logs them again."""

    def __init__(self, path: Path, data: dict[str, Any], writer: bool = True, log: Path | None = None) -> None:
        self.path = path
        self.data = data
        self.writer = writer  # False on the non-main ranks: they keep the same state in memory only
        self.log = log

    @classmethod
    def load_or_new(cls, path: Path, seed: int, writer: bool = True, log: Path | None = None) -> "RunState":
        if path.is_file():
            return cls(path, check_state(path, read_json(path)), writer, log)
        return cls(path, {"seed": seed, "status": "new", "round": 0, "phase": None, "finished": [],
                          "phase_seconds": {}, "wandb_id": None}, writer, log)

    def done(self, key: str) -> bool:
        return key in self.data["finished"]

    def mark(self, key: str, seconds: float) -> None:
        self.data["finished"].append(key)
        phase = key.split(":", 1)[1]
        ps = self.data["phase_seconds"]
        ps[phase] = ps.get(phase, 0.0) + seconds
        self.save()

    def set(self, **kw: Any) -> None:
        self.data.update(kw)
        self.save()

    def save(self) -> None:
        if self.writer:
            if self.log is not None:
                self.data["log_bytes"] = self.log.stat().st_size if self.log.is_file() else 0
            write_json_atomic(self.path, self.data)

    def trim_log(self) -> None:
        """``metrics.jsonl`` back to its length at the last save (see the class docstring); a file
        shorter than that lost events: a CorruptFileError."""
        committed = self.data.get("log_bytes")
        if self.log is None or committed is None or not self.log.is_file():
            return
        size = self.log.stat().st_size
        if size < committed:
            raise CorruptFileError(self.log, f"{size} bytes, but state.json recorded {committed}: events were lost")
        if size > committed:
            with open(self.log, "r+b") as fh:
                fh.truncate(committed)
                fh.flush()
                os.fsync(fh.fileno())


class ContinualRun:
    """One continual experiment in a run directory (see DESIGN.md for the layout)."""

    def __init__(self, run_dir: Path, config: ExperimentConfig, progress: bool = True,
                 console: Console | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.config = config
        self.is_main = process_state().is_main_process
        self.progress = progress and self.is_main
        self.console = console if console is not None and self.is_main else \
            Console(stderr=True, quiet=not self.progress)
        self.state = RunState.load_or_new(self.run_dir / "state.json", config.seed, writer=self.is_main,
                                          log=self.run_dir / DiskLogger.filename)
        self.pool = DataPool(self.run_dir / "pool", writable=self.is_main)
        self.selector: Selector = SELECTORS.get(config.selection.method)(config)
        self._bundle: ModelBundle | None = None
        self._bundle_tag: str | None = None
        self._bundle_full = False
        self._eval_cache: dict[str, list[Sample]] = {}
        self._frozen_stream: list[StreamEntry] | None = None
        self._accelerator = None
        self._loggers = None

    # ------------------------------------------------------------------ creation and resume
    @classmethod
    def create(cls, run_dir: str | Path, config: ExperimentConfig, config_dir: Path | None = None,
               progress: bool = True, console: Console | None = None) -> "ContinualRun":
        """Start a new run in ``run_dir`` (which must not hold a run already)."""
        run_dir = Path(run_dir).resolve()
        if config.selection.method not in SELECTORS:
            raise InputError(f"selection.method: unknown selector {config.selection.method!r}; "
                             f"known: {', '.join(SELECTORS.names())}")
        if not config.model.name_or_path.startswith(BUILTIN_PREFIX):
            local_checkpoint(config.model.name_or_path)  # refused before anything is written
        if SELECTORS.get(config.selection.method).needs_features_for(config) and not config.features.enabled:
            raise InputError(f"selection.method={config.selection.method} needs the gradient features: "
                             "set features.enabled=true")
        if config.features.enabled:
            from adapt.features.projectors import PROJECTORS

            if config.features.projector not in PROJECTORS:
                raise InputError(f"features.projector: unknown projector {config.features.projector!r}; "
                                 f"known: {', '.join(PROJECTORS.names())}")
        dist = process_state()
        if dist.is_main_process:
            with RunLock(run_dir, "create"):
                if (run_dir / "state.json").exists():
                    raise AdaptError(f"{run_dir}: already holds a run; use `adapt run --resume {run_dir}` "
                                     "or another --run-dir")
                entries = resolve_stream(config, run_dir, base_dir=config_dir, progress=progress)
                write_text_atomic(run_dir / "config.yaml", config.to_yaml())
                save_stream(run_dir, entries)
                RunState.load_or_new(run_dir / "state.json", config.seed).save()
        dist.wait_for_everyone()
        return cls(run_dir, config, progress, console)

    @classmethod
    def resume(cls, run_dir: str | Path, progress: bool = True, console: Console | None = None,
               skip_invalid: bool = False) -> "ContinualRun":
        """Continue the run in ``run_dir`` with its stored config; ``skip_invalid`` turns on
        ``stream.skip_invalid`` from here on (written back to config.yaml)."""
        run_dir = Path(run_dir).resolve()
        if not (run_dir / "state.json").is_file():
            raise AdaptError(f"{run_dir}: no state.json; not a run directory")
        verify_run_dir(run_dir)  # a damaged file is reported now, not halfway through a round
        config = load_config(run_dir / "config.yaml")
        if skip_invalid and not config.stream.skip_invalid:
            config.stream.skip_invalid = True
            if process_state().is_main_process:
                write_text_atomic(run_dir / "config.yaml", config.to_yaml())
        return cls(run_dir, config, progress, console)

    # ------------------------------------------------------------------ small helpers
    @property
    def stream(self) -> list[StreamEntry]:
        """The run's datasets, read from stream.json each time (``adapt add-dataset`` may append
        while the run goes on); under several processes, the stream as it was at the first read,
        so that every rank walks the same rounds."""
        if self._frozen_stream is not None:
            return self._frozen_stream
        entries = load_stream(self.run_dir)
        if process_state().num_processes > 1:
            self._frozen_stream = entries
        return entries

    def rounds(self) -> list[list[StreamEntry]]:
        """Datasets ingested at each round: one per round, or all at once for a joint selector."""
        entries = self.stream
        return [entries] if self.selector.joint else [[e] for e in entries]

    def round_dir(self, t: int | str) -> Path:
        return self.run_dir / "rounds" / str(t)

    @property
    def accelerator(self):
        if self._accelerator is None:
            self._accelerator = get_accelerator(self.config.training)
        return self._accelerator

    def _log(self, msg: str) -> None:
        self.console.print(msg)

    def _base_path(self) -> Path:
        name = self.config.model.name_or_path
        if name.startswith(BUILTIN_PREFIX):
            builtin = name[len(BUILTIN_PREFIX):]
            m = self.config.model
            cache = Path(m.cache_dir or os.environ.get("ADAPT_CACHE", Path.home() / ".cache" / "adapt")).expanduser()
            key = builtin_cache_key(builtin, m.tiny, self.config.seed)
            with self.accelerator.main_process_first():  # one rank builds the cached checkpoint
                return build_builtin(builtin, cache / "builtin" / f"{builtin}-{key}", m.tiny, seed=self.config.seed,
                                     progress=self.progress)
        return local_checkpoint(name)

    def _load(self, path: Path) -> ModelBundle:
        m = self.config.model
        bundle = load_model(path, m.family, m.dtype, m.system_prompt, m.attn_implementation, m.trust_remote_code)
        if self.accelerator.device.type != "cpu":
            bundle.model.to(self.accelerator.device)
        return bundle

    def _full_first_round(self) -> bool:
        return self.config.lora.first_round == "full"

    def _lora_base(self) -> ModelBundle:
        """The weights every adapter applies to: the base, or round 0's fully trained model."""
        if self._full_first_round() and (self.round_dir(0) / "model").is_dir():
            return self._load(self.round_dir(0) / "model")
        return self._load(self._base_path())

    def _build_after(self, t: int, trainable: bool = False) -> ModelBundle:
        """The model after round ``t`` (t = -1: the base), built from the run directory.

        ``lora.between_rounds: continue`` loads round t's adapter on the LoRA base;
        ``merge`` merges the adapters of rounds 0..t into the weights, one after the other
        (peft ``merge_and_unload``), so the result is a plain model.
        """
        if t < 0:
            return self._load(self._base_path())
        bundle = self._lora_base()
        first = 1 if self._full_first_round() else 0
        if t < first:
            return bundle
        if self.config.lora.between_rounds == "merge":
            for s in range(first, t + 1):
                bundle.model = load_adapter(bundle.model, self.round_dir(s) / "adapter", trainable=False)
                bundle.model = bundle.model.merge_and_unload()
        else:
            bundle.model = load_adapter(bundle.model, self.round_dir(t) / "adapter", trainable=trainable)
        return bundle

    def _model_after(self, t: int) -> ModelBundle:
        """The model after round ``t`` in eval mode, cached between phases. Round t+1's model to
        train, before training, computes the same function (a fresh LoRA adapter adds B·A = 0; a
        continued one is round t's), so the features phase's bundle serves here as well."""
        tag = f"after:{t}"
        if self._bundle is not None and self._bundle_tag in (tag, f"to_train:{t + 1}"):
            self._bundle.model.eval()
            return self._bundle
        self._bundle = None
        bundle = self._build_after(t)
        bundle.model.eval()
        self._bundle, self._bundle_tag = bundle, tag
        return bundle

    def _eval_tasks(self, names: list[str] | None = None) -> list[EvalTask]:
        tasks = []
        for e in self.stream:
            if e.eval is None or (names is not None and e.name not in names):
                continue
            if e.name not in self._eval_cache:
                self._eval_cache[e.name] = self._read(e, "eval")
            tasks.append(EvalTask(e.name, e.metric, self._eval_cache[e.name]))
        return tasks

    # ------------------------------------------------------------------ phases
    def _read(self, e: StreamEntry, split: str, progress: bool = False) -> list[Sample]:
        """One split of a stream dataset, whole (see :meth:`_iter`)."""
        return list(self._iter(e, split, progress))

    def _iter(self, e: StreamEntry, split: str, progress: bool = False) -> Iterator[Sample]:
        """One split of a stream dataset, streaming; with ``stream.skip_invalid`` its invalid
        samples go to ``pool/rejected.jsonl`` once the split is read (the lines of this dataset and
        split replaced, atomically)."""
        sc = self.config.stream
        rejected: list[dict[str, Any]] = []
        yield from iter_dataset(e.train if split == "train" else e.eval, name=e.name, task=e.task,
                                image_root=e.image_root, check_images=sc.check_images, progress=progress,
                                max_sample_bytes=int(sc.max_sample_mb * 2**20),
                                on_invalid=(lambda err, rec: rejected.append(
                                    {"dataset": e.name, "split": split, "file": err.path, "sample": err.sample,
                                     "reason": err.problem, "record": rec})) if sc.skip_invalid else None)
        if sc.skip_invalid and self.is_main:
            self._quarantine(e.name, split, rejected)
        if rejected:
            self._log(f"  {e.name} ({split}): {len(rejected)} invalid sample(s) quarantined in pool/{REJECTED}")

    def _quarantine(self, name: str, split: str, rejected: list[dict[str, Any]]) -> None:
        import json

        path = self.run_dir / "pool" / REJECTED
        old = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line] \
            if path.is_file() else []
        rows = [r for r in old if (r["dataset"], r["split"]) != (name, split)] + rejected
        if rows or path.is_file():
            write_text_atomic(path, "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rows))

    def phase_ingest(self, t: int, entries: list[StreamEntry]) -> None:
        for e in entries:
            added = self.pool.ingest(self._iter(e, "train", progress=self.progress), dataset=e.name,
                                     round_added=t, source=e.train)
            self._log(f"  ingest [bold]{e.name}[/]: {added} samples (pool: {len(self.pool)} active)")

    def phase_select(self, t: int, entries: list[StreamEntry]) -> None:
        pool = self.pool.table(status="active", columns=["uid", "dataset", "task", "round_added"])
        pool = pool.reset_index(drop=True)
        sc = self.config.selection
        if isinstance(sc.budget, int) and sc.budget > len(pool) and not self.selector.joint:
            raise InputError(f"selection.budget={sc.budget} is more than round {t}'s active pool ({len(pool)} "
                             "samples): give a smaller count, or a fraction such as 0.25")
        budget = resolve_budget(sc.budget, len(pool))
        new_names = {e.name for e in entries}
        new_uids = pool.loc[pool["dataset"].isin(new_names), "uid"].tolist()
        model = self._model_after(t - 1) if self.selector.needs_model else None
        ctx = SelectionContext(round=t, pool=pool, new_uids=new_uids, budget=budget,
                               seed=phase_seed(self.config.seed, t, "select"), run_dir=self.run_dir,
                               model=model, config=self.config, extras={"pool": self.pool},
                               progress=self.progress)
        table = self.selector.select(ctx)
        if "summary" in ctx.extras:  # what the method decided beyond the table (task budgets, ...)
            write_json_atomic(self.round_dir(t) / "selector.json", {"method": self.selector.name,
                                                                   **ctx.extras["summary"]})
        path = self.round_dir(t) / "selection.parquet"
        write_with_atomic(path, lambda tmp: table.to_parquet(tmp, index=False))
        n = int(table["selected"].sum())
        self._log(f"  select [bold]{self.selector.name}[/]: {n} of {len(pool)} samples")
        if (table["cluster"] >= 0).any():
            from adapt.tracking.report import round_selection_plot

            round_selection_plot(self.run_dir, t, self.selector.name)
            chosen = table.groupby("cluster")["expert"].first().value_counts().to_dict()
            self._log("  experts per cluster: " + ", ".join(f"{e} ×{c}" for e, c in chosen.items()))

    def _model_to_train(self, t: int) -> tuple[ModelBundle, bool]:
        """The model round ``t`` trains, before training: every weight (round 0 of
        ``first_round: full``), the continued adapter, or a fresh adapter (seeded) on the model after
        t-1. Returns (bundle, full)."""
        full = t == 0 and self._full_first_round()
        if full:
            bundle = self._load(self._base_path())
            for p in bundle.model.parameters():
                p.requires_grad_(True)
            return bundle, True
        from accelerate.utils import set_seed

        continued = self.config.lora.between_rounds == "continue" and t > 0 and \
            (self.round_dir(t - 1) / "adapter").is_dir()
        if continued:
            return self._build_after(t - 1, trainable=True), False
        bundle = self._build_after(t - 1) if t > 0 else self._load(self._base_path())
        set_seed(phase_seed(self.config.seed, t, "train"))
        bundle.model = add_new_adapter(bundle.model, self.config.lora)
        return bundle, False

    def phase_features(self, t: int) -> None:
        """Projected per-sample gradients of the adapter round t is about to train, for the whole
        active pool, and the loss-based scores of the same pass (rounds/<t>/features)."""
        from adapt.features.extract import gradient_store

        fc = self.config.features
        self._bundle, self._bundle_tag = None, None
        bundle, full = self._model_to_train(t)
        self._bundle, self._bundle_tag, self._bundle_full = bundle, f"to_train:{t}", full  # reused by train
        if full:
            self._log("  features: none in a round that trains every weight (no LoRA adapter yet)")
            return
        uids = self.pool.table(status="active", columns=["uid"])["uid"].tolist()
        store = gradient_store(bundle.model, bundle.family, self.pool.samples(uids), self.round_dir(t) / "features",
                               fc, self.config.seed, self.config.model.max_length, accelerator=self.accelerator,
                               progress=self.progress, desc=f"round {t} features")
        self._log(f"  features: {store.n} samples × d={fc.dim} ({fc.projector}, "
                  f"{store.meta['lora_weights']:,} LoRA weights)")

    def phase_train(self, t: int) -> None:
        table = read_parquet(self.round_dir(t) / "selection.parquet")
        uids = table.loc[table["selected"], "uid"].tolist()
        samples = self.pool.samples(uids)
        seed = phase_seed(self.config.seed, t, "train")
        tcfg = self.config.training
        if self._bundle is not None and self._bundle_tag == f"to_train:{t}":  # built by the features phase
            bundle, full = self._bundle, self._bundle_full
        else:
            self._bundle, self._bundle_tag = None, None
            bundle, full = self._model_to_train(t)
        if full:
            lr, epochs = tcfg.first_round_lr or tcfg.lr, tcfg.first_round_epochs or tcfg.epochs
        else:
            lr, epochs = tcfg.lr, tcfg.epochs
        n_train, n_total = count_trainable(bundle.model)
        self._log(f"  train ({'full' if full else 'LoRA'}, {n_train:,} of {n_total:,} weights): "
                  f"{len(samples)} samples × {epochs:g} epochs")
        stats = train_round(bundle.model, bundle.family, samples, tcfg, self.accelerator, seed,
                            self.config.model.max_length, lr=lr, epochs=epochs, desc=f"round {t} train",
                            progress=self.progress)
        out = self.round_dir(t) / ("model" if full else "adapter")
        model = self.accelerator.unwrap_model(bundle.model)
        if self.accelerator.is_main_process:
            write_dir_atomic(out, lambda d: self._save_model(model, bundle, d, full))
        self.accelerator.wait_for_everyone()
        info = stats.to_dict() | {"mode": "full" if full else "lora", "trainable": n_train,
                                  "dataset_counts": _counts(self.pool.table(status=None, columns=["uid", "dataset"]), uids)}
        if self.is_main:
            write_json_atomic(self.round_dir(t) / "train.json", info)
        self._log(f"  train loss {stats.first_loss:.3f} → {stats.last_loss:.3f} in {stats.seconds:.1f}s")
        bundle.model.eval()
        self._bundle, self._bundle_tag = bundle, f"after:{t}"

    @staticmethod
    def _save_model(model: Any, bundle: ModelBundle, out: Path, full: bool) -> None:
        model.save_pretrained(out)
        if full:
            bundle.tokenizer.save_pretrained(out)
            if bundle.image_processor is not None:
                bundle.image_processor.save_pretrained(out)

    def phase_evaluate(self, t: int | str, names: list[str] | None = None) -> dict[str, float]:
        bundle = self._model_after(-1 if t == BASE else int(t))
        tasks = self._eval_tasks(names)
        results = evaluate_tasks(bundle.model, bundle.family, tasks, self.config.evaluation,
                                 self.config.model.max_length, progress=self.progress,
                                 accelerator=self.accelerator)
        scores = {k: r.score for k, r in results.items()}
        if not self.is_main:
            return scores
        path = self.round_dir(t) / "eval.json"
        old = read_json(path) if path.is_file() and names is not None else {"scores": {}, "n": {}}
        scores = old["scores"] | scores
        ns = old["n"] | {k: r.n for k, r in results.items()}
        write_json_atomic(path, {"round": t, "scores": scores, "n": ns})
        preds = [dict(p, task=k) for k, r in results.items() for p in r.predictions]
        pred_path = self.round_dir(t) / ("predictions.jsonl" if names is None else "predictions_backfill.jsonl")
        write_with_atomic(pred_path, lambda tmp: pd.DataFrame(preds).to_json(tmp, orient="records", lines=True,
                                                                             force_ascii=False))
        return scores

    def phase_prune(self, t: int) -> None:
        cap = self.config.pool.max_size
        if cap is None:
            return
        active = self.pool.table(status="active", columns=["uid"])
        limit = cap if isinstance(cap, int) else int(cap * self.pool.num_total())
        excess = len(active) - limit
        if excess <= 0:
            return
        pruned = None
        if hasattr(self.selector, "prune"):
            embedding = "features"
            if self.config.pool.prune_embedding == "hidden":
                self._hidden_states(t, active["uid"].tolist())
                embedding = "hidden"
            pruned = self.selector.prune(active, limit, phase_seed(self.config.seed, t, "prune"), self.round_dir(t),
                                         embedding=embedding, progress=self.progress)
        if pruned is None:
            rng = np.random.default_rng(phase_seed(self.config.seed, t, "prune"))
            pruned = active["uid"].to_numpy()[rng.choice(len(active), size=excess, replace=False)].tolist()
            reason = "max_size (random)"
        else:
            pruned, reason = pruned
        self.pool.prune(pruned, round=t, reason=reason)
        self._log(f"  prune: {len(pruned)} samples tombstoned ({reason}); pool {len(self.pool)}")

    def _hidden_states(self, t: int, uids: list[str]) -> None:
        """rounds/<t>/hidden: the model after round t embeds the active pool (last hidden states,
        mean over tokens) for ``pool.prune_embedding: hidden``."""
        from adapt.features.extract import extract_hidden
        from adapt.features.store import FeatureStore

        bundle = self._model_after(t)
        hidden = bundle.model.get_input_embeddings().embedding_dim
        store = FeatureStore.create(self.round_dir(t) / "hidden", uids, hidden, projector="hidden-mean",
                                    layers="last")
        extract_hidden(bundle.model, bundle.family, self.pool.samples(uids), store, self.config.features.batch_size,
                       self.config.model.max_length, progress=self.progress, desc=f"round {t} hidden states")

    def phase_checkpoint(self, t: int) -> None:
        pool = self.pool.table(status="active", columns=["uid", "dataset"])
        write_json_atomic(self.round_dir(t) / "pool.json", {
            "round": t, "active": len(pool), "total": self.pool.num_total(),
            "per_dataset": {str(k): int(v) for k, v in pool["dataset"].value_counts(sort=False).items()},
        })
        metrics = self.collect_metrics()
        write_json_atomic(self.run_dir / "metrics.json", metrics)
        loggers = self.loggers()
        row = {f"eval/{k}": v for k, v in read_json(self.round_dir(t) / "eval.json")["scores"].items()}
        train = read_json(self.round_dir(t) / "train.json")
        row |= {"round": t, "samples_trained": train["samples"], "train/loss_last": train["last_loss"],
                "pool_size": len(pool), "avg_accuracy": metrics["avg_accuracy"]}
        loggers.log({k: v for k, v in row.items() if v is not None}, step=t)
        plot = self.run_dir / "plots" / f"selection_round_{t}.png"
        if plot.is_file():
            loggers.log_image("selection_by_cluster", plot, step=t)
        experts = self.round_dir(t) / "experts.json"
        if experts.is_file():
            rows = [[t, c["cluster"], c["size"], c["expert"], c["quota"]] for c in read_json(experts)["clusters"]]
            loggers.log_table("experts_per_cluster", ["round", "cluster", "size", "expert", "quota"], rows, step=t)
        self.print_matrix(metrics)

    # ------------------------------------------------------------------ metrics and tracking
    def collect_metrics(self) -> dict[str, Any]:
        """metrics.json from the per-round files (so it is the same however the run was resumed)."""
        tasks = [e.name for e in self.stream if e.eval is not None]
        rows, samples, pool_sizes, sel_counts, pool_counts = [], [], [], [], []
        for t in range(len(self.rounds())):
            ev = self.round_dir(t) / "eval.json"
            if not self.state.done(f"{t}:evaluate") or not ev.is_file():
                break
            scores = read_json(ev)["scores"]
            rows.append([scores.get(k, float("nan")) for k in tasks])
            tj = read_json(self.round_dir(t) / "train.json")
            samples.append(tj["samples"])
            sel_counts.append(tj.get("dataset_counts", {}))
            pj = self.round_dir(t) / "pool.json"
            if pj.is_file():
                p = read_json(pj)
                pool_sizes.append(p["active"])
                pool_counts.append(p["per_dataset"])
        r0 = None
        base = self.round_dir(BASE) / "eval.json"
        if base.is_file():
            s0 = read_json(base)["scores"]
            r0 = [s0.get(k, float("nan")) for k in tasks]
        if self.selector.joint:
            m = {"avg_accuracy": float(np.mean(rows[0])) if rows else None, "maa": None, "bwt": None,
                 "forgetting": None, "fwt": None}
        else:
            m = continual_metrics(rows, r0) if rows else {k: None for k in ("avg_accuracy", "maa", "bwt", "forgetting", "fwt")}
        return {
            "method": self.selector.name, "tasks": tasks, "accuracy_matrix": rows, "accuracy_before": r0,
            **m, "samples_trained": samples, "pool_size": pool_sizes, "selected_per_dataset": sel_counts,
            "pool_per_dataset": pool_counts, "rounds_done": len(rows), "rounds_total": len(self.rounds()),
            "phase_seconds": {k: round(v, 3) for k, v in self.state.data["phase_seconds"].items()},
            "wall_seconds": round(sum(self.state.data["phase_seconds"].values()), 3),
            "config": self.config.to_dict(),
        }

    def loggers(self):
        if self._loggers is None:
            from adapt.tracking.loggers import build_loggers

            tr = self.config.tracking
            cfg = {"wandb": tr.wandb, "wandb_mode": tr.wandb_mode, "project": tr.project,
                   "run_name": tr.run_name or self.run_dir.name, "tags": tr.tags, "group": tr.group,
                   "run_id": self.state.data.get("wandb_id")}
            self._loggers = build_loggers(self.run_dir, cfg)
            run_id = next((lg.run_id for lg in getattr(self._loggers, "loggers", []) if hasattr(lg, "run_id")), None)
            if run_id and run_id != self.state.data.get("wandb_id"):
                self.state.set(wandb_id=run_id)
            if not self.state.data.get("config_logged"):  # once per run, not once per resume
                self._loggers.log_config(self.config.to_dict())
                self.state.set(config_logged=True)
        return self._loggers

    def print_matrix(self, metrics: dict[str, Any]) -> None:
        table = Table(title=f"accuracy matrix ({metrics['rounds_done']}/{metrics['rounds_total']} rounds)",
                      show_lines=False)
        table.add_column("after")
        for k in metrics["tasks"]:
            table.add_column(k, justify="right", overflow="fold")
        rounds = self.rounds()
        if metrics["accuracy_before"] is not None:
            table.add_row("base", *(f"{100 * v:.1f}" for v in metrics["accuracy_before"]))
        for t, row in enumerate(metrics["accuracy_matrix"]):
            label = "+".join(e.name for e in rounds[t]) if len(rounds[t]) < 3 else "all"
            table.add_row(label, *("" if v != v else f"{100 * v:.1f}" for v in row))
        self.console.print(table)

    def finish(self) -> dict[str, Any]:
        from adapt.tracking.plots import plot_accuracy_matrix
        from adapt.tracking.report import write_report

        metrics = self.collect_metrics()
        write_json_atomic(self.run_dir / "metrics.json", metrics)
        report = write_report([self.run_dir])
        step = max(0, metrics["rounds_done"] - 1)
        heat = self.run_dir / "plots" / "accuracy_matrix.png"
        if not heat.is_file() and metrics["accuracy_matrix"]:
            plot_accuracy_matrix(metrics["accuracy_matrix"], metrics["tasks"], heat, R0=metrics["accuracy_before"])
        if self.state.data.get("final_logged") != metrics["rounds_done"]:  # a finished run resumed: logged already
            self._log_final(metrics, heat, step)
        self.state.set(status="finished", phase=None, final_logged=metrics["rounds_done"])
        self._log(f"[green]done[/]: {self.run_dir / 'metrics.json'}, report {report}")
        return metrics

    def _log_final(self, metrics: dict[str, Any], heat: Path, step: int) -> None:
        loggers = self.loggers()
        loggers.log_table("accuracy_matrix", ["after"] + metrics["tasks"],
                          [[str(t)] + list(r) for t, r in enumerate(metrics["accuracy_matrix"])], step=step)
        if heat.is_file():
            loggers.log_image("accuracy_matrix", heat, step=step)
        final = {f"final/{k}": metrics[k] for k in ("avg_accuracy", "maa", "bwt", "forgetting", "fwt")
                 if metrics[k] is not None}
        final["final/samples_trained"] = int(sum(metrics["samples_trained"]))
        loggers.log(final, step=step)

    # ------------------------------------------------------------------ the loop
    def run(self) -> dict[str, Any]:
        """Run (or continue) every round; returns metrics.json's content. The run directory is
        locked for the duration (``adapt.runlock``); a dataset added to the stream meanwhile
        (``adapt add-dataset``) is ingested as the next round."""
        lock = RunLock(self.run_dir).acquire() if self.is_main else None
        if self.is_main:
            self.state.trim_log()
        self.state.set(status="running")
        try:
            self._base_path()  # a built-in model is built (and cached) here, outside the timed phases
            if self.config.evaluation.before_training and not self.state.done(f"{BASE}:evaluate"):
                self._timed(BASE, "evaluate", lambda: self.phase_evaluate(BASE), every_rank=True)
            t = 0
            while t < len(rounds := self.rounds()):  # the stream is read again each round
                entries = rounds[t]
                t += 1
                self._backfill()
                if self.state.done(f"{t - 1}:checkpoint"):
                    continue
                self._round(t - 1, entries, len(rounds))
            if not self.is_main:
                self.accelerator.wait_for_everyone()
                return read_json(self.run_dir / "metrics.json")
            metrics = self.finish()
            self.accelerator.wait_for_everyone()
            return metrics
        finally:
            if self._loggers is not None:
                self._loggers.finish()
                self._loggers = None
            if lock is not None:
                lock.release()

    def _round(self, t: int, entries: list[StreamEntry], n_rounds: int) -> None:
        """Every phase of round ``t`` not yet done."""
        self.console.rule(f"round {t + 1}/{n_rounds}: {', '.join(e.name for e in entries)}")
        self._timed(t, "ingest", lambda: self.phase_ingest(t, entries))
        if self.config.features.enabled:
            self._timed(t, "features", lambda: self.phase_features(t), every_rank=True)
        self._timed(t, "select", lambda: self.phase_select(t, entries))
        self._timed(t, "train", lambda: self.phase_train(t), every_rank=True)
        self._timed(t, "evaluate", lambda: self.phase_evaluate(t), every_rank=True)
        self._timed(t, "prune", lambda: self.phase_prune(t))
        self._timed(t, "checkpoint", lambda: self.phase_checkpoint(t))

    def select_only(self) -> pd.DataFrame:
        """One round over every dataset of the stream, up to its selection (``adapt select``);
        returns ``rounds/0/selection.parquet``. Resumable like a run."""
        with RunLock(self.run_dir, "select"):
            self.state.set(status="running")
            self._base_path()
            entries = self.stream
            self._timed(0, "ingest", lambda: self.phase_ingest(0, entries))
            if self.config.features.enabled:
                self._timed(0, "features", lambda: self.phase_features(0), every_rank=True)
            self._timed(0, "select", lambda: self.phase_select(0, entries))
            self.state.set(status="selected", phase=None)
            return read_parquet(self.round_dir(0) / "selection.parquet")

    def _timed(self, t: int | str, phase: str, fn, every_rank: bool = False) -> None:
        """Run one phase unless state.json has it; only the main process runs it unless ``every_rank``."""
        key = f"{t}:{phase}"
        if self.state.done(key):
            return
        self.state.set(round=t, phase=phase)
        start = time.perf_counter()
        if every_rank or self.is_main:
            fn()
        self.accelerator.wait_for_everyone()
        self.state.mark(key, time.perf_counter() - start)

    def _backfill(self) -> None:
        """Evaluate earlier rounds' saved models on datasets added to the stream after them."""
        names = [e.name for e in self.stream if e.eval is not None]
        done_rounds = [BASE] + [t for t in range(len(self.rounds())) if self.state.done(f"{t}:evaluate")]
        for t in done_rounds:
            path = self.round_dir(t) / "eval.json"
            if not path.is_file():
                continue
            missing = [n for n in names if n not in read_json(path)["scores"]]
            if missing:
                self._log(f"  evaluating round {t}'s model on new datasets: {', '.join(missing)}")
                self.phase_evaluate(t, names=missing)


def _counts(pool: pd.DataFrame, uids: list[str]) -> dict[str, int]:
    sel = pool[pool["uid"].isin(set(uids))]
    return {str(k): int(v) for k, v in sel["dataset"].value_counts(sort=False).items()}
