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
from adapt.data.conversations import rebase_images, record_images
from adapt.data.images import embedded_bytes
from adapt.data.readers import RecordIds, hf_train_split, iter_records
from adapt.errors import AdaptError, InputError
from adapt.io import write_dir_atomic, write_with_atomic
from adapt.layout import RunLayout

OUTPUT_FORMATS = (".json", ".jsonl", ".parquet")


def dataset_names(paths: list[Path]) -> list[str]:
    """A name per data file: its stem, or its folder's name when stems repeat (``color/train.json``)."""
    paths = [p.expanduser().resolve() for p in paths]
    stems = [p.stem if p.is_file() else p.name for p in paths]
    names = [p.parent.name if stems.count(s) > 1 else s for p, s in zip(paths, stems)]
    return [n if names.count(n) == 1 else f"{n}-{i}" for i, n in enumerate(names)]


def one_shot_config(data: list[Path], model: str, method: str, budget: int | float, config: Path | None = None,
                    overrides: list[str] | None = None, image_root: Path | None = None) -> ExperimentConfig:
    """The config of a one-shot selection: the user's config (or the defaults) with the datasets as
    the stream, the model, the method and the budget; no training, evaluation or tracking."""
    from adapt.methods import SELECTORS

    cfg = load_config(config, [*(overrides or []), f"selection.method={method}", f"selection.budget={budget}",
                               f"model.name_or_path={model}", "stream.builtin=null", "tracking.wandb=false",
                               "evaluation.before_training=false", "lora.first_round=lora"])
    SELECTORS.check(method, "--method")
    root = str(image_root.resolve()) if image_root is not None else None
    cfg.stream.datasets = [DatasetEntry(name=n, train=str(p.resolve()), image_root=root)
                           for n, p in zip(dataset_names(data), data)]
    if SELECTORS.get(method)(cfg).needs_features():
        cfg.features.enabled = True
    return cfg


def check_output(target: Path, out: Path) -> None:
    if target.suffix.lower() not in OUTPUT_FORMATS and not _is_folder_output(target):
        raise InputError(f"--out {out}: unsupported output type {target.suffix or target.name!r} "
                         f"(use {', '.join(OUTPUT_FORMATS)}, or a folder)")


def _is_folder_output(target: Path) -> bool:
    return target.suffix == "" or target.is_dir()


def write_records(records: list[Any], out: Path) -> None:
    """Records, untouched, into ``out`` atomically: a .json list, .jsonl lines or .parquet rows."""
    check_output(out, out)
    suffix = out.suffix.lower()
    if suffix == ".parquet":
        write_with_atomic(out, lambda tmp: pd.DataFrame(records).to_parquet(tmp, index=False))
        return
    if any(embedded_bytes(v) is not None for rec in records for v in record_images(rec, out, "")):
        raise InputError(f"--out {out}: the records hold their images as bytes, which {suffix} cannot; "
                         "write .parquet, or a folder (a datasets input is written back as a datasets folder)")

    def dump(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            if suffix == ".json":
                json.dump(records, fh, ensure_ascii=False, indent=1, default=_plain)
            else:
                for rec in records:
                    fh.write(json.dumps(rec, ensure_ascii=False, default=_plain) + "\n")

    write_with_atomic(out, dump)


def output_paths(data: list[Path], names: list[str], out: Path) -> list[Path]:
    """Where each input's chosen records go: all into ``out`` (a file), or, when ``out`` is a folder
    (an existing one, or a path without suffix), one per input named after the dataset, in the
    input's format (a datasets folder gives a datasets folder)."""
    if out.suffix and not out.is_dir():
        return [out] * len(data)
    return [out / (f"{n}{p.suffix.lower()}" if p.is_file() else n) for p, n in zip(data, names)]


def _chosen(path: Path, name: str, chosen: set[str]) -> tuple[list[int], list[Any]]:
    """Positions and records of ``path`` whose uid (the readers' rule) is in ``chosen``."""
    ids = RecordIds(name)
    positions, records = [], []
    for pos, (_, rec) in enumerate(iter_records(path)):
        if ids.uid(rec, pos) in chosen:
            positions.append(pos)
            records.append(rec)
    return positions, records


def _write_datasets_folder(source: Path, positions: list[int], target: Path, root: Path) -> None:
    """The chosen rows of a ``save_to_disk`` folder as a ``save_to_disk`` folder, features kept
    (``datasets.Image()`` columns hold their bytes; relative path columns are made absolute)."""
    from datasets import Sequence, Value

    ds = hf_train_split(source).select(positions)
    path_columns = [c for c in ("image", "images") if c in ds.features and ds.features[c] in
                    (Value("string"), Sequence(Value("string")))]
    if path_columns and target.parent.resolve() != root:
        ds = ds.map(lambda row: {c: rebase_images(row, root)[c] for c in path_columns})
    write_dir_atomic(target, lambda tmp: ds.save_to_disk(str(tmp)))


def write_selected(data: list[Path], names: list[str], selected_uids: list[str], out: Path,
                   image_root: Path | None = None) -> dict[str, int]:
    """The selected records of every input, untouched and in input order, into ``out``
    (``output_paths``); returns the count per dataset. Relative image paths are made absolute when
    the output does not sit in the input's image root (they would point nowhere otherwise)."""
    chosen = set(selected_uids)
    by_file: dict[Path, list[Any]] = {}
    counts: dict[str, int] = {}
    for path, name, target in zip(data, names, output_paths(data, names, out)):
        path = path.resolve()
        root = image_root.resolve() if image_root is not None else path.parent
        positions, kept = _chosen(path, name, chosen)
        counts[name] = len(kept)
        if path.is_dir() and _is_folder_output(target):
            _write_datasets_folder(path, positions, target, root)
            continue
        if target.parent.resolve() != root:
            kept = [rebase_images(rec, root) for rec in kept]
        by_file.setdefault(target, []).extend(kept)
    for target, records in by_file.items():
        write_records(records, target)
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
    from adapt.run import ContinualRun

    if not data:
        raise InputError("give at least one dataset")
    for target in set(output_paths(data, dataset_names(data), out)):
        check_output(target, out)
    cfg = one_shot_config(data, model, method, budget, config, overrides, image_root)
    names = [d.name for d in cfg.stream.datasets]
    with tempfile.TemporaryDirectory(prefix="adapt-select-") as tmp:
        work = Path(work_dir) if work_dir is not None else Path(tmp) / "work"
        layout = RunLayout(work)
        if layout.state.is_file():
            stored = load_config(layout.config)
            if stored.to_dict() != cfg.to_dict():
                raise AdaptError(f"{work}: holds a selection with other settings; remove it or give another --work-dir")
            run = ContinualRun.resume(work, progress=progress, console=console)
        else:
            run = ContinualRun.create(work, cfg, config_dir=Path.cwd(), progress=progress, console=console)
        table = run.select_only()
        uids = table.loc[table["selected"], "uid"].tolist()
        counts = write_selected(data, names, uids, out, image_root)
    return {"selected": len(uids), "pool": len(table), "per_dataset": counts,
            "pool_per_dataset": dict(Counter(table["dataset"].tolist()))}
