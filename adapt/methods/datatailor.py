"""DataTailor (Yu et al. 2024/2025, arXiv 2412.06293; METHODS.md, DataTailor): informativeness,
uniqueness and representativeness inside the clusters of each task, combined by rank.

- Informativeness I_i (paper eq. 2): H = the last decoder layer's hidden states of sample i over
  its valid tokens (image and text), L × h; s its singular values, p = s / Σs, I_i = −Σ p log p
  (spectral entropy); τ_i = max_j p_j. The feature p_i for clustering is the hidden state of the
  last valid token. ``hidden: pre_norm`` (default) takes H before the language model's final norm,
  as the reference does (Yuqifan1117/DataTailor ``llava/model/modeling_llama.py``,
  ``LlamaModel.forward``: the SVD, the entropy, τ and the last-token feature are computed from
  ``hidden_states[i][causal_mask[i], :]`` after the decoder-layer loop and before
  ``hidden_states = self.norm(hidden_states)``), captured here by a forward pre-hook on that norm;
  ``post_norm`` takes transformers' ``hidden_states[-1]``, the output of the final norm.
- Clusters: inside each task, Ward hierarchical clustering of p_i cut at ``cut`` × the height of
  the last merge. Ward is quadratic in time and memory, so a task of more than ``ward_max`` samples
  is first reduced to ``ward_max`` k-means centroids (faiss, Euclidean) and Ward runs on the
  centroids; each sample takes its centroid's cluster.
- Uniqueness (eq. 4): U_i = Σ_{j∈C} ‖p_i − p_j‖·I_j / (Σ_{j,k∈C} ‖p_j − p_k‖ / |C|); 0 in a cluster
  of one sample (the formula's 0/0).
- Representativeness (eq. 5): τ_c = mean over the task's other clusters c′ of exp(cos(μ_c, μ_c′)),
  Rep_i = τ_c · I_i (τ_c = 1 when the task has one cluster).
- Value (eq. 6), per task on percentile ranks: V_i = (r_i·rk(I_i) + rk(U_i) + rk(Rep_i)) / (r_i + 2),
  r_i = the sample's number of conversation turns.
- Budget per task b_T ∝ |T| · mean_T(τ_i)²; the top b_T by V in each task.

As an expert in Adapt-∞'s pool, ``datatailor`` scores each sample by V_i.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from adapt.features.store import FeatureStore
from adapt.scoring.base import SCORERS, ScoringContext
from adapt.selection.base import SELECTORS, Selection, SelectionContext, Selector, selection_frame
from adapt.selection.budget import split_weighted
from adapt.selection.inputs import per_task_rows, scoring_context

SIGNALS = ("informativeness", "tau")
HIDDEN = ("pre_norm", "post_norm")  # ``selection.datatailor.hidden``


def spectral_entropy(h: torch.Tensor) -> tuple[float, float]:
    """(I, τ) of a hidden-state matrix [L, h]: entropy and maximum of its normalised singular values."""
    s = torch.linalg.svdvals(h.double())
    total = s.sum()
    if total <= 0:
        return 0.0, 1.0
    p = s / total
    nz = p[p > 0]
    return float(-(nz * nz.log()).sum()), float(p.max())


def final_norm(model: Any) -> torch.nn.Module:
    """The language model's final norm, the module right after its last decoder layer: ``norm`` of
    the decoder (``get_decoder()``: LlamaModel in LLaVA and causal LMs, Qwen2VLTextModel in Qwen2-VL),
    of ``language_model`` or of ``model``, through a peft wrapper."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    candidates = [base.get_decoder() if hasattr(base, "get_decoder") else None,
                  getattr(base, "language_model", None), getattr(base, "model", None)]
    candidates += [getattr(c, "model", None) for c in candidates if c is not None]
    for c in candidates:
        norm = getattr(c, "norm", None)
        if isinstance(norm, torch.nn.Module):
            return norm
    raise ValueError(f"selection.datatailor.hidden=pre_norm: no final norm found in {type(base).__name__} "
                     "(looked for get_decoder().norm, language_model.norm and model.norm); use hidden=post_norm")


@contextmanager
def norm_input(norm: torch.nn.Module) -> Iterator[dict[str, torch.Tensor]]:
    """While open, each forward through ``norm`` leaves its input in the yielded dict (``"h"``)."""
    box: dict[str, torch.Tensor] = {}

    def hook(module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        box["h"] = args[0] if args else kwargs["hidden_states"]

    handle = norm.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield box
    finally:
        handle.remove()


def last_hidden_states(model: Any, inputs: dict[str, Any], hidden: str = "pre_norm",
                       norm: torch.nn.Module | None = None) -> torch.Tensor:
    """[b, T, h] hidden states of the last decoder layer: before the final norm (``pre_norm``, the
    input of ``norm``, default :func:`final_norm`) or after it (``post_norm``, ``hidden_states[-1]``)."""
    if hidden == "post_norm":
        return model(**inputs, output_hidden_states=True).hidden_states[-1]
    if hidden != "pre_norm":
        raise ValueError(f"selection.datatailor.hidden={hidden!r}: one of {', '.join(HIDDEN)}")
    with norm_input(norm if norm is not None else final_norm(model)) as box:
        model(**inputs)
    return box["h"]


def hidden_signals(model: Any, family: Any, samples: list, store: FeatureStore, batch_size: int, max_length: int,
                   progress: bool = False, hidden: str = "pre_norm") -> FeatureStore:
    """Fill ``store`` (columns SIGNALS): the last valid token's hidden state of each sample as its
    feature, and I, τ of its hidden states over the valid tokens (``hidden``: before or after the
    final norm, :func:`last_hidden_states`)."""
    from adapt.features.extract import fill_store
    from adapt.features.per_sample import at_least_float32

    norm = final_norm(model) if hidden == "pre_norm" else None

    @torch.no_grad()
    def compute(part: list, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        h = at_least_float32(last_hidden_states(model, {k: v for k, v in batch.items() if k != "labels"}, hidden,
                                                norm))
        mask = batch["attention_mask"].bool()
        feats, sig = [], []
        for i in range(len(part)):
            valid = h[i, mask[i]]
            feats.append(valid[-1])
            sig.append(spectral_entropy(valid))
        return torch.stack(feats), torch.tensor(sig, dtype=torch.float64)

    was_training = model.training
    model.eval()
    try:
        return fill_store(store, samples, family, max_length, batch_size, compute, next(model.parameters()).device,
                          progress=progress, desc="datatailor hidden states")
    finally:
        model.train(was_training)


def ward_clusters(p: np.ndarray, cut: float = 0.1, ward_max: int = 2000, seed: int = 0) -> np.ndarray:
    """Ward clusters of the rows of ``p``, the tree cut at ``cut`` × its last merge height; above
    ``ward_max`` rows, Ward on ``ward_max`` k-means centroids."""
    from scipy.cluster.hierarchy import fcluster, linkage

    x = np.asarray(p, dtype=np.float64)
    n = len(x)
    if n <= 1:
        return np.zeros(n, dtype=np.int64)
    assign = np.arange(n)
    if n > ward_max:
        import faiss

        xf = np.ascontiguousarray(x, dtype=np.float32)
        km = faiss.Kmeans(xf.shape[1], ward_max, niter=20, seed=int(seed) % (2**31), verbose=False,
                          max_points_per_centroid=max(256, -(-n // ward_max)), min_points_per_centroid=1)
        km.train(xf)
        _, idx = km.index.search(xf, 1)
        assign = idx[:, 0]
        x = km.centroids.astype(np.float64)
    z = linkage(x, method="ward")
    labels = fcluster(z, t=cut * z[-1, 2], criterion="distance") - 1
    _, dense = np.unique(labels[assign], return_inverse=True)
    return dense.astype(np.int64)


def uniqueness(p: np.ndarray, info: np.ndarray, labels: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """U_i inside each cluster (pairwise distances a block of rows at a time)."""
    from scipy.spatial.distance import cdist  # scipy takes a second to load: only when DataTailor runs

    out = np.zeros(len(p), dtype=np.float64)
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        if len(rows) < 2:
            continue
        x = np.asarray(p, dtype=np.float64)[rows]
        num = np.zeros(len(rows))
        total = 0.0
        for s in range(0, len(rows), chunk):
            d = cdist(x[s : s + chunk], x)
            num[s : s + chunk] = d @ np.asarray(info, dtype=np.float64)[rows]
            total += d.sum()
        out[rows] = num / (total / len(rows)) if total > 0 else 0.0
    return out


def representativeness(p: np.ndarray, info: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Rep_i = τ_c · I_i, τ_c = mean over the other clusters of exp(cos(μ_c, μ_c'))."""
    names = np.unique(labels)
    x = np.asarray(p, dtype=np.float64)
    mu = np.stack([x[labels == c].mean(0) for c in names])
    norm = np.linalg.norm(mu, axis=1, keepdims=True)
    mu = mu / np.where(norm > 0, norm, 1.0)
    e = np.exp(mu @ mu.T)
    k = len(names)
    tau = np.ones(k) if k == 1 else (e.sum(1) - np.diag(e)) / (k - 1)
    return tau[np.searchsorted(names, labels)] * np.asarray(info, dtype=np.float64)


def percentile_rank(x: np.ndarray) -> np.ndarray:
    """rk(x) in (0, 1]: average rank / n."""
    from scipy.stats import rankdata

    return rankdata(x, method="average") / len(x) if len(x) else np.zeros(0)


def datatailor_values(p: np.ndarray, info: np.ndarray, turns: np.ndarray, tasks: np.ndarray, cut: float = 0.1,
                      ward_max: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(V, cluster labels numbered across tasks) for every row."""
    value = np.zeros(len(p), dtype=np.float64)
    labels = np.zeros(len(p), dtype=np.int64)
    offset = 0
    r = np.asarray(turns, dtype=np.float64)
    for rows in per_task_rows(tasks).values():
        lab = ward_clusters(np.asarray(p)[rows], cut, ward_max, seed)
        u = uniqueness(np.asarray(p)[rows], info[rows], lab)
        rep = representativeness(np.asarray(p)[rows], info[rows], lab)
        value[rows] = (r[rows] * percentile_rank(info[rows]) + percentile_rank(u) + percentile_rank(rep)) / (r[rows] + 2)
        labels[rows] = lab + offset
        offset += int(lab.max()) + 1
    return value, labels


def datatailor_select(value: np.ndarray, tau: np.ndarray, tasks: np.ndarray, budget: int) -> tuple[np.ndarray, dict[str, int]]:
    """Budget per task ∝ |T|·mean(τ)², then the top b_T by V in each task. (mask, budgets)"""
    groups = per_task_rows(tasks)
    names = list(groups)
    weights = [len(groups[t]) * float(np.mean(tau[groups[t]])) ** 2 for t in names]
    quotas = dict(zip(names, split_weighted([len(groups[t]) for t in names], weights, budget)))
    selected = np.zeros(len(value), dtype=bool)
    for t, rows in groups.items():
        order = rows[np.lexsort((rows, -value[rows]))]
        selected[order[: quotas[t]]] = True
    return selected, quotas


def pool_signals(ctx: ScoringContext, root: Path) -> tuple[np.ndarray, pd.DataFrame]:
    """(last-token features, signals table) of the context's samples, from the resumable store ``root``."""
    if ctx.model is None or ctx.family is None:
        raise ValueError("datatailor runs the model: give the round's model")
    which = ctx.setting("datatailor").hidden
    dim = ctx.model.get_input_embeddings().embedding_dim
    store = FeatureStore.create(root, ctx.uids, dim, columns=SIGNALS, projector="last-token-hidden", layers="last",
                                hidden=which)
    if not store.complete:
        hidden_signals(ctx.model, ctx.family, ctx.samples, store, ctx.batch_size, ctx.max_length, ctx.progress,
                       hidden=which)
    return np.asarray(store.features(), dtype=np.float32), store.scores()


def _values(ctx: ScoringContext, root: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    st = ctx.setting("datatailor")
    p, sig = pool_signals(ctx, root)
    turns = np.asarray([s.num_turns for s in ctx.samples])
    info = sig["informativeness"].to_numpy(dtype=np.float64)
    value, labels = datatailor_values(p, info, turns, ctx.tasks, st.cut, st.ward_max, ctx.seed)
    return value, labels, sig["tau"].to_numpy(dtype=np.float64)


@SCORERS.register("datatailor")
def score_datatailor(ctx: ScoringContext) -> np.ndarray:
    """DataTailor's value V_i of each sample, inside its task."""
    if ctx.work_dir is not None:
        return _values(ctx, Path(ctx.work_dir) / "datatailor")[0]
    with tempfile.TemporaryDirectory() as tmp:
        return _values(ctx, Path(tmp) / "datatailor")[0]


@SELECTORS.register("datatailor")
class DataTailor(Selector):
    name = "datatailor"
    needs_model = True

    def select(self, ctx: SelectionContext) -> Selection:
        sctx = scoring_context(ctx)
        value, labels, tau = _values(sctx, ctx.round_files(self.name).method(self.name).dir)
        selected, quotas = datatailor_select(value, tau, sctx.tasks, ctx.budget)
        return Selection(selection_frame(ctx.pool, selected, scores=value, clusters=labels,
                                         experts=np.full(len(value), "datatailor", dtype=object)),
                         {"task_budget": quotas, "clusters": int(labels.max()) + 1 if len(labels) else 0})
