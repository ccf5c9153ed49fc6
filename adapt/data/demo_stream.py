"""The built-in synthetic stream: six visual-instruction datasets in the LLaVA format, PNG images on
disk, written deterministically from a seed (same seed, same bytes).

In the spirit of Adapt-∞'s sequence (a large general VQA set first, then knowledge VQA,
multilingual, grounding, reasoning, multi-image), and built so that selection matters as it does on
real pools: few templates and many near-duplicates, a few percent of wrong labels (train only),
rare skills inside big datasets, and questions whose answer does not need the image. The reasoning
set uses real handwritten digits (scikit-learn's ``load_digits``). Images are 32×32 RGB.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw
from tqdm.auto import tqdm

from adapt.errors import ConfigError
from adapt.io import write_text_atomic
from adapt.layout import stream_manifest
from adapt.registry import Registry

SIZE = 32
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30), "green": (30, 170, 40), "blue": (30, 60, 220),
    "yellow": (235, 210, 20), "purple": (140, 40, 180), "orange": (245, 130, 20),
}
STRIPE_COLORS = COLORS | {"white": (250, 250, 250), "black": (20, 20, 20)}
SHAPES = ("circle", "square", "triangle")
NOISE_RATE = 0.03


# ---------------------------------------------------------------------------------------- drawing
def canvas(rng: np.random.Generator) -> Image.Image:
    """Light background with a little pixel noise."""
    base = rng.integers(232, 248)
    arr = np.clip(base + rng.normal(0, 3, (SIZE, SIZE, 3)), 0, 255).astype(np.uint8)
    return Image.fromarray(arr, "RGB")


def jitter_color(rgb: tuple[int, int, int], rng: np.random.Generator) -> tuple[int, int, int]:
    """The colour with ±12 of noise per channel (near-duplicates stay near, not identical)."""
    return tuple(int(np.clip(c + rng.integers(-12, 13), 0, 255)) for c in rgb)  # type: ignore[return-value]


def draw_shape(img: Image.Image, shape: str, color: str, cx: float, cy: float, size: float,
               rng: np.random.Generator) -> None:
    """Draw one filled shape of side/diameter ``size`` centred at (cx, cy)."""
    d = ImageDraw.Draw(img)
    h = size / 2
    fill = jitter_color(COLORS[color], rng)
    if shape == "circle":
        d.ellipse([cx - h, cy - h, cx + h, cy + h], fill=fill)
    elif shape == "square":
        d.rectangle([cx - h, cy - h, cx + h, cy + h], fill=fill)
    else:
        d.polygon([(cx, cy - h), (cx - h, cy + h), (cx + h, cy + h)], fill=fill)


def shapes_image(objs: list[tuple[str, str, float, float, float]], rng: np.random.Generator) -> Image.Image:
    """``objs``: (shape, color, cx, cy, size); positions get ±1 px of jitter."""
    img = canvas(rng)
    for shape, color, cx, cy, size in objs:
        draw_shape(img, shape, color, cx + rng.integers(-1, 2), cy + rng.integers(-1, 2), size, rng)
    return img


def flag_image(colors: tuple[str, str, str], vertical: bool, rng: np.random.Generator) -> Image.Image:
    """A 28×20 flag of three vertical or horizontal stripes, ±1 px of jitter."""
    img = canvas(rng)
    d = ImageDraw.Draw(img)
    x0, y0 = 2 + rng.integers(-1, 2), 6 + rng.integers(-1, 2)
    w, h = 28, 20
    for k, c in enumerate(colors):
        fill = jitter_color(STRIPE_COLORS[c], rng)
        if vertical:
            d.rectangle([x0 + k * w / 3, y0, x0 + (k + 1) * w / 3 - 1, y0 + h - 1], fill=fill)
        else:
            d.rectangle([x0, y0 + k * h / 3, x0 + w - 1, y0 + (k + 1) * h / 3 - 1], fill=fill)
    return img


def digit_image(pixels: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """An 8×8 scikit-learn digit (0..16) upscaled 4× to fill the 32×32 canvas (each 8 px patch of the
    vision tower sees 2×2 of its pixels), dark ink on a light, slightly noisy background."""
    img = np.asarray(canvas(rng)).astype(np.float64)
    big = np.kron(pixels / 16.0, np.ones((4, 4)))
    img = img * (1 - big[..., None]) + 25 * big[..., None]
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


def digit_indices(split: str, seed: int = 0) -> np.ndarray:
    """Indices of scikit-learn's 1797 digits usable for ``split``: every fifth image is kept for
    evaluation whatever the seed (so the built-in model's caption pre-training, which reads the
    train indices only, never sees an eval image); the order is shuffled by ``seed``."""
    idx = np.arange(1797)
    idx = idx[idx % 5 == 4] if split == "eval" else idx[idx % 5 != 4]
    return np.random.default_rng([seed, 999]).permutation(idx)


# ---------------------------------------------------------------------------------------- items
@dataclass
class Item:
    """One QA item before it is written: images, question, answer and the generator's metadata."""

    images: list[Image.Image]
    question: str
    answer: str
    skill: str
    template: int
    alternatives: list[str] = field(default_factory=list)  # other valid answers (for label noise)
    needs_image: bool = True
    rare: bool = False
    meta: dict[str, Any] = field(default_factory=dict)


Proto = Callable[[np.random.Generator], dict[str, Any]]
ItemFn = Callable[[dict[str, Any], np.random.Generator], Item]


def one_shape(rng: np.random.Generator) -> tuple[str, str, float, float, float]:
    """A random (shape, color, cx, cy, size) near the centre, 11–14 px."""
    return (str(rng.choice(SHAPES)), str(rng.choice(list(COLORS))), 16 + rng.integers(-5, 6),
            16 + rng.integers(-5, 6), float(rng.integers(11, 15)))


QUADRANTS = [(9, 9), (23, 9), (9, 23), (23, 23)]
QUADRANT_WORDS = ["top left", "top right", "bottom left", "bottom right"]
TEXT_FACTS = [
    ("What color is a ripe banana?", "yellow"), ("What color is grass?", "green"),
    ("What color is the sky on a clear day?", "blue"), ("What color is a ripe tomato?", "red"),
    ("How many sides does a triangle have?", "3"), ("What shape is a ball?", "circle"),
]


def general_proto(rng: np.random.Generator) -> dict[str, Any]:
    """5% text-only facts, 3% rare top/bottom, the rest colour / shape / count in 3 phrasings."""
    r = rng.random()
    if r < 0.05:
        return {"skill": "text_fact", "fact": int(rng.integers(len(TEXT_FACTS)))}
    if r < 0.08:
        s = one_shape(rng)
        top = bool(rng.random() < 0.5)
        return {"skill": "position", "objs": [(s[0], s[1], s[2], 8.0 if top else 24.0, 10.0)], "top": top}
    skill = ["color", "shape", "count", "where"][int(rng.choice(4, p=[0.28, 0.28, 0.28, 0.16]))]
    if skill == "where":
        cell = int(rng.integers(4))
        return {"skill": skill, "cell": cell, "template": int(rng.integers(2)),
                "objs": [(str(rng.choice(SHAPES)), str(rng.choice(list(COLORS))), *map(float, QUADRANTS[cell]), 12.0)]}
    if skill == "count":
        n = int(rng.integers(1, 4))
        cells = rng.permutation(4)[:n]
        objs = [(str(rng.choice(SHAPES)), str(rng.choice(list(COLORS))), *map(float, QUADRANTS[c]), 10.0) for c in cells]
        return {"skill": skill, "objs": objs, "template": int(rng.integers(3))}
    return {"skill": skill, "objs": [one_shape(rng)], "template": int(rng.integers(3))}


def general_item(p: dict[str, Any], rng: np.random.Generator) -> Item:
    """Render a general-VQA prototype (a fresh jitter each call)."""
    skill = p["skill"]
    if skill == "text_fact":
        q, a = TEXT_FACTS[p["fact"]]
        return Item([], q, a, skill, p["fact"], needs_image=False)
    img = shapes_image(p["objs"], rng)
    if skill == "position":
        return Item([img], "Is the shape in the top or bottom half?", "top" if p["top"] else "bottom", skill, 0,
                    ["top", "bottom"], rare=True)
    t = p["template"]
    if skill == "where":
        q = ["Where is the shape?", "In which corner is the shape?"][t]
        return Item([img], q, QUADRANT_WORDS[p["cell"]], skill, t, list(QUADRANT_WORDS))
    if skill == "color":
        q = ["What color is the shape?", "What is the color of the object?", "Which color is shown?"][t]
        return Item([img], q, p["objs"][0][1], skill, t, list(COLORS))
    if skill == "shape":
        q = ["What shape is shown?", "What shape is this?", "Name the shape."][t]
        return Item([img], q, p["objs"][0][0], skill, t, list(SHAPES))
    q = ["How many shapes are there?", "Count the shapes.", "How many objects are in the image?"][t]
    return Item([img], q, str(len(p["objs"])), skill, t, ["1", "2", "3"])


FLAGS: dict[str, tuple[tuple[str, str, str], bool]] = {
    "france": (("blue", "white", "red"), True), "italy": (("green", "white", "red"), True),
    "ireland": (("green", "white", "orange"), True), "belgium": (("black", "yellow", "red"), True),
    "germany": (("black", "red", "yellow"), False), "russia": (("white", "blue", "red"), False),
    "netherlands": (("red", "white", "blue"), False), "austria": (("red", "white", "red"), False),
}
FRUITS = {"red": "apple", "yellow": "banana", "orange": "orange", "green": "lime", "purple": "grape",
          "blue": "blueberry"}


def knowledge_proto(rng: np.random.Generator) -> dict[str, Any]:
    """70% flags of countries, 30% fruit of a colour."""
    if rng.random() < 0.7:
        return {"skill": "flag", "country": str(rng.choice(list(FLAGS))), "template": int(rng.integers(3))}
    return {"skill": "fruit", "obj": one_shape(rng), "template": int(rng.integers(2))}


def knowledge_item(p: dict[str, Any], rng: np.random.Generator) -> Item:
    """Render a knowledge prototype."""
    t = p["template"]
    if p["skill"] == "flag":
        colors, vertical = FLAGS[p["country"]]
        q = ["Which country's flag is this?", "Name the country of this flag.", "This flag belongs to which country?"][t]
        return Item([flag_image(colors, vertical, rng)], q, p["country"], "flag", t, list(FLAGS))
    q = ["What fruit has this color?", "Name a fruit of this color."][t]
    return Item([shapes_image([p["obj"]], rng)], q, FRUITS[p["obj"][1]], "fruit", t, list(FRUITS.values()))


LANGS: dict[str, dict[str, Any]] = {
    "fr": {"color_q": "De quelle couleur est la forme ?", "shape_q": "Quelle est cette forme ?",
           "colors": ["rouge", "vert", "bleu", "jaune", "violet", "orange"], "shapes": ["cercle", "carré", "triangle"]},
    "es": {"color_q": "¿De qué color es la forma?", "shape_q": "¿Qué forma es esta?",
           "colors": ["rojo", "verde", "azul", "amarillo", "morado", "naranja"],
           "shapes": ["círculo", "cuadrado", "triángulo"]},
    "de": {"color_q": "Welche Farbe hat die Form?", "shape_q": "Welche Form ist das?",
           "colors": ["rot", "grün", "blau", "gelb", "lila", "orange"], "shapes": ["kreis", "quadrat", "dreieck"]},
    "it": {"color_q": "Di che colore è la forma?", "shape_q": "Che forma è questa?",
           "colors": ["rosso", "verde", "blu", "giallo", "viola", "arancione"],
           "shapes": ["cerchio", "quadrato", "triangolo"]},
}


def multilingual_proto(rng: np.random.Generator) -> dict[str, Any]:
    """French / Spanish / German, 5% rare Italian; colour or shape of one shape."""
    lang = "it" if rng.random() < 0.05 else str(rng.choice(["fr", "es", "de"]))
    return {"skill": "color" if rng.random() < 0.5 else "shape", "lang": lang, "obj": one_shape(rng)}


def multilingual_item(p: dict[str, Any], rng: np.random.Generator) -> Item:
    """Render a multilingual prototype; the answer is in the question's language."""
    L = LANGS[p["lang"]]
    shape, color = p["obj"][0], p["obj"][1]
    img = shapes_image([p["obj"]], rng)
    if p["skill"] == "color":
        ans, alts = L["colors"][list(COLORS).index(color)], L["colors"]
    else:
        ans, alts = L["shapes"][SHAPES.index(shape)], L["shapes"]
    return Item([img], L[f"{p['skill']}_q"], ans, f"{p['skill']}_{p['lang']}", 0, alts, rare=p["lang"] == "it",
                meta={"lang": p["lang"]})


def box_text(row: int, col: int, cells: int = 2) -> str:
    """The box of a grid cell as [x1, y1, x2, y2] in normalised coordinates."""
    w = 1 / cells
    return f"[{col * w:.2f}, {row * w:.2f}, {(col + 1) * w:.2f}, {(row + 1) * w:.2f}]"


def grounding_proto(rng: np.random.Generator) -> dict[str, Any]:
    """One or two shapes of distinct colours in distinct quadrants; one of them is asked for."""
    n = 1 if rng.random() < 0.5 else 2
    cells = [int(c) for c in rng.permutation(4)[:n]]
    colors = [str(c) for c in rng.permutation(list(COLORS))[:n]]
    shapes = [str(rng.choice(SHAPES)) for _ in range(n)]
    return {"skill": "box", "cells": cells, "colors": colors, "shapes": shapes, "target": int(rng.integers(n)),
            "template": int(rng.integers(2))}


def grounding_item(p: dict[str, Any], rng: np.random.Generator) -> Item:
    """A shape in one quadrant (a 2×2 grid of 16 px cells), maybe a distractor in another."""
    objs = [(shape, color, *map(float, QUADRANTS[cell]), 12.0)
            for cell, color, shape in zip(p["cells"], p["colors"], p["shapes"])]
    img = shapes_image(objs, rng)
    k = p["target"]
    r, c = divmod(p["cells"][k], 2)
    desc = f"{p['colors'][k]} {p['shapes'][k]}"
    q = [f"Where is the {desc}? Answer with a bounding box.", f"Give the bounding box of the {desc}."][p["template"]]
    alts = [box_text(*divmod(x, 2)) for x in range(4)]
    return Item([img], q, box_text(r, c), "box", p["template"], alts, meta={"cell": p["cells"][k]})


def reasoning_proto_factory(digits: Any, pool: np.ndarray) -> Proto:
    """A prototype maker over the digit images in ``pool`` (train and eval pools are disjoint);
    the item renderer hangs on it as ``.item``."""

    def proto(rng: np.random.Generator) -> dict[str, Any]:
        idx = int(rng.choice(pool))
        addend = 0 if rng.random() < 0.5 else int(rng.integers(1, 3))
        return {"skill": "ocr" if addend == 0 else "add", "index": idx, "digit": int(digits.target[idx]),
                "addend": addend}

    def item(p: dict[str, Any], rng: np.random.Generator) -> Item:
        img = digit_image(digits.images[p["index"]], rng)
        meta = {"digit": p["digit"], "addend": p["addend"], "digit_index": p["index"]}
        if p["addend"] == 0:
            return Item([img], "What digit is written?", str(p["digit"]), "ocr", 0, [str(i) for i in range(10)], meta=meta)
        return Item([img], f"What is the digit plus {p['addend']}?", str(p["digit"] + p["addend"]), "add", p["addend"],
                    [str(i) for i in range(1, 12)], meta=meta)

    proto.item = item  # type: ignore[attr-defined]
    return proto


def multi_image_proto(rng: np.random.Generator) -> dict[str, Any]:
    """Two one-shape images of different colours: which one shows a colour / what colour is in one."""
    c1 = str(rng.choice(list(COLORS)))
    c2 = str(rng.choice([c for c in COLORS if c != c1]))
    o1, o2 = one_shape(rng), one_shape(rng)
    objs = [(o1[0], c1, *o1[2:]), (o2[0], c2, *o2[2:])]
    if rng.random() < 0.5:
        first = bool(rng.random() < 0.5)
        return {"skill": "which_image", "objs": objs, "color": c1 if first else c2,
                "answer": "first" if first else "second"}
    second = bool(rng.random() < 0.5)
    return {"skill": "color_of_image", "objs": objs, "which": "second" if second else "first",
            "answer": c2 if second else c1}


def multi_image_item(p: dict[str, Any], rng: np.random.Generator) -> Item:
    """Render both images of a multi-image prototype."""
    imgs = [shapes_image([o], rng) for o in p["objs"]]
    if p["skill"] == "which_image":
        return Item(imgs, f"Which image shows a {p['color']} shape, the first or the second?", p["answer"],
                    "which_image", 0, ["first", "second"])
    return Item(imgs, f"What color is the shape in the {p['which']} image?", p["answer"], "color_of_image", 0,
                list(COLORS))


# ---------------------------------------------------------------------------------------- datasets
@dataclass
class DatasetSpec:
    """One dataset of the stream: name, metric, sizes (train at scale 1.0) and its generator."""

    name: str
    metric: str
    train_size: int
    eval_size: int
    description: str
    proto: Proto | None = None
    item: ItemFn | None = None
    dup_rate: float = 0.4


def _specs() -> dict[str, DatasetSpec]:
    """The six datasets, in the default order."""
    return {s.name: s for s in [
        DatasetSpec("vqa_general", "exact", 2400, 120, "general VQA: colour, shape, count, where (corner); rare: "
                    "top/bottom; some text-only facts", general_proto, general_item, dup_rate=0.5),
        DatasetSpec("vqa_knowledge", "exact", 800, 80, "knowledge VQA: flags of countries, fruits of a colour",
                    knowledge_proto, knowledge_item),
        DatasetSpec("vqa_multilingual", "exact", 800, 80, "colour and shape questions in French, Spanish, German "
                    "(rare: Italian)", multilingual_proto, multilingual_item),
        DatasetSpec("grounding", "iou", 800, 80, "bounding box of a described shape (one quadrant of the image)",
                    grounding_proto, grounding_item),
        DatasetSpec("reasoning", "numeric", 800, 80, "handwritten digits (scikit-learn): read it, or add 1 or 2"),
        DatasetSpec("multi_image", "exact", 600, 80, "two images: which one shows a colour, what colour is in the first/second",
                    multi_image_proto, multi_image_item),
    ]}


DEMO_DATASETS = list(_specs())


@dataclass(frozen=True)
class StreamSpec:
    """A built-in stream: the datasets in their order, and how it differs from the datasets'
    defaults (train sizes at scale 1.0, near-duplicate rates) and from the other streams' draws
    (``salt`` joins the seed of every dataset's generator; 0 keeps the default stream's bytes)."""

    datasets: tuple[str, ...]
    train_sizes: dict[str, int] = field(default_factory=dict)
    dup_rates: dict[str, float] = field(default_factory=dict)
    salt: int = 0
    description: str = ""

    def spec(self, name: str, base: DatasetSpec) -> DatasetSpec:
        """``base`` with this stream's size and duplicate rate."""
        from dataclasses import replace

        return replace(base, train_size=self.train_sizes.get(name, base.train_size),
                       dup_rate=self.dup_rates.get(name, base.dup_rate))

    def rng(self, seed: int, d_index: int, s_index: int) -> np.random.Generator:
        return np.random.default_rng([seed, d_index, s_index] + ([self.salt] if self.salt else []))


STREAMS: dict[str, StreamSpec] = {
    "default": StreamSpec(tuple(DEMO_DATASETS), description="a big general VQA set first, as Adapt-∞'s sequence"),
    "alt": StreamSpec(
        ("reasoning", "vqa_multilingual", "multi_image", "vqa_general", "grounding", "vqa_knowledge"),
        train_sizes={"reasoning": 1600, "vqa_multilingual": 600, "multi_image": 800, "vqa_general": 1200,
                     "grounding": 1200, "vqa_knowledge": 800},
        dup_rates={"reasoning": 0.25, "vqa_multilingual": 0.5, "vqa_general": 0.3, "grounding": 0.55},
        salt=1,
        description="another order (the big digit set first, general VQA fourth), other sizes and duplicate "
                    "rates, other draws of every dataset; the same 6200 training samples in all"),
}


STREAM_NAMES: Registry[StreamSpec] = Registry.of("built-in stream", STREAMS)


def _items(spec: DatasetSpec, n: int, rng: np.random.Generator, split: str,
           proto: Proto, item: ItemFn) -> list[tuple[Item, int, bool]]:
    """n items. Train: a share of them near-duplicates of earlier prototypes, a few wrong labels.
    Eval: every item a fresh prototype with its true label (a held-out split measures generalisation,
    not how often a few prototypes repeat)."""
    protos: list[dict[str, Any]] = []
    out = []
    for _ in range(n):
        if split == "train" and protos and rng.random() < spec.dup_rate:
            g = int(rng.integers(len(protos)))
        else:
            protos.append(proto(rng))
            g = len(protos) - 1
        it = item(protos[g], rng)
        noisy = False
        if split == "train" and it.needs_image and it.alternatives and rng.random() < NOISE_RATE:
            wrong = [a for a in it.alternatives if a != it.answer]
            it.answer = str(rng.choice(wrong))
            noisy = True
        out.append((it, g, noisy))
    return out


def _write_split(spec: DatasetSpec, out: Path, split: str, n: int, rng: np.random.Generator,
                 proto: Proto, item: ItemFn, bar: Any) -> None:
    """Write ``out/<split>.json`` and its PNGs (paths relative to ``out``)."""
    records = []
    for i, (it, group, noisy) in enumerate(_items(spec, n, rng, split, proto, item)):
        sid = f"{spec.name}-{split}-{i:06d}"
        rec: dict[str, Any] = {"id": sid}
        paths = []
        for k, img in enumerate(it.images):
            rel = f"images/{sid}.png" if len(it.images) == 1 else f"images/{sid}_{k}.png"
            img.save(out / rel, format="PNG")
            paths.append(rel)
        if len(paths) == 1:
            rec["image"] = paths[0]
        elif paths:
            rec["images"] = paths
        prefix = "<image>\n" * len(paths)
        rec["conversations"] = [{"from": "human", "value": prefix + it.question}, {"from": "gpt", "value": it.answer}]
        rec["meta"] = {"skill": it.skill, "template": it.template, "noisy": noisy, "needs_image": it.needs_image,
                       "rare": it.rare, "dup_group": group, **it.meta}
        records.append(rec)
        bar.update(1)
    write_text_atomic(out / f"{split}.json", json.dumps(records, ensure_ascii=False, indent=1) + "\n")


def _clear_images(folder: Path, name: str) -> None:
    """Remove PNGs of an earlier write (maybe at another scale), so the folder holds this write only."""
    for old in sorted((folder / "images").glob(f"{name}-*.png")):
        old.unlink()


def _split_size(spec: DatasetSpec, split: str, scale: float) -> int:
    """Train scales (rounded, at least 8); eval is fixed."""
    return max(8, int(round(spec.train_size * scale))) if split == "train" else spec.eval_size


def write_demo_stream(out_dir: str | Path, seed: int = 0, stream: str = "default", scale: float = 1.0,
                      progress: bool = True, stream_key: str = "stream.builtin", scale_key: str = "stream.scale") -> Path:
    """Write the stream into ``out_dir`` and return the path of ``out_dir/stream.json`` (``stream_key``,
    ``scale_key``: how an error names the arguments).

    Deterministic: the same ``seed``/``stream``/``scale`` give byte-identical files (one
    ``default_rng`` per dataset and split, no global RNG). ``scale`` multiplies train sizes only.
    """
    STREAM_NAMES.check(stream, stream_key)
    if not scale > 0:
        raise ConfigError(f"{scale_key} must be > 0 (it multiplies the train split sizes), got {scale}")
    from sklearn.datasets import load_digits

    out_dir = Path(out_dir)
    plan = STREAMS[stream]
    specs = {name: plan.spec(name, base) for name, base in _specs().items()}
    digits = load_digits()
    digit_pools = {"train": digit_indices("train", seed), "eval": digit_indices("eval", seed)}
    entries = []
    names = plan.datasets
    total = sum(_split_size(specs[n], s, scale) for n in names for s in ("train", "eval"))
    bar = tqdm(total=total, desc="demo data", unit="sample", disable=not progress)
    for name in names:
        spec = specs[name]
        d_index = DEMO_DATASETS.index(name)  # seeds follow the dataset, not its place in the stream
        bar.set_postfix_str(name)
        folder = out_dir / name
        (folder / "images").mkdir(parents=True, exist_ok=True)
        _clear_images(folder, name)
        for s_index, split in enumerate(("train", "eval")):
            n = _split_size(spec, split, scale)
            rng = plan.rng(seed, d_index, s_index)
            if name == "reasoning":
                proto = reasoning_proto_factory(digits, digit_pools[split])
                item = proto.item  # type: ignore[attr-defined]
            else:
                proto, item = spec.proto, spec.item
            _write_split(spec, folder, split, n, rng, proto, item, bar)
        entries.append({"name": name, "task": name, "metric": spec.metric, "train": f"{name}/train.json",
                        "eval": f"{name}/eval.json", "description": spec.description})
    bar.close()
    manifest = stream_manifest(out_dir)
    write_text_atomic(manifest, json.dumps({"name": stream, "seed": seed, "scale": scale, "datasets": entries},
                                           indent=1) + "\n")  # last: a folder without it is written again
    return manifest
