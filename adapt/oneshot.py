"""``adapt select``: one selection over datasets outside any continual run, as the users of TIVE,
MLLM-Selector, DataTailor or GDO run them today — datasets and a model in, the chosen samples out in
the input's own format.

It is one round of the continual loop (ingest → features when the method reads them → select) in a
work directory, so every selector runs exactly the code it runs in a run; a kept ``--work-dir``
resumes an interrupted selection.
"""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd

from adapt.config import DatasetEntry, ExperimentConfig, load_config
from adapt.data.readers import load_records
from adapt.errors import AdaptError
from adapt.io import write_with_atomic

OUTPUT_FORMATS = (".json", ".jsonl", ".parquet")


def dataset_names(paths: list[Path]) -> list[str]:
    """A name per data file: its stem, or its folder's name when stems repeat (``color/train.json``)."""
    stems = [p.stem if p.is_file() else p.name for p in paths]
    names = [p.parent.name if stems.count(s) > 1 else s for p, s in zip(paths, stems)]
    return [n if names.count(n) == 1 else f"{n}-{i}" for i, n in enumerate(names)]


def one_shot_config(data: list[Path], model: str, method: str, budget: int | float, config: Path | None = None,
                    overrides: list[str] | None = None, image_root: Path | None = None) -> ExperimentConfig:
    """The config of a one-shot selection: the user's config (or the defaults) with the datasets as
    the stream, the model, the method and the budget; no training, evaluation or tracking."""
    from adapt.selection import SELECTORS
    from adapt.selection.mllm_selector import ONE_SHOT_SEED_FRACTION

    cfg = load_config(config, [*(overrides or []), f"selection.method={method}", f"selection.budget={budget}",
                               f"model.name_or_path={model}", "stream.builtin=null", "tracking.wandb=false",
                               "evaluation.before_training=false", "lora.first_round=lora"])
    if method not in SELECTORS:
        raise AdaptError(f"--method: unknown selector {method!r}; known: {', '.join(SELECTORS.names())}")
    root = str(image_root.resolve()) if image_root is not None else None
    cfg.stream.datasets = [DatasetEntry(name=n, train=str(p.resolve()), image_root=root)
                           for n, p in zip(dataset_names(data), data)]
    if cfg.selection.mllm_selector.seed_fraction is None:  # one shot: a seed model is fine-tuned (the paper)
        cfg.selection.mllm_selector.seed_fraction = ONE_SHOT_SEED_FRACTION
    if SELECTORS.get(method).needs_features_for(cfg):
        cfg.features.enabled = True
    return cfg


def write_selected(data: list[Path], names: list[str], selected_uids: list[str], out: Path) -> dict[str, int]:
    """The selected records of every input, untouched, into ``out`` (.json list, .jsonl or
    .parquet, by its suffix), in input order; returns the count per dataset."""
    suffix = out.suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        raise AdaptError(f"--out {out}: unsupported output type {suffix or out.name!r} "
                         f"(use {', '.join(OUTPUT_FORMATS)})")
    chosen = set(selected_uids)
    records: list[Any] = []
    counts: dict[str, int] = {}
    for path, name in zip(data, names):
        kept = [rec for _, rec in load_records(path.resolve()) if f"{name}/{rec['id']}" in chosen]
        counts[name] = len(kept)
        records.extend(kept)
    if suffix == ".parquet":
        write_with_atomic(out, lambda tmp: pd.DataFrame(records).to_parquet(tmp, index=False))
    else:
        def dump(tmp: Path) -> None:
            with open(tmp, "w", encoding="utf-8") as fh:
                if suffix == ".json":
                    json.dump(records, fh, ensure_ascii=False, indent=1, default=_plain)
                else:
                    for rec in records:
                        fh.write(json.dumps(rec, ensure_ascii=False, default=_plain) + "\n")

        write_with_atomic(out, dump)
    return counts


def _plain(obj: Any) -> Any:
    """numpy scalars and arrays of Parquet / datasets rows as JSON values."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def select_once(data: list[Path], model: str, method: str, budget: int | float, out: Path,
                config: Path | None = None, overrides: list[str] | None = None, work_dir: Path | None = None,
                image_root: Path | None = None, progress: bool = True, console: Any = None) -> dict[str, Any]:
    """Run the one-shot selection and write ``out``; returns a summary (counts per dataset, pool size)."""
    from adapt.loop import ContinualRun

    if not data:
        raise AdaptError("give at least one dataset")
    if out.suffix.lower() not in OUTPUT_FORMATS:
        raise AdaptError(f"--out {out}: unsupported output type {out.suffix or out.name!r} "
                         f"(use {', '.join(OUTPUT_FORMATS)})")
    cfg = one_shot_config(data, model, method, budget, config, overrides, image_root)
    names = [d.name for d in cfg.stream.datasets]
    with tempfile.TemporaryDirectory(prefix="adapt-select-") as tmp:
        work = Path(work_dir) if work_dir is not None else Path(tmp) / "work"
        if (work / "state.json").is_file():
            stored = load_config(work / "config.yaml")
            if stored.to_dict() != cfg.to_dict():
                raise AdaptError(f"{work}: holds a selection with other settings; remove it or give another --work-dir")
            run = ContinualRun.resume(work, progress=progress, console=console)
        else:
            run = ContinualRun.create(work, cfg, config_dir=Path.cwd(), progress=progress, console=console)
        table = run.select_only()
        uids = table.loc[table["selected"], "uid"].tolist()
        counts = write_selected(data, names, uids, out)
    return {"selected": len(uids), "pool": len(table), "per_dataset": counts,
            "pool_per_dataset": dict(Counter(table["dataset"].tolist()))}
