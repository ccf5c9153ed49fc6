"""LoRA through peft: a new adapter, or the previous round's adapter continued."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from adapt.config import LoraSettings


def _target_modules(settings: LoraSettings) -> Any:
    return settings.target_modules


def add_new_adapter(model: Any, settings: LoraSettings, seed: int | None = None) -> Any:
    """Wrap ``model`` with a fresh LoRA adapter (peft ``get_peft_model``); with ``seed``, every RNG is
    seeded first (accelerate ``set_seed``), so the adapter's random A is the same each time."""
    from peft import LoraConfig, get_peft_model

    if seed is not None:
        from accelerate.utils import set_seed

        set_seed(seed)

    cfg = LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=_target_modules(settings),
        modules_to_save=settings.modules_to_save,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, cfg)


def load_adapter(model: Any, adapter_dir: str | Path, trainable: bool) -> Any:
    """Stock ``PeftModel.from_pretrained`` on the base model: the adapter of an earlier round."""
    from peft import PeftModel

    return PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=trainable)


def save_adapter(model: Any, out: str | Path, base: str | None = None) -> None:
    """``model``'s adapters (peft ``save_pretrained``) into ``out``; with ``base``, adapter_config.json
    names it as the model the adapter applies to (:func:`set_adapter_base`)."""
    for cfg in getattr(model, "peft_config", {}).values():
        # peft fills in the path the base was loaded from, and looks nothing up for a name it cannot
        # resolve (an adapter loaded from a run directory names its base as the run does)
        cfg.base_model_name_or_path = None
    model.save_pretrained(str(out))
    if base is not None:
        set_adapter_base(out, base)


def set_adapter_base(adapter_dir: str | Path, base: str, **fields: Any) -> None:
    """Rewrite a saved adapter's ``base_model_name_or_path`` to ``base`` (and set the other
    ``fields`` of adapter_config.json), and the old name in its model card (README.md) with it."""
    path = Path(adapter_dir) / "adapter_config.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    old = data.get("base_model_name_or_path")
    data.update(fields, base_model_name_or_path=base)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    card = Path(adapter_dir) / "README.md"
    if old and old != base and card.is_file():
        card.write_text(card.read_text(encoding="utf-8").replace(old, base), encoding="utf-8")


def count_trainable(model: Any) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total
