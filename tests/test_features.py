"""Per-sample LoRA gradients from one batched backward equal batch-1 autograd gradients (in float64,
where the batch's other summation order moves nothing that matters: tests/tolerances.py),
for every model family, with padding, several images per sample and text-only samples in a batch;
the loss-based scores of the same pass equal their definitions computed by hand; a fresh adapter
(B = 0) has no A-gradient."""

from __future__ import annotations

import math

import pytest
import torch

from adapt.config import LoraSettings
from adapt.features.per_sample import lora_linears, per_sample_gradients, per_token_scores, position_entropy
from adapt.models.collate import Collator
from adapt.models.loading import load_model
from adapt.models.lora import add_new_adapter

from tolerances import FLOAT64_NETWORK_RTOL, float64_answer_loss, gamma

FAMILIES = ["tiny-llava", "tiny-qwen2-vl", "tiny-causal-lm"]

pytestmark = pytest.mark.numeric  # every test here compares floats computed two ways


def _lora_model(path, dtype: str = "auto"):
    b = load_model(path, dtype=dtype)
    torch.manual_seed(0)
    b.model = add_new_adapter(b.model, LoraSettings(r=4, alpha=8, target_modules="all-linear"))
    for name, p in b.model.named_parameters():
        if "lora_B" in name:  # peft starts B at 0, which would make every A-gradient 0
            torch.nn.init.normal_(p, std=0.05)
    b.model.eval()
    return b


@pytest.mark.parametrize("name", FAMILIES)
def test_batched_per_sample_gradients_equal_batch_one_autograd(name, tiny_models, toy_samples):
    b = _lora_model(tiny_models[name], dtype="float64")
    linears = lora_linears(b.model)
    collate = Collator(b.family, 256)
    batch = collate(toy_samples)
    assert (batch["attention_mask"] == 0).any()  # the batch is padded
    images = [len(s.images) if b.family.uses_images else 0 for s in toy_samples]
    sizes = [int(x.prod()) for x in batch["image_grid_thw"]] if "image_grid_thw" in batch else None
    res = per_sample_gradients(b.model, batch, linears, images_per_sample=images, image_sizes=sizes)
    weights = [lin.module.weight for lin in linears]
    nonzero_vision = 0
    for i, s in enumerate(toy_samples):
        one = collate([s])
        loss = float64_answer_loss(b.model, one)
        ref = torch.autograd.grad(loss, weights, allow_unused=True)
        assert res.loss[i].item() == pytest.approx(loss.item(), rel=FLOAT64_NETWORK_RTOL)
        for lin, r in zip(linears, ref):
            r = torch.zeros_like(lin.module.weight) if r is None else r
            assert res.grads[lin.name][i].dtype == torch.float64
            torch.testing.assert_close(res.grads[lin.name][i], r, rtol=FLOAT64_NETWORK_RTOL,
                                       atol=FLOAT64_NETWORK_RTOL * float(r.abs().max()))  # entries that cancel
            if "vision" in lin.name or "visual" in lin.name:
                nonzero_vision += int(r.abs().sum() > 0)
        flat_ref = torch.cat([(torch.zeros_like(lin.module.weight) if r is None else r).flatten()
                              for lin, r in zip(linears, ref)])
        assert res.grand[i].item() == pytest.approx(flat_ref.norm().item(), rel=FLOAT64_NETWORK_RTOL)
        with torch.no_grad():  # the reference's entropy: every position of the unpadded sequence, unshifted
            logp = torch.log_softmax(b.model(**{k: v for k, v in one.items() if k != "labels"}).logits[0], -1)
        want = -(logp.exp() * logp).sum(-1).mean().item()
        assert res.entropy_all[i].item() == pytest.approx(want, rel=FLOAT64_NETWORK_RTOL)
    if name != "tiny-causal-lm":
        assert nonzero_vision > 0  # the vision tower's LoRA layers were checked with real gradients


def test_last_layer_selection(tiny_models):
    b = _lora_model(tiny_models["tiny-llava"])
    last = lora_linears(b.model, "last")
    assert last and all(".layers.1." in lin.name and "vision" not in lin.name for lin in last)
    assert {n.name.rsplit(".lora_", 1)[1][0] for n in last} == {"A", "B"}
    with pytest.raises(ValueError, match="no LoRA module matches"):
        lora_linears(b.model, ["nothing_like_this"])


def test_scores_by_hand():
    # one sample, two answer tokens over a vocabulary of 3; position 0 is the prompt
    logits = torch.tensor([[[0.0, 0.0, 0.0], [2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [9.0, 9.0, 9.0]]])
    labels = torch.tensor([[-100, -100, 0, 1]])  # token t predicts labels[t + 1]
    s = per_token_scores(logits, labels)
    p1 = torch.softmax(torch.tensor([2.0, 0.0, 0.0]), 0)
    p2 = torch.softmax(torch.tensor([0.0, 1.0, 0.0]), 0)
    l1, l2 = -math.log(p1[0]), -math.log(p2[1])
    assert s["loss"].item() == pytest.approx((l1 + l2) / 2)
    assert s["ppl"].item() == pytest.approx(math.log((math.exp(l1) + math.exp(l2)) / 2))
    e1 = torch.linalg.vector_norm(p1 - torch.tensor([1.0, 0, 0])).item()
    e2 = torch.linalg.vector_norm(p2 - torch.tensor([0, 1.0, 0])).item()
    assert s["el2n"].item() == pytest.approx((e1 + e2) / 2)
    h = lambda p: -(p * p.log()).sum().item()  # noqa: E731
    assert s["entropy"].item() == pytest.approx((h(p1) + h(p2)) / 2)
    assert s["answer_tokens"].tolist() == [2]


def test_a_fresh_adapter_has_no_a_gradient(tiny_models, toy_samples):
    """B = 0 (peft's start): ∂ℓ/∂A = s·Bᵀ(∂ℓ/∂y) xᵀ is exactly 0, so only the B-gradients carry
    anything (why features.adapter: previous takes them on the trained adapter)."""
    b = load_model(tiny_models["tiny-llava"], dtype="float64")
    torch.manual_seed(0)
    b.model = add_new_adapter(b.model, LoraSettings(r=4, alpha=8))
    b.model.eval()
    linears = lora_linears(b.model)
    for lin in linears:
        lin.module.weight.requires_grad_(True)
    res = per_sample_gradients(b.model, Collator(b.family, 256)(toy_samples), linears, images_per_sample=[
        len(s.images) for s in toy_samples])
    a = [k for k in res.grads if ".lora_A." in k]
    assert a and all(res.grads[k].abs().max().item() == 0 for k in a)
    assert max(res.grads[k].abs().max().item() for k in res.grads if ".lora_B." in k) > 0


def test_entropy_over_every_unpadded_position_by_hand():
    """entropy_all: −Σ p log p at every position whose attention mask is 1, unshifted (the last
    position counts), averaged per sample; padding is left out. softmax([0, 0]) = (½, ½) has
    entropy ln 2, softmax([ln 3, 0]) = (¾, ¼) has ln 4 − ¾ ln 3."""
    l3 = math.log(3)
    logits = torch.tensor([[[0.0, 0.0], [l3, 0.0], [0.0, l3]],
                           [[l3, 0.0], [0.0, 0.0], [100.0, -100.0]]], dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    h2, h34 = math.log(2), math.log(4) - 0.75 * l3
    got = position_entropy(logits, mask, chunk=2)  # chunks that cut across samples
    # float64 both ways, each value through fewer than 16 roundings (log-softmax, products, sums, mean)
    assert got.tolist() == pytest.approx([(h2 + 2 * h34) / 3, (h34 + h2) / 2], rel=gamma(16, torch.float64))
