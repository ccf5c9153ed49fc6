"""Caption pre-training of the built-in tiny LLaVA.

A real LLaVA-1.5 or Qwen2-VL base arrives already aligned: its vision tower and projector were
trained on image–caption pairs, so an instruction dataset only has to teach the *task*. A randomly
initialised tiny model has no such knowledge, and a LoRA adapter trained on a few hundred samples
cannot learn to see. This module gives the built-in model the analogue of LLaVA's stage-1
(feature-alignment) pre-training: full training on synthetic captions ("Describe the image." →
"a red circle at the top left and a blue square at the bottom right", "the handwritten digit 7",
"a flag of three vertical stripes: blue, white, red"), drawn with the demo stream's own renderers.

It teaches what things look like, never the stream's questions or answer formats (no boxes, no
counts, no country names, no other language), and it reads only the train half of scikit-learn's
digits (``demo_stream.digit_indices("train")``): no eval image of the stream is ever seen.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from adapt.data.sample import Sample

CAPTION_PROMPT = "Describe the image."


def _and(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def caption_item(rng: np.random.Generator, digits: object, digit_pool: np.ndarray):
    """One (image, caption) pair: shapes placed in quadrants (45%), one shape (10%), a digit (35%),
    a striped flag (10%)."""
    from adapt.data import demo_stream as ds

    r = rng.random()
    if r < 0.45:
        n = int(rng.integers(1, 4))
        cells = sorted(int(c) for c in rng.permutation(4)[:n])
        objs = [(str(rng.choice(ds.SHAPES)), str(rng.choice(list(ds.COLORS))), *map(float, ds.QUADRANTS[c]),
                 float(rng.integers(9, 13))) for c in cells]
        text = _and([f"a {o[1]} {o[0]} at the {ds.QUADRANT_WORDS[c]}" for o, c in zip(objs, cells)])
        return ds.shapes_image(objs, rng), text
    if r < 0.55:
        obj = ds.one_shape(rng)
        return ds.shapes_image([obj], rng), f"a {obj[1]} {obj[0]}"
    if r < 0.90:
        idx = int(rng.choice(digit_pool))
        return ds.digit_image(digits.images[idx], rng), f"the handwritten digit {int(digits.target[idx])}"
    colors = tuple(str(c) for c in rng.choice(list(ds.STRIPE_COLORS), size=3, replace=False))
    vertical = bool(rng.random() < 0.5)
    kind = "vertical" if vertical else "horizontal"
    return ds.flag_image(colors, vertical, rng), f"a flag of three {kind} stripes: {', '.join(colors)}"


def caption_corpus(out_dir: Path, n: int, seed: int) -> list[Sample]:
    """``n`` caption samples with their PNGs written under ``out_dir`` (deterministic for a seed)."""
    from sklearn.datasets import load_digits

    from adapt.data.demo_stream import digit_indices

    digits = load_digits()
    pool = digit_indices("train", seed)
    rng = np.random.default_rng([seed, 4242])
    out_dir.mkdir(parents=True, exist_ok=True)
    samples = []
    for i in range(n):
        img, text = caption_item(rng, digits, pool)
        path = out_dir / f"caption-{i:06d}.png"
        img.save(path, format="PNG")
        turns = ({"from": "human", "value": f"<image>\n{CAPTION_PROMPT}"}, {"from": "gpt", "value": text})
        samples.append(Sample(uid=f"captions/{i}", dataset="captions", id=str(i), conversations=turns,
                              images=(str(path),), task="captions"))
    return samples


def pretrain_on_captions(model_dir: Path, steps: int, seed: int, batch_size: int = 32, lr: float = 2e-3,
                         progress: bool = True) -> None:
    """Train every weight of the checkpoint in ``model_dir`` for ``steps`` batches of captions and
    save it back in place (the caller builds into a temp folder)."""
    from adapt.config import TrainingConfig
    from adapt.models.loading import load_model
    from adapt.training.trainer import train_round

    bundle = load_model(model_dir, "llava", "float32")
    for p in bundle.model.parameters():
        p.requires_grad_(True)
    n = steps * batch_size // 4  # four passes over the corpus
    with tempfile.TemporaryDirectory(prefix="adapt-captions-") as tmp:
        samples = caption_corpus(Path(tmp), n, seed)
        cfg = TrainingConfig(batch_size=batch_size, lr=lr, epochs=steps * batch_size / n, warmup_ratio=0.05)
        # accelerator=None: one process, outside any distributed group (other ranks wait for the cache)
        train_round(bundle.model, bundle.family, samples, cfg, None, seed, max_length=128,
                    desc="pre-training the built-in model on captions", progress=progress)
    bundle.model.save_pretrained(model_dir)
