"""Answer scorers: ``(prediction, reference) -> score in [0, 1]``, one per task metric.

A task names its scorer in the stream config (``metric: exact | numeric | iou``); the evaluator
(``adapt.evaluation.generation``) looks it up here. A new scorer is one line of registration::

    @ANSWER_SCORERS.register("contains")
    def contains(prediction: str, reference: str) -> float:
        return float(normalize_answer(reference) in normalize_answer(prediction))

Scorers never raise on odd model output: anything they cannot read scores 0.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable, Sequence

from adapt.registry import Registry

AnswerScorer = Callable[[str, str], float]

ANSWER_SCORERS: Registry[AnswerScorer] = Registry("answer scorer")

# A signed int or float with optional exponent. _NUMBER_THOUSANDS also reads the strict
# "1,234,567" form as one number (not when more digits or commas follow: "1,2345" is 1 then 2345).
_NUM_TAIL = r"(?:[eE][-+]?\d+)?"
_NUMBER = re.compile(r"(?<![\d.])[-+]?(?:\d+(?:\.\d*)?|\.\d+)" + _NUM_TAIL)
_NUMBER_THOUSANDS = re.compile(
    r"(?<![\d.])[-+]?(?:\d{1,3}(?:,\d{3})+(?![,\d])(?:\.\d*)?|\d+(?:\.\d*)?|\.\d+)" + _NUM_TAIL
)
_TRAILING_PUNCT = re.compile(r"[\s.!?]+$")
_SPACES = re.compile(r"\s+")

#: IoU threshold of the ``iou`` scorer (the usual referring-expression grounding criterion).
IOU_THRESHOLD = 0.5
# Float slack at the threshold, so a box pair whose IoU is 0.5 on paper is not lost to rounding.
_IOU_EPS = 1e-9


def normalize_answer(text: str) -> str:
    """Unicode NFC, lowercase, strip, drop trailing ``.!?``, collapse inner whitespace."""
    text = unicodedata.normalize("NFC", str(text)).lower().strip()
    text = _TRAILING_PUNCT.sub("", text)
    return _SPACES.sub(" ", text).strip()


def first_line(text: str) -> str:
    """The first non-empty line (generation often runs on after the answer)."""
    for line in str(text).splitlines():
        if line.strip():
            return line
    return ""


def parse_numbers(text: str, thousands: bool = False) -> list[float]:
    """Every number in ``text``, in order (finite values only).

    With ``thousands`` a strict "1,234,567" reads as one number; without it (boxes, lists)
    commas always separate numbers.
    """
    pattern = _NUMBER_THOUSANDS if thousands else _NUMBER
    out = []
    for m in pattern.finditer(unicodedata.normalize("NFKC", str(text)).replace("\u2212", "-")):
        try:
            v = float(m.group(0).replace(",", ""))
        except ValueError:  # pragma: no cover - the pattern only matches parseable numbers
            continue
        if math.isfinite(v):
            out.append(v)
    return out


def parse_number(text: str) -> float | None:
    """The first number in ``text`` ("1,000" reads as 1000), or None."""
    nums = parse_numbers(text, thousands=True)
    return nums[0] if nums else None


def parse_box(text: str) -> tuple[float, float, float, float] | None:
    """The first four numbers of ``text`` as ``(x1, y1, x2, y2)``, or None if there are fewer."""
    nums = parse_numbers(text)
    if len(nums) < 4:
        return None
    x1, y1, x2, y2 = nums[:4]
    return (x1, y1, x2, y2)


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two ``(x1, y1, x2, y2)`` boxes; 0 for a degenerate box.

    A box is degenerate when it has not exactly four finite coordinates or ``x2 <= x1`` or
    ``y2 <= y1`` (zero or negative area).
    """
    if len(a) != 4 or len(b) != 4:
        return 0.0
    if not all(math.isfinite(float(v)) for v in (*a, *b)):
        return 0.0
    ax1, ay1, ax2, ay2 = (float(v) for v in a)
    bx1, by1, bx2, by2 = (float(v) for v in b)
    if ax2 <= ax1 or ay2 <= ay1 or bx2 <= bx1 or by2 <= by1:
        return 0.0
    iw = min(ax2, bx2) - max(ax1, bx1)
    ih = min(ay2, by2) - max(ay1, by1)
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter
    return inter / union if union > 0 else 0.0


@ANSWER_SCORERS.register("exact")
def exact_match(prediction: str, reference: str) -> float:
    """Normalised exact match (see :func:`normalize_answer`).

    The prediction's first non-empty line is compared, so trailing junk after a newline is
    ignored; the whole prediction is accepted too, for references that span lines.
    """
    ref = normalize_answer(reference)
    if normalize_answer(first_line(prediction)) == ref:
        return 1.0
    return 1.0 if normalize_answer(prediction) == ref else 0.0


@ANSWER_SCORERS.register("numeric")
def numeric_match(prediction: str, reference: str) -> float:
    """1 if the first numbers of prediction and reference agree within ``1e-6 * max(1, |ref|)``."""
    a = parse_number(prediction)
    b = parse_number(reference)
    if a is None or b is None:
        return 0.0
    return 1.0 if abs(a - b) <= 1e-6 * max(1.0, abs(b)) else 0.0


@ANSWER_SCORERS.register("iou")
def iou_match(prediction: str, reference: str) -> float:
    """1 if the boxes ``"[x1, y1, x2, y2]"`` in prediction and reference overlap with IoU >= 0.5.

    Unreadable or degenerate boxes score 0.
    """
    a = parse_box(prediction)
    b = parse_box(reference)
    if a is None or b is None:
        return 0.0
    return 1.0 if box_iou(a, b) >= IOU_THRESHOLD - _IOU_EPS else 0.0


def score_answers(metric: str, predictions: Sequence[str], references: Sequence[str]) -> float:
    """Mean score of ``metric``'s scorer over paired predictions and references (NaN if empty)."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    scorer = ANSWER_SCORERS.get(metric)
    if not predictions:
        return float("nan")
    return sum(float(scorer(p, r)) for p, r in zip(predictions, references)) / len(predictions)


def best_constant(metric: str, references: Sequence[str]) -> tuple[str, float]:
    """Chance level of a task: the one answer that, given to every sample, scores best (tried over
    the references themselves), and that score. Ties go to the answer seen first."""
    best, best_score = "", float("nan")
    for cand in dict.fromkeys(references):
        score = score_answers(metric, [cand] * len(references), references)
        if not best or score > best_score:
            best, best_score = cand, score
    return best, best_score
