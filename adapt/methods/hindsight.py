"""``hindsight``: our continual selector (not from a paper), built on what the lifelong loop knows
and a one-shot selector does not: every round re-scores the whole pool with the current model, so
each sample has a loss history, and the run knows what it trained on. Five parts, each switchable
(``selection.hindsight``, :class:`~adapt.config.HindsightSettings`) for ablation:

1. **Noise** (``noise``): a sample trained last round whose loss is still far above that of the
   task's other samples trained last round is what a wrong label looks like (training dynamics:
   mislabelled samples are the ones training does not fit, AUM, Pleiss et al. 2020, arXiv
   2001.10528; forgetting events, Toneva et al. 2019, arXiv 1812.05159). Among a task's samples
   trained in round t−1, z = (log ℓ − median) / (1.4826 · MAD) of their loss ℓ under the model
   after round t−1 (the round's gradient pass, ``features.adapter: previous``); z ≥ ``threshold``
   flags the sample for good: it is never selected again and is pruned first.
2. **Budget by need** (``budget``): task t (of pool share p_t, mean loss L_t over its unflagged
   samples now) gets b_t = B(ρ·p_t + (1−ρ)·p_t·L_t / Σ_s p_s·L_s): a replay floor ρ in proportion
   to the pool, the rest in proportion to how much of the task is not learned (a new task, a
   forgotten one, a hard one). L_t is the mean loss (``need: loss``) or the mean per-token error
   rate 1 − exp(−ℓ) (``need: error``, bounded, so a new task's large loss does not take the whole
   need share from old tasks still far from learned), or 1 − exp(−ℓ·n) over an answer of n tokens
   (``need: answer_error``, 1 − the probability of the whole answer: what an exact-match score
   asks; a long answer, a box, fails on any token). With ``new_tasks: share``, a task none of
   whose samples has been trained yet gets B·p_t, as under ``random`` (before any training its loss
   says how new its answers look, not how hard it is to learn), and the formula splits the rest
   over the tasks trained before. p_t is the task's share of the pool, or with ``weight: task`` 1/T
   (A averages the tasks, whatever their sizes: a large, learned dataset is not worth more of the
   budget than a small, hard one); ``floor_weight`` sets the floor's weights alone (``pool``: the
   floor replays what ``random`` would, the need still weights every task once). With ``split:
   gain`` the need's part goes where it is expected to raise A most, Σ p_t·L_t·(1 − exp(−r_t·x_t))
   (:func:`gain_split`), each task's learning rate r_t measured by a probe at its first round
   (:func:`~adapt.methods.reference.probe_rate`): a fast learner gets what it takes to learn, no more.
   With ``forgetting_guard`` (the issue's "rise since it was last trained"), a task trained before
   whose need now lies ``guard_z`` standard errors or more above the lowest it has had since its
   first training (:func:`forgetting_z`, from the earlier rounds' ``selector.json``) is being
   forgotten: it gets at least its pool share B·n_t/Σn, what ``random`` replays, and the formula
   splits the rest over the others.
   Off: b_t = B·p_t (pool share), what ``random`` draws on average.
   Defaults: ``weight: task``, ``floor_weight: pool``, ``need: answer_error``, ρ = 0.5, ``new_tasks:
   need``. The first frozen defaults (a226db2: the floor by task too, row ``hindsight_task_floor``)
   were the best mean over both built-in streams of A against half the gap to ``multitask`` among
   the settings run on seeds 0-2; the pool-share floor beat them on that measure at five seeds, by
   a rule written before it ran (e7ca5a8), and replaced them.
3. **Coverage** (``coverage``): each task's b_t is drawn stratified over ⌈b_t / per_cluster⌉ fine
   spherical k-means clusters of the hidden-state embedding (mean last hidden state, from the same
   forward as the gradients), proportional allocation, at random inside a cluster: across the
   task, not its top, and near-duplicates rarely twice. Off: at random inside the task.
4. **Unseen first** (``unseen``): inside each draw, the samples trained fewest times in earlier
   rounds first (never trained first), ties at random. ``random`` re-draws samples already trained
   on while others never are (a quarter of each round's pool: a sample of the first dataset is
   never trained in 0.75⁶ ≈ 18% of six rounds), where one training on the union (``multitask``)
   sees each once; here the rounds together cover the pool first.
5. **Pruning** (``prune``, when ``pool.max_size`` is exceeded): the flagged first; then each task
   keeps its share of the pool, split uniformly over ⌈keep_t / per_cluster⌉ fine clusters of the
   hidden states (small clusters kept whole: no skill loses its last sample) and, inside each,
   SemDeDup's least redundant (:mod:`adapt.selection.pruning`). Off: the loop's random pruning.

Needs ``features.enabled: true``. Per round it writes ``rounds/<t>/hindsight/samples.parquet``
(uid, task, loss, z, flagged, times trained before, fine cluster, selected) and
``rounds/<t>/selector.json`` (per task: pool, flagged, mean loss, the floor's and the need's share
of the budget, clusters covered, never-trained samples selected; with ``forgetting_guard`` its best
need since trained, the rise's z and whether it was guarded; with ``split: gain`` its rate and,
at its first round, the probe's figures, the probe's adapter in ``rounds/<t>/hindsight/probe-<k>/``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from adapt.io import read_parquet, write_with_atomic
from adapt.layout import RoundLayout, round_name
from adapt.methods.reference import ProbeResult, probe_rate
from adapt.selection.base import SELECTORS, PruneContext, Pruning, Selection, SelectionContext, Selector, selection_frame
from adapt.selection.budget import split_proportional, split_weighted
from adapt.selection.inputs import per_task_rows, round_store

MAD_SCALE = 1.4826  # MAD → standard deviation of a normal
LOSS_FLOOR = 1e-6   # log(ℓ) of a loss of exactly 0


def robust_z(x: np.ndarray) -> np.ndarray:
    """(x − median) / (1.4826 · MAD); all zeros when the MAD is 0 (no spread: nothing stands out)."""
    x = np.asarray(x, dtype=np.float64)
    if x.size == 0:
        return x
    med = np.median(x)
    mad = MAD_SCALE * np.median(np.abs(x - med))
    return (x - med) / mad if mad > 0 else np.zeros_like(x)


def noise_flags(tasks: np.ndarray, loss: np.ndarray, trained: np.ndarray, threshold: float,
                min_trained: int) -> tuple[np.ndarray, np.ndarray]:
    """Part 1: (flag, z) per row. Within each task, among the rows ``trained`` last round (at least
    ``min_trained`` of them), z is the robust z of log(loss); a row is flagged when z ≥ ``threshold``.
    Rows not trained last round get z = NaN and no flag."""
    z = np.full(len(loss), np.nan)
    for rows in per_task_rows(tasks).values():
        rows = rows[np.asarray(trained)[rows]]
        if len(rows) >= min_trained:
            z[rows] = robust_z(np.log(np.maximum(np.asarray(loss, dtype=np.float64)[rows], LOSS_FLOOR)))
    return np.nan_to_num(z, nan=-np.inf) >= threshold, z


@dataclass
class TaskBudget:
    """Part 2's split: each task's weight (its share of the budget before rounding), the floor's
    and the need's part of it, and its quota."""

    floor: dict[str, float]
    need: dict[str, float]
    quota: dict[str, int]


def task_weights(sizes: np.ndarray, weight: str) -> np.ndarray:
    """Part 2's p_t: n_t / Σ n (``"pool"``) or 1/T over the T tasks with samples (``"task"``)."""
    if weight not in ("pool", "task"):
        raise ValueError(f"weight must be 'pool' or 'task', not {weight!r}")
    w = sizes if weight == "pool" else (sizes > 0).astype(np.float64)
    return w / w.sum() if w.sum() > 0 else w


def _among(p: np.ndarray, fixed: np.ndarray) -> np.ndarray:
    """The weights ``p`` of the tasks not ``fixed``, renormalised among themselves."""
    q = np.where(fixed, 0.0, p)
    return q / q.sum() if q.sum() > 0 else q


def task_budgets(sizes: Mapping[str, int], need: Mapping[str, float], budget: int, floor: float,
                 at_share: Collection[str] = (), weight: str = "pool", floor_weight: str | None = None,
                 rates: Mapping[str, float | None] | None = None, guard: Collection[str] = ()) -> TaskBudget:
    """Part 2: b_t = B(ρ·f_t + (1−ρ)·p_t·L_t / Σ_s p_s·L_s) with L_t = ``need[t]``, ρ = ``floor``
    and p_t the task's weight: n_t / Σ n (``weight="pool"``, 1: in proportion to the pool) or 1/T
    over the T tasks with samples (``"task"``: each task counts once, as in the average accuracy A);
    f_t the same with ``floor_weight`` (None: f = p). The tasks in ``at_share`` get B·p_t (under
    ``"pool"`` what ``random`` gives them) and the formula splits the rest, B(1 − Σ_{at_share} p),
    over the others (p_t and f_t then their shares among themselves). Integer quotas by largest
    remainder, capped at n_t (a capped task's excess goes to the others by weight); they sum to
    min(B, Σ n). With ``rates`` (``split: gain``; None: not measured, see :func:`with_prior`) the
    need's part is split by :func:`gain_split` instead. A task in ``guard`` (``forgetting_guard``:
    being forgotten) that the formula gives less than its pool share n_t / Σ n gets that share, what
    ``random`` replays, and the formula splits the rest over the others (repeated until no guarded
    task falls below its share)."""
    names = list(sizes)
    n = np.asarray([sizes[t] for t in names], dtype=np.float64)
    pool = task_weights(n, "pool")
    held = np.where([t in at_share for t in names], task_weights(n, weight), np.nan)
    guarded = np.asarray([t in guard for t in names], dtype=bool)
    while True:
        split = _formula(names, n, need, budget, floor, held, weight, floor_weight, rates)
        low = guarded & np.isnan(held) & (split[0] + split[1] < pool - 1e-12)
        if not low.any():
            break
        held = np.where(low, pool, held)
    part_floor, part_need = split
    quotas = split_weighted([sizes[t] for t in names], (part_floor + part_need).tolist(), budget)
    return TaskBudget(dict(zip(names, (budget * part_floor).tolist())), dict(zip(names, (budget * part_need).tolist())),
                      dict(zip(names, (int(q) for q in quotas))))


def _formula(names: list[str], n: np.ndarray, need: Mapping[str, float], budget: int, floor: float,
             held: np.ndarray, weight: str, floor_weight: str | None,
             rates: Mapping[str, float | None] | None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`task_budgets`' floor and need parts, as shares of the budget, for the tasks ``names``
    of sizes ``n``: the tasks with a ``held`` share (not NaN) get it (scaled down together when they
    exceed 1), the formula splits the rest over the others."""
    p = task_weights(n, weight)
    fixed = ~np.isnan(held)
    held = np.where(fixed, held, 0.0)
    if held.sum() > 1.0:
        held = held / held.sum()
    p = np.where(fixed, held, p)
    rest = 1.0 - float(p[fixed].sum())
    q = _among(p, fixed)
    f = q if floor_weight is None else _among(task_weights(n, floor_weight), fixed)
    ql = q * np.asarray([max(float(need[t]), 0.0) for t in names])
    needs = ql / ql.sum() if ql.sum() > 0 else q
    part_floor = np.where(fixed, p, rest * floor * f)
    r = with_prior([rates.get(t) for t in names]) if rates is not None else None
    if r is not None and budget > 0 and (~fixed).any():
        free = ~fixed
        y = gain_split(q[free], np.asarray([float(need[t]) for t in names])[free], r[free],
                       budget * part_floor[free], n[free], budget * rest * (1.0 - floor))
        needs = np.zeros(len(names))
        needs[free] = y / y.sum() if y.sum() > 0 else q[free]
    part_need = np.where(fixed, 0.0, rest * (1.0 - floor) * needs)
    return part_floor, part_need


def gain_split(weight: np.ndarray, need: np.ndarray, rate: np.ndarray, floor: np.ndarray, size: np.ndarray,
               total: float) -> np.ndarray:
    """Part 2 with ``split: gain``: ``total`` samples y_t over the tasks that maximise the expected
    gain in A, Σ_t w_t·L_t·(1 − exp(−r_t(f_t + y_t))), task t's need L_t falling as exp(−r_t·x) with
    the x samples trained on it (:func:`~adapt.methods.reference.probe_rate`) and f_t the floor's samples. The
    optimum (KKT, water-filling) gives every task with 0 < y_t < n_t − f_t the same marginal gain λ:
    y_t = ln(w_t·L_t·r_t·exp(−r_t·f_t) / λ) / r_t, clipped to [0, n_t − f_t], λ found by bisection on
    ln λ so that Σ y_t = min(total, Σ (n_t − f_t)). A task with L_t·r_t = 0 gets none."""
    w, L, r = (np.asarray(a, dtype=np.float64) for a in (weight, need, rate))
    f = np.asarray(floor, dtype=np.float64)
    room = np.maximum(np.asarray(size, dtype=np.float64) - f, 0.0)
    top = w * np.maximum(L, 0.0) * r * np.exp(-r * f)  # the marginal gain at y = 0
    live = (top > 0) & (room > 0)
    y = np.zeros(len(w))
    target = min(float(total), float(room[live].sum()))
    if target <= 0:
        return y

    def alloc(log_lam: float) -> np.ndarray:
        out = np.zeros(len(w))
        out[live] = np.clip((np.log(top[live]) - log_lam) / r[live], 0.0, room[live])
        return out

    # Σ y falls with ln λ: at hi every task gets 0, at lo every task its room
    lo, hi = float((np.log(top[live]) - r[live] * room[live]).min()) - 1.0, float(np.log(top[live]).max())
    for _ in range(200):  # far past float64's resolution of ln λ
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if alloc(mid).sum() > target else (lo, mid)
    return alloc(hi)


def with_prior(rates: list[float | None]) -> np.ndarray | None:
    """The tasks' learning rates, a task without one given the median of the others' (a resumed or
    switched run whose earlier rounds measured none); None when no task has one."""
    known = [float(r) for r in rates if r is not None]
    if not known:
        return None
    prior = float(np.median(known))
    return np.asarray([prior if r is None else float(r) for r in rates], dtype=np.float64)


def rates_before(files: RoundLayout, t: int) -> dict[str, float]:
    """Each task's learning rate as its probe measured it in rounds 0 … t−1 (their ``selector.json``)."""
    out: dict[str, float] = {}
    for r in range(t):
        path = RoundLayout(files.dir.parent / round_name(r)).selector
        tasks = json.loads(path.read_text()).get("tasks", {}) if path.is_file() else {}
        for task, entry in tasks.items():
            if entry.get("rate") is not None:
                out.setdefault(task, float(entry["rate"]))
    return out


def task_need(loss: np.ndarray, measure: str, answer_tokens: np.ndarray | None = None) -> float:
    """Part 2's L_t of a task from its samples' losses ℓ (the mean NLL of an answer's tokens): their
    mean (``loss``); the mean of 1 − exp(−ℓ) (``error``: exp(−ℓ) is the geometric mean of the answer
    tokens' probabilities, so this lies in [0, 1)); or the mean of 1 − exp(−ℓ·n), n the answer's
    tokens (``answer_error``: 1 − the probability of the whole reference answer, teacher-forced,
    which is what an exact-match score asks of it); 0 for no samples."""
    values = need_values(loss, measure, answer_tokens)
    return float(values.mean()) if len(values) else 0.0


def need_values(loss: np.ndarray, measure: str, answer_tokens: np.ndarray | None = None) -> np.ndarray:
    """Each sample's term of :func:`task_need` (its mean is the task's need L_t)."""
    loss = np.asarray(loss, dtype=np.float64)
    if measure == "loss":
        return loss
    if measure == "answer_error":
        if answer_tokens is None:
            raise ValueError("need=answer_error needs each sample's answer_tokens")
        loss = loss * np.asarray(answer_tokens, dtype=np.float64)
    return -np.expm1(-loss)


def best_need_since_trained(files: RoundLayout, t: int) -> dict[str, float]:
    """Per task, the lowest need its ``selector.json`` recorded in rounds 0 … t−1 after the task was
    first trained (rounds after the first one that selected any of it); tasks without such a round
    are absent."""
    first: dict[str, int] = {}
    best: dict[str, float] = {}
    for r in range(t):
        path = RoundLayout(files.dir.parent / round_name(r)).selector
        tasks = json.loads(path.read_text()).get("tasks", {}) if path.is_file() else {}
        for task, entry in tasks.items():
            if task in first and entry.get("need") is not None:
                best[task] = min(best.get(task, math.inf), float(entry["need"]))
            if entry.get("selected", 0) > 0:
                first.setdefault(task, r)
    return best


def forgetting_z(values: np.ndarray, best: float) -> float:
    """How far the task's need now, the mean of its samples' ``values``, lies above ``best`` (its
    lowest since it was first trained), in standard errors of a difference of two such means,
    √2·s/√n: a rise beyond measurement noise is forgetting. 0 with fewer than 2 samples or no spread."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) < 2:
        return 0.0
    se = math.sqrt(2.0) * float(values.std(ddof=1)) / math.sqrt(len(values))
    return (float(values.mean()) - best) / se if se > 0 else 0.0


def fine_clusters(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Spherical k-means labels of the rows ``x`` into ``k`` fine clusters (capped at the rows)."""
    from adapt.selection.clustering import spherical_kmeans

    return spherical_kmeans(x, max(1, min(int(k), len(x))), seed).labels


def stratified_draw(labels: np.ndarray, quota: int, rng: np.random.Generator,
                    priority: np.ndarray | None = None) -> np.ndarray:
    """Part 3: ``quota`` positions, split over the clusters of ``labels`` in proportion to their
    sizes (largest remainder); inside each, the lowest ``priority`` first (part 5: times trained
    before), ties at random (no ``priority``: at random)."""
    labels = np.asarray(labels)
    names = np.unique(labels)
    members = [np.flatnonzero(labels == c) for c in names]
    shares = split_proportional([len(m) for m in members], quota)
    picks = [m[_first(priority[m] if priority is not None else np.zeros(len(m)), q, rng)]
             for m, q in zip(members, shares) if q > 0]
    return np.sort(np.concatenate(picks)) if picks else np.zeros(0, dtype=np.int64)


def _first(priority: np.ndarray, q: int, rng: np.random.Generator) -> np.ndarray:
    """The ``q`` positions of lowest ``priority``, ties broken by a random permutation."""
    return np.lexsort((rng.permutation(len(priority)), np.asarray(priority)))[:q]


def times_trained(files: RoundLayout, t: int, uids: list[str]) -> np.ndarray:
    """Part 5: how many of rounds 0 … t−1 trained on each uid (their selection.parquet)."""
    count = pd.Series(0, index=pd.Index(uids), dtype=np.int64)
    for r in range(t):
        path = RoundLayout(files.dir.parent / round_name(r)).selection
        if path.is_file():
            sel = read_parquet(path, columns=["uid", "selected"])
            hit = count.index.isin(sel.loc[sel["selected"], "uid"])
            count[hit] += 1
    return count.to_numpy()


def previous_flags(files: RoundLayout, t: int) -> set[str]:
    """The uids flagged up to round t−1 (its ``hindsight/samples.parquet``)."""
    path = _samples_path(RoundLayout(files.dir.parent / round_name(t - 1))) if t > 0 else None
    if path is None or not path.is_file():
        return set()
    prev = read_parquet(path, columns=["uid", "flagged"])
    return set(prev.loc[prev["flagged"], "uid"])


def trained_last_round(files: RoundLayout, t: int) -> set[str]:
    """The uids round t−1 trained on (its selection.parquet)."""
    path = RoundLayout(files.dir.parent / round_name(t - 1)).selection if t > 0 else None
    if path is None or not path.is_file():
        return set()
    sel = read_parquet(path, columns=["uid", "selected"])
    return set(sel.loc[sel["selected"], "uid"])


def _samples_path(files: RoundLayout) -> Path:
    return files.method("hindsight").samples


@SELECTORS.register("hindsight")
class Hindsight(Selector):
    name = "hindsight"

    @property
    def needs_model(self) -> bool:  # type: ignore[override]
        """Only the learning-rate probe (``budget.split: gain``) runs the model; everything else it
        reads is in the round's gradient pass."""
        budget = self.config.selection.hindsight.budget
        return budget.enabled and budget.split == "gain"

    def needs_features(self) -> bool:
        return True

    def needs_hidden(self) -> bool:
        st = self.config.selection.hindsight
        return st.coverage.enabled or (st.prune.enabled and self.config.pool.max_size is not None)

    def select(self, ctx: SelectionContext) -> Selection:
        st = self.config.selection.hindsight
        files = ctx.round_files(self.name)
        store = round_store(ctx, self.name)
        uids = ctx.pool["uid"].tolist()
        tasks = ctx.pool["task"].to_numpy(dtype=object)
        scores = store.scores()
        loss = scores["loss"].to_numpy(dtype=np.float64)
        tokens = scores["answer_tokens"].to_numpy(dtype=np.float64)
        n = len(uids)
        trained = np.isin(uids, list(trained_last_round(files, ctx.round)))
        flagged_before = np.isin(uids, list(previous_flags(files, ctx.round)))
        if st.noise.enabled:
            new_flag, z = noise_flags(tasks, loss, trained, st.noise.threshold, st.noise.min_trained)
            flagged = flagged_before | new_flag
        else:
            new_flag, z, flagged = np.zeros(n, bool), np.full(n, np.nan), np.zeros(n, bool)
        rows_of = per_task_rows(tasks)
        avail = {t: r[~flagged[r]] for t, r in rows_of.items()}
        need = {t: task_need(loss[r], st.budget.need, tokens[r]) for t, r in avail.items()}
        seen = times_trained(files, ctx.round, uids)
        untrained = [t for t, r in rows_of.items() if not seen[r].any()]
        best = best_need_since_trained(files, ctx.round) if st.budget.forgetting_guard else {}
        fz = {t: forgetting_z(need_values(loss[avail[t]], st.budget.need, tokens[avail[t]]), b)
              for t, b in best.items() if t in avail}
        guard = [t for t, z_t in fz.items() if z_t >= st.budget.guard_z]
        rates, probes = self._rates(ctx, files, avail, untrained) if self.needs_model else (None, {})
        split = task_budgets({t: len(r) for t, r in avail.items()}, need, ctx.budget,
                             st.budget.floor if st.budget.enabled else 1.0,
                             at_share=untrained if st.budget.new_tasks == "share" else (),
                             weight=st.budget.weight if st.budget.enabled else "pool",
                             floor_weight=st.budget.floor_weight if st.budget.enabled else None, rates=rates,
                             guard=guard if st.budget.enabled else ())
        hidden = _hidden_rows(files, uids) if st.coverage.enabled else None
        priority = seen if st.unseen.enabled else None
        rng = np.random.default_rng(ctx.seed)
        selected = np.zeros(n, dtype=bool)
        fine = np.full(n, -1, dtype=np.int64)
        offset = 0
        for i, (t, rows) in enumerate(avail.items()):
            q = split.quota[t]
            if hidden is not None and len(rows):
                labels = fine_clusters(hidden[rows], math.ceil(max(q, 1) / st.coverage.per_cluster), ctx.seed + i)
                fine[rows] = labels + offset
                offset += int(labels.max()) + 1
                picked = rows[stratified_draw(labels, q, rng, None if priority is None else priority[rows])]
            else:
                picked = rows[stratified_draw(np.zeros(len(rows), np.int64), q, rng,
                                              None if priority is None else priority[rows])]
            selected[picked] = True
        short = ctx.budget - int(selected.sum())  # more flagged than the budget leaves room for: fill at random
        if short > 0:
            rest = np.flatnonzero(~selected)
            selected[rng.choice(rest, size=min(short, len(rest)), replace=False)] = True
        detail = pd.DataFrame({"uid": uids, "task": tasks, "loss": loss, "z": z, "flagged": flagged,
                               "new_flag": new_flag, "trained_last_round": trained, "times_trained": seen, "fine_cluster": fine,
                               "selected": selected})
        path = _samples_path(files)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_with_atomic(path, lambda tmp: detail.to_parquet(tmp, index=False))
        summary = {"parts": {"noise": st.noise.enabled, "budget": st.budget.enabled,
                             "coverage": st.coverage.enabled, "unseen": st.unseen.enabled, "prune": st.prune.enabled},
                   "tasks": {t: {**_task_summary(rows_of[t], avail[t], detail, need[t], split, t, hidden is not None),
                                 **({} if rates is None else {"rate": rates[t]}),
                                 **({"best_need": round(best[t], 6), "forgetting_z": round(fz[t], 3),
                                     "guarded": t in guard} if t in fz else {}),
                                 **({"probe": probes[t].summary()} if t in probes else {})}
                             for t in rows_of}}
        return Selection(selection_frame(ctx.pool, selected, scores=loss, clusters=fine,
                                         experts=np.where(flagged, "flagged", "")), summary)

    def _rates(self, ctx: SelectionContext, files: RoundLayout, avail: dict[str, np.ndarray],
               untrained: list[str]) -> tuple[dict[str, float | None], dict[str, ProbeResult]]:
        """Part 2 with ``split: gain``: each task's learning rate, measured by the probe
        (:func:`~adapt.methods.reference.probe_rate`) at the task's first round, before any of it is trained, and
        read back from that round's ``selector.json`` after; None for a task trained before without
        one. Returns the rates and this round's probes."""
        budget = self.config.selection.hindsight.budget
        known: dict[str, float | None] = dict(rates_before(files, ctx.round))
        probes = {}
        for k, (t, rows) in enumerate(avail.items()):
            if t not in known and t in untrained:
                result = probe_rate(ctx, t, k, rows, budget.probe,
                                    lambda loss, tokens: task_need(loss, budget.need, tokens))
                if result is not None:
                    probes[t] = result
                    known[t] = result.rate
        return {t: known.get(t) for t in avail}, probes

    def prune(self, ctx: PruneContext) -> Pruning | None:
        """Part 5: the flagged first, then near-duplicates inside each task's fine clusters of the
        hidden states, each task keeping its share of what is left. None (the loop's random
        pruning) when the part is off or the round's files do not match the active pool."""
        from adapt.features.store import FeatureStore
        from adapt.selection.pruning import semdedup_keep

        st = self.config.selection.hindsight.prune
        samples = _samples_path(ctx.files)
        if not st.enabled or not FeatureStore.exists(ctx.files.hidden) or not samples.is_file():
            return None
        store = FeatureStore(ctx.files.hidden)
        detail = read_parquet(samples, columns=["uid", "task", "flagged"])
        uids = ctx.active["uid"].tolist()
        if store.uids() != uids or detail["uid"].tolist() != uids:
            return None
        flagged = detail["flagged"].to_numpy()
        excess = len(uids) - ctx.limit
        rng = np.random.default_rng(ctx.seed)
        flagged_rows = np.flatnonzero(flagged)
        if len(flagged_rows) >= excess:
            drop = rng.choice(flagged_rows, size=excess, replace=False)
            return Pruning([uids[i] for i in np.sort(drop)], f"hindsight: {excess} flagged as wrong labels")
        rows_of = {t: r[~flagged[r]] for t, r in per_task_rows(detail["task"].to_numpy(dtype=object)).items()}
        keeps = split_proportional([len(r) for r in rows_of.values()], ctx.limit)
        x = store.features()
        kept = []
        for i, (rows, keep) in enumerate(zip(rows_of.values(), keeps)):
            if keep <= 0 or not len(rows):
                continue
            xt = np.asarray(x[rows], dtype=np.float32)
            labels = fine_clusters(xt, math.ceil(keep / st.per_cluster), ctx.seed + i)
            kept.append(rows[semdedup_keep(xt, labels, keep, order=ctx.order, split="uniform", index=ctx.index,
                                           seed=ctx.seed)])
        keep_rows = np.concatenate(kept) if kept else np.zeros(0, dtype=np.int64)
        dropped = np.setdiff1d(np.arange(len(uids)), keep_rows)
        return Pruning([uids[i] for i in dropped],
                       f"hindsight: {len(flagged_rows)} flagged as wrong labels, then semdedup on hidden inside "
                       f"each task's fine clusters (order {ctx.order}, index {ctx.index})")


def _task_summary(rows: np.ndarray, avail: np.ndarray, detail: pd.DataFrame, need: float, split: TaskBudget,
                  task: str, coverage: bool) -> dict:
    """One task's entry of ``selector.json``: its pool, flags, mean loss and need, the floor's and the
    need's part of its budget, its quota, what was selected (never-trained among it) and, with
    coverage on, its fine clusters and how many of them the selection covers."""
    mine, left = detail.iloc[rows], detail.iloc[avail]
    chosen = mine[mine["selected"]]
    return {"pool": len(rows), "flagged": int(mine["flagged"].sum()), "new_flags": int(mine["new_flag"].sum()),
            "trained_last_round": int(mine["trained_last_round"].sum()),
            "mean_loss": round(float(left["loss"].mean()) if len(left) else 0.0, 6),
            "need": round(need, 6), "floor_share": round(split.floor[task], 3),
            "need_share": round(split.need[task], 3), "quota": split.quota[task], "selected": len(chosen),
            "never_trained_selected": int((chosen["times_trained"] == 0).sum()),
            "fine_clusters": int(left["fine_cluster"].nunique()) if coverage else 0,
            "clusters_covered": int(chosen["fine_cluster"].nunique()) if coverage else 0}


def _hidden_rows(files: RoundLayout, uids: list[str]) -> np.ndarray:
    """The round's hidden-state embedding (rounds/<t>/hidden), in pool order."""
    from adapt.errors import AdaptError
    from adapt.features.store import FeatureStore

    if not FeatureStore.exists(files.hidden):
        raise AdaptError(f"{files.hidden}: selection.method=hindsight's coverage needs the round's hidden states "
                         "(computed with the gradients; set features.enabled=true)")
    store = FeatureStore(files.hidden)
    if store.uids() != uids:
        raise AdaptError(f"{files.hidden}: hidden states of another pool; remove the folder to recompute")
    return np.asarray(store.features(), dtype=np.float32)
