"""Every registered expert gives one finite score per sample; the loss-based ones are the gradient
pass's stored scores, image_grounding is the PPL ratio worked out with a zeroed image, 1 without one."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import adapt.methods  # noqa: F401  (registers every method's scorer: gdo, tive, ...)
from adapt.config import LoraSettings
from adapt.features.extract import extract_features
from adapt.features.per_sample import lora_linears
from adapt.features.projectors import PROJECTORS
from adapt.features.store import FeatureStore
from adapt.models.collate import Collator
from adapt.models.loading import load_model
from adapt.models.lora import add_new_adapter
from adapt.scoring import SCORERS, ScoringContext

from tolerances import FLOAT64_NETWORK_RTOL, UNIT_ROUNDOFF, float64_answer_loss


@pytest.fixture(scope="module")
def ctx(tiny_models, toy_samples, tmp_path_factory):
    b = load_model(tiny_models["tiny-llava"], dtype="float64")  # by-hand checks compare in float64
    torch.manual_seed(0)
    b.model = add_new_adapter(b.model, LoraSettings(r=4, alpha=8))
    for name, p in b.model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.05)
    store = FeatureStore.create(tmp_path_factory.mktemp("f") / "f", [s.uid for s in toy_samples], 64,
                                projector="sjlt", seed=0)
    extract_features(b.model, b.family, toy_samples, store, PROJECTORS.get("sjlt")(64), lora_linears(b.model),
                     batch_size=2, max_length=256, progress=False)
    return ScoringContext.of_samples(toy_samples, store=store, model=b.model, family=b.family, batch_size=2,
                          max_length=256)


@pytest.mark.parametrize("name", SCORERS.names())
def test_every_scorer_gives_one_finite_score_per_sample(name, ctx):
    s = SCORERS.get(name)(ctx)
    assert s.shape == (len(ctx.samples),) and np.isfinite(s).all()


@pytest.mark.parametrize("name,column,entropy_over", [("ppl", "ppl", "all"), ("el2n", "el2n", "all"),
                                                      ("grand", "grand", "all"), ("entropy", "entropy_all", "all"),
                                                      ("entropy", "entropy", "answer")])
def test_loss_based_experts_are_the_stored_scores(name, column, entropy_over, ctx):
    """``entropy`` reads the entropy over every position (the reference's) unless
    selection.adapt_inf.entropy_over is ``answer``."""
    import dataclasses

    from adapt.config import SelectionConfig

    settings = SelectionConfig()
    settings.adapt_inf.entropy_over = entropy_over
    got = SCORERS.get(name)(dataclasses.replace(ctx, settings=settings))
    stored = ctx.store.scores()
    np.testing.assert_array_equal(got, stored[column].to_numpy(dtype=np.float64))
    assert not np.array_equal(stored["entropy"], stored["entropy_all"])  # two different columns


@pytest.mark.numeric
def test_image_grounding_by_hand(ctx):
    got = SCORERS.get("image_grounding")(ctx)
    collate = Collator(ctx.family, 256)
    for i, s in enumerate(ctx.samples):
        if not s.images:
            assert got[i] == 1.0  # text only: not grounded
            continue
        batch = collate([s])
        with torch.no_grad():
            with_image = float64_answer_loss(ctx.model, batch).item()
            blind = float64_answer_loss(ctx.model, dict(batch, pixel_values=torch.zeros_like(batch["pixel_values"])))
        # the loss with the image is read back from the store's float32 scores: off by ≤ 2⁻²⁴·loss,
        # which exp turns into the same relative error of the ratio
        rel = UNIT_ROUNDOFF[torch.float32] * with_image + FLOAT64_NETWORK_RTOL
        assert got[i] == pytest.approx(math.exp(blind.item()) / math.exp(with_image), rel=rel)
        assert got[i] != 1.0


@pytest.mark.numeric
def test_image_grounding_without_a_store_runs_both_forwards(ctx):
    """No feature store: the loss with the image is computed, not read; the same ratios."""
    import dataclasses

    plain = dataclasses.replace(ctx, store=None)
    stored_loss = ctx.store.scores()["loss"].to_numpy(dtype=np.float64)  # float32 in the store: ≤ 2⁻²⁴ relative
    np.testing.assert_allclose(SCORERS.get("image_grounding")(plain), SCORERS.get("image_grounding")(ctx),
                               rtol=UNIT_ROUNDOFF[torch.float32] * stored_loss.max() + FLOAT64_NETWORK_RTOL, atol=0)


def test_the_blind_forward_runs_once_for_image_grounding_and_gdo(ctx, monkeypatch):
    import adapt.scoring.image_grounding as ig

    fresh = ScoringContext.of_samples(ctx.samples, store=ctx.store, model=ctx.model, family=ctx.family,
                                      batch_size=2, max_length=256)
    calls = []
    real = ig.answer_losses
    monkeypatch.setattr(ig, "answer_losses", lambda model, batch: calls.append(1) or real(model, batch))
    ratio = SCORERS.get("image_grounding")(fresh)
    SCORERS.get("gdo")(fresh)
    SCORERS.get("image_grounding")(fresh)
    assert len(calls) == 1  # two image samples, one batch of 2, one forward without the image
    np.testing.assert_allclose(ratio, SCORERS.get("image_grounding")(ctx))
