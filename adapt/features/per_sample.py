"""Exact per-sample LoRA gradients from one forward and one backward per batch.

Each LoRA layer of peft computes ``y = W x + s · B (A x)`` with ``A`` (``lora_A``) and ``B``
(``lora_B``) plain ``nn.Linear`` modules. For a linear map ``z = M u`` applied token by token, the
gradient of one sample's loss is ``∂ℓ_n/∂M = Σ_t (∂ℓ_n/∂z_{n,t}) u_{n,t}ᵀ`` (Adapt-∞/LESS/TIVE compute
the same thing with one backward per sample; METHODS.md, "Gradient features"). With the batch loss
``Σ_n ℓ_n`` and no interaction between the samples of a batch (attention masks, no batch norm), the
output gradients captured in one ordinary backward are exactly each sample's own, and the scaling
``s`` is already inside them. Padding positions get zero output gradient, so nothing leaks
between samples.

Besides the gradients, the pass yields every loss-based score of the expert pool (``ppl``,
``el2n``, ``entropy``, ``grand``; METHODS.md, Adapt-∞ item 3) from the same logits, the
predictive entropy over every position (``entropy_all``, the reference's ``entropy``), and on
request the mean last hidden state (the embedding ``pool.prune_embedding: hidden`` prunes on) from
the same forward, as adymaharana/adapt-inf ``llava/grad_utils.py`` (``collect_grads_and_reps``)
takes its representations from the gradient pass's ``output_hidden_states``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterator

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


@dataclass
class LoraLinear:
    """One captured ``nn.Linear`` of a LoRA layer (an A or a B matrix)."""

    name: str
    module: torch.nn.Linear

    @property
    def numel(self) -> int:
        return self.module.weight.numel()


def lora_linears(model: Any, layers: str | list[str] = "all") -> list[LoraLinear]:
    """The LoRA A and B ``nn.Linear`` modules whose gradients make the features.

    ``layers``: ``"all"`` (every LoRA layer), ``"last"`` (the LoRA layers of the language model's
    last decoder layer, as Adapt-∞'s code does), ``"attention"`` (every self-attention LoRA layer of the
    language model, as TIVE's ``compute_gradient_features.py``), or a list of regular expressions matched against
    module names (e.g. ``["layers\\.1\\.self_attn"]``).
    """
    from peft.tuners.lora import LoraLayer

    found: list[LoraLinear] = []
    for name, mod in model.named_modules():
        if not isinstance(mod, LoraLayer):
            continue
        for key in mod.active_adapters:
            if key in mod.lora_A:
                found.append(LoraLinear(f"{name}.lora_A.{key}", mod.lora_A[key]))
                found.append(LoraLinear(f"{name}.lora_B.{key}", mod.lora_B[key]))
    if not found:
        raise ValueError("the model has no LoRA layers (wrap it with peft first)")
    if layers == "all":
        return found
    if layers == "attention":
        chosen = [f for f in found if ".self_attn." in f.name and not is_vision_module(f.name)]
        if not chosen:
            raise ValueError("layers='attention': no LoRA module in a self-attention layer of the language model")
        return chosen
    if layers == "last":
        def layer_index(n: str) -> int:
            m = re.search(r"(?<!vision_model\.encoder\.)layers\.(\d+)\.", n)
            return int(m.group(1)) if m and "vision" not in n else -1
        last = max(layer_index(f.name) for f in found)
        if last < 0:
            raise ValueError("layers='last': no decoder layer found among the LoRA modules")
        return [f for f in found if layer_index(f.name) == last]
    pats = [re.compile(p) for p in layers]
    chosen = [f for f in found if any(p.search(f.name) for p in pats)]
    if not chosen:
        raise ValueError(f"features layers {layers}: no LoRA module matches")
    return chosen


class _Capture:
    """Forward hooks keep each chosen module's input; tensor hooks keep its output gradient."""

    def __init__(self, linears: list[LoraLinear]) -> None:
        self.linears = linears
        self.inputs: dict[str, torch.Tensor] = {}
        self.grads: dict[str, torch.Tensor] = {}
        self._handles: list[Any] = []

    def __enter__(self) -> "_Capture":
        for lin in self.linears:
            self._handles.append(lin.module.register_forward_hook(self._hook(lin.name)))
        return self

    def _hook(self, name: str):
        def fwd(_mod: torch.nn.Module, args: tuple[Any, ...], out: torch.Tensor) -> None:
            self.inputs[name] = args[0].detach()
            if out.requires_grad:
                out.register_hook(lambda g: self.grads.__setitem__(name, g.detach()))
        return fwd

    def __exit__(self, *exc: Any) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()


@dataclass
class BatchResult:
    """Per-sample outputs of one batch: gradient blocks (one per LoRA linear, ``[n, out, in]`` in
    the weight's layout) and the scores."""

    grads: dict[str, torch.Tensor]
    loss: torch.Tensor
    ppl: torch.Tensor
    el2n: torch.Tensor
    entropy: torch.Tensor
    grand: torch.Tensor
    answer_tokens: torch.Tensor
    entropy_all: torch.Tensor
    hidden: torch.Tensor | None = None  # [n, h] mean last hidden state, when asked for

    def flat(self, names: list[str] | None = None) -> torch.Tensor:
        """The per-sample gradients concatenated in module order, ``[n, P]``."""
        names = names or list(self.grads)
        return torch.cat([self.grads[k].flatten(1) for k in names], dim=1)


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for half-precision and float32 models, float64 for a float64 one (tests compare in it)."""
    return torch.promote_types(dtype, torch.float32)


def at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """``x`` in its accumulation dtype: ``.float()`` for bf16/fp16/fp32, unchanged in float64."""
    return x.to(accumulation_dtype(x.dtype))


def per_token_scores(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-sample loss-based scores over the answer tokens (labels != -100), METHODS.md Adapt-∞ 3.

    ``loss``: mean token cross-entropy ℓ_j (the training loss); ``ppl``: log of the mean of
    exp(ℓ_j) (the authors' mean of exponentials, in log space); ``el2n``: mean ‖onehot(y_j) −
    softmax(z_j)‖₂; ``entropy``: mean predictive entropy −Σ p log p.
    """
    shift_logits = at_least_float32(logits[:, :-1])
    shift_labels = labels[:, 1:]
    mask = shift_labels != IGNORE_INDEX
    n = logits.shape[0]
    count = mask.sum(1)
    rows, cols = mask.nonzero(as_tuple=True)
    z = shift_logits[rows, cols]  # [M, V] answer positions only
    y = shift_labels[rows, cols]
    logp = F.log_softmax(z, dim=-1)
    nll = -logp.gather(1, y[:, None]).squeeze(1)
    p = logp.exp()
    ent = -(p * logp).sum(-1)
    p_y = p.gather(1, y[:, None]).squeeze(1)  # ‖p − e_y‖² = Σp² − 2p_y + 1, without a one-hot [M, V]
    el2n_tok = torch.sqrt(((p * p).sum(-1) - 2 * p_y + 1).clamp(min=0))

    def per_sample(v: torch.Tensor) -> torch.Tensor:
        return torch.zeros(n, dtype=v.dtype, device=v.device).index_add_(0, rows, v)

    denom = count.clamp(min=1).to(nll.dtype)
    loss_sum = per_sample(nll)
    # log-mean-exp of the token losses, computed stably per sample
    dense = torch.full(mask.shape, float("-inf"), dtype=nll.dtype, device=nll.device)
    dense[rows, cols] = nll
    ppl = torch.logsumexp(dense, dim=1) - torch.log(denom)
    return {"loss_sum": loss_sum, "loss": loss_sum / denom, "ppl": ppl, "el2n": per_sample(el2n_tok) / denom,
            "entropy": per_sample(ent) / denom, "answer_tokens": count}


@torch.no_grad()
def forward_scores(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """:func:`per_token_scores` of one collated ``batch`` from a forward pass alone (no gradients,
    the labels kept out of the model call): what the forward-only passes (Image Grounding, the
    rate probe) share."""
    out = model(**{k: v for k, v in batch.items() if k != "labels"})
    return per_token_scores(out.logits, batch["labels"])


def position_entropy(logits: torch.Tensor, attention_mask: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """Per-sample mean predictive entropy −Σ_v p log p over every position whose attention mask is 1
    (prompt, image tokens and answer alike; no shift, so the last position's prediction counts too).

    This is the reference's entropy score: adymaharana/adapt-inf ``llava/grad_utils.py``,
    ``obtain_entropy_score``, takes the softmax of the whole unshifted ``outputs.logits`` of a
    batch-1 (unpadded) sequence and averages over its positions; its ``log(p + 1e-10)`` moves the
    value by at most V·1e-10 and is left out. Padding positions are excluded here so that a padded
    batch gives each sample the value of its own unpadded sequence. Computed without gradients,
    ``chunk`` positions at a time (a [positions, V] float32 block, not the whole batch's logits).
    """
    n = logits.shape[0]
    rows, cols = attention_mask.bool().nonzero(as_tuple=True)
    acc = accumulation_dtype(logits.dtype)
    total = torch.zeros(n, dtype=acc, device=logits.device)
    with torch.no_grad():
        for s in range(0, rows.numel(), chunk):
            r, c = rows[s : s + chunk], cols[s : s + chunk]
            logp = F.log_softmax(logits[r, c].detach().to(acc), dim=-1)
            total.index_add_(0, r, -(logp.exp() * logp).sum(-1))
    count = attention_mask.bool().sum(1).clamp(min=1).to(acc)
    return total / count


def mean_hidden(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Each sample's hidden states [n, T, h] averaged over its positions with attention mask 1, in
    the accumulation dtype (SemDeDup embeds with a model's mean token state, Abbas et al. 2023).
    The caller passes transformers' last ``hidden_states`` (after the final norm); the reference
    (adymaharana/adapt-inf ``llava/grad_utils.py``, ``collect_grads_and_reps``) averages
    ``hidden_states[layer]`` of the same forward for its ``--layer_dims`` (default 31: the input of
    a 32-layer LLaVA's last decoder layer), over every position of a batch-1 sequence."""
    h = at_least_float32(hidden.detach())
    mask = attention_mask.to(h.dtype).unsqueeze(-1)
    return (h * mask).sum(1) / mask.sum(1).clamp_min(1.0)


VISION_PARTS = ("vision_tower", "vision_model", "visual", "multi_modal_projector")


def is_vision_module(name: str) -> bool:
    """Modules that run on the images of the batch (rows are images or patches, not samples)."""
    return any(part in name for part in VISION_PARTS)


def _per_sample_block(name: str, u: torch.Tensor, g: torch.Tensor, n: int,
                      images_per_sample: list[int] | None, image_sizes: list[int] | None) -> torch.Tensor:
    """Σ over the rows a sample owns of gᵀu: ``[n, out, in]``.

    Text modules see ``[n, T, in]``. Vision modules see the batch's images in sample order:
    ``[images, T', in]`` (LLaVA) or all patches flattened ``[rows, in]`` (Qwen2-VL, where image i
    owns a share of the rows proportional to ``image_sizes[i]``, its t·h·w).
    """
    if not is_vision_module(name):
        u3, g3 = u.reshape(n, -1, u.shape[-1]), g.reshape(n, -1, g.shape[-1])
        return torch.einsum("nto,nti->noi", at_least_float32(g3), at_least_float32(u3))
    if images_per_sample is None:
        raise ValueError(f"{name}: per-sample gradients of a vision module need images_per_sample")
    owner_of_image = torch.repeat_interleave(torch.arange(n, device=u.device),
                                             torch.tensor(images_per_sample, device=u.device))
    if u.dim() >= 3:
        per_image = torch.einsum("nto,nti->noi", at_least_float32(g.reshape(g.shape[0], -1, g.shape[-1])),
                                 at_least_float32(u.reshape(u.shape[0], -1, u.shape[-1])))
        out = per_image.new_zeros((n, *per_image.shape[1:]))
        return out.index_add_(0, owner_of_image, per_image)
    sizes = torch.tensor(image_sizes or images_per_sample, device=u.device)
    rows_per_image = sizes * u.shape[0] // sizes.sum()
    owner = torch.repeat_interleave(owner_of_image, rows_per_image)  # non-decreasing: sample order
    counts = torch.bincount(owner, minlength=n)
    start = torch.cumsum(counts, 0) - counts
    pos = torch.arange(owner.numel(), device=u.device) - start[owner]
    width = int(counts.max()) if owner.numel() else 0
    acc = accumulation_dtype(u.dtype)
    u_pad = u.new_zeros((n, width, u.shape[-1]), dtype=acc)
    g_pad = g.new_zeros((n, width, g.shape[-1]), dtype=acc)
    u_pad[owner, pos] = u.to(acc)
    g_pad[owner, pos] = g.to(acc)
    return torch.einsum("nto,nti->noi", g_pad, u_pad)  # each sample's rows, zero-padded


def per_sample_gradients(model: Any, batch: dict[str, torch.Tensor], linears: list[LoraLinear],
                         images_per_sample: list[int] | None = None,
                         image_sizes: list[int] | None = None, hidden: bool = False) -> BatchResult:
    """One forward and one backward of ``Σ_n loss_n`` (each sample's mean answer loss); returns
    every sample's exact gradient for each chosen LoRA linear and its scores.

    ``images_per_sample`` (and for Qwen2-VL ``image_sizes``, t·h·w of each image) map the rows of
    vision modules to samples. Parameter ``.grad`` fields are left untouched
    (``torch.autograd.grad`` on the chosen weights only). ``hidden``: also the mean last hidden
    state of each sample (:func:`mean_hidden`), from the same forward.
    """
    labels = batch["labels"]
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    n = labels.shape[0]
    mask = inputs.get("attention_mask")
    if mask is None:
        mask = torch.ones(labels.shape, dtype=torch.long, device=labels.device)
    with _Capture(linears) as cap:
        out = model(**inputs, output_hidden_states=True) if hidden else model(**inputs)
        scores = per_token_scores(out.logits, labels)
        entropy_all = position_entropy(out.logits, mask)
        emb = mean_hidden(out.hidden_states[-1], mask) if hidden else None
        total = scores["loss"].sum()
        weights = [lin.module.weight for lin in linears]
        torch.autograd.grad(total, weights, allow_unused=True)
    grads: dict[str, torch.Tensor] = {}
    for lin in linears:
        u = cap.inputs.get(lin.name)
        g = cap.grads.get(lin.name)
        if u is None or g is None:  # not reached by this batch (no image) or not by the loss
            grads[lin.name] = torch.zeros((n, *lin.module.weight.shape), device=labels.device)
            continue
        grads[lin.name] = _per_sample_block(lin.name, u, g, n, images_per_sample, image_sizes)
    sq = sum(v.pow(2).flatten(1).sum(1) for v in grads.values())
    return BatchResult(grads=grads, loss=scores["loss"].detach(), ppl=scores["ppl"].detach(),
                       el2n=scores["el2n"].detach(), entropy=scores["entropy"].detach(),
                       grand=torch.sqrt(sq), answer_tokens=scores["answer_tokens"], entropy_all=entropy_all,
                       hidden=emb)


def batches(samples: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(samples), size):
        yield samples[i : i + size]
