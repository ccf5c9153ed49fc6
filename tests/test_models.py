"""Every supported family (LLaVA, Qwen2-VL, text-only causal LM), built tiny from a config, goes
through the same collation, training and evaluation code as the demo."""

import pytest
import torch

from adapt.config import EvaluationConfig, LoraSettings, TrainingConfig
from adapt.evaluation.generation import EvalTask, evaluate_tasks
from adapt.models.collate import IGNORE_INDEX, Collator, encode_sample
from adapt.models.loading import load_model
from adapt.models.lora import add_new_adapter
from adapt.training.trainer import get_accelerator, train_round

from tolerances import FLOAT64_NETWORK_RTOL, UNIT_ROUNDOFF

FAMILIES = ["tiny-llava", "tiny-qwen2-vl", "tiny-causal-lm"]
EXPECTED_FAMILY = {"tiny-llava": "llava", "tiny-qwen2-vl": "qwen2_vl", "tiny-causal-lm": "causal_lm"}


@pytest.mark.parametrize("name", FAMILIES)
def test_labels_are_exactly_the_answer_turns(name, tiny_models, toy_samples):
    b = load_model(tiny_models[name])
    assert b.family.name == EXPECTED_FAMILY[name]
    enc = encode_sample(toy_samples[1], b.family, max_length=512)
    answer_ids = [i for i, l in zip(enc.input_ids, enc.labels) if l != IGNORE_INDEX]
    expected = b.family.answer_segment("yes") + b.family.answer_segment("oui, sûr")
    assert b.tokenizer.decode(answer_ids) == expected
    assert [l for l in enc.labels if l != IGNORE_INDEX] == answer_ids


@pytest.mark.parametrize("name", FAMILIES)
def test_a_sample_s_own_system_prompt_replaces_the_configs(name, tiny_models, toy_samples):
    from dataclasses import replace


    plain = toy_samples[0]
    own = replace(plain, extra={"system": "Answer in one word."})
    default = load_model(tiny_models[name], system_prompt="Be brief.").family
    configured = load_model(tiny_models[name], system_prompt="Answer in one word.").family
    # the sample's own prompt encodes as the config's would, and wins over the config's
    assert encode_sample(own, default, 512).input_ids == encode_sample(plain, configured, 512).input_ids
    assert encode_sample(own, default, 512).input_ids != encode_sample(plain, default, 512).input_ids
    text = default.tokenizer.decode(encode_sample(own, default, 512).input_ids)
    assert "Answer in one word." in text and "Be brief." not in text
    assert encode_sample(own, default, 512).labels == encode_sample(plain, configured, 512).labels


@pytest.mark.numeric
@pytest.mark.parametrize("name", FAMILIES)
def test_padding_does_not_leak_between_samples(name, tiny_models, toy_samples):
    """The logits of a sample in a padded batch equal its logits alone (float64: tests/tolerances.py)."""
    b = load_model(tiny_models[name], dtype="float64")
    b.model.eval()
    collate = Collator(b.family, 512)
    with torch.no_grad():
        batch = collate(toy_samples)
        logits = b.model(**{k: v for k, v in batch.items() if k != "labels"}).logits
        for i, s in enumerate(toy_samples):
            alone = collate([s])
            la = b.model(**{k: v for k, v in alone.items() if k != "labels"}).logits[0]
            n = int(alone["attention_mask"].sum())
            torch.testing.assert_close(logits[i, :n], la[:n], rtol=FLOAT64_NETWORK_RTOL,
                                       atol=FLOAT64_NETWORK_RTOL * float(la[:n].abs().max()))
            assert torch.equal(batch["labels"][i, :n], alone["labels"][0, :n])
            assert (batch["labels"][i, n:] == IGNORE_INDEX).all()


@pytest.mark.parametrize("name", FAMILIES)
def test_lora_training_step_and_evaluation(name, tiny_models, toy_samples):
    b = load_model(tiny_models[name])
    b.model = add_new_adapter(b.model, LoraSettings(r=4, alpha=8))
    cfg = TrainingConfig(batch_size=3, epochs=30, lr=5e-3, warmup_ratio=0.0)
    stats = train_round(b.model, b.family, toy_samples, cfg, get_accelerator(cfg), seed=0, max_length=512,
                        progress=False)
    assert stats.steps == 30
    assert stats.last_loss < stats.first_loss - 0.5
    res = evaluate_tasks(b.model, b.family, [EvalTask("toy", "exact", toy_samples)],
                         EvaluationConfig(batch_size=2, max_new_tokens=12), max_length=512, progress=False)
    assert res["toy"].n == 3
    preds = [p["prediction"] for p in res["toy"].predictions]
    assert all(isinstance(p, str) for p in preds)
    assert res["toy"].score == pytest.approx(sum(p["score"] for p in res["toy"].predictions) / 3)


def _train_tiny_llava(tiny_models, toy_samples) -> tuple[tuple[float, float, float], dict[str, torch.Tensor]]:
    """Three epochs of a fresh seeded adapter on the toy samples: (first, last, mean loss), trained weights."""
    b = load_model(tiny_models["tiny-llava"])
    torch.manual_seed(0)
    b.model = add_new_adapter(b.model, LoraSettings(r=4, alpha=8))
    cfg = TrainingConfig(batch_size=2, epochs=3, lr=1e-3)
    s = train_round(b.model, b.family, toy_samples, cfg, get_accelerator(cfg), seed=3, max_length=512,
                    progress=False)
    return (s.first_loss, s.last_loss, s.mean_loss), {k: v.detach().clone() for k, v in b.model.named_parameters()
                                                     if v.requires_grad}


def _same_training(a, b) -> bool:
    (loss0, w0), (loss1, w1) = a, b
    return loss0 == loss1 and w0.keys() == w1.keys() and all(torch.equal(w0[k], w1[k]) for k in w0)


def test_training_is_deterministic_on_cpu(tiny_models, toy_samples):
    assert _same_training(_train_tiny_llava(tiny_models, toy_samples), _train_tiny_llava(tiny_models, toy_samples))


@pytest.mark.parametrize("name", FAMILIES)
def test_the_encoding_cache_gives_the_same_batches_and_encodes_each_sample_once(name, tiny_models, toy_samples,
                                                                                 monkeypatch):
    """A Collator with a cache: each sample encoded once over two epochs, batches equal to an uncached
    Collator's; a cap of one sample's bytes keeps one; two samples with one uid are not mixed up."""
    from dataclasses import replace

    import adapt.models.collate as collate_module

    b = load_model(tiny_models[name])
    calls = []
    real = collate_module.encode_sample
    monkeypatch.setattr(collate_module, "encode_sample", lambda s, *a, **k: calls.append(s.uid) or real(s, *a, **k))
    plain, cached = Collator(b.family, 512), Collator(b.family, 512, cache_bytes=1 << 30)
    for order in (toy_samples, toy_samples[::-1]):  # two epochs, another order
        want, got = plain(order), cached(order)
        assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)
    assert len(calls) == 3 * len(toy_samples)  # plain: 2 per sample, cached: 1
    first = real(toy_samples[0], b.family, 512)
    one = Collator(b.family, 512, cache_bytes=collate_module.encoded_bytes(first))
    calls.clear()
    for _ in range(2):
        one(toy_samples)
    assert calls.count(toy_samples[0].uid) == 1 and calls.count(toy_samples[1].uid) == 2
    twin = replace(toy_samples[1], conversations=toy_samples[0].conversations)  # same uid, other content
    assert twin.uid == toy_samples[1].uid
    assert torch.equal(cached([twin])["input_ids"], plain([twin])["input_ids"])
    assert not torch.equal(cached([twin])["input_ids"], cached([toy_samples[1]])["input_ids"])


def test_training_with_the_encoding_cache_is_training_without_it(tiny_models, toy_samples, monkeypatch):
    """train_round keeps the epochs' encodings (trainer.ENCODING_CACHE_BYTES): the same losses and the
    same trained weights, bit for bit, as with the cache off."""
    import adapt.training.trainer as trainer

    cached = _train_tiny_llava(tiny_models, toy_samples)
    monkeypatch.setattr(trainer, "ENCODING_CACHE_BYTES", 0)
    assert _same_training(cached, _train_tiny_llava(tiny_models, toy_samples))


@pytest.mark.numeric
def test_adapter_loads_with_stock_peft(tiny_models, toy_samples, tmp_path):
    from peft import PeftModel

    b = load_model(tiny_models["tiny-llava"], dtype="float64")  # the same forward twice, compared in float64
    torch.manual_seed(0)
    b.model = add_new_adapter(b.model, LoraSettings(r=4, alpha=8))
    for n, p in b.model.named_parameters():  # make the adapter non-trivial (B starts at zero)
        if "lora_B" in n:
            p.data.normal_(0, 0.1)
    b.model.save_pretrained(tmp_path / "adapter")
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
    batch = Collator(b.family, 512)(toy_samples)
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        ref = b.model(**inputs).logits
        base = load_model(tiny_models["tiny-llava"], dtype="float64").model
        loaded = PeftModel.from_pretrained(base, str(tmp_path / "adapter"))
        torch.testing.assert_close(loaded(**inputs).logits, ref, rtol=FLOAT64_NETWORK_RTOL,
                                   atol=FLOAT64_NETWORK_RTOL * float(ref.abs().max()))


def test_code_inside_a_checkpoint_does_not_run_unless_asked(tiny_models, tmp_path):
    """A checkpoint whose config points at its own Python code: the code never runs unless
    ``model.trust_remote_code`` is set."""
    import json
    import shutil

    from adapt.errors import AdaptError
    from adapt.models.loading import load_model

    ckpt = tmp_path / "ckpt"
    shutil.copytree(tiny_models["tiny-causal-lm"], ckpt)
    marker = tmp_path / "ran"
    (ckpt / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('x')\n"
                                  "from transformers import LlamaConfig\nclass EvilConfig(LlamaConfig):\n    pass\n")
    cfg = json.loads((ckpt / "config.json").read_text())
    cfg["auto_map"] = {"AutoConfig": "evil.EvilConfig"}
    (ckpt / "config.json").write_text(json.dumps(cfg))
    bundle = load_model(ckpt, "causal_lm")  # the built-in Llama classes; evil.py is not imported
    assert type(bundle.model.config).__name__ == "LlamaConfig" and not marker.exists()
    try:
        load_model(ckpt, "causal_lm", trust_remote_code=True)
    except AdaptError:
        pass  # whether transformers can build a model from it does not matter here
    assert marker.exists()  # asked for: the checkpoint's code ran


@pytest.mark.numeric
def test_gradient_checkpointing_trains_the_same_and_is_off_afterwards(tiny_models, toy_samples):
    """training.gradient_checkpointing: each decoder layer's attention runs twice per step (the
    recomputation in the backward), the losses are the ones without it, and it is off afterwards."""
    results = []
    for ckpt in (False, True):
        b = load_model(tiny_models["tiny-llava"], dtype="float64")  # recomputation compared in float64
        torch.manual_seed(0)
        b.model = add_new_adapter(b.model, LoraSettings(r=4, alpha=8))
        attention = b.model.get_base_model().model.language_model.layers[0].self_attn  # hooks on the layer
        calls = []                                              # itself stay outside the checkpoint
        handle = attention.register_forward_pre_hook(lambda *a: calls.append(1))
        cfg = TrainingConfig(batch_size=3, epochs=2, lr=1e-3, gradient_checkpointing=ckpt)
        s = train_round(b.model, b.family, toy_samples, cfg, get_accelerator(cfg), seed=3, max_length=512,
                        progress=False)
        handle.remove()
        results.append((s.first_loss, s.last_loss, len(calls)))
        base = b.model.get_base_model()
        assert not getattr(base, "is_activation_checkpointing", None) and not any(
            getattr(m, "gradient_checkpointing", False) for m in base.modules())
    (f0, l0, n0), (f1, l1, n1) = results
    assert (n0, n1) == (2, 4)  # 2 steps; with checkpointing each layer's forward runs again in the backward
    # the model runs in float64 but HF's loss upcasts the logits to float32: two float64 passes that
    # agree to ~1e-15 give the same float32 loss or its neighbour (one ulp, ≤ 2⁻²³ relative)
    assert f1 == pytest.approx(f0, rel=4 * UNIT_ROUNDOFF[torch.float32]) and \
        l1 == pytest.approx(l0, rel=4 * UNIT_ROUNDOFF[torch.float32])
