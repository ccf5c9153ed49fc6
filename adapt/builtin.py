"""The built-in tiny model: building it from a transformers config, its caption pre-training, and
the cache that keeps one build per (model, sizes, seed).

The constructors of the tiny checkpoints themselves live in :mod:`adapt.models.tiny` (a models-layer
concern); what makes them *the demo's model* — pre-training on the demo stream's renderers with the
trainer, and where the result is cached — lives here, above training and the data stream.

Caption pre-training of the built-in tiny LLaVA:
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

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from adapt.config import BUILTIN_MODEL_NAMES, ModelConfig, TinyModelConfig
from adapt.data.sample import Sample
from adapt.models.tiny import build_tiny_causal_lm, build_tiny_llava, build_tiny_qwen2_vl
from adapt.registry import Registry

BUILTIN_PREFIX = "builtin:"
BUILTIN_MODELS: Registry[Callable[..., Path]] = Registry.of("built-in model", dict(zip(
    BUILTIN_MODEL_NAMES, (build_tiny_llava, build_tiny_qwen2_vl, build_tiny_causal_lm), strict=True)))
CAPTION_PROMPT = "Describe the image."
# Caption pre-training runs on this many torch threads whatever the process was given: how many
# threads share a float32 sum changes its order, so the cached base, and every run started from it,
# would otherwise depend on the machine's core count or OMP_NUM_THREADS (a grid run with one thread
# per job pre-trained another model than the two-thread demo). Two: the demo's count on the 2-core
# machine its README figures come from, so those figures stand.
PRETRAIN_THREADS = 2


def is_builtin(name_or_path: str) -> bool:
    """Whether ``model.name_or_path`` names a built-in model (``builtin:<name>``)."""
    return name_or_path.startswith(BUILTIN_PREFIX)


def builtin_name(name_or_path: str) -> str:
    """``builtin:<name>`` → ``<name>``."""
    return name_or_path[len(BUILTIN_PREFIX):]


def builtin_checkpoint(model: ModelConfig, seed: int, progress: bool = True) -> Path:
    """The built-in model ``model.name_or_path`` names, built (and pre-trained) into the cache the
    first time: ``model.cache_dir``, else ``$ADAPT_CACHE``, else ``~/.cache/adapt``."""
    name = builtin_name(model.name_or_path)
    cache = Path(model.cache_dir or os.environ.get("ADAPT_CACHE", Path.home() / ".cache" / "adapt")).expanduser()
    key = builtin_cache_key(name, model.tiny, seed)
    return build_builtin(name, cache / "builtin" / f"{name}-{key}", model.tiny, seed=seed, progress=progress)


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

    import torch

    bundle = load_model(model_dir, "llava", "float32")
    for p in bundle.model.parameters():
        p.requires_grad_(True)
    n = steps * batch_size // 4  # four passes over the corpus
    threads = torch.get_num_threads()
    torch.set_num_threads(PRETRAIN_THREADS)  # the same weights whatever the process's thread count
    try:
        with tempfile.TemporaryDirectory(prefix="adapt-captions-") as tmp:
            samples = caption_corpus(Path(tmp), n, seed)
            cfg = TrainingConfig(batch_size=batch_size, lr=lr, epochs=steps * batch_size / n, warmup_ratio=0.05)
            # accelerator=None: one process, outside any distributed group (other ranks wait for the cache)
            train_round(bundle.model, bundle.family, samples, cfg, None, seed, max_length=128,
                        desc="pre-training the built-in model on captions", progress=progress)
    finally:
        torch.set_num_threads(threads)
    bundle.model.save_pretrained(model_dir)


def builtin_cache_key(name: str, sizes: TinyModelConfig | None, seed: int) -> str:
    import hashlib
    import json

    payload = {"name": name, "seed": seed, "sizes": (sizes or TinyModelConfig()).model_dump(), "version": 5}  # 5: pre-trained on PRETRAIN_THREADS
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


def build_builtin(name: str, out_dir: str | Path, sizes: TinyModelConfig | None = None, seed: int = 0,
                  progress: bool = True) -> Path:
    """Build ``builtin:<name>`` into ``out_dir`` (skipped when a complete build is already there).

    The folder appears whole or not at all (built in a temp folder, then renamed).
    """
    import shutil
    import tempfile

    out = Path(out_dir)
    if (out / "config.json").is_file() and (out / "model.safetensors").is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        if name == "tiny-llava":
            build_tiny_llava(tmp, sizes, seed)
            if sizes is not None and sizes.pretrain_steps:
                pretrain_on_captions(tmp, sizes.pretrain_steps, seed, progress=progress)
        else:
            BUILTIN_MODELS.get(name, "model.name_or_path")(tmp, seed=seed)
        try:
            tmp.rename(out)
        except OSError:  # another process finished the same build first
            if not (out / "model.safetensors").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out
