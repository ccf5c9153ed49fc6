"""Every name a config gives a registry, checked when a run is created or resumed, before any data
is read: a typo is one line naming the key, the file and the known names (exit status 2), not a
traceback after ingest and the gradient pass."""

from __future__ import annotations

from pathlib import Path

from adapt.builtin import BUILTIN_MODELS, builtin_name, is_builtin
from adapt.config import DatasetEntry, ExperimentConfig
from adapt.data.demo_stream import STREAM_NAMES
from adapt.errors import InputError
from adapt.evaluation.answer_scorers import ANSWER_SCORERS
from adapt.features.projectors import PROJECTORS
from adapt.methods import SCORERS, SELECTORS
from adapt.selection.budget import BUDGET_SPLITS
from adapt.selection.expert_choice import EXPERT_CHOICES
from adapt.selection.samplers import SAMPLERS


def local_checkpoint(name: str) -> Path:
    """``model.name_or_path`` as a local checkpoint folder (one with a ``config.json``), or an InputError."""
    path = Path(name).expanduser()
    if not path.is_dir():
        raise InputError(f"model.name_or_path: {path} is not a local checkpoint folder")
    if not (path / "config.json").is_file():
        raise InputError(f"model.name_or_path: {path} has no config.json: not a Hugging Face checkpoint folder "
                         "(one that save_pretrained wrote)")
    return path


def check_config(config: ExperimentConfig, entries: list[DatasetEntry] | None = None,
                 stream_file: str = "the stream") -> None:
    """Check ``config`` (and the run's stream ``entries``, read from ``stream_file``, once known)
    against every registry.

    Raises:
        UnknownNameError: a name no registry holds (the key, the file, the known names).
        InputError: the model folder is missing, or the method needs features that are off.
    """
    src = config.source
    sc = config.selection
    SELECTORS.check(sc.method, "selection.method", src)
    if config.features.enabled:
        PROJECTORS.check(config.features.projector, "features.projector", src)
    ai = sc.adapt_inf
    SAMPLERS.check(ai.sampler, "selection.adapt_inf.sampler", src)
    BUDGET_SPLITS.check(ai.budget_split, "selection.adapt_inf.budget_split", src)
    for i, expert in enumerate(ai.experts):
        SCORERS.check(expert, f"selection.adapt_inf.experts[{i}]", src)
    rule, _, arg = ai.expert_choice.partition(":")
    EXPERT_CHOICES.check(rule, "selection.adapt_inf.expert_choice", src)
    if rule == "fixed" and arg not in ai.experts:
        raise InputError(f"{src}: key 'selection.adapt_inf.expert_choice': {arg!r} is not among "
                         f"selection.adapt_inf.experts ({', '.join(ai.experts)})")
    for i, d in enumerate(config.stream.datasets):
        ANSWER_SCORERS.check(d.metric, f"stream.datasets[{i}].metric", src)
    for i, e in enumerate(entries or []):
        ANSWER_SCORERS.check(e.metric, f"datasets[{i}].metric", stream_file)
    if config.stream.builtin is not None:
        STREAM_NAMES.check(config.stream.builtin, "stream.builtin", src)
    if is_builtin(config.model.name_or_path):
        BUILTIN_MODELS.check(builtin_name(config.model.name_or_path), "model.name_or_path", src)
    else:
        local_checkpoint(config.model.name_or_path)
    selector = SELECTORS.get(sc.method)(config)
    if selector.needs_features() and not config.features.enabled:
        raise InputError(f"{src}: selection.method={sc.method} needs the gradient features: set features.enabled=true")
