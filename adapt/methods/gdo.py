"""GDO (Wu et al. 2026, arXiv 2603.12478; METHODS.md, GDO), the four descriptors that apply to
images (motion and temporal demand are video-only):

- image dependence VDS = loss(x | no image) − loss(x | image) (the blind forward replaces the pixels
  by zeros, as ``image_grounding``; a text-only sample has VDS 0);
- difficulty PPL = exp(loss(x | image));
- stability SC: the paper's proxy σ(0.6·z(VDS) − 0.2·|z(PPL)|) (sampling five answers per sample is
  not run);
- coverage: k-means (``coverage_k``) over the gradient features; rep = exp(−‖f − centroid‖) on the
  unit features, hardness = 1 − rep.

Robust z-scores z(x) = (x − median) / (IQR / 1.349); quality
q = 0.28·σ(z(VDS)) + 0.18·SC + 0.14·exp(−|z(PPL)|) + 0.10·rep + 0.06·(1 − rep).

Stratified construction: strata by (source dataset, question-length bin, answer-length bin, open vs
multiple choice), the length bins at the pool's quantiles (``length_bins``); quotas over strata by
largest remainder; each stratum filled by quality, skipping exact repeats (same images, same
question and answer: the same question about another image is another sample); then a global fill
by quality up to the budget (repeats last, only if the unique samples run out).

Presets, our reading (the paper's budget bounds are given for its video presets): ``minloss``
quotas ∝ stratum size, each stratum in quality order; ``diverse`` quotas ∝ √(stratum size) (more to
the small strata), each stratum round-robin over its coverage clusters, best quality first.

As an expert in Adapt-∞'s pool, ``gdo`` scores each sample by its quality q.
"""

from __future__ import annotations

import hashlib
import re

import numpy as np

from adapt.data.sample import GPT, HUMAN, IMAGE_TOKEN, Sample
from adapt.scoring.base import SCORERS, ScoringContext, stored_column
from adapt.selection.base import SELECTORS, Selection, SelectionContext, Selector, selection_frame
from adapt.selection.budget import split_weighted
from adapt.selection.clustering import cluster
from adapt.selection.inputs import round_store, scoring_context

WEIGHTS = {"vds": 0.28, "stability": 0.18, "difficulty": 0.14, "rep": 0.10, "hardness": 0.06}
_CHOICE = re.compile(r"(^|\n)\s*\(?[A-H][\.\):]\s|\boptions?\s*:", re.IGNORECASE)
_LETTER = re.compile(r"^\(?[A-H]\)?\.?$")


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


def robust_z(x: np.ndarray) -> np.ndarray:
    """(x − median) / (IQR / 1.349); a zero IQR leaves the scale at 1."""
    x = np.asarray(x, dtype=np.float64)
    if not len(x):
        return x
    q1, med, q3 = np.percentile(x, [25, 50, 75])
    scale = (q3 - q1) / 1.349
    return (x - med) / (scale if scale > 0 else 1.0)


def quality(vds: np.ndarray, ppl: np.ndarray, distance: np.ndarray,
            stability: np.ndarray | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """GDO's image-form quality q and its parts; ``stability`` None: the paper's proxy."""
    zv, zp = robust_z(vds), robust_z(ppl)
    sc = sigmoid(0.6 * zv - 0.2 * np.abs(zp)) if stability is None else np.asarray(stability, dtype=np.float64)
    rep = np.exp(-np.asarray(distance, dtype=np.float64))
    parts = {"vds": sigmoid(zv), "stability": sc, "difficulty": np.exp(-np.abs(zp)), "rep": rep, "hardness": 1 - rep}
    return sum(WEIGHTS[k] * v for k, v in parts.items()), parts


def _words(text: str) -> int:
    return len(text.replace(IMAGE_TOKEN, " ").split())


def is_multiple_choice(sample: Sample) -> bool:
    """A question listing lettered options, or a one-letter answer."""
    question = "\n".join(t["value"] for t in sample.conversations if t["from"] == HUMAN)
    return bool(_CHOICE.search(question)) or bool(_LETTER.match(sample.last_answer.strip()))


def _bins(x: np.ndarray, n_bins: int) -> np.ndarray:
    edges = np.unique(np.quantile(x, np.linspace(0, 1, n_bins + 1)[1:-1])) if len(x) else np.zeros(0)
    return np.searchsorted(edges, x, side="right")


def strata(samples: list[Sample], length_bins: int = 3) -> np.ndarray:
    """The stratum of each sample, (dataset, question-length bin, answer-length bin, open/MC) as a string."""
    q = np.asarray([sum(_words(t["value"]) for t in s.conversations if t["from"] == HUMAN) for s in samples])
    a = np.asarray([sum(_words(t["value"]) for t in s.conversations if t["from"] == GPT) for s in samples])
    qb, ab = _bins(q, length_bins), _bins(a, length_bins)
    return np.asarray([f"{s.dataset}|q{qi}|a{ai}|{'mc' if is_multiple_choice(s) else 'open'}"
                       for s, qi, ai in zip(samples, qb, ab)], dtype=object)


def content_hash(sample: Sample) -> str:
    """The exact-repeat key: images, questions and answers."""
    text = "\x1f".join([*sample.images, *(f"{t['from']}:{t['value']}" for t in sample.conversations)])
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def _round_robin(rows: np.ndarray, score: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """``rows`` ordered by taking the best of each group in turn (groups by their best score)."""
    per = [rows[groups[rows] == g] for g in np.unique(groups[rows])]
    per = [r[np.lexsort((r, -score[r]))] for r in per]
    per.sort(key=lambda r: (-score[r[0]], r[0]))
    out = [r[i] for i in range(max(len(r) for r in per)) for r in per if i < len(r)]
    return np.asarray(out, dtype=np.int64)


def gdo_construct(score: np.ndarray, stratum: np.ndarray, keys: np.ndarray, budget: int, preset: str = "minloss",
                  coverage: np.ndarray | None = None) -> np.ndarray:
    """The selected mask: stratum quotas (by ``preset``), filled by score without exact repeats,
    then a global fill by score (repeats last). Exactly min(budget, n) rows."""
    score = np.asarray(score, dtype=np.float64)
    n = len(score)
    budget = min(int(budget), n)
    names = list(dict.fromkeys(np.asarray(stratum).tolist()))
    rows_of = {s: np.flatnonzero(stratum == s) for s in names}
    sizes = [len(rows_of[s]) for s in names]
    weights = [float(np.sqrt(z)) for z in sizes] if preset == "diverse" else [float(z) for z in sizes]
    quotas = split_weighted(sizes, weights, budget)
    selected = np.zeros(n, dtype=bool)
    seen: set[str] = set()
    for s, quota in zip(names, quotas):
        rows = rows_of[s]
        if preset == "diverse" and coverage is not None:
            order = _round_robin(rows, score, np.asarray(coverage))
        else:
            order = rows[np.lexsort((rows, -score[rows]))]
        taken = 0
        for i in order:
            if taken >= quota:
                break
            if keys[i] in seen:
                continue
            seen.add(keys[i])
            selected[i] = True
            taken += 1
    count = int(selected.sum())
    order = np.lexsort((np.arange(n), -score))
    for unique_pass in (True, False):  # global fill: unique samples first, repeats only if they run out
        for i in order:
            if count >= budget:
                return selected
            if not selected[i] and (not unique_pass or keys[i] not in seen):
                selected[i] = True
                seen.add(keys[i])
                count += 1
    return selected


def descriptors(ctx: ScoringContext) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """(q, its parts and raw descriptors, coverage clusters) of the context's samples; reads the
    gradient pass's loss and features and runs the blind forward of image grounding."""
    if ctx.store is None:
        raise ValueError("gdo reads the feature store: enable features (features.enabled)")
    st = ctx.setting("gdo")
    loss = stored_column(ctx, "loss")
    vds = np.log(SCORERS.get("image_grounding")(ctx))  # loss without the image − loss with it
    ppl = np.exp(loss)
    feats = ctx.store.normalized()
    cov = cluster(feats, st.coverage_k, ctx.seed)
    distance = np.linalg.norm(feats - cov.centroids[cov.labels], axis=1) if len(feats) else np.zeros(0)
    q, parts = quality(vds, ppl, distance)
    return q, parts | {"vds_raw": vds, "ppl_raw": ppl}, cov.labels


@SCORERS.register("gdo")
def score_gdo(ctx: ScoringContext) -> np.ndarray:
    """GDO's quality q of each sample."""
    return descriptors(ctx)[0]


@SELECTORS.register("gdo")
class Gdo(Selector):
    name = "gdo"
    needs_model = True

    def needs_features(self) -> bool:
        return True

    def select(self, ctx: SelectionContext) -> Selection:
        st = ctx.settings
        sctx = scoring_context(ctx, store=round_store(ctx, "gdo"))
        q, parts, coverage = descriptors(sctx)
        stratum = strata(sctx.samples, st.length_bins)
        keys = np.asarray([content_hash(s) for s in sctx.samples], dtype=object)
        selected = gdo_construct(q, stratum, keys, ctx.budget, st.preset, coverage)
        return Selection(selection_frame(ctx.pool, selected, scores=q, clusters=coverage,
                                         experts=np.full(len(q), "gdo", dtype=object)),
                         {"preset": st.preset, "strata": int(len(set(stratum.tolist()))),
                          "exact_repeats_in_pool": int(len(keys) - len(set(keys.tolist())))})
