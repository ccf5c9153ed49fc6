"""The ``adapt`` command: run, add-dataset, status, report, demo-data."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from adapt.errors import AdaptError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Continual multimodal instruction tuning with dynamic data selection (Adapt-∞ and friends).",
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)


def _fail(exc: Exception) -> None:
    console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=1)


def _quiet_libraries() -> None:
    os.environ.setdefault("WANDB_SILENT", "true")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import warnings

    warnings.filterwarnings("ignore", message=".*torchvision.*")
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


@app.command()
def run(
    config: Optional[Path] = typer.Argument(None, help="YAML experiment config (e.g. configs/demo.yaml)."),
    overrides: Optional[list[str]] = typer.Argument(None, help="key.sub=value overrides, e.g. selection.budget=0.5"),
    run_dir: Optional[Path] = typer.Option(None, "--run-dir", help="Run directory to create."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue the run in this directory."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars or tables."),
) -> None:
    """Run a continual experiment round by round (or continue one with --resume)."""
    _quiet_libraries()
    from adapt.config import load_config
    from adapt.loop import ContinualRun

    try:
        if resume is not None:
            if config is not None or overrides:
                raise AdaptError("--resume takes the config stored in the run directory; give no CONFIG or overrides")
            r = ContinualRun.resume(resume, progress=not quiet, console=None if quiet else console)
        else:
            if config is None or run_dir is None:
                raise AdaptError("give a CONFIG and --run-dir DIR (or --resume RUN_DIR)")
            cfg = load_config(config, overrides or [])
            r = ContinualRun.create(run_dir, cfg, config_dir=Path.cwd(), progress=not quiet,
                                    console=None if quiet else console)
        metrics = r.run()
    except AdaptError as exc:
        _fail(exc)
        return
    from adapt.tracking.report import format_pct

    if not r.is_main:
        return
    console.print(
        f"A {format_pct(metrics['avg_accuracy'])}  F {format_pct(metrics['forgetting'])}  "
        f"BWT {format_pct(metrics['bwt'])}  FWT {format_pct(metrics['fwt'])}  "
        f"samples trained {sum(metrics['samples_trained'])}  wall {metrics['wall_seconds']:.0f}s"
    )


@app.command("add-dataset")
def add_dataset(
    run_dir: Path = typer.Argument(..., help="An existing run directory."),
    path: Path = typer.Argument(..., help="Training split: LLaVA JSON/JSONL, Parquet, or a datasets save_to_disk folder."),
    name: str = typer.Option(..., "--name", help="Dataset name (unique in the stream)."),
    eval_path: Optional[Path] = typer.Option(None, "--eval", help="Held-out eval split, same formats."),
    metric: str = typer.Option("exact", "--metric", help="Answer scorer: exact, numeric, iou."),
    task: Optional[str] = typer.Option(None, "--task", help="Task label (default: the name)."),
    image_root: Optional[Path] = typer.Option(None, "--image-root", help="Folder image paths are relative to."),
) -> None:
    """Append a dataset to a run's stream; it is ingested at the next round (`adapt run --resume`)."""
    _quiet_libraries()
    from adapt.data.readers import read_dataset
    from adapt.data.stream import StreamEntry, load_stream, save_stream
    from adapt.evaluation.answer_scorers import ANSWER_SCORERS

    try:
        run_dir = run_dir.resolve()
        entries = load_stream(run_dir)
        if any(e.name == name for e in entries):
            raise AdaptError(f"{run_dir}: the stream already has a dataset named {name!r}")
        if metric not in ANSWER_SCORERS:
            raise AdaptError(f"--metric: unknown scorer {metric!r}; known: {', '.join(ANSWER_SCORERS.names())}")
        root = str(image_root.resolve()) if image_root else None
        n = len(read_dataset(path, name=name, task=task, image_root=root, progress=True))
        n_eval = len(read_dataset(eval_path, name=name, task=task, image_root=root)) if eval_path else 0
        entries.append(StreamEntry(name, str(path.resolve()), str(eval_path.resolve()) if eval_path else None,
                                   metric, task, root))
        save_stream(run_dir, entries)
    except AdaptError as exc:
        _fail(exc)
        return
    console.print(f"added [bold]{name}[/] ({n} train, {n_eval} eval samples) as round {len(entries)} of "
                  f"{run_dir}; continue with: adapt run --resume {run_dir}")


@app.command()
def status(run_dir: Path = typer.Argument(..., help="A run directory.")) -> None:
    """Where a run stands: rounds done, current phase, pool size."""
    from adapt.data.stream import load_stream
    from adapt.io import read_json

    try:
        state_path = run_dir / "state.json"
        if not state_path.is_file():
            raise AdaptError(f"{state_path}: not found; is {run_dir} a run directory?")
        state = read_json(state_path)
        entries = load_stream(run_dir)
    except AdaptError as exc:
        _fail(exc)
        return
    table = Table(title=f"{run_dir} — {state['status']}")
    table.add_column("round")
    table.add_column("dataset")
    table.add_column("phases done")
    for t, e in enumerate(entries):
        done = [k.split(":")[1] for k in state["finished"] if k.split(":")[0] == str(t)]
        table.add_row(str(t), e.name, ", ".join(done))
    Console().print(table)
    if state.get("phase"):
        Console().print(f"current: round {state['round']}, phase {state['phase']}")


@app.command()
def report(
    run_dirs: list[Path] = typer.Argument(..., help="One or more run directories."),
    out: Optional[Path] = typer.Option(None, "--out", help="Where a comparison of several runs is written."),
) -> None:
    """Print a table comparing runs and write report.md and plots."""
    from adapt.tracking.report import print_report, write_report

    try:
        path = write_report(list(run_dirs), out)
        print_report(list(run_dirs), Console())
    except AdaptError as exc:
        _fail(exc)
        return
    console.print(f"report: {path}")


@app.command("demo-data")
def demo_data(
    out_dir: Path = typer.Argument(..., help="Folder to write the built-in stream into."),
    seed: int = typer.Option(0, "--seed", help="Generator seed (same seed, same bytes)."),
    stream: str = typer.Option("default", "--stream", help="Which built-in stream."),
    scale: float = typer.Option(1.0, "--scale", help="Multiplies the train split sizes."),
) -> None:
    """Write the built-in synthetic stream (six LLaVA-format datasets with PNG images)."""
    from adapt.data.demo_stream import write_demo_stream

    try:
        path = write_demo_stream(out_dir, seed=seed, stream=stream, scale=scale, progress=True)
    except (AdaptError, ValueError) as exc:
        _fail(exc)
        return
    console.print(f"wrote {path}")


def main() -> None:  # pragma: no cover
    sys.exit(app())
