"""Samples -> token ids, answer-only labels and image tensors; batch collation.

Turns are tokenised one by one, as LLaVA's own ``preprocess`` does, so that the label mask is exact:
every token of an assistant turn is a label, everything else is -100. The BOS (where the tokenizer
puts one) is tokenised alone, the family's prefix (the system prompt) with the first user turn.
tests/test_real_tokenizers.py checks the result against each family's reference with real vocabularies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image

from adapt.data.sample import GPT, HUMAN, IMAGE_TOKEN, Sample
from adapt.errors import DataError
from adapt.models.families import ModelFamily

IGNORE_INDEX = -100


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]
    image_tensors: dict[str, torch.Tensor]


def load_images(sample: Sample) -> list[Image.Image]:
    out = []
    for p in sample.images:
        try:
            with Image.open(p) as im:
                out.append(im.convert("RGB"))
        except OSError as exc:
            raise DataError(p, f"cannot read image: {exc}", sample=sample.uid) from None
    return out


def _expand_images(text: str, counts: list[int], family: ModelFamily, start: int) -> tuple[str, int]:
    """Replace each ``<image>`` in ``text`` by the family's expansion for the next image."""
    pieces = text.split(IMAGE_TOKEN)
    if family.strip_text_around_images and len(pieces) > 1:
        pieces = [p.rstrip() if i == 0 else p.lstrip() if i == len(pieces) - 1 else p.strip()
                  for i, p in enumerate(pieces)]
    out = [pieces[0]]
    k = start
    for piece in pieces[1:]:
        out.append(family.expand_placeholder(counts[k]) if k < len(counts) else "")
        out.append(piece)
        k += 1
    return "".join(out), k


def encode_sample(sample: Sample, family: ModelFamily, max_length: int, for_generation: bool = False) -> Encoded:
    """Token ids and labels of a sample; with ``for_generation`` the last answer is left out."""
    tok = family.tokenizer
    images = load_images(sample) if family.uses_images else []
    img = family.image_inputs(images) if images else None
    counts = img.tokens_per_image if img else [0] * len(sample.images)
    turns = list(sample.conversations)
    if for_generation:
        last_gpt = max(i for i, t in enumerate(turns) if t["from"] == GPT)
        turns = turns[:last_gpt]
    ids: list[int] = []
    labels: list[int] = []

    def add(text: str, train: bool) -> None:
        if not text:
            return
        piece = tok(text, add_special_tokens=False)["input_ids"]
        ids.extend(piece)
        labels.extend(piece if train else [IGNORE_INDEX] * len(piece))

    add(family.bos_text, False)
    prefix = family.prefix(sample.system)  # tokenised with the first turn
    k = 0
    for turn in turns:
        if turn["from"] == HUMAN:
            text, k = _expand_images(turn["value"], counts, family, k)
            if not family.uses_images:
                text = text.replace("\n\n", "\n").strip()
            add(prefix + family.user_segment(text), False)
        else:
            add(prefix, False)
            add(family.answer_segment(turn["value"]), True)
        prefix = ""
    if len(ids) > max_length:
        n_img_before = sum(counts)
        ids, labels = ids[:max_length], labels[:max_length]
        if family.uses_images and n_img_before:
            image_id = family.model_config.image_token_id if hasattr(family.model_config, "image_token_id") else None
            if image_id is None:
                image_id = getattr(family.model_config, "image_token_index", None)
            if image_id is not None and sum(1 for i in ids if i == image_id) != n_img_before:
                raise DataError(sample.dataset, f"sequence longer than model.max_length={max_length} cuts an image", sample=sample.id)
    return Encoded(ids, labels, img.tensors if img else {})


LIST_INT_BYTES = 36  # a small Python int (28 bytes) and its slot in a list (8)


def encoded_bytes(e: Encoded) -> int:
    """Memory an :class:`Encoded` holds: its image tensors, and its ids and labels as Python ints."""
    return sum(t.numel() * t.element_size() for t in e.image_tensors.values()) + 2 * LIST_INT_BYTES * len(e.input_ids)


class Collator:
    """Pads a batch; right padding for training/scoring, left padding for generation.

    With ``cache_bytes`` > 0 it keeps each sample's encoding (tokens, labels, image tensors), as long as
    they fit in that many bytes, so that a sample seen again (the next epoch) is not read, decoded and
    tokenised again: the batches are the same tensors either way. The cache is keyed by the sample
    object (a DataLoader hands the same objects every epoch), so two samples that share a uid are
    never mixed up; a Collator lives as long as its DataLoader."""

    def __init__(self, family: ModelFamily, max_length: int, for_generation: bool = False,
                 cache_bytes: int = 0) -> None:
        self.family = family
        self.max_length = max_length
        self.for_generation = for_generation
        self.pad_id = family.tokenizer.pad_token_id
        self.cache_bytes = cache_bytes
        self._cache: dict[int, tuple[Sample, Encoded]] = {}  # id(sample) -> (the sample, kept alive; its encoding)
        self._cached_bytes = 0

    def encode(self, sample: Sample) -> Encoded:
        """The sample's :func:`encode_sample`, from the cache when it holds it (and into it while it fits)."""
        hit = self._cache.get(id(sample))  # the cache keeps its samples alive: no other object has their id
        if hit is not None:
            return hit[1]
        e = encode_sample(sample, self.family, self.max_length, self.for_generation)
        size = encoded_bytes(e)
        if self._cached_bytes + size <= self.cache_bytes:
            self._cache[id(sample)] = (sample, e)
            self._cached_bytes += size
        return e

    def __call__(self, samples: list[Sample]) -> dict[str, Any]:
        enc = [self.encode(s) for s in samples]
        width = max(len(e.input_ids) for e in enc)
        n = len(enc)
        input_ids = torch.full((n, width), self.pad_id, dtype=torch.long)
        labels = torch.full((n, width), IGNORE_INDEX, dtype=torch.long)
        attention = torch.zeros((n, width), dtype=torch.long)
        for i, e in enumerate(enc):
            L = len(e.input_ids)
            sl = slice(width - L, width) if self.for_generation else slice(0, L)
            input_ids[i, sl] = torch.tensor(e.input_ids)
            labels[i, sl] = torch.tensor(e.labels)
            attention[i, sl] = 1
        batch: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention}
        if not self.for_generation:
            batch["labels"] = labels
        batch.update(self.family.merge_image_inputs([e.image_tensors for e in enc]))
        batch.update(self.family.extra_model_inputs(input_ids))
        return batch
