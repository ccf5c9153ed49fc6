"""The run's stream: the ordered datasets a run ingests, one per round.

Resolved once when a run is created (built-in synthetic stream written to disk, relative paths made
absolute) and kept in RUN_DIR/stream.json; :func:`add_dataset` (``adapt add-dataset``) appends to
it. Each entry is a :class:`~adapt.config.DatasetEntry`, the config's own record, paths made absolute.
In stream.json a path inside the run directory (the built-in stream's ``RUN_DIR/data``, by default)
is stored relative to it, so that the run directory can be moved: :func:`load_stream` makes it
absolute again against wherever the run directory is now.
:func:`iter_entry` reads a dataset of it with a run's reading rules (``stream.check_images``,
``stream.max_sample_mb``, ``stream.skip_invalid``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from adapt.config import DatasetEntry, ExperimentConfig, StreamConfig, load_config
from adapt.data.readers import ReadStats, iter_dataset
from adapt.data.sample import Sample
from adapt.errors import AdaptError, ConfigError, CorruptFileError, DataError, InputError
from adapt.io import read_json, write_json_atomic
from adapt.layout import RunLayout, stream_manifest



def builtin_entries(config: ExperimentConfig, run_dir: Path, progress: bool = True) -> list[DatasetEntry]:
    """Write the built-in synthetic stream (once) and list its datasets."""
    from adapt.data.demo_stream import write_demo_stream

    s = config.stream
    data_dir = Path(s.data_dir).expanduser().resolve() if s.data_dir else RunLayout(run_dir).data
    manifest = stream_manifest(data_dir)
    if manifest.is_file():
        meta = read_json(manifest)
        if (meta.get("name"), meta.get("seed"), meta.get("scale")) != (s.builtin, s.seed, s.scale):
            raise ConfigError(
                f"{manifest}: holds stream {meta.get('name')!r} seed {meta.get('seed')} scale {meta.get('scale')}, "
                f"but the config asks for {s.builtin!r} seed {s.seed} scale {s.scale}; use another stream.data_dir"
            )
    else:
        manifest = write_demo_stream(data_dir, seed=s.seed, stream=s.builtin, scale=s.scale, progress=progress)
        meta = read_json(manifest)
    root = manifest.parent
    return [
        DatasetEntry(
            name=d["name"], train=str(root / d["train"]), eval=str(root / d["eval"]) if d.get("eval") else None,
            metric=d.get("metric", "exact"), task=d.get("task"),
        )
        for d in meta["datasets"]
    ]


def with_absolute_paths(entry: DatasetEntry, base: Path | None = None) -> DatasetEntry:
    """``entry`` with its paths made absolute against ``base`` (default: the working folder)."""
    base = base or Path.cwd()

    def absolute(p: str | None) -> str | None:
        return None if p is None else str((base / Path(p).expanduser()).resolve())

    return entry.model_copy(update={"train": absolute(entry.train), "eval": absolute(entry.eval),
                                    "image_root": absolute(entry.image_root)})


def config_entries(config: ExperimentConfig, base_dir: Path | None = None) -> list[DatasetEntry]:
    """The config's own datasets (``stream.datasets``), paths made absolute against ``base_dir``."""
    return [with_absolute_paths(d, base_dir) for d in config.stream.datasets]


def check_files(entries: list[DatasetEntry], source: str, key: str = "datasets", trains_from: int = 0) -> None:
    """Every dataset file and image root of ``entries`` is there, or one InputError naming them all
    (``source``: the file that lists them, ``key``: the list's key in it); train files only from
    entry ``trains_from`` on (the earlier ones are in the pool already)."""
    missing = []
    for i, e in enumerate(entries):
        for split, value in (("train", e.train if i >= trains_from else None), ("eval", e.eval)):
            if value is not None and not Path(value).exists():
                missing.append(f"{key}[{i}].{split} ({e.name}): {value} not found")
        if e.image_root is not None and not Path(e.image_root).is_dir():
            missing.append(f"{key}[{i}].image_root ({e.name}): {e.image_root} is not a folder")
    if missing:
        raise InputError(f"{source}: " + "; ".join(missing))


def resolve_stream(config: ExperimentConfig, run_dir: Path, base_dir: Path | None = None,
                   progress: bool = True) -> list[DatasetEntry]:
    """The built-in stream (if any) followed by the config's datasets, paths made absolute."""
    entries: list[DatasetEntry] = []
    if config.stream.builtin:
        entries.extend(builtin_entries(config, run_dir, progress))
    entries.extend(config_entries(config, base_dir))
    names = [e.name for e in entries]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ConfigError(f"stream: dataset names must be unique, repeated: {', '.join(sorted(dup))}")
    if not entries:
        raise ConfigError("stream: no datasets (set stream.builtin or list stream.datasets)")
    return entries


_PATH_FIELDS = ("train", "eval", "image_root")


def _stored(path: str | None, root: Path) -> str | None:
    """A path as stream.json keeps it: relative to the run directory ``root`` (POSIX) when inside it."""
    if path is None or not Path(path).is_absolute():
        return path
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return path


def _loaded(path: str | None, root: Path) -> str | None:
    """A path of stream.json made absolute: a relative one is relative to the run directory ``root``."""
    return path if path is None or Path(path).is_absolute() else str(root / path)


def save_stream(run_dir: Path, entries: list[DatasetEntry]) -> None:
    """Write stream.json; ``entries`` carry absolute paths, those inside ``run_dir`` are stored relative to it."""
    root = Path(run_dir).resolve()
    rows = [e.model_copy(update={k: _stored(getattr(e, k), root) for k in _PATH_FIELDS}).model_dump()
            for e in entries]
    write_json_atomic(RunLayout(root).stream, {"datasets": rows})


def load_stream(run_dir: Path) -> list[DatasetEntry]:
    """The run's datasets, every path absolute (those stored relative resolved against ``run_dir`` as it is now)."""
    root = Path(run_dir).resolve()
    path = RunLayout(root).stream
    if not path.is_file():
        raise InputError(f"{path}: not found; is {run_dir} a run directory?")
    try:
        entries = [DatasetEntry.model_validate(d) for d in read_json(path)["datasets"]]
    except (KeyError, TypeError, ValidationError) as exc:
        raise CorruptFileError(path, f"not a stream file ({type(exc).__name__}: {exc})") from None
    return [e.model_copy(update={k: _loaded(getattr(e, k), root) for k in _PATH_FIELDS}) for e in entries]


def iter_entry(entry: DatasetEntry, split: str, rules: StreamConfig,
               on_invalid: Callable[[DataError, Any], None] | None = None,
               progress: bool = False, image_store: Path | None = None,
               stats: ReadStats | None = None) -> Iterator[Sample]:
    """One split (``"train"`` or ``"eval"``) of a stream dataset, streaming, read with a run's rules;
    images embedded in its records go to ``image_store`` (the run's pool keeps them; None: checked only).

    Under ``rules.skip_invalid`` each invalid record goes to ``on_invalid(error, raw_record)`` (or is
    dropped when it is None) and reading goes on; otherwise the first one raises :class:`DataError`
    (``on_invalid`` unused).
    """
    if split not in ("train", "eval"):
        raise ValueError(f"split must be 'train' or 'eval', not {split!r}")
    path = entry.train if split == "train" else entry.eval
    if path is None:
        raise InputError(f"dataset {entry.name!r} has no eval split")
    handler = (on_invalid or (lambda err, rec: None)) if rules.skip_invalid else None
    return iter_dataset(path, name=entry.name, task=entry.task, image_root=entry.image_root,
                        check_images=rules.check_images, progress=progress,
                        max_sample_bytes=int(rules.max_sample_mb * 2**20), on_invalid=handler,
                        image_store=image_store, stats=stats)


@dataclass
class AddedDataset:
    """What :func:`add_dataset` appended."""

    entry: DatasetEntry  # as stored in stream.json, paths absolute
    n_train: int
    n_eval: int
    n_invalid: int  # records skipped under stream.skip_invalid (train and eval)
    round: int  # the entry's index in the stream (0-based), the round that ingests it
    train_stats: ReadStats  # what reading the train split met (repeated ids, embedded images)


def _stream_rules(run_dir: Path) -> StreamConfig:
    """The reading rules of the run in ``run_dir`` (its config.yaml; the defaults if it has none)."""
    path = RunLayout(Path(run_dir)).config
    return load_config(path).stream if path.is_file() else StreamConfig()


def add_dataset(run_dir: Path, entry: DatasetEntry, progress: bool = False) -> AddedDataset:
    """Check a dataset with the run's own reading rules, then append it to the run's stream.json
    (under the stream lock): a run going on ingests it as its next round.

    Raises:
        InputError: the stream already has a dataset of this name, or the run is all at once
            (``stream.all_at_once``: its one round took the whole stream).
        DataError: the dataset is invalid under the run's rules. Nothing is written then.
    """
    from adapt.runlock import RunLock

    run_dir = Path(run_dir).resolve()
    entry = with_absolute_paths(entry)

    def refuse_duplicate(entries: list[DatasetEntry]) -> None:
        if any(e.name == entry.name for e in entries):
            raise InputError(f"{run_dir}: the stream already has a dataset named {entry.name!r}")

    refuse_duplicate(load_stream(run_dir))
    rules = _stream_rules(run_dir)
    if rules.all_at_once:
        raise InputError(f"{run_dir}: an all-at-once run (stream.all_at_once) selects once from the union of the "
                         f"stream it was created with, so a dataset added now would never be selected from; start "
                         f"a new run with {entry.name!r} in stream.datasets")
    invalid = [0]

    def count(err: DataError, rec: Any) -> None:
        invalid[0] += 1

    stats = ReadStats()
    n_train = sum(1 for _ in iter_entry(entry, "train", rules, on_invalid=count, progress=progress, stats=stats))
    n_eval = sum(1 for _ in iter_entry(entry, "eval", rules, on_invalid=count, progress=progress)) \
        if entry.eval else 0
    with RunLock.on_stream(run_dir, "add-dataset"):  # one stream edit at a time
        entries = load_stream(run_dir)
        refuse_duplicate(entries)
        entries.append(entry)
        save_stream(run_dir, entries)
    return AddedDataset(entry, n_train, n_eval, invalid[0], len(entries) - 1, stats)
