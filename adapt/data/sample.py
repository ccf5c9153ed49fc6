"""The ``Sample`` record: one visual-instruction example in the LLaVA conversation format."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

HUMAN = "human"
GPT = "gpt"
IMAGE_TOKEN = "<image>"


@dataclass(frozen=True)
class Sample:
    """One training or evaluation example.

    ``uid`` is stable across runs and machines: ``f"{dataset}/{id}"``.
    ``images`` are absolute paths (resolved at read time, always inside the dataset's root).
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

    def to_json(self) -> str:
        """Serialised form stored in the pool's ``record`` column."""
        return json.dumps(
            {
                "uid": self.uid,
                "dataset": self.dataset,
                "id": self.id,
                "task": self.task,
                "images": list(self.images),
                "conversations": [dict(t) for t in self.conversations],
                "extra": self.extra,
            },
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, text: str) -> "Sample":
        d = json.loads(text)
        return cls(
            uid=d["uid"],
            dataset=d["dataset"],
            id=d["id"],
            conversations=tuple(d["conversations"]),
            images=tuple(d["images"]),
            task=d.get("task", d["dataset"]),
            extra=d.get("extra", {}),
        )


def make_uid(dataset: str, sample_id: str) -> str:
    return f"{dataset}/{sample_id}"
