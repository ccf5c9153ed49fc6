"""LoRA through peft: a new adapter, or the previous round's adapter continued."""

from __future__ import annotations

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


def count_trainable(model: Any) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total
