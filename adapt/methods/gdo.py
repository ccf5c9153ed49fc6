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
``z_scope``: ``source`` (default) takes every z within the sample's source dataset
(``Sample.dataset``), ``pool`` over the whole pool. The authors take theirs over their whole metric
table (``gdo/merge_metrics.py``, ``robust_center_scale`` over one reservoir of all shards), one
offline corpus; in a continual pool the sources' losses are on different scales (a new dataset's
perplexity sits far above that of the sources the model has learned), and a pool-wide median would
make the mid-difficulty and stability terms favour a new dataset's easiest samples.

Stratified construction: strata by (source dataset, question-length bin, answer-length bin, open vs
multiple choice), the length bins at the pool's quantiles (``length_bins``); quotas over strata by
largest remainder; each stratum filled in rank order, skipping exact repeats (same images, same
question and answer: the same question about another image is another sample); then a global fill
in rank order up to the budget (repeats last, only if the unique samples run out).

The rank (``ranking``): ``reference`` (default) is the image-QA score of the released
``gdo/build_pair.py`` (rujiewu/GDO at 4a82ccf; the line numbers below refer to it),
``candidate_score``: 0.9·tanh(base/3) + 0.15·clip(z(q), ±4)/4, with base the text heuristics of
``base_score``: q is a minor term. ``quality`` ranks by q alone.

Presets, our reading (the paper's budget bounds are given for its video presets): ``minloss``
quotas ∝ stratum size, each stratum in rank order; ``diverse`` quotas ∝ √(stratum size) (more to
the small strata), each stratum round-robin over its coverage clusters, best rank first.

As an expert in Adapt-∞'s pool, ``gdo`` scores each sample by its quality q (the reference defines
no per-sample expert; its text heuristics and source prior are selection-time terms of the pool).
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter

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

# gdo/build_pair.py: WORD_RE (l. 30), MEDIA_TOKEN_RE (l. 31), MCQ_RE (l. 32)
_REF_WORD = re.compile(r"[A-Za-z0-9_]+")
_REF_MEDIA = re.compile(r"<image>|<video>|<audio>")
_REF_MCQ = re.compile(r"(\bchoices?\b)|(\nA\.)|(\nA\))", re.IGNORECASE)
IMAGE_BASE_WEIGHT = 0.9  # build_pair.py --image-base-weight
IMAGE_QUALITY_WEIGHT = 0.15  # build_pair.py --image-legacy-quality-weight
Z_CAP = 4.0  # build_pair.py --legacy-zscore-cap
_PROFILE_FIELDS = ("duration_bucket", "temporal_category", "question_form", "q_len_bucket", "a_len_bucket",
                   "source_group")  # build_pair.py alignment_score, l. 1052


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


def standard_z(x: np.ndarray) -> np.ndarray:
    """(x − mean) / sample std, the z build_pair.py takes of the metric table's quality_score
    (``RunningStats``, l. 474–493, and ``z_value``, l. 1074–1082): the std with n − 1, and 1 when
    there is one value or the variance is ≤ 1e-12."""
    x = np.asarray(x, dtype=np.float64)
    if not len(x):
        return x
    var = float(np.sum((x - x.mean()) ** 2) / (len(x) - 1)) if len(x) > 1 else 0.0
    return (x - x.mean()) / (math.sqrt(var) if var > 1e-12 else 1.0)


def within(z, x: np.ndarray, groups: np.ndarray | None) -> np.ndarray:
    """``z`` of ``x`` inside each group (``groups`` None: over all of ``x``)."""
    x = np.asarray(x, dtype=np.float64)
    if groups is None:
        return z(x)
    groups = np.asarray(groups, dtype=object)
    out = np.empty_like(x)
    for g in dict.fromkeys(groups.tolist()):
        rows = groups == g
        out[rows] = z(x[rows])
    return out


def quality(vds: np.ndarray, ppl: np.ndarray, distance: np.ndarray, stability: np.ndarray | None = None,
            groups: np.ndarray | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """GDO's image-form quality q and its parts; ``stability`` None: the paper's proxy; the robust
    z-scores within each of ``groups`` (None: over all samples)."""
    zv, zp = within(robust_z, vds, groups), within(robust_z, ppl, groups)
    sc = sigmoid(0.6 * zv - 0.2 * np.abs(zp)) if stability is None else np.asarray(stability, dtype=np.float64)
    rep = np.exp(-np.asarray(distance, dtype=np.float64))
    parts = {"vds": sigmoid(zv), "stability": sc, "difficulty": np.exp(-np.abs(zp)), "rep": rep, "hardness": 1 - rep}
    return sum(WEIGHTS[k] * v for k, v in parts.items()), parts


# ------------------------------------------------------------------ the reference's image-QA rank
def qa_text(sample: Sample) -> tuple[str, str]:
    """(question, answer) as build_pair.py reads a QA pair (``parse_message_pairs``, l. 294–314:
    media tokens stripped, whitespace collapsed). The reference splits a conversation into one unit
    per turn; a Sample is one unit, so its human turns are joined as the question and its answers
    as the answer (the lengths our strata count)."""
    def norm(text: str) -> str:
        return " ".join(text.split())
    q = " ".join(norm(_REF_MEDIA.sub(" ", t["value"])) for t in sample.conversations if t["from"] == HUMAN)
    a = " ".join(norm(t["value"]) for t in sample.conversations if t["from"] == GPT)
    return norm(q), norm(a)


def ref_tokens(text: str) -> list[str]:
    """build_pair.py ``tokenize`` (l. 268): runs of [A-Za-z0-9_] of the lower-cased text."""
    return _REF_WORD.findall(text.lower())


def qa_naturalness(question: str, answer: str) -> float:
    """build_pair.py ``quality_score`` (l. 1029–1038), the "PPL-like" text term: lengths near 14
    question and 16 answer tokens in log scale, minus a penalty when under 55% of the answer's
    tokens are distinct: −|ln n_q − ln 14| − 1.25·|ln n_a − ln 16| − 1.2·max(0, 0.55 − distinct/n_a),
    n at least 1."""
    q_tok, a_tok = ref_tokens(question), ref_tokens(answer)
    qn, an = max(1, len(q_tok)), max(1, len(a_tok))
    variety = len(set(a_tok)) / float(an)
    return -abs(math.log(qn) - math.log(14.0)) - 1.25 * abs(math.log(an) - math.log(16.0)) \
        - 1.2 * max(0.0, 0.55 - variety)


def length_difficulty(question: str, answer: str) -> float:
    """build_pair.py ``difficulty_score`` (l. 1041–1046): a Gaussian in log length around 22,
    exp(−(ln x − ln 22)² / (2·0.85²)), x = max(1, n_q + 0.5·n_a)."""
    x = max(1.0, len(ref_tokens(question)) + 0.5 * len(ref_tokens(answer)))
    z = abs(math.log(x) - math.log(22.0))
    return math.exp(-z * z / (2.0 * 0.85 * 0.85))


def q_len_bucket(n: int) -> str:
    """build_pair.py ``q_len_bucket`` (l. 424–433)."""
    return "q_tiny" if n <= 6 else "q_short" if n <= 14 else "q_medium" if n <= 30 else "q_long" if n <= 60 \
        else "q_very_long"


def a_len_bucket(n: int) -> str:
    """build_pair.py ``a_len_bucket`` (l. 436–445)."""
    return "a_tiny" if n <= 2 else "a_short" if n <= 8 else "a_medium" if n <= 24 else "a_long" if n <= 64 \
        else "a_very_long"


def ref_fields(sample: Sample) -> dict[str, str]:
    """The stratum fields build_pair.py gives an image-QA pair (``iter_onevision_samples``,
    l. 593–602). duration "image" and temporal "Static" are constants for image QA. The question
    form is ``infer_question_form`` (l. 416) on the normalised question, where the newline
    alternatives of MCQ_RE can no longer match: only the word "choice(s)" marks MCQ (kept as
    released). source_group: our ``Sample.dataset`` (the reference groups its metadata's
    ``data_source``, ``source_group`` l. 462; we have no such field)."""
    q, a = qa_text(sample)
    return {"duration_bucket": "image", "temporal_category": "Static",
            "question_form": "MCQ" if _REF_MCQ.search(q) else "Open",
            "q_len_bucket": q_len_bucket(len(ref_tokens(q))), "a_len_bucket": a_len_bucket(len(ref_tokens(a))),
            "source_group": sample.dataset}


def alignment(fields: list[dict[str, str]]) -> np.ndarray:
    """"How typical the stratum is", build_pair.py ``alignment_score`` (l. 1049–1057): the mean
    over the six fields of ln p(field value), p the value's share of the corpus being selected from
    (``stable_profile``, l. 1018, over pass 1 of ``main``, l. 1422–1452: per-field marginals, not
    the joint stratum's share); here the pool."""
    n = len(fields)
    shares = {k: {v: c / n for v, c in Counter(f[k] for f in fields).items()} for k in _PROFILE_FIELDS}
    return np.asarray([sum(math.log(max(shares[k][f[k]], 1e-9)) for k in _PROFILE_FIELDS) / len(_PROFILE_FIELDS)
                       for f in fields], dtype=np.float64)


def source_prior(sources: list[str]) -> np.ndarray:
    """The rare-source bonus, build_pair.py ``source_prior`` (l. 1069–1071): ln((N + 1) / (c + 1)),
    c the number of pool samples of the sample's source (the reference counts its raw
    ``data_source``; ours is ``Sample.dataset``), N the pool size."""
    counts, n = Counter(sources), len(sources)
    return np.asarray([math.log((n + 1.0) / (counts[s] + 1.0)) for s in sources], dtype=np.float64)


def base_score(samples: list[Sample]) -> np.ndarray:
    """build_pair.py ``candidate_score``'s image-QA base (l. 1141):
    1.1·naturalness + 0.85·length difficulty + 0.9·alignment + 0.15·source prior."""
    texts = [qa_text(s) for s in samples]
    nat = np.asarray([qa_naturalness(q, a) for q, a in texts], dtype=np.float64)
    diff = np.asarray([length_difficulty(q, a) for q, a in texts], dtype=np.float64)
    return 1.1 * nat + 0.85 * diff + 0.9 * alignment([ref_fields(s) for s in samples]) \
        + 0.15 * source_prior([s.dataset for s in samples])


def reference_rank(base: np.ndarray, q: np.ndarray, groups: np.ndarray | None = None) -> np.ndarray:
    """build_pair.py ``candidate_score``'s image-QA score (l. 1143–1160):
    0.9·tanh(base/3) + 0.15·clip(z(q), ±4)/4, z the mean/std z-score of ``standard_z`` (taken
    within each of ``groups``; the reference: over its whole metric table)."""
    zq = np.clip(within(standard_z, q, groups), -Z_CAP, Z_CAP)
    return IMAGE_BASE_WEIGHT * np.tanh(np.asarray(base, dtype=np.float64) / 3.0) + IMAGE_QUALITY_WEIGHT * zq / Z_CAP


def sources(samples: list[Sample]) -> np.ndarray:
    return np.asarray([s.dataset for s in samples], dtype=object)


def stratum_rank(samples: list[Sample], q: np.ndarray, ranking: str = "reference",
                 z_scope: str = "source") -> np.ndarray:
    """The order each stratum (and the global fill) is taken in: ``reference`` (``reference_rank``
    of ``base_score``) or ``quality`` (q itself)."""
    if ranking == "quality":
        return np.asarray(q, dtype=np.float64)
    return reference_rank(base_score(samples), q, sources(samples) if z_scope == "source" else None)


# ---------------------------------------------------------------------------------- strata
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
    then a global fill by score (repeats last). Exactly min(budget, n) rows. Ties go to the
    earlier row (the reference breaks them with a random draw, build_pair.py l. 1739)."""
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
    gradient pass's loss and features and runs the blind forward of image grounding. The robust
    z-scores per source dataset or over the pool (``selection.gdo.z_scope``)."""
    if ctx.store is None:
        raise ValueError("gdo reads the feature store: enable features (features.enabled)")
    st = ctx.setting("gdo")
    loss = stored_column(ctx, "loss")
    vds = np.log(SCORERS.get("image_grounding")(ctx))  # loss without the image − loss with it
    ppl = np.exp(loss)
    feats = ctx.store.normalized()
    cov = cluster(feats, st.coverage_k, ctx.seed)
    distance = np.linalg.norm(feats - cov.centroids[cov.labels], axis=1) if len(feats) else np.zeros(0)
    q, parts = quality(vds, ppl, distance, groups=sources(ctx.samples) if st.z_scope == "source" else None)
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
        rank = stratum_rank(sctx.samples, q, st.ranking, st.z_scope)
        stratum = strata(sctx.samples, st.length_bins)
        keys = np.asarray([content_hash(s) for s in sctx.samples], dtype=object)
        selected = gdo_construct(rank, stratum, keys, ctx.budget, st.preset, coverage)
        return Selection(selection_frame(ctx.pool, selected, scores=rank, clusters=coverage,
                                         experts=np.full(len(q), "gdo", dtype=object)),
                         {"preset": st.preset, "ranking": st.ranking, "z_scope": st.z_scope,
                          "strata": int(len(set(stratum.tolist()))),
                          "exact_repeats_in_pool": int(len(keys) - len(set(keys.tolist())))})
