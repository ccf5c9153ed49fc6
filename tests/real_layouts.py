"""A corpus of datasets laid out exactly as the public visual-instruction sets are, a few records each.

Each :class:`Layout` holds the file (or folder) as its source publishes it and, written by hand, the
samples ``adapt`` must read from it: uid, turns (LLaVA roles, ``<image>`` placeholders where the
images go), the images (by their bytes), the system prompt. The layouts:

- ``llava_665k``: ``llava_v1_5_mix665k.json``: a JSON list; the COCO image id is the record id, so
  records of one image repeat it; multi-turn; text-only ShareGPT records with a ``model`` field.
- ``sharegpt4v``: ShareGPT4V's JSON (long captions, the placeholder after the question).
- ``cambrian``: Cambrian-style JSONL; ``image`` as a list for a multi-image record.
- ``openai_messages``: OpenAI chat JSONL: no ids, a system message, ``image_url`` parts holding a
  path or a ``data:`` URL, content as a string or as parts.
- ``trl_messages``: TRL's vision layout as Hub Parquet (``llava-instruct-mix-vsft``): ``messages``
  with ``{"type": "image"}`` parts and an ``images`` column of ``datasets.Image()`` bytes.
- ``hf_image_bytes``: a ``save_to_disk`` folder with an ``image`` column of ``datasets.Image()``
  (the bytes in the Arrow file), with an eval split laid out the same way.
- ``hf_parquet_bytes``: the same rows as Hub Parquet (``{"bytes", "path"}`` structs).
- ``sharegpt_text``: text-only ShareGPT with ``system``/``user``/``assistant`` roles.
- ``llamafactory``: LLaMA-Factory's ``mllm_demo.json``: ``messages`` with ``<image>`` in the text,
  an ``images`` list, a ``system`` field.
- ``hf_dict_multi_image``: a ``DatasetDict`` folder (``train`` split), ``images`` a list of
  ``datasets.Image()``.
"""

from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

H, G = "human", "gpt"


@dataclass
class Expected:
    """One sample as adapt must read it."""

    uid: str
    turns: list[tuple[str, str]]
    images: list[bytes] = field(default_factory=list)  # the bytes of each image file, in order
    system: str | None = None


@dataclass
class Layout:
    name: str
    train: Path
    expected: list[Expected]
    eval: Path | None = None
    embedded: int = 0  # images that come as bytes or data URLs
    repeated_ids: int = 0


def image_bytes(seed: int, fmt: str = "PNG", size: int = 16) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(buf, format=fmt)
    return buf.getvalue()


def _file(root: Path, rel: str, data: bytes) -> str:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return rel


def _json(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(records, indent=1))
    return path


def _jsonl(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _pil(data: bytes) -> dict:
    """An image as ``datasets.Image()`` stores given bytes: as they are, no path."""
    return {"bytes": data, "path": None}


def llava_665k(root: Path) -> Layout:
    d = root / "llava_665k"
    bus, book = image_bytes(1, "JPEG"), image_bytes(2, "JPEG")
    bus_rel = _file(d, "coco/train2017/000000033471.jpg", bus)
    book_rel = _file(d, "ocr_vqa/images/71mY0Kq9bqL.jpg", book)
    records = [
        {"id": "000000033471", "image": bus_rel, "conversations": [
            {"from": H, "value": "<image>\nWhat are the colors of the bus in the image?"},
            {"from": G, "value": "The bus in the image is white and red."},
            {"from": H, "value": "What feature can be seen on the back of the bus?"},
            {"from": G, "value": "The back of the bus features an advertisement."}]},
        {"id": "000000033471", "image": bus_rel, "conversations": [
            {"from": H, "value": "Is the bus driving down the street or pulled off to the side?\n<image>"},
            {"from": G, "value": "The bus is driving down the street."}]},
        {"id": "i6IyJda_0", "model": "", "conversations": [
            {"from": H, "value": "How to tell if a customer segment is well segmented? In 3 bullet points."},
            {"from": G, "value": "1. Homogeneity 2. Distinctiveness 3. Stability"}]},
        {"id": "71mY0Kq9bqL", "image": book_rel, "conversations": [
            {"from": H, "value": "Who wrote this book?"}, {"from": G, "value": "Unknown"}]},
    ]
    train = _json(d / "llava_v1_5_mix665k.json", records)
    ev = _json(d / "eval.json", [{"id": "e0", "image": bus_rel, "conversations": [
        {"from": H, "value": "<image>\nWhat colour is the bus?"}, {"from": G, "value": "white and red"}]}])
    n = "llava_665k"
    return Layout(n, train, [
        Expected(f"{n}/000000033471", [(H, "<image>\nWhat are the colors of the bus in the image?"),
                                       (G, "The bus in the image is white and red."),
                                       (H, "What feature can be seen on the back of the bus?"),
                                       (G, "The back of the bus features an advertisement.")], [bus]),
        Expected(f"{n}/000000033471#1", [(H, "Is the bus driving down the street or pulled off to the side?\n<image>"),
                                         (G, "The bus is driving down the street.")], [bus]),
        Expected(f"{n}/i6IyJda_0", [(H, "How to tell if a customer segment is well segmented? In 3 bullet points."),
                                    (G, "1. Homogeneity 2. Distinctiveness 3. Stability")]),
        Expected(f"{n}/71mY0Kq9bqL", [(H, "<image>\nWho wrote this book?"), (G, "Unknown")], [book]),
    ], eval=ev, repeated_ids=1)


def sharegpt4v(root: Path) -> Layout:
    d = root / "sharegpt4v"
    a, b = image_bytes(3, "JPEG"), image_bytes(4, "JPEG")
    records = [{"id": f"sa_{i}", "image": _file(d, f"sam/images/sa_{i}.jpg", img), "conversations": [
        {"from": H, "value": "What do you see happening in this image?\n<image>"},
        {"from": G, "value": f"The image shows scene {i}, a wide street with trees on both sides."}]}
        for i, img in ((1, a), (2, b))]
    n = "sharegpt4v"
    return Layout(n, _json(d / "share-captioner_coco_lcs_sam_1246k_1107.json", records), [
        Expected(f"{n}/sa_{i}", [(H, "What do you see happening in this image?\n<image>"),
                                 (G, f"The image shows scene {i}, a wide street with trees on both sides.")], [img])
        for i, img in ((1, a), (2, b))])


def cambrian(root: Path) -> Layout:
    d = root / "cambrian"
    a, b, c = image_bytes(5), image_bytes(6), image_bytes(7)
    ra, rb, rc = (_file(d, f"m4/{k}.png", x) for k, x in (("a", a), ("b", b), ("c", c)))
    records = [
        {"id": "m4_0", "image": [ra, rb], "source": "m4_instruct", "conversations": [
            {"from": H, "value": "<image>\n<image>\nWhat changed between the two images?"},
            {"from": G, "value": "The colours."}]},
        {"id": "chart_1", "image": rc, "source": "chartqa", "conversations": [
            {"from": H, "value": "<image>\nWhat is the highest value?"}, {"from": G, "value": "42"}]},
    ]
    n = "cambrian"
    return Layout(n, _jsonl(d / "Cambrian7M_withsystemprompt.jsonl", records), [
        Expected(f"{n}/m4_0", [(H, "<image>\n<image>\nWhat changed between the two images?"), (G, "The colours.")],
                 [a, b]),
        Expected(f"{n}/chart_1", [(H, "<image>\nWhat is the highest value?"), (G, "42")], [c]),
    ])


def openai_messages(root: Path) -> Layout:
    d = root / "openai_messages"
    a, b = image_bytes(8), image_bytes(9)
    url = "data:image/png;base64," + base64.b64encode(b).decode()
    system = "You are a careful visual assistant."
    records = [
        {"messages": [
            {"role": "system", "content": system},
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": _file(d, "images/q1.png", a)}},
                                         {"type": "text", "text": "What is shown?"}]},
            {"role": "assistant", "content": "A square of noise."},
            {"role": "user", "content": "Is it colourful?"},
            {"role": "assistant", "content": [{"type": "text", "text": "Yes."}]}]},
        {"messages": [
            {"role": "user", "content": [{"type": "text", "text": "Describe it."},
                                         {"type": "image_url", "image_url": {"url": url}}]},
            {"role": "assistant", "content": "Noise."}]},
    ]
    n = "openai_messages"
    return Layout(n, _jsonl(d / "chat.jsonl", records), [
        Expected(f"{n}/0", [(H, "<image>\nWhat is shown?"), (G, "A square of noise."), (H, "Is it colourful?"),
                            (G, "Yes.")], [a], system),
        Expected(f"{n}/1", [(H, "Describe it.\n<image>"), (G, "Noise.")], [b]),
    ], embedded=1)


def trl_messages(root: Path) -> Layout:
    from datasets import Dataset, Image as HFImage, Sequence

    d = root / "trl_messages"
    d.mkdir(parents=True, exist_ok=True)
    a, b = image_bytes(10), image_bytes(11)
    rows = {"messages": [
        [{"role": "user", "content": [{"type": "image", "text": None}, {"type": "text", "text": "What is this?"}]},
         {"role": "assistant", "content": [{"type": "text", "text": "A test card."}]}],
        [{"role": "user", "content": [{"type": "text", "text": "Compare:"}, {"type": "image", "text": None},
                                      {"type": "image", "text": None}]},
         {"role": "assistant", "content": [{"type": "text", "text": "Both noisy."}]}],
    ], "images": [[_pil(a)], [_pil(b), _pil(a)]]}
    ds = Dataset.from_dict(rows).cast_column("images", Sequence(HFImage()))
    path = d / "train-00000-of-00001.parquet"
    ds.to_parquet(str(path))
    n = "trl_messages"
    return Layout(n, path, [
        Expected(f"{n}/0", [(H, "<image>\nWhat is this?"), (G, "A test card.")], [a]),
        Expected(f"{n}/1", [(H, "Compare:\n<image>\n<image>"), (G, "Both noisy.")], [b, a]),
    ], embedded=3)


def _image_rows(seed: int) -> tuple[dict, list[Expected], list[bytes]]:
    imgs = [image_bytes(seed + k) for k in range(3)]
    conv = [[{"from": H, "value": f"<image>\nWhat number is this? ({k})"}, {"from": G, "value": str(k)}]
            for k in range(3)]
    return ({"id": [f"q{k}" for k in range(3)], "image": [_pil(x) for x in imgs], "conversations": conv},
            [[(H, f"<image>\nWhat number is this? ({k})"), (G, str(k))] for k in range(3)], imgs)


def hf_image_bytes(root: Path) -> Layout:
    from datasets import Dataset, Image as HFImage

    d = root / "hf_image_bytes"
    rows, turns, imgs = _image_rows(20)
    Dataset.from_dict(rows).cast_column("image", HFImage()).save_to_disk(str(d / "train"))
    ev_rows, _, _ = _image_rows(30)
    Dataset.from_dict(ev_rows).cast_column("image", HFImage()).save_to_disk(str(d / "eval"))
    n = "hf_image_bytes"
    return Layout(n, d / "train", [Expected(f"{n}/q{k}", turns[k], [imgs[k]]) for k in range(3)],
                  eval=d / "eval", embedded=3)


def hf_parquet_bytes(root: Path) -> Layout:
    from datasets import Dataset, Image as HFImage

    d = root / "hf_parquet_bytes"
    d.mkdir(parents=True, exist_ok=True)
    rows, turns, imgs = _image_rows(40)
    path = d / "train-00000-of-00001.parquet"
    Dataset.from_dict(rows).cast_column("image", HFImage()).to_parquet(str(path))
    n = "hf_parquet_bytes"
    return Layout(n, path, [Expected(f"{n}/q{k}", turns[k], [imgs[k]]) for k in range(3)], embedded=3)


def sharegpt_text(root: Path) -> Layout:
    system = "You are a concise assistant."
    records = [
        {"id": "t0", "conversations": [{"from": "system", "value": system}, {"from": "user", "value": "Hi"},
                                       {"from": "assistant", "value": "Hello."}, {"from": "user", "value": "2+2?"},
                                       {"from": "assistant", "value": "4"}]},
        {"id": "t1", "conversations": [{"from": "user", "value": "Capital of France?"},
                                       {"from": "assistant", "value": "Paris"}]},
    ]
    n = "sharegpt_text"
    return Layout(n, _json(root / n / "sharegpt.json", records), [
        Expected(f"{n}/t0", [(H, "Hi"), (G, "Hello."), (H, "2+2?"), (G, "4")], [], system),
        Expected(f"{n}/t1", [(H, "Capital of France?"), (G, "Paris")]),
    ])


def llamafactory(root: Path) -> Layout:
    d = root / "llamafactory"
    a, b = image_bytes(50, "JPEG"), image_bytes(51, "JPEG")
    system = "You are a helpful assistant."
    records = [{"messages": [
        {"role": "user", "content": "<image>Who are they?"}, {"role": "assistant", "content": "Two players."},
        {"role": "user", "content": "What are they doing?<image>"},
        {"role": "assistant", "content": "Celebrating."}],
        "images": [_file(d, "mllm_demo_data/1.jpg", a), _file(d, "mllm_demo_data/1a.jpg", b)], "system": system}]
    n = "llamafactory"
    return Layout(n, _json(d / "mllm_demo.json", records), [
        Expected(f"{n}/0", [(H, "<image>Who are they?"), (G, "Two players."), (H, "What are they doing?<image>"),
                            (G, "Celebrating.")], [a, b], system)])


def hf_dict_multi_image(root: Path) -> Layout:
    from datasets import Dataset, DatasetDict, Image as HFImage, Sequence

    d = root / "hf_dict_multi_image"
    a, b, c = image_bytes(60), image_bytes(61), image_bytes(62)
    rows = {"id": ["p0", "p1"], "images": [[_pil(a), _pil(b)], [_pil(c)]], "conversations": [
        [{"from": H, "value": "<image>\n<image>\nWhich is brighter?"}, {"from": G, "value": "The first."}],
        [{"from": H, "value": "<image>\nDescribe."}, {"from": G, "value": "Noise."}]]}
    ds = Dataset.from_dict(rows).cast_column("images", Sequence(HFImage()))
    DatasetDict({"train": ds}).save_to_disk(str(d))
    n = "hf_dict_multi_image"
    return Layout(n, d, [
        Expected(f"{n}/p0", [(H, "<image>\n<image>\nWhich is brighter?"), (G, "The first.")], [a, b]),
        Expected(f"{n}/p1", [(H, "<image>\nDescribe."), (G, "Noise.")], [c]),
    ], embedded=3)


LAYOUTS = (llava_665k, sharegpt4v, cambrian, openai_messages, trl_messages, hf_image_bytes, hf_parquet_bytes,
           sharegpt_text, llamafactory, hf_dict_multi_image)


def write_corpus(root: Path) -> list[Layout]:
    """Every layout, written under ``root``."""
    return [make(root) for make in LAYOUTS]
