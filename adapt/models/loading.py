"""Load a local Hugging Face checkpoint (LLaVA, Qwen2-VL family, text-only causal LM) with its
tokenizer and image processor; never downloads."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from adapt.errors import AdaptError
from adapt.models.families import FAMILIES, MODEL_TYPE_TO_FAMILY, ModelFamily


@dataclass
class ModelBundle:
    """A model with what is needed to feed it."""

    model: Any
    tokenizer: Any
    image_processor: Any
    family: ModelFamily
    path: Path


def detect_family(path: Path) -> str:
    cfg_file = path / "config.json"
    if not cfg_file.is_file():
        raise AdaptError(f"{path}: not a Hugging Face checkpoint folder (no config.json)")
    model_type = json.loads(cfg_file.read_text()).get("model_type", "")
    if model_type in MODEL_TYPE_TO_FAMILY:
        return MODEL_TYPE_TO_FAMILY[model_type]
    return "causal_lm"


def resolve_dtype(name: str) -> torch.dtype:
    """``auto``: bf16 where the GPU supports it, else float32. ``float64`` is for numerical checks
    (tests compare computations in it, where summation order no longer matters)."""
    if name == "auto":
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16,
            "float64": torch.float64}[name]


def load_model(
    path: str | Path,
    family: str = "auto",
    dtype: str = "auto",
    system_prompt: str = "",
    attn_implementation: str | None = None,
    trust_remote_code: bool = False,
) -> ModelBundle:
    """Load model, tokenizer and image processor from a local folder (``local_files_only``).
    Code shipped inside a checkpoint runs only with ``trust_remote_code=True`` (config
    ``model.trust_remote_code``); weights load through transformers (safetensors, or
    ``torch.load(weights_only=True)`` for a ``.bin``)."""
    from transformers import (
        AutoConfig,
        AutoImageProcessor,
        AutoModelForCausalLM,
        AutoModelForImageTextToText,
        AutoTokenizer,
        LlavaForConditionalGeneration,
    )

    path = Path(path)
    fam = detect_family(path) if family == "auto" else family
    remote = {"local_files_only": True, "trust_remote_code": bool(trust_remote_code)}
    kwargs: dict[str, Any] = {**remote, "dtype": resolve_dtype(dtype)}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    try:
        config = AutoConfig.from_pretrained(path, **remote)
        tokenizer = AutoTokenizer.from_pretrained(path, **remote)
        image_processor = None
        if fam == "llava":
            model = LlavaForConditionalGeneration.from_pretrained(path, **kwargs)
            image_processor = AutoImageProcessor.from_pretrained(path, **remote)
        elif fam == "qwen2_vl":
            model = AutoModelForImageTextToText.from_pretrained(path, **kwargs)
            image_processor = AutoImageProcessor.from_pretrained(path, **remote)
        elif fam == "causal_lm":
            model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
        else:
            raise AdaptError(FAMILIES.unknown(fam, source=str(path)))
    except (OSError, ValueError) as exc:
        raise AdaptError(f"{path}: cannot load the checkpoint: {exc}") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    family_obj = FAMILIES.get(fam)(config, tokenizer, image_processor, system_prompt)
    return ModelBundle(model=model, tokenizer=tokenizer, image_processor=image_processor, family=family_obj, path=path)
