"""The chat layouts a record may use, turned into one: LLaVA turns, images in order, a system prompt.

Two layouts are read:

- **LLaVA / ShareGPT** ``conversations``: ``[{"from": "human"|"gpt", "value": str}, ...]``; the
  ShareGPT spellings ``user``/``assistant`` are the same roles, and a leading ``system`` turn is the
  sample's system prompt. Images are the record's ``image``/``images``, referred to by ``<image>``.
- **OpenAI / HF chat** ``messages``: ``[{"role": "system"|"user"|"assistant", "content": ...}]``,
  where ``content`` is a string (``<image>`` placeholders refer to the record's ``images``, as
  LLaMA-Factory writes them) or a list of parts: ``{"type": "text", "text": ...}``, ``{"type":
  "image", "image"|"path"|"url": ...}``, ``{"type": "image_url", "image_url": {"url": ...}}``; an
  image part without a source takes the next of the record's ``images`` (TRL's layout).

A top-level ``system`` string is the system prompt too (LLaMA-Factory). The prompt is kept in
``Sample.extra["system"]``, and the model's chat template puts it where the family puts one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adapt.data.describe import a_json_type as _a_json_type
from adapt.data.describe import short as _short
from adapt.data.sample import GPT, HUMAN, IMAGE_TOKEN, SYSTEM_FIELD
from adapt.errors import DataError

__all__ = ["LAYOUTS", "Chat", "read_chat", "rebase_images", "record_images"]

ROLE_NAMES = {"human": HUMAN, "user": HUMAN, "gpt": GPT, "assistant": GPT}
SYSTEM_ROLE = "system"
LAYOUTS = ("'conversations' (LLaVA/ShareGPT: [{\"from\": \"human\"|\"gpt\", \"value\": ...}, ...])",
           "'messages' (OpenAI/HF chat: [{\"role\": \"user\"|\"assistant\"|\"system\", \"content\": ...}, ...])")
IMAGE_PART_KEYS = ("image", "path", "url")


@dataclass
class Chat:
    """A record's chat in LLaVA turns (``<image>`` placeholders in order), its images as given
    (paths, ``{"bytes", "path"}`` structs or data URLs), and the fields it used up."""

    turns: list[dict[str, str]]
    images: list[Any]
    system: str | None = None
    used: tuple[str, ...] = field(default_factory=tuple)


def _as_list(value: Any, name: str, path: Path, sample: str) -> list[Any]:
    if isinstance(value, str):  # Parquet / datasets may store the turns as a JSON string
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise DataError(path, f"field {name!r} is a string but not valid JSON: {exc.msg}", sample=sample) from None
    if isinstance(value, tuple):
        value = list(value)
    if not isinstance(value, list):
        raise DataError(path, f"field {name!r} must be a list of turns, got {_a_json_type(value)}", sample=sample)
    if not value:
        raise DataError(path, f"field {name!r} is empty", sample=sample)
    return value


def record_images(rec: dict[str, Any], path: Path, sample: str) -> list[Any]:
    """The record's ``image`` (one) or ``images`` (a list): paths or ``{"bytes", "path"}`` structs."""
    present = [k for k in ("image", "images") if rec.get(k) is not None]
    if len(present) == 2:
        raise DataError(path, "has both 'image' and 'images': give one of them", sample=sample)
    if not present:
        return []
    value = rec[present[0]]
    if isinstance(value, (str, dict, bytes, bytearray)):
        return [value]
    if isinstance(value, (list, tuple)):
        return list(value)
    raise DataError(path, f"field {present[0]!r} must be an image or a list of images (paths, or "
                          f"{{'bytes', 'path'}} structs), got {_a_json_type(value)}", sample=sample)


def _system(turns: list[tuple[str, str]], rec: dict[str, Any], path: Path, sample: str) -> str | None:
    """The system prompt: a leading system turn, or the record's ``system`` field (not both)."""
    from_turn = turns.pop(0)[1] if turns and turns[0][0] == SYSTEM_ROLE else None
    if any(role == SYSTEM_ROLE for role, _ in turns):
        k = next(i for i, (role, _) in enumerate(turns) if role == SYSTEM_ROLE) + (from_turn is not None)
        raise DataError(path, f"turn {k}: a system turn may only come first", sample=sample)
    from_field = rec.get(SYSTEM_FIELD)
    if from_field is not None and not isinstance(from_field, str):
        raise DataError(path, f"field {SYSTEM_FIELD!r} must be a string, got {_a_json_type(from_field)}", sample=sample)
    if from_turn is not None and from_field:
        raise DataError(path, f"has a system turn and a {SYSTEM_FIELD!r} field: give one of them", sample=sample)
    return from_turn if from_turn is not None else (from_field or None)


def _role(raw: Any, k: int, path: Path, sample: str) -> str:
    if raw == SYSTEM_ROLE:
        return SYSTEM_ROLE
    if raw not in ROLE_NAMES:
        raise DataError(path, f"turn {k}: unknown role {raw!r} (allowed roles: human/user, gpt/assistant, "
                              "system)", sample=sample)
    return ROLE_NAMES[raw]


def _llava(rec: dict[str, Any], path: Path, sample: str) -> Chat:
    conv = _as_list(rec["conversations"], "conversations", path, sample)
    turns: list[tuple[str, str]] = []
    for k, t in enumerate(conv):
        if not isinstance(t, dict) or "from" not in t or "value" not in t:
            raise DataError(path, f"turn {k} must be an object with 'from' and 'value', got {_short(t)}",
                            sample=sample)
        if not isinstance(t["value"], str):
            raise DataError(path, f"turn {k}: 'value' must be a string, got {_a_json_type(t['value'])}",
                            sample=sample)
        turns.append((_role(t["from"], k, path, sample), t["value"]))
    system = _system(turns, rec, path, sample)
    return Chat([{"from": r, "value": v} for r, v in turns], record_images(rec, path, sample), system,
                ("conversations", "image", "images", SYSTEM_FIELD))


def _part_source(part: dict[str, Any]) -> Any:
    """An image part's source (path, struct, data URL), or None when it takes the record's next image."""
    if part.get("type") == "image_url":
        url = part.get("image_url")
        return url.get("url") if isinstance(url, dict) else url
    return next((part[k] for k in IMAGE_PART_KEYS if part.get(k) is not None), None)


def _messages(rec: dict[str, Any], path: Path, sample: str) -> Chat:
    msgs = _as_list(rec["messages"], "messages", path, sample)
    listed = record_images(rec, path, sample)
    images: list[Any] = []
    turns: list[tuple[str, str]] = []

    def take_listed(k: int) -> Any:
        if len(images) - n_inline[0] >= len(listed):
            raise DataError(path, f"message {k}: more images referred to than the record's {len(listed)} "
                                  "'images'", sample=sample)
        return listed[len(images) - n_inline[0]]

    n_inline = [0]
    for k, m in enumerate(msgs):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise DataError(path, f"message {k} must be an object with 'role' and 'content', got {_short(m)}",
                            sample=sample)
        role = _role(m["role"], k, path, sample)
        content = m["content"]
        if isinstance(content, str):
            for _ in range(content.count(IMAGE_TOKEN) if role == HUMAN else 0):
                images.append(take_listed(k))
            turns.append((role, content))
            continue
        if not isinstance(content, (list, tuple)):
            raise DataError(path, f"message {k}: 'content' must be a string or a list of parts, got "
                                  f"{_a_json_type(content)}", sample=sample)
        pieces: list[str] = []
        for j, part in enumerate(content):
            part = {a: b for a, b in part.items() if b is not None} if isinstance(part, dict) else part
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text" and isinstance(part.get("text"), str):
                pieces.append(part["text"])
            elif kind in ("image", "image_url"):
                source = _part_source(part)
                if source is None:
                    images.append(take_listed(k))
                else:
                    images.append(source)
                    n_inline[0] += 1
                pieces.append(IMAGE_TOKEN)
            else:
                raise DataError(path, f"message {k}, part {j}: expected {{'type': 'text', 'text': ...}} or an image "
                                      f"part ({{'type': 'image'|'image_url', ...}}), got {_short(part)}", sample=sample)
        turns.append((role, "\n".join(pieces)))
    if n_inline[0] and listed and len(images) - n_inline[0] < len(listed):
        raise DataError(path, f"{len(listed) - (len(images) - n_inline[0])} of the record's 'images' are not "
                              "referred to by any message", sample=sample)
    images.extend(listed[len(images) - n_inline[0]:])  # left for the placeholder check to judge
    system = _system(turns, rec, path, sample)
    return Chat([{"from": r, "value": v} for r, v in turns], images, system,
                ("messages", "image", "images", SYSTEM_FIELD))


def read_chat(rec: dict[str, Any], path: Path, sample: str) -> Chat:
    """A record's chat in LLaVA turns, whichever layout it uses; a DataError naming what is wrong."""
    has = [k for k in ("conversations", "messages") if rec.get(k) is not None]
    if len(has) == 2:
        raise DataError(path, "has both 'conversations' and 'messages': give one of them", sample=sample)
    if not has:
        raise DataError(path, f"no chat: a record needs {LAYOUTS[0]} or {LAYOUTS[1]}", sample=sample)
    return _llava(rec, path, sample) if has[0] == "conversations" else _messages(rec, path, sample)


def _rebased(value: Any, root: Path) -> Any:
    """An image path relative to ``root`` made absolute; anything else (absolute paths, embedded
    bytes, data and web URLs) as it is."""
    if not isinstance(value, str) or not value or value.startswith(("data:", "http://", "https://", "file://")):
        return value
    p = Path(value).expanduser()
    return value if p.is_absolute() else str((root / p).resolve())


def rebase_images(rec: Any, root: Path) -> Any:
    """The record with its relative image paths (``image``, ``images``, image parts of ``messages``)
    made absolute against ``root``: what a record needs to be read from another folder."""
    if not isinstance(rec, dict):
        return rec
    out = dict(rec)
    for key in ("image", "images"):
        value = out.get(key)
        if isinstance(value, (list, tuple)):
            out[key] = [_rebased(v, root) for v in value]
        elif value is not None:
            out[key] = _rebased(value, root)
    msgs = out.get("messages")
    if isinstance(msgs, (list, tuple)):
        out["messages"] = [_rebase_message(m, root) for m in msgs]
    return out


def _rebase_message(m: Any, root: Path) -> Any:
    if not isinstance(m, dict) or not isinstance(m.get("content"), (list, tuple)):
        return m
    parts = []
    for part in m["content"]:
        if isinstance(part, dict) and part.get("type") == "image_url" and isinstance(part.get("image_url"), dict):
            part = {**part, "image_url": {**part["image_url"], "url": _rebased(part["image_url"].get("url"), root)}}
        elif isinstance(part, dict) and part.get("type") in ("image", "image_url"):
            part = {k: _rebased(v, root) if k in (*IMAGE_PART_KEYS, "image_url") else v for k, v in part.items()}
        parts.append(part)
    return {**m, "content": parts}
