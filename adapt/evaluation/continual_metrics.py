"""Continual-learning metrics from the accuracy matrix (DESIGN.md, "Continual metrics").

``R[t][j]`` is the score on task ``j`` after training round ``t`` (T rounds done, N tasks);
task ``j`` is introduced at round ``j``; ``R0[j]`` is the score before any training.

- average accuracy      ``A   = mean_j R[T-1][j]``
- mean average accuracy ``MAA = mean_t mean_{j<=t} R[t][j]``
- backward transfer     ``BWT = mean_{j<T-1} (R[T-1][j] - R[j][j])``  (Lopez-Paz & Ranzato 2017, GEM)
- forgetting            ``F   = mean_{j<T-1} (max_{t in [j, T-2]} R[t][j] - R[T-1][j])``
  (Chaudhry et al. 2018, RWalk; max-based, so it is never below the drop from the best score)
- forward transfer      ``FWT = mean_{j>0} (R[j-1][j] - R0[j])``  (Lopez-Paz & Ranzato 2017, who
  compare with a randomly initialised model; here R0 is the model before continual training)
- relative score        ``100 * mean_j R[T-1][j] / Rref[j]`` against a reference run (multitask or
  full data), as in the Adapt-inf paper's "relative gain" tables.

Beyond DESIGN.md, for runs still going and for streams that are not one task per round:

- **Partial matrix** (T rows < N columns, T rounds done out of N): everything is computed on the
  rows available and ``A`` is the mean over the tasks seen so far (``j < T``, i.e. the last row's
  seen part). ``FWT`` uses every task whose "before" row exists, so it includes task ``T``
  (``R[T-1][T]`` is already measured); that term is the same once the run is finished.
- ``introduced[j]`` (keyword) gives the round at which task ``j`` is introduced when it is not
  ``j`` (several tasks in one round, or rounds without an evaluated task). The formulas above
  then read ``j <= t`` as ``introduced[j] <= t`` and ``R[j][j]`` as ``R[introduced[j]][j]``.
  With the default ``introduced[j] = j`` they are exactly DESIGN.md's.
- NaN entries (a task not evaluated in a round) are left out of every mean; a metric with
  nothing left to average is None.

**After round t** (:func:`metrics_after_round`, what a run logs each round and writes to
``metrics.json`` while it goes on) is the partial matrix of rows ``R[0..t]``: ``A`` over the tasks
seen so far (``j <= t``), ``MAA`` over rounds ``0..t``, ``BWT`` and ``F`` over the tasks introduced
before round ``t`` (``j < t``, with ``max`` over rounds ``[j, t-1]``), ``FWT`` over ``0 < j <= t+1``
(every term whose "before" row ``R[j-1]`` exists, as above), and ``F`` per task. After the last
round it is exactly the metrics of the whole run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

METRIC_KEYS = ("avg_accuracy", "maa", "bwt", "forgetting", "fwt")


def _mean(values: list[float]) -> float | None:
    vals = [v for v in values if not math.isnan(v)]
    return sum(vals) / len(vals) if vals else None


def _check(R: Sequence[Sequence[float]]) -> list[list[float]]:
    rows = [[float(v) if v is not None else math.nan for v in row] for row in R]
    if not rows:
        raise ValueError("the accuracy matrix has no rows (no round evaluated yet)")
    n = len(rows[0])
    if n == 0:
        raise ValueError("the accuracy matrix has no columns (no task)")
    for t, row in enumerate(rows):
        if len(row) != n:
            raise ValueError(f"accuracy matrix row {t} has {len(row)} scores, row 0 has {n}")
    return rows


def continual_metrics(
    R: Sequence[Sequence[float]],
    R0: Sequence[float] | None = None,
    *,
    introduced: Sequence[int] | None = None,
) -> dict[str, float | None]:
    """``avg_accuracy, maa, bwt, forgetting, fwt`` of the accuracy matrix (DESIGN.md).

    ``R`` has one row per round done (T) and one column per task (N); T < N is a run still
    going (see the module docstring). ``bwt`` and ``forgetting`` are None when no task was
    introduced before the last round (e.g. T == 1); ``fwt`` is None without ``R0`` or when no
    task after the first has a "before" row.
    """
    rows = _check(R)
    T, N = len(rows), len(rows[0])
    intro = list(range(N)) if introduced is None else [int(i) for i in introduced]
    if len(intro) != N:
        raise ValueError(f"introduced has {len(intro)} entries for {N} tasks")
    if any(i < 0 for i in intro):
        raise ValueError("introduced rounds must be >= 0")
    last = rows[T - 1]
    seen = [j for j in range(N) if intro[j] <= T - 1]

    # A: the last row over the tasks seen so far (all of them once the run is complete).
    avg = _mean([last[j] for j in seen])

    # MAA: per round, the mean over the tasks introduced up to that round; then mean over rounds.
    per_round = [_mean([rows[t][j] for j in range(N) if intro[j] <= t]) for t in range(T)]
    maa = _mean([m for m in per_round if m is not None])

    # BWT and F over tasks introduced before the last round.
    old = [j for j in range(N) if intro[j] < T - 1]
    bwt = _mean([last[j] - rows[intro[j]][j] for j in old])
    forgetting = _mean([f for f in forgetting_per_task(rows, intro) if f is not None])

    fwt = None
    if R0 is not None:
        r0 = [float(v) if v is not None else math.nan for v in R0]
        if len(r0) != N:
            raise ValueError(f"R0 has {len(r0)} scores for {N} tasks")
        fwt = _mean([rows[intro[j] - 1][j] - r0[j] for j in range(N) if 0 < intro[j] <= T])

    return {"avg_accuracy": avg, "maa": maa, "bwt": bwt, "forgetting": forgetting, "fwt": fwt}


def forgetting_per_task(R: Sequence[Sequence[float]], introduced: Sequence[int] | None = None) -> list[float | None]:
    """Per task ``max_{t in [intro_j, T-2]} R[t][j] - R[T-1][j]`` (DESIGN.md's F before the mean);
    None for a task introduced in the last round or later (NaN when it has no score before)."""
    rows = _check(R)
    T, N = len(rows), len(rows[0])
    intro = list(range(N)) if introduced is None else [int(i) for i in introduced]
    out: list[float | None] = []
    for j in range(N):
        if intro[j] >= T - 1:
            out.append(None)
            continue
        best = [rows[t][j] for t in range(intro[j], T - 1) if not math.isnan(rows[t][j])]
        out.append(max(best) - rows[T - 1][j] if best else math.nan)
    return out


def metrics_after_round(
    R: Sequence[Sequence[float]],
    R0: Sequence[float] | None = None,
    t: int | None = None,
    *,
    introduced: Sequence[int] | None = None,
) -> dict[str, float | None | list[float | None]]:
    """The continual metrics as they stood after round ``t`` (default: the last row of ``R``).

    :func:`continual_metrics` and :func:`forgetting_per_task` of the rows ``R[0..t]`` (see the
    module docstring, "After round t"): ``avg_accuracy, maa, bwt, forgetting, fwt`` and
    ``forgetting_per_task``, one entry per column of ``R`` (None for a task not introduced before
    round ``t``, NaN for one with no score before it).
    """
    rows = _check(R)
    t = len(rows) - 1 if t is None else int(t)
    if not 0 <= t < len(rows):
        raise ValueError(f"round {t} is not in the accuracy matrix (rounds 0..{len(rows) - 1})")
    upto = rows[: t + 1]
    return {**continual_metrics(upto, R0, introduced=introduced),
            "forgetting_per_task": forgetting_per_task(upto, introduced)}


def relative_score(final_row: Sequence[float], reference_row: Sequence[float]) -> float | None:
    """``100 * mean_j R[T-1][j] / Rref[j]`` (DESIGN.md), skipping tasks where ``Rref[j]`` is 0 or NaN.

    None when no task is left to compare.
    """
    if len(final_row) != len(reference_row):
        raise ValueError(f"final row has {len(final_row)} scores, reference row {len(reference_row)}")
    ratios = []
    for r, ref in zip(final_row, reference_row):
        r, ref = float(r), float(ref)
        if ref == 0 or math.isnan(ref) or math.isnan(r):
            continue
        ratios.append(r / ref)
    return 100.0 * sum(ratios) / len(ratios) if ratios else None
