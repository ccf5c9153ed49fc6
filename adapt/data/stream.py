"""The run's stream: the ordered datasets a run ingests, one per round.

Resolved once when a run is created (built-in synthetic stream written to disk, relative paths made
absolute) and kept in RUN_DIR/stream.json; ``adapt add-dataset`` appends to it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from adapt.config import ExperimentConfig
from adapt.errors import AdaptError, ConfigError, CorruptFileError
from adapt.io import read_json, write_json_atomic

STREAM_FILE = "stream.json"


@dataclass
class StreamEntry:
    name: str
    train: str
    eval: str | None
    metric: str = "exact"
    task: str | None = None
    image_root: str | None = None

    @property
    def task_name(self) -> str:
        return self.task or self.name


def builtin_entries(config: ExperimentConfig, run_dir: Path, progress: bool = True) -> list[StreamEntry]:
    """Write the built-in synthetic stream (once) and list its datasets."""
    from adapt.data.demo_stream import write_demo_stream

    s = config.stream
    data_dir = Path(s.data_dir).expanduser().resolve() if s.data_dir else run_dir / "data"
    manifest = data_dir / "stream.json"
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
        StreamEntry(
            name=d["name"], train=str(root / d["train"]), eval=str(root / d["eval"]) if d.get("eval") else None,
            metric=d.get("metric", "exact"), task=d.get("task"),
        )
        for d in meta["datasets"]
    ]


def resolve_stream(config: ExperimentConfig, run_dir: Path, base_dir: Path | None = None,
                   progress: bool = True) -> list[StreamEntry]:
    """The built-in stream (if any) followed by the config's datasets, paths made absolute."""
    entries: list[StreamEntry] = []
    if config.stream.builtin:
        entries.extend(builtin_entries(config, run_dir, progress))
    base = base_dir or Path.cwd()
    for d in config.stream.datasets:
        def absolute(p: str | None) -> str | None:
            return None if p is None else str((base / Path(p).expanduser()).resolve())

        entries.append(StreamEntry(d.name, absolute(d.train), absolute(d.eval), d.metric, d.task, absolute(d.image_root)))
    names = [e.name for e in entries]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ConfigError(f"stream: dataset names must be unique, repeated: {', '.join(sorted(dup))}")
    if not entries:
        raise ConfigError("stream: no datasets (set stream.builtin or list stream.datasets)")
    return entries


def save_stream(run_dir: Path, entries: list[StreamEntry]) -> None:
    write_json_atomic(run_dir / STREAM_FILE, {"datasets": [asdict(e) for e in entries]})


def load_stream(run_dir: Path) -> list[StreamEntry]:
    path = run_dir / STREAM_FILE
    if not path.is_file():
        raise AdaptError(f"{path}: not found; is {run_dir} a run directory?")
    try:
        return [StreamEntry(**d) for d in read_json(path)["datasets"]]
    except (KeyError, TypeError) as exc:
        raise CorruptFileError(path, f"not a stream file ({type(exc).__name__}: {exc})") from None
