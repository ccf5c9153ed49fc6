"""Tiny random checkpoints built from transformers configs (no download): the demo model and
the test models of every supported family.

The tokenizer is byte-level (every UTF-8 byte is a token), so a later dataset in any language never
goes out of vocabulary.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers

from adapt.config import TinyModelConfig



def byte_level_tokenizer(specials: list[str], **special_roles: object):
    """A fast tokenizer whose vocabulary is the 256 byte symbols plus ``specials`` (no merges)."""
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {c: i for i, c in enumerate(alphabet)}
    for s in specials:
        vocab[s] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(specials)
    return PreTrainedTokenizerFast(tokenizer_object=tok, **special_roles)


def _image_processor_class(name: str):
    import transformers

    # The PIL backends need no torchvision (which the CPU wheel of torch cannot import here).
    return getattr(transformers, f"{name}Pil", None) or getattr(transformers, name)


def _instantiate_and_save(model_cls, cfg, out: Path, seed: int, tok, image_processor=None) -> Path:
    """Random weights from ``cfg`` (seeded), generation ids from the tokenizer, all saved to ``out``."""
    torch.manual_seed(seed)
    model = model_cls(cfg)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    model.save_pretrained(out)
    tok.save_pretrained(out)
    if image_processor is not None:
        image_processor.save_pretrained(out)
    return out


def build_tiny_llava(out_dir: str | Path, sizes: TinyModelConfig | None = None, seed: int = 0,
                     tokenizer=None) -> Path:
    """Save a tiny ``LlavaForConditionalGeneration`` (CLIP vision + Llama) with its processor parts.

    ``tokenizer``: the byte-level one by default; any tokenizer with ``<image>``, pad, bos and eos
    tokens (tests pass a real SentencePiece vocabulary)."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    s = sizes or TinyModelConfig()
    out = Path(out_dir)
    tok = tokenizer or byte_level_tokenizer(
        ["<pad>", "<s>", "</s>", "<image>"],
        pad_token="<pad>", bos_token="<s>", eos_token="</s>", extra_special_tokens={"image_token": "<image>"},
    )
    ip = _image_processor_class("CLIPImageProcessor")(
        size={"shortest_edge": s.image_size}, crop_size={"height": s.image_size, "width": s.image_size},
        image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5],
    )
    vision = CLIPVisionConfig(
        hidden_size=s.vision_hidden_size, intermediate_size=2 * s.vision_hidden_size,
        num_hidden_layers=s.vision_layers, num_attention_heads=s.heads, image_size=s.image_size,
        patch_size=s.patch_size, projection_dim=s.vision_hidden_size,
    )
    text = LlamaConfig(
        vocab_size=len(tok), hidden_size=s.text_hidden_size, intermediate_size=s.intermediate_size,
        num_hidden_layers=s.text_layers, num_attention_heads=s.heads, num_key_value_heads=s.heads,
        max_position_embeddings=1024, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    cfg = LlavaConfig(
        vision_config=vision, text_config=text, image_token_index=tok.convert_tokens_to_ids("<image>"),
        image_seq_length=(s.image_size // s.patch_size) ** 2, vision_feature_layer=-1,
        vision_feature_select_strategy="default",
    )
    return _instantiate_and_save(LlavaForConditionalGeneration, cfg, out, seed, tok, ip)


def build_tiny_qwen2_vl(out_dir: str | Path, seed: int = 0, tokenizer=None) -> Path:
    """Save a tiny ``Qwen2VLForConditionalGeneration`` with a tokenizer (byte-level by default; tests
    pass Qwen's own) and image processor."""
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    out = Path(out_dir)
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                "<|image_pad|>", "<|video_pad|>"]
    tok = tokenizer or byte_level_tokenizer(
        specials, pad_token="<|endoftext|>", eos_token="<|im_end|>",
        extra_special_tokens={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>",
                              "vision_bos_token": "<|vision_start|>", "vision_eos_token": "<|vision_end|>"},
    )
    ids = {t: tok.convert_tokens_to_ids(t) for t in specials}
    ip = _image_processor_class("Qwen2VLImageProcessor")(
        min_pixels=32 * 32, max_pixels=64 * 64, patch_size=8, merge_size=2, temporal_patch_size=2
    )
    cfg = Qwen2VLConfig(
        vision_config=dict(depth=2, embed_dim=32, hidden_size=64, num_heads=4, patch_size=8,
                           spatial_merge_size=2, temporal_patch_size=2, in_chans=3, mlp_ratio=2),
        text_config=dict(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         rope_parameters={"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 10000.0},
                         bos_token_id=None, eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"]),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
    )
    return _instantiate_and_save(Qwen2VLForConditionalGeneration, cfg, out, seed, tok, ip)


def build_tiny_causal_lm(out_dir: str | Path, seed: int = 0) -> Path:
    """Save a tiny text-only ``LlamaForCausalLM`` with a byte-level tokenizer."""
    from transformers import LlamaConfig, LlamaForCausalLM

    out = Path(out_dir)
    tok = byte_level_tokenizer(["<pad>", "<s>", "</s>"], pad_token="<pad>", bos_token="<s>", eos_token="</s>")
    cfg = LlamaConfig(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=4, max_position_embeddings=1024, pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
    )
    return _instantiate_and_save(LlamaForCausalLM, cfg, out, seed, tok)
