"""The ``adapt`` command: run, select, validate, add-dataset, status, report, export, demo-data, config-reference."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from adapt.config import BUILTIN_MODEL_CHOICES
from adapt.errors import AdaptError, InputError
from adapt.layout import RunLayout, round_name

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Continual multimodal instruction tuning with dynamic data selection (Adapt-∞ and friends).",
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)


def _fail(exc: Exception) -> None:
    """One message, no traceback; exit status 2 for bad input (``InputError``), 1 otherwise."""
    console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=getattr(exc, "exit_code", 1))


@app.callback()
def _pin_cpu_numerics() -> None:
    """Before any command, so before anything imports torch (a config check does): the CPU arithmetic
    pinned (adapt.numerics: the same numbers on x86-64 machines with AVX2)."""
    from adapt.numerics import pin_cpu_numerics

    try:
        pin_cpu_numerics()
    except AdaptError as exc:
        _fail(exc)


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
    import datasets

    datasets.disable_progress_bars()  # adapt shows its own


@app.command()
def run(
    config: Optional[Path] = typer.Argument(None, help="YAML experiment config (e.g. configs/demo.yaml)."),
    overrides: Optional[list[str]] = typer.Argument(None, help="key.sub=value overrides, e.g. selection.budget=0.5"),
    run_dir: Optional[Path] = typer.Option(None, "--run-dir", help="Run directory to create."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue the run in this directory."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars or tables."),
    skip_invalid: bool = typer.Option(False, "--skip-invalid", help="Quarantine invalid samples into "
                                      "RUN_DIR/pool/rejected.jsonl with their reasons and go on (kept for --resume)."),
) -> None:
    """Run a continual experiment round by round (or continue one with --resume)."""
    from adapt.config import load_config
    from adapt.run.checks import check_config

    try:
        cfg = None
        if resume is None:
            if config is None or run_dir is None:
                raise InputError("give a CONFIG and --run-dir DIR (or --resume RUN_DIR)")
            cfg = load_config(config, [*(overrides or []), *(["stream.skip_invalid=true"] if skip_invalid else [])])
            check_config(cfg)  # a typo is refused now, before the training stack loads
    except AdaptError as exc:
        _fail(exc)
        return
    _quiet_libraries()
    from adapt.run import ContinualRun

    try:
        if cfg is None:
            if config is not None or overrides:
                raise InputError("--resume takes the config stored in the run directory; give no CONFIG or overrides")
            r = ContinualRun.resume(resume, progress=not quiet, console=None if quiet else console,
                                    skip_invalid=skip_invalid)
        else:
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


@app.command("select", epilog=(
    "Example: the 15% of two LLaVA files DataTailor keeps, with a local LLaVA-1.5 checkpoint:\n\n"
    "  adapt select data/llava_v1_5_mix665k.json data/extra.json --model ckpt/llava-1.5-7b-hf "
    "--method datatailor --ratio 0.15 --out selected.json\n\n"
    "On the built-in demo data (adapt demo-data demo):\n\n"
    "  adapt select demo/*/train.json --model builtin:tiny-llava --method tive --ratio 0.25 --out picked.json\n\n"
    "Method settings go through --set, e.g. --set selection.tive.warmup_fraction=0.05 "
    "--set selection.gdo.preset=diverse --set features.dim=8192."))
def select(
    data: list[Path] = typer.Argument(..., help="Datasets to select from: LLaVA JSON/JSONL, Parquet, or datasets "
                                      "save_to_disk folders."),
    model: str = typer.Option(..., "--model", help=f"A local HF checkpoint folder, or a built-in tiny model: "
                              f"{BUILTIN_MODEL_CHOICES}."),
    method: str = typer.Option(..., "--method", help="tive, mllm_selector, datatailor, gdo, adapt_inf, random, ..."),
    ratio: float = typer.Option(..., "--ratio", help="Share of all the samples to keep (0 < ratio <= 1), or a "
                                "count when > 1."),
    out: Path = typer.Option(..., "--out", help="Where the chosen records are written as they are (relative "
                             "image paths made absolute when OUT is not in their folder): a .json list, .jsonl or "
                             ".parquet file; or a folder, one output per input in its own format (a datasets folder "
                             "gives a datasets folder, its image bytes kept)."),
    config: Optional[Path] = typer.Option(None, "--config", help="A YAML experiment config for the model, LoRA, "
                                          "feature and method settings (defaults otherwise)."),
    sets: Optional[list[str]] = typer.Option(None, "--set", help="key.sub=value config overrides (repeatable)."),
    work_dir: Optional[Path] = typer.Option(None, "--work-dir", help="Keep the pool, features and scores here "
                                            "(and resume from them); default: a temporary folder."),
    image_root: Optional[Path] = typer.Option(None, "--image-root", help="Folder image paths are relative to "
                                              "(default: each data file's folder)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
) -> None:
    """One-shot data selection on datasets outside any run: the chosen samples, untouched, in the
    input's own format. The same selectors as `selection.method` in a run; TIVE trains its warm-up
    model and MLLM-Selector its seed model (10% of the pool unless
    selection.mllm_selector.seed_fraction is set) first."""
    _quiet_libraries()
    from adapt.oneshot import select_once

    try:
        if ratio <= 0:
            raise InputError("--ratio must be > 0")
        budget: int | float = int(ratio) if ratio > 1 else float(ratio)
        if ratio > 1 and ratio != int(ratio):
            raise InputError("--ratio above 1 is a count of samples: give a whole number")
        summary = select_once(list(data), model, method, budget, out, config, sets or [], work_dir, image_root,
                              progress=not quiet, console=None if quiet else console)
    except AdaptError as exc:
        _fail(exc)
        return
    per = ", ".join(f"{k} {v}/{summary['pool_per_dataset'].get(k, 0)}" for k, v in summary["per_dataset"].items())
    console.print(f"{method}: {summary['selected']} of {summary['pool']} samples -> {out} ({per})")


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
    """Append a dataset to a run's stream, after checking it with the run's own reading rules
    (stream.check_images, max_sample_mb, skip_invalid): a run going on ingests it as its next
    round; a finished or stopped one with `adapt run --resume`."""
    _quiet_libraries()
    from adapt.config import DatasetEntry
    from adapt.data.stream import load_stream
    from adapt.data.stream import add_dataset as add_to_stream
    from adapt.evaluation.answer_scorers import ANSWER_SCORERS

    try:
        run_dir = run_dir.resolve()
        if any(e.name == name for e in load_stream(run_dir)):
            raise InputError(f"{run_dir}: the stream already has a dataset named {name!r}")
        ANSWER_SCORERS.check(metric, "--metric")
        entry = DatasetEntry(name=name, train=str(path), eval=str(eval_path) if eval_path else None, metric=metric,
                             task=task, image_root=str(image_root) if image_root else None)
        added = add_to_stream(run_dir, entry, progress=True)
    except AdaptError as exc:
        _fail(exc)
        return
    skipped = f", {added.n_invalid} invalid skipped" if added.n_invalid else ""
    repeats = (f", {added.train_stats.repeated_ids} repeating an earlier sample's id (kept; uids id#position)"
               if added.train_stats.repeated_ids else "")
    console.print(f"added [bold]{name}[/] ({added.n_train} train, {added.n_eval} eval samples{skipped}{repeats}) "
                  f"as round {added.round} of {run_dir} (rounds count from 0, as `adapt status` lists them); "
                  f"continue with: adapt run --resume {run_dir}")


@app.command()
def validate(
    data: list[Path] = typer.Argument(..., help="Datasets: LLaVA JSON/JSONL, Parquet, or datasets save_to_disk folders."),
    image_root: Optional[Path] = typer.Option(None, "--image-root", help="Folder image paths are relative to "
                                              "(default: each data file's folder)."),
    check_images: bool = typer.Option(True, "--check-images/--no-check-images",
                                      help="Open and verify every image (missing files are always reported)."),
) -> None:
    """Check datasets with the same checks as ingest, without touching any run: one line per
    dataset; exit status 2 if any is invalid."""
    _quiet_libraries()
    from adapt.data.readers import ReadStats, iter_dataset
    from adapt.errors import DataError
    from adapt.oneshot import dataset_names

    invalid = 0
    for path, name in zip(data, dataset_names(list(data))):
        stats = ReadStats()
        try:
            for _ in iter_dataset(path, name=name, image_root=image_root, check_images=check_images, progress=True,
                                  stats=stats):
                pass
        except DataError as exc:
            invalid += 1
            console.print(f"[bold red]invalid:[/] {exc}", highlight=False, soft_wrap=True)
            continue
        console.print(f"[green]ok:[/] {path}: {stats.summary()}", highlight=False, soft_wrap=True)
    if invalid:
        raise typer.Exit(code=DataError.exit_code)


@app.command()
def status(run_dir: Path = typer.Argument(..., help="A run directory.")) -> None:
    """Where a run stands: rounds done, current phase, pool size."""
    from adapt.data.stream import load_stream
    from adapt.io import read_json

    try:
        state_path = RunLayout(run_dir).state
        if not state_path.is_file():
            raise InputError(f"{state_path}: not found; is {run_dir} a run directory?")
        state = read_json(state_path)
        entries = load_stream(run_dir)
    except AdaptError as exc:
        _fail(exc)
        return
    from adapt.runlock import RunLock

    holder = RunLock(run_dir).live_holder()
    shown = state["status"]
    if shown == "running" and holder is None:  # the process that ran it stopped or died
        shown = f"stopped (continue with: adapt run --resume {run_dir})"
    table = Table(title=f"{run_dir} — {shown}")
    table.add_column("round")
    table.add_column("dataset")
    table.add_column("phases done")
    for t, e in enumerate(entries):
        done = [k.split(":")[1] for k in state["finished"] if k.split(":")[0] == round_name(t)]
        table.add_row(str(t), e.name, ", ".join(done))
    Console().print(table)
    if state.get("phase"):
        Console().print(f"current: round {state['round']}, phase {state['phase']}")
    Console().print(f"running now: process {holder.get('pid')} on {holder.get('host')} since {holder.get('since')}"
                    if holder is not None else "no process is running it now")


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


@app.command("export", epilog=(
    "Examples:\n\n"
    "  adapt export runs/demo runs/demo-model        # the last round: AutoModelForImageTextToText.from_pretrained\n\n"
    "  adapt export runs/demo out --round 2 --adapter   # out/adapter on out/base: peft AutoPeftModel.from_pretrained"))
def export(
    run_dir: Path = typer.Argument(..., help="A run directory."),
    out: Path = typer.Argument(..., help="A new (or empty) folder to write the model into."),
    round_: Optional[int] = typer.Option(None, "--round", help="The round whose model is exported (default: the "
                                         "last one whose training finished)."),
    adapter: bool = typer.Option(False, "--adapter", help="Write round t's LoRA adapter (OUT/adapter) and the model "
                                 "it applies to (OUT/base: the base, or rounds ..t-1 merged under "
                                 "lora.between_rounds=merge) instead of merged weights."),
) -> None:
    """Write the model after a round of a run so that stock transformers (or peft, with --adapter)
    loads it without adapt: every weight with the round's adapters merged in, the tokenizer and the
    image processor; OUT/adapt_export.json says what it holds and which class loads it."""
    _quiet_libraries()
    from adapt.layout import ExportLayout
    from adapt.run.export import export_round

    try:
        done = export_round(run_dir, out, round_, adapter=adapter)
    except AdaptError as exc:
        _fail(exc)
        return
    how = (f"{done.info['peft_class']}.from_pretrained({ExportLayout(done.out).adapter})" if adapter else
           f"{done.info['auto_class']}.from_pretrained({done.out})")
    console.print(f"exported round {done.round} of {run_dir} to {done.out}; load it with {how}", highlight=False,
                  soft_wrap=True)


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
        path = write_demo_stream(out_dir, seed=seed, stream=stream, scale=scale, progress=True,
                                 stream_key="--stream", scale_key="--scale")
    except AdaptError as exc:
        _fail(exc)
        return
    console.print(f"wrote {path}")


@app.command("config-reference")
def config_reference() -> None:
    """Print every config key with its type, default and description (docs/CONFIG.md) as Markdown."""
    from adapt.config_doc import config_reference as reference

    sys.stdout.write(reference())


def main() -> None:  # pragma: no cover
    sys.exit(app())
