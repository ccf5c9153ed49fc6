"""``adapt export``: the model after round t of a run, in a folder that stock transformers and peft load.

Under ``lora.between_rounds: merge`` round t's adapter applies to the base with rounds ..t-1 merged
in, a model no folder of the run holds; under ``continue`` it applies to the base (round 0's fully
trained model under ``lora.first_round: full``). The export builds round t's model the way the run
does (:class:`~adapt.run.models.ModelChain`, in the dtype ``model.dtype`` gives on this machine) and
writes, into a new folder OUT (atomically: it appears whole or not at all):

- by default every weight with round t's adapters merged in, the tokenizer, the image processor and
  the other files of the base checkpoint (processor config, chat template, license, code), so that
  ``AutoModelForImageTextToText.from_pretrained(OUT)`` (LLaVA, Qwen2-VL) or
  ``AutoModelForCausalLM.from_pretrained(OUT)`` (text only) loads it;
- with ``adapter=True``, ``OUT/base``, the model round t's adapter applies to, written the same way,
  and ``OUT/adapter``, the adapter, whose adapter_config.json names ``OUT/base`` by its absolute
  path: ``peft.AutoPeftModelForCausalLM.from_pretrained(OUT/adapter)`` loads a text-only model,
  ``peft.AutoPeftModel.from_pretrained(OUT/adapter)`` a vision-language one (its config names the
  model class, since peft's task types have none for them); after OUT is moved,
  ``PeftModel.from_pretrained(<auto class>.from_pretrained(OUT/base), OUT/adapter)``.

``OUT/adapt_export.json`` says what was exported: the run, the round, the folders of the run the
weights come from, the class that loads them. Prompts follow the family's chat layout
(``adapt.models.families``), as in the run; with the same prompts, greedy answers are the run's.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adapt.config import load_config
from adapt.errors import CorruptFileError, InputError
from adapt.io import read_json, write_dir_atomic, write_json_atomic
from adapt.layout import ExportLayout, RunLayout
from adapt.models.loading import ModelBundle
from adapt.models.lora import set_adapter_base
from adapt.run.models import ModelChain
from adapt.run.state import check_state

__all__ = ["Exported", "export_round", "trained_rounds"]

# files of the base checkpoint not copied into an export: the weights and configs it writes anew, the model card
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".gguf", ".onnx")
_NOT_COPIED = {"config.json", "generation_config.json", "README.md"}
AUTO_CLASSES = {"llava": "AutoModelForImageTextToText", "qwen2_vl": "AutoModelForImageTextToText",
                "causal_lm": "AutoModelForCausalLM"}


@dataclass
class Exported:
    """What :func:`export_round` wrote."""

    out: Path
    round: int
    adapter: bool
    info: dict[str, Any] = field(default_factory=dict)


def trained_rounds(finished: list[str]) -> list[int]:
    """The rounds whose training state.json records as finished (their weights are final)."""
    return sorted(int(k.split(":")[0]) for k in finished if k.endswith(":train") and k.split(":")[0].isdigit())


def _copy_checkpoint_files(source: Path, out: Path) -> None:
    """The files of the checkpoint ``source`` that are neither weights nor configs written anew."""
    for f in sorted(source.iterdir()):
        name = f.name
        if not f.is_file() or name.startswith(".") or name in _NOT_COPIED or name.endswith(_WEIGHT_SUFFIXES) \
                or name.endswith(".index.json"):
            continue
        shutil.copy2(f, out / name)


def save_full_model(bundle: ModelBundle, out: Path, source: Path) -> None:
    """Every weight of ``bundle``'s model (adapters merged in), its tokenizer and image processor, and
    the other files of the base checkpoint ``source``, into ``out``."""
    from peft import PeftModel

    out.mkdir(parents=True, exist_ok=True)
    _copy_checkpoint_files(source, out)
    model = bundle.model.merge_and_unload() if isinstance(bundle.model, PeftModel) else bundle.model
    model.save_pretrained(out)
    bundle.tokenizer.save_pretrained(out)
    if bundle.image_processor is not None:
        bundle.image_processor.save_pretrained(out)


def _weights_of(chain: ModelChain, t: int) -> list[str]:
    """The folders of the run (relative to it) whose weights make the model after round ``t``, in order,
    after the base (``model.name_or_path``)."""
    layout, first = chain.layout, 1 if chain.full_first_round() else 0
    parts = [layout.round(0).model] if first else []
    if t >= first:
        rounds = range(first, t + 1) if chain.config.lora.between_rounds == "merge" else [t]
        parts += [layout.round(s).adapter for s in rounds]
    return [p.relative_to(layout.root).as_posix() for p in parts]


def export_round(run_dir: str | Path, out: str | Path, round: int | None = None,  # noqa: A002 - the CLI's name
                 adapter: bool = False, progress: bool = False) -> Exported:
    """Write the model after round ``round`` (default: the last one trained) of the run in
    ``run_dir`` into the new folder ``out`` (see the module docstring).

    Raises:
        InputError: ``run_dir`` is not a run directory, the round has not finished training,
            ``out`` exists and is not empty, or ``adapter`` for a round that trained every weight.
        CorruptFileError: the round's weights are missing though state.json records them.
    """
    layout = RunLayout(Path(run_dir).expanduser().resolve())
    if not layout.state.is_file():
        raise InputError(f"{layout.root}: not a run directory (no {layout.state.name})")
    state = check_state(layout.state, read_json(layout.state))
    trained = trained_rounds(state["finished"])
    if round is None:
        if not trained:
            raise InputError(f"{layout.root}: no round has finished training yet; nothing to export")
        round = trained[-1]
    elif round not in trained:
        done = ", ".join(map(str, trained)) or "none"
        raise InputError(f"{layout.round(round).dir}: round {round} has not finished training "
                         f"({layout.state.name} records rounds trained: {done})")
    out = Path(out).expanduser().resolve()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out}: exists and is not an empty folder; give a new folder to export into")
    if out == layout.root or layout.root in out.parents:
        raise InputError(f"{out}: inside the run directory {layout.root}; export outside it")
    config = load_config(layout.config)
    from adapt.training.trainer import get_accelerator

    chain = ModelChain(config, layout, get_accelerator(config.training), progress)
    t = round
    full = t == 0 and chain.full_first_round()
    weights = layout.round(t).model if full else layout.round(t).adapter
    if adapter and full:
        raise InputError(f"{weights}: round 0 trained every weight (lora.first_round: full), it has no "
                         "adapter; export it without --adapter")
    if not weights.is_dir():
        raise CorruptFileError(weights, f"missing, though {layout.state.name} records round {t}'s training as finished")
    source = chain.base_path()
    info: dict[str, Any] = {"run": str(layout.root), "round": t, "kind": "adapter" if adapter else "merged",
                            "model": config.model.name_or_path, "lora": {"first_round": config.lora.first_round,
                                                                         "between_rounds": config.lora.between_rounds},
                            "weights": _weights_of(chain, t), "dtype": config.model.dtype}

    def write(tmp_dir: Path) -> None:
        tmp = ExportLayout(tmp_dir)
        if not adapter:
            bundle = chain.build_after(t)
            save_full_model(bundle, tmp.dir, source)
            info.update(family=bundle.family.name, auto_class=AUTO_CLASSES.get(bundle.family.name))
        else:
            bundle = chain.adapter_base(t)
            save_full_model(bundle, tmp.base, source)
            tmp.adapter.mkdir()
            for f in sorted(weights.iterdir()):
                if f.is_file() and f.name != "README.md":
                    shutil.copy2(f, tmp.adapter / f.name)
            fields: dict[str, Any] = {}
            if bundle.family.uses_images:  # peft's task types have no image-text-to-text class
                cls = type(bundle.model)
                fields = {"task_type": None, "auto_mapping": {"base_model_class": cls.__name__,
                                                              "parent_library": cls.__module__}}
            set_adapter_base(tmp.adapter, str(ExportLayout(out).base), **fields)
            info.update(family=bundle.family.name, auto_class=AUTO_CLASSES.get(bundle.family.name),
                        adapter_base=chain.adapter_base_ref(t),
                        peft_class="AutoPeftModel" if fields else "AutoPeftModelForCausalLM")
        write_json_atomic(tmp.info, info)

    out.parent.mkdir(parents=True, exist_ok=True)
    write_dir_atomic(out, write)
    return Exported(out=out, round=t, adapter=adapter, info=info)
