"""Model families: how a family lays out a chat, expands image placeholders and feeds images.

One class per family, registered by name; adding a family is one class and one line.
The chat layouts follow each family's own training format (LLaVA-1.5 "USER: ... ASSISTANT: ...",
Qwen2-VL ChatML with ``<|vision_start|><|image_pad|>*n<|vision_end|>``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image

from adapt.data.sample import IMAGE_TOKEN
from adapt.registry import Registry

FAMILIES: Registry[type["ModelFamily"]] = Registry("model family")

# config.json model_type -> family name
MODEL_TYPE_TO_FAMILY = {
    "llava": "llava",
    "qwen2_vl": "qwen2_vl",
    "qwen2_5_vl": "qwen2_vl",
}


@dataclass
class ImageInputs:
    """Tensors for the model (``pixel_values`` etc.) and the number of placeholder tokens per image."""

    tensors: dict[str, torch.Tensor]
    tokens_per_image: list[int]


class ModelFamily:
    """Base class: chat segments and image handling for one model family."""

    name: str = ""
    uses_images: bool = True

    def __init__(self, model_config: Any, tokenizer: Any, image_processor: Any, system_prompt: str = "") -> None:
        self.model_config = model_config
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.system_prompt = system_prompt

    # --- chat layout -------------------------------------------------------------------------
    # Whitespace next to an ``<image>`` in a user turn is dropped (Qwen2-VL lays an image block and
    # the text side by side; LLaVA keeps LLaVA-format data's "<image>\n" as it is).
    strip_text_around_images: bool = False

    def prefix(self, system: str | None = None) -> str:
        """Text before the first turn, after the BOS (never trained on), with the system prompt:
        the sample's own (``system``: a system turn of its record) or ``model.system_prompt``. It is
        tokenised together with the first user turn: SentencePiece would read a separating space at
        its end as a word of its own."""
        return ""

    def system_text(self, system: str | None) -> str:
        """The sample's own system prompt, else the config's (``model.system_prompt``)."""
        return system or self.system_prompt

    def user_segment(self, text: str) -> str:
        raise NotImplementedError

    def answer_segment(self, text: str) -> str:
        raise NotImplementedError

    def answer_prompt(self) -> str:
        """What generation starts from after the last user segment (already in user_segment)."""
        return ""

    def strip_answer(self, decoded: str) -> str:
        return decoded.strip()

    # --- images -------------------------------------------------------------------------------
    def image_inputs(self, images: list[Image.Image]) -> ImageInputs:
        raise NotImplementedError

    def expand_placeholder(self, n_tokens: int) -> str:
        raise NotImplementedError

    def merge_image_inputs(self, parts: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """Concatenate per-sample image tensors in batch order (the models scatter them in order)."""
        parts = [p for p in parts if p]
        if not parts:
            return {}
        return {k: torch.cat([p[k] for p in parts], dim=0) for k in parts[0]}

    def extra_model_inputs(self, input_ids: torch.Tensor) -> dict[str, torch.Tensor]:
        return {}

    @functools.cached_property
    def bos_text(self) -> str:
        """The BOS token, where the tokenizer itself starts a text with it (LLaMA's does, Qwen's has none).

        Read from what the tokenizer does, not from its ``add_bos_token``: transformers 5 drops that
        setting from the config of every checkpoint with a ``tokenizer.json`` (LLaVA-hf's too) and
        reports False while the tokenizer's post-processor still puts ``<s>`` first."""
        tok = self.tokenizer
        if not getattr(tok, "bos_token", None) or tok.bos_token_id is None:
            return ""
        ids = tok("a")["input_ids"]
        return tok.bos_token if ids and ids[0] == tok.bos_token_id else ""

    @property
    def eos_text(self) -> str:
        return self.tokenizer.eos_token or ""


@FAMILIES.register("llava")
class LlavaFamily(ModelFamily):
    """LLaVA-1.5 (``LlavaForConditionalGeneration``): 'USER: <image>\\nQ ASSISTANT: A</s>'."""

    name = "llava"

    def prefix(self, system: str | None = None) -> str:
        text = self.system_text(system)
        return text + " " if text else ""

    def user_segment(self, text: str) -> str:
        return f"USER: {text} ASSISTANT:"

    def answer_segment(self, text: str) -> str:
        return f" {text}{self.eos_text}"

    def strip_answer(self, decoded: str) -> str:
        return decoded.replace(self.eos_text, "").strip() if self.eos_text else decoded.strip()

    def _tokens_per_image(self) -> int:
        vc = self.model_config.vision_config
        n = (vc.image_size // vc.patch_size) ** 2
        if getattr(self.model_config, "vision_feature_select_strategy", "default") == "full":
            n += 1
        return n

    def image_inputs(self, images: list[Image.Image]) -> ImageInputs:
        if not images:
            return ImageInputs({}, [])
        out = self.image_processor(images, return_tensors="pt")
        return ImageInputs({"pixel_values": out["pixel_values"]}, [self._tokens_per_image()] * len(images))

    def expand_placeholder(self, n_tokens: int) -> str:
        return IMAGE_TOKEN * n_tokens


@FAMILIES.register("qwen2_vl")
class Qwen2VLFamily(ModelFamily):
    """Qwen2-VL / Qwen2.5-VL (``AutoModelForImageTextToText``), ChatML layout, as their chat template
    lays it out: a system turn always (the template's default one when ``model.system_prompt`` is
    empty), each image as ``<|vision_start|><|image_pad|>*n<|vision_end|>`` right next to the text."""

    name = "qwen2_vl"
    DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant."
    strip_text_around_images = True

    def prefix(self, system: str | None = None) -> str:
        return f"<|im_start|>system\n{self.system_text(system) or self.DEFAULT_SYSTEM_PROMPT}<|im_end|>\n"

    def user_segment(self, text: str) -> str:
        return f"<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n"

    def answer_segment(self, text: str) -> str:
        return f"{text}<|im_end|>\n"

    def strip_answer(self, decoded: str) -> str:
        return decoded.split("<|im_end|>")[0].strip()

    def image_inputs(self, images: list[Image.Image]) -> ImageInputs:
        if not images:
            return ImageInputs({}, [])
        out = self.image_processor(images, return_tensors="pt")
        merge = getattr(self.image_processor, "merge_size", 2)
        counts = [int(thw.prod()) // (merge * merge) for thw in out["image_grid_thw"]]
        return ImageInputs({"pixel_values": out["pixel_values"], "image_grid_thw": out["image_grid_thw"]}, counts)

    def expand_placeholder(self, n_tokens: int) -> str:
        return "<|vision_start|>" + "<|image_pad|>" * n_tokens + "<|vision_end|>"

    def extra_model_inputs(self, input_ids: torch.Tensor) -> dict[str, torch.Tensor]:
        # M-RoPE needs to know which positions are image tokens (1) and which are text (0).
        return {"mm_token_type_ids": (input_ids == self.model_config.image_token_id).long()}


@FAMILIES.register("causal_lm")
class CausalLMFamily(LlavaFamily):
    """Text-only causal LMs (``AutoModelForCausalLM``): images are dropped, the text kept."""

    name = "causal_lm"
    uses_images = False

    def image_inputs(self, images: list[Image.Image]) -> ImageInputs:
        return ImageInputs({}, [0] * len(images))

    def expand_placeholder(self, n_tokens: int) -> str:
        return ""
