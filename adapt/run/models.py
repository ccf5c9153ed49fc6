"""The run's model chain across rounds: the base, the model after round t, the model round t
trains; one cache, so that consecutive phases of a round load a model once.

``lora.between_rounds: continue`` loads round t's adapter on the LoRA base; ``merge`` merges the
adapters of rounds 0..t into the weights, one after the other (peft ``merge_and_unload``).
``lora.first_round: full`` trains every weight in round 0; later adapters apply to that model.

Each adapter's adapter_config.json names the model it applies to (``base_model_name_or_path``,
:meth:`ModelChain.adapter_base_ref`) in terms that travel with the run directory; the chain itself
never reads that name (it builds every base from config.yaml and the round folders).

The gradient features of round t are taken on :meth:`ModelChain.for_features`: under ``merge``
with ``features.adapter: previous`` (default) round t-1's trained adapter, loaded unmerged on
rounds 0..t-2 merged, as adymaharana/adapt-inf differentiates the previous round's LoRA weights
(``llava/eval/model_data_scores_batched.py`` loads the checkpoint with ``merge_lora=False`` for
``--grads``; ``llava/grad_utils.py`` collects their gradients). Otherwise, and when no earlier
round trained an adapter, the model round t trains (a fresh adapter under ``merge``, B = 0).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from adapt.builtin import builtin_checkpoint, is_builtin
from adapt.config import ExperimentConfig
from adapt.io import write_dir_atomic, write_json_atomic
from adapt.layout import BEFORE_TRAINING, RunLayout, run_model_ref
from adapt.models.loading import ModelBundle, load_model
from adapt.models.lora import add_new_adapter, load_adapter, save_adapter, set_adapter_base
from adapt.numerics import cpu_numerics
from adapt.run.checks import local_checkpoint
from adapt.selection.base import phase_seed


def weights_sha256(model_dir: Path) -> str:
    """sha256 over the bytes of the folder's ``*.safetensors`` files in name order (one file: its
    sha256). A built-in base is pre-trained on the machine that runs it: with the CPU arithmetic
    pinned (:mod:`adapt.numerics`, the default) every x86-64 machine builds the same weights, with
    ``ADAPT_CPU_ISA=native`` another processor's float32 kernels build others. Runs compared seed by
    seed are on the same base only where this matches."""
    digest = hashlib.sha256()
    for file in sorted(Path(model_dir).glob("*.safetensors")):
        with open(file, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


class ModelChain:
    """Builds the models of a run from its directory, caching the last one built."""

    def __init__(self, config: ExperimentConfig, layout: RunLayout, accelerator: Any, progress: bool = True) -> None:
        self.config = config
        self.layout = layout
        self.accelerator = accelerator
        self.progress = progress
        self._cached: tuple[str, ModelBundle, bool] | None = None  # (tag, bundle, trains every weight)

    # ------------------------------------------------------------------ loading
    def base_path(self) -> Path:
        """The base checkpoint: a local folder, or the built-in model (built and cached once, by one rank)."""
        name = self.config.model.name_or_path
        if is_builtin(name):
            with self.accelerator.main_process_first():
                path = builtin_checkpoint(self.config.model, self.config.seed, progress=self.progress)
            if self.accelerator.is_main_process and not self.layout.base.is_file():
                write_json_atomic(self.layout.base, {"name_or_path": name, "path": str(path),
                                                     "weights_sha256": weights_sha256(path),
                                                     "cpu_numerics": cpu_numerics()})
            return path
        return local_checkpoint(name)

    def load(self, path: Path) -> ModelBundle:
        m = self.config.model
        bundle = load_model(path, m.family, m.dtype, m.system_prompt, m.attn_implementation, m.trust_remote_code)
        if self.accelerator.device.type != "cpu":
            bundle.model.to(self.accelerator.device)
        return bundle

    def full_first_round(self) -> bool:
        return self.config.lora.first_round == "full"

    def _lora_base(self) -> ModelBundle:
        """The weights every adapter applies to: the base, or round 0's fully trained model."""
        if self.full_first_round() and self.layout.round(0).model.is_dir():
            return self.load(self.layout.round(0).model)
        return self.load(self.base_path())

    def adapter_base(self, t: int) -> ModelBundle:
        """The model round ``t``'s adapter applies to: under ``merge`` the model after round t-1
        (rounds ..t-1 merged in; the LoRA base before the first adapter), under ``continue`` the LoRA base."""
        if self.config.lora.between_rounds == "merge":
            return self.build_after(t - 1)
        return self._lora_base()

    def adapter_base_ref(self, t: int) -> str:
        """How round ``t``'s adapter_config.json names :meth:`adapter_base` (``base_model_name_or_path``),
        in terms that travel with the run directory: round 0's fully trained model by its path relative
        to the run directory (``rounds/0/model``: stock peft loads the adapter from RUN_DIR as working
        directory); the base as config.yaml names it (``builtin:<name>``, or the local checkpoint's
        absolute path, outside the run: stock peft loads it); under ``merge``, from the second adapter
        on, :func:`~adapt.layout.run_model_ref` (no folder holds rounds ..t-1 merged: loaded alone the
        adapter is an error, where the plain base would give a wrong model)."""
        first = 1 if self.full_first_round() else 0
        if self.config.lora.between_rounds == "merge" and t > first:
            return run_model_ref(t - 1)
        if self.full_first_round():
            return self.layout.round(0).model.relative_to(self.layout.root).as_posix()
        name = self.config.model.name_or_path
        return name if is_builtin(name) else str(Path(name).expanduser().resolve())

    def build_after(self, t: int, trainable: bool = False) -> ModelBundle:
        """The model after round ``t`` (``BEFORE_TRAINING``: the base), built from the run directory."""
        if t == BEFORE_TRAINING:
            return self.load(self.base_path())
        bundle = self._lora_base()
        first = 1 if self.full_first_round() else 0
        if t < first:
            return bundle
        if self.config.lora.between_rounds == "merge":
            for s in range(first, t + 1):
                bundle.model = load_adapter(bundle.model, self.layout.round(s).adapter, trainable=False)
                bundle.model = bundle.model.merge_and_unload()
        else:
            bundle.model = load_adapter(bundle.model, self.layout.round(t).adapter, trainable=trainable)
        return bundle

    # ------------------------------------------------------------------ the cached chain
    def after(self, t: int) -> ModelBundle:
        """The model after round ``t`` in eval mode. Round t+1's model to train, before training,
        computes the same function (a fresh LoRA adapter adds B·A = 0; a continued one is round t's),
        so a cached ``to_train(t + 1)`` serves here as well."""
        if self._cached is not None and self._cached[0] in (f"after:{t}", f"to_train:{t + 1}"):
            self._cached[1].model.eval()
            return self._cached[1]
        self._cached = None
        bundle = self.build_after(t)
        bundle.model.eval()
        self._cached = (f"after:{t}", bundle, False)
        return bundle

    def to_train(self, t: int) -> tuple[ModelBundle, bool]:
        """The model round ``t`` trains, before training: every weight (round 0 of
        ``first_round: full``), the continued adapter, or a fresh adapter (seeded) on the model
        after t-1. Returns (bundle, trains every weight); cached until another model is asked for."""
        if self._cached is not None and self._cached[0] == f"to_train:{t}":
            return self._cached[1], self._cached[2]
        self._cached = None
        bundle, full = self._build_to_train(t)
        self._cached = (f"to_train:{t}", bundle, full)
        return bundle, full

    def previous_adapter(self, t: int) -> bool:
        """Whether round ``t``'s features are taken on round t-1's adapter apart from the model round
        t trains: ``merge`` with ``features.adapter: previous``, and round t-1 trained an adapter
        (not round 0, nor the round after a ``first_round: full`` round)."""
        first = 1 if self.full_first_round() else 0
        return (self.config.lora.between_rounds == "merge" and self.config.features.adapter == "previous"
                and t - 1 >= first)

    def for_features(self, t: int) -> ModelBundle | None:
        """The model round ``t``'s gradient features are taken on (see the module docstring), or
        None in a round that trains every weight (no LoRA adapter to differentiate). Under
        ``merge`` + ``previous`` it is its own cache entry, which :meth:`to_train` and
        :meth:`after` never hand out: training starts from a fresh adapter on the merged model."""
        if not self.previous_adapter(t):
            bundle, full = self.to_train(t)
            return None if full else bundle
        if self._cached is not None and self._cached[0] == f"features:{t}":
            return self._cached[1]
        self._cached = None
        bundle = self.build_after(t - 2)  # rounds ..t-2 merged (t-2 before the first adapter: the LoRA base)
        bundle.model = load_adapter(bundle.model, self.layout.round(t - 1).adapter, trainable=False)
        bundle.model.eval()
        self._cached = (f"features:{t}", bundle, False)
        return bundle

    def trained(self, t: int, bundle: ModelBundle) -> None:
        """Round ``t``'s model, just trained, is the model after round t."""
        bundle.model.eval()
        self._cached = (f"after:{t}", bundle, False)

    def _build_to_train(self, t: int) -> tuple[ModelBundle, bool]:
        if t == 0 and self.full_first_round():
            bundle = self.load(self.base_path())
            for p in bundle.model.parameters():
                p.requires_grad_(True)
            return bundle, True
        if self.config.lora.between_rounds == "continue" and t > 0 and self.layout.round(t - 1).adapter.is_dir():
            return self.build_after(t - 1, trainable=True), False
        bundle = self.build_after(t - 1) if t > 0 else self.load(self.base_path())
        bundle.model = add_new_adapter(bundle.model, self.config.lora, seed=phase_seed(self.config.seed, t, "train"))
        return bundle, False

    # ------------------------------------------------------------------ saving
    def save(self, t: int, bundle: ModelBundle, full: bool) -> None:
        """Round ``t``'s trained weights: its adapter, or every weight with the processor (main process)."""
        model = self.accelerator.unwrap_model(bundle.model)
        out = self.layout.round(t).model if full else self.layout.round(t).adapter
        base = None if full else self.adapter_base_ref(t)

        def write(d: Path) -> None:
            self.save_weights(model, bundle, d, full)
            if base is not None:
                set_adapter_base(d, base)

        if self.accelerator.is_main_process:
            write_dir_atomic(out, write)
        self.accelerator.wait_for_everyone()

    @staticmethod
    def save_weights(model: Any, bundle: ModelBundle, out: Path, full: bool) -> None:
        """The adapter (peft), or every weight with the tokenizer and image processor, into ``out``."""
        if not full:
            save_adapter(model, out)
            return
        model.save_pretrained(out)
        bundle.tokenizer.save_pretrained(out)
        if bundle.image_processor is not None:
            bundle.image_processor.save_pretrained(out)
