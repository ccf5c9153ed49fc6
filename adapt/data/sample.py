"""The ``Sample`` record: one visual-instruction example in the LLaVA conversation format."""

from __future__ import annotations

import json
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any

HUMAN = "human"
GPT = "gpt"
IMAGE_TOKEN = "<image>"
SYSTEM_FIELD = "system"  # the key of a sample's own system prompt in ``Sample.extra``


@dataclass(frozen=True)
class Sample:
    """One training or evaluation example.

    ``uid`` is stable across runs and machines: ``f"{dataset}/{id}"``, and for a record whose id an
    earlier record of the dataset already has, ``f"{dataset}/{id}#{n}"`` with ``n`` its position in
    the file (0-based); ``id`` is the source record's id as given.
    ``images`` are absolute paths (resolved at read time, always inside the dataset's root, or in
    the run's store of embedded images).
    ``conversations`` keeps the LLaVA turns: ``[{"from": "human"|"gpt", "value": str}, ...]``;
    a human turn refers to images with ``<image>`` placeholders (one per image, in order).
    ``task`` is the task label (the dataset's task name by default; TIVE and reports group by it).
    ``extra`` keeps every other field of the source record untouched.
    """

    uid: str
    dataset: str
    id: str
    conversations: tuple[dict[str, str], ...]
    images: tuple[str, ...] = ()
    task: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def has_image(self) -> bool:
        return len(self.images) > 0

    @property
    def system(self) -> str | None:
        """The sample's own system prompt (a system turn or field of its record), if any."""
        value = self.extra.get(SYSTEM_FIELD)
        return value if isinstance(value, str) and value else None

    @property
    def num_turns(self) -> int:
        """Number of (human, gpt) exchanges."""
        return sum(1 for t in self.conversations if t["from"] == GPT)

    @property
    def first_question(self) -> str:
        return next(t["value"] for t in self.conversations if t["from"] == HUMAN)

    @property
    def last_answer(self) -> str:
        return [t["value"] for t in self.conversations if t["from"] == GPT][-1]

    def to_llava(self) -> dict[str, Any]:
        """The record in LLaVA format (absolute image paths)."""
        rec: dict[str, Any] = dict(self.extra)
        rec["id"] = self.id
        if len(self.images) == 1:
            rec["image"] = self.images[0]
        elif len(self.images) > 1:
            rec["images"] = list(self.images)
        rec["conversations"] = [dict(t) for t in self.conversations]
        return rec

    def to_json(self, base: Path | None = None) -> str:
        """Serialised form stored in the pool's ``record`` column; image files inside ``base`` (the
        pool's own store of embedded images) are named relative to it, so the pool can move."""
        images = list(self.images)
        if base is not None:
            images = [_relative_to(p, base) for p in images]
        return json.dumps(
            {
                "uid": self.uid,
                "dataset": self.dataset,
                "id": self.id,
                "task": self.task,
                "images": images,
                "conversations": [dict(t) for t in self.conversations],
                "extra": self.extra,
            },
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, text: str, base: Path | None = None) -> "Sample":
        """The inverse of :meth:`to_json`: relative image paths are resolved against ``base``."""
        d = json.loads(text)
        images = d["images"] if base is None else [str(base / p) if not Path(p).is_absolute() else p
                                                    for p in d["images"]]
        return cls(
            uid=d["uid"],
            dataset=d["dataset"],
            id=d["id"],
            conversations=tuple(d["conversations"]),
            images=tuple(images),
            task=d.get("task", d["dataset"]),
            extra=d.get("extra", {}),
        )


def make_uid(dataset: str, sample_id: str, repeat_at: int | None = None) -> str:
    """``dataset/id``; for a record whose id an earlier one already has, ``dataset/id#n`` (``n``: its
    position in the file), so that a pool's uids are unique and stable across re-ingests."""
    return f"{dataset}/{sample_id}" if repeat_at is None else f"{dataset}/{sample_id}#{repeat_at}"


def _relative_to(image: str, base: Path) -> str:
    p = Path(image)
    return str(p.relative_to(base)) if p.is_absolute() and p.is_relative_to(base) else image
