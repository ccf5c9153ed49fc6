"""configs/llava-1.5-7b.yaml and configs/qwen2-vl-2b.yaml: they load, and their LoRA targets are
the language model's linear layers only, checked on the built-in tiny LLaVA and tiny Qwen2-VL,
which have the real families' module names (transformers builds both from the same classes)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from adapt.config import load_config
from adapt.features.per_sample import lora_linears
from adapt.models.loading import load_model
from adapt.models.lora import add_new_adapter

ROOT = Path(__file__).resolve().parents[1]
LM_LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
VISION = re.compile(r"vision_tower|multi_modal_projector|visual")


@pytest.mark.parametrize("config,family", [("llava-1.5-7b.yaml", "tiny-llava"), ("qwen2-vl-2b.yaml", "tiny-qwen2-vl")])
def test_real_model_configs_put_lora_on_the_language_model_only(config, family, tiny_models):
    import torch
    from peft.tuners.lora import LoraLayer

    cfg = load_config(ROOT / "configs" / config, [f"model.name_or_path={tiny_models[family]}"])
    assert (cfg.lora.r, cfg.features.dim, cfg.selection.adapt_inf.k, cfg.selection.method) == \
        ((128 if family == "tiny-llava" else 64), 8192, 10, "adapt_inf")
    base = load_model(tiny_models[family]).model
    expected = sorted(n for n, m in base.named_modules()
                      if isinstance(m, torch.nn.Linear) and n.rsplit(".", 1)[-1] in LM_LINEARS and not VISION.search(n))
    assert expected and any("vision" in n or "visual" in n for n, _ in base.named_modules())
    model = add_new_adapter(base, cfg.lora)
    wrapped = sorted(n.removeprefix("base_model.model.") for n, m in model.named_modules() if isinstance(m, LoraLayer))
    assert wrapped == expected  # every LM linear of those names, nothing in the vision tower or projector
    last = lora_linears(model, cfg.features.layers)
    depth = max(int(re.search(r"layers\.(\d+)\.", n).group(1)) for n in expected)
    assert last and all(f".layers.{depth}." in f.name for f in last)
    assert len(last) == 2 * len([n for n in expected if f".layers.{depth}." in n])
