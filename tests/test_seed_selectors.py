"""TIVE, MLLM-Selector, DataTailor and GDO on small constructed inputs whose answers are worked
out by hand (METHODS.md), and every one of them returns exactly the budget; then the model passes
of TIVE, MLLM-Selector and DataTailor as their authors run them: TIVE's gradients on every attention
LoRA layer, MLLM-Selector's seed model each round, DataTailor's hidden states before the final norm."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from adapt.config import DatasetEntry, SelectionConfig, TinyModelConfig, load_config
from adapt.data.sample import Sample
from adapt.methods.datatailor import (datatailor_select, datatailor_values, final_norm, percentile_rank,
                                        pool_signals, representativeness, spectral_entropy, uniqueness, ward_clusters)
from adapt.methods.gdo import content_hash, gdo_construct, is_multiple_choice, quality, robust_z, strata
from adapt.methods.mllm_selector import MllmSelector, mllm_selector_pick, seed_rows
from adapt.methods.tive import Tive, instance_values, task_budgets, task_values, tive_select, warmup_rows

from tolerances import unit_norm_atol


# ---------------------------------------------------------------------------------------------- TIVE
def test_tive_task_budgets_follow_the_mean_gradient_norms():
    tasks = np.array(["a"] * 100 + ["b"] * 100 + ["c"] * 50, dtype=object)
    norms = np.r_[np.full(100, 1.0), np.linspace(2.0, 4.0, 100), np.full(50, 4.0)]  # V = 1, 3, 4
    values = task_values(norms, tasks)
    assert values == pytest.approx({"a": 1.0, "b": 3.0, "c": 4.0})
    assert task_budgets(tasks, values, 80) == {"a": 10, "b": 30, "c": 40}
    # a task whose share exceeds its size is taken whole, the rest goes to the others by value
    assert task_budgets(tasks, values, 150) == {"a": 25, "b": 75, "c": 50}


@pytest.mark.numeric
def test_tive_instance_value_is_the_mean_cosine_within_the_task():
    rng = np.random.default_rng(0)
    g = rng.normal(size=(30, 8))
    tasks = np.array(["x"] * 12 + ["y"] * 18, dtype=object)
    got = instance_values(g, tasks)
    for rows in (np.arange(12), np.arange(12, 30)):
        u = g[rows] / np.linalg.norm(g[rows], axis=1, keepdims=True)
        cos = u @ u.T  # the authors' N×N matrix
        # ours normalises in float32: each unit row within γ_{d+3} per entry, so a cosine (Σ|ûᵢv̂ᵢ| ≤ 1)
        # within 2·γ_{d+3}; the rest is float64
        atol = 2 * unit_norm_atol(g.shape[1])
        np.testing.assert_allclose(got[rows], cos.mean(axis=1), rtol=0, atol=atol)
        mean_dir = u.mean(0)  # = cosine with the task's mean normalised gradient, times its norm
        np.testing.assert_allclose(got[rows], (u @ (mean_dir / np.linalg.norm(mean_dir))) * np.linalg.norm(mean_dir),
                                   rtol=0, atol=atol)


def test_tive_draw_with_a_sharp_temperature_takes_the_highest_instance_values():
    rng = np.random.default_rng(1)
    g = rng.normal(size=(40, 6)) + np.array([3.0, 0, 0, 0, 0, 0])
    tasks = np.array(["a"] * 40, dtype=object)
    selected, inst, _, quotas = tive_select(g, np.ones(40), tasks, 10, q=1e6, seed=0)
    assert quotas == {"a": 10} and selected.sum() == 10
    assert set(np.flatnonzero(selected)) == set(np.argsort(-inst)[:10])


def test_tive_warmup_takes_the_same_number_from_every_task():
    tasks = np.array(["a"] * 500 + ["b"] * 100 + ["c"] * 10, dtype=object)
    rows = warmup_rows(tasks, 0.08, np.random.default_rng(0))
    per = {t: int((tasks[rows] == t).sum()) for t in "abc"}
    assert per == {"a": 16, "b": 16, "c": 10}  # round(0.08·610/3) = 16, all of the small task
    assert len(set(rows.tolist())) == len(rows)
    assert len(warmup_rows(tasks, 0.0, np.random.default_rng(0))) == 0


# ---------------------------------------------------------------------------------------------- MLLM-Selector
def test_mllm_selector_top_necessity_then_groups_by_size():
    necessity = np.array([9, 8, 7, 6, 5, 4, 3, 2], dtype=float)
    groups = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    # α·b = 2 highest overall (rows 0, 1); the other 2 split 1:1 by group size, each group's best left
    assert np.flatnonzero(mllm_selector_pick(necessity, groups, 4, alpha=0.5)).tolist() == [0, 1, 2, 4]
    # α = 0: groups of sizes 6 and 2 share 4 as 3:1
    groups = np.array([0, 0, 0, 0, 0, 0, 1, 1])
    assert np.flatnonzero(mllm_selector_pick(necessity, groups, 4, alpha=0.0)).tolist() == [0, 1, 2, 6]
    # α = 1: the top b by necessity
    assert np.flatnonzero(mllm_selector_pick(necessity[::-1], groups, 3, alpha=1.0)).tolist() == [5, 6, 7]


def test_mllm_selector_seed_subset_is_the_fraction():
    rows = seed_rows(1000, 0.1, np.random.default_rng(0))
    assert len(rows) == 100 and len(set(rows.tolist())) == 100
    assert len(seed_rows(1000, 0.0, np.random.default_rng(0))) == 0


# ---------------------------------------------------------------------------------------------- DataTailor
def test_datatailor_informativeness_of_a_rank_one_matrix_is_zero():
    u, v = torch.randn(7, 1), torch.randn(1, 5)
    info, tau = spectral_entropy(u @ v)
    assert info == pytest.approx(0.0, abs=1e-6) and tau == pytest.approx(1.0, abs=1e-6)
    info, tau = spectral_entropy(torch.eye(3) * 2.0)  # three equal singular values
    assert info == pytest.approx(math.log(3)) and tau == pytest.approx(1 / 3)


def test_datatailor_uniqueness_by_hand():
    p = np.array([[0.0], [1.0], [3.0]])
    info = np.array([1.0, 2.0, 3.0])
    # pairwise distances 1, 3, 2; Σ_{j,k} = 12, / |C| = 4
    np.testing.assert_allclose(uniqueness(p, info, np.zeros(3, int)), [11 / 4, 7 / 4, 7 / 4])
    # one sample per cluster: 0
    np.testing.assert_allclose(uniqueness(p, info, np.arange(3)), [0, 0, 0])
    np.testing.assert_allclose(uniqueness(p, info, np.zeros(3, int), chunk=1), [11 / 4, 7 / 4, 7 / 4])


def test_datatailor_representativeness_by_hand():
    info = np.array([1.0, 2.0, 3.0, 4.0])
    p = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0], [3.0, 0.0]])
    labels = np.array([0, 0, 1, 2])  # means (1,0), (0,1), (1,0)
    e = math.e
    tau = np.array([(1 + e) / 2, (1 + 1) / 2, (e + 1) / 2])
    np.testing.assert_allclose(representativeness(p, info, labels), tau[labels] * info)
    np.testing.assert_allclose(representativeness(p, info, np.zeros(4, int)), info)  # one cluster: τ = 1


def test_datatailor_value_of_two_orthogonal_samples_by_hand():
    p = np.array([[1.0, 0.0], [0.0, 1.0]])
    info = np.array([0.2, 0.5])
    value, labels = datatailor_values(p, info, np.array([1, 3]), np.array(["t", "t"], dtype=object))
    assert sorted(labels.tolist()) == [0, 1]  # the cut at 0.1 × the one merge separates them
    # rk(I) = (.5, 1); U = 0, 0 -> rk (.75, .75); Rep = I (τ = exp(cos 0) = 1) -> rk (.5, 1)
    np.testing.assert_allclose(value, [(1 * 0.5 + 0.75 + 0.5) / 3, (3 * 1 + 0.75 + 1) / 5])
    np.testing.assert_allclose(percentile_rank(np.array([3.0, 1.0, 2.0, 2.0])), [1.0, 0.25, 0.625, 0.625])


def test_ward_finds_separated_blobs_and_the_scalable_path_agrees():
    rng = np.random.default_rng(0)
    centers = np.array([[0, 0, 0], [20, 0, 0], [0, 20, 0]], dtype=float)
    x = np.concatenate([c + rng.normal(scale=0.3, size=(60, 3)) for c in centers])
    truth = np.repeat(np.arange(3), 60)
    exact = ward_clusters(x, cut=0.5)
    fast = ward_clusters(x, cut=0.5, ward_max=30)
    for labels in (exact, fast):
        assert len(np.unique(labels)) == 3
        assert all(len(np.unique(labels[truth == c])) == 1 for c in range(3))


def test_datatailor_budget_per_task_follows_size_times_mean_tau_squared():
    tasks = np.array(["a"] * 4 + ["b"] * 4, dtype=object)
    tau = np.array([0.5] * 4 + [1.0] * 4)  # weights 4·0.25 = 1 and 4·1 = 4
    value = np.array([0.1, 0.9, 0.5, 0.3, 0.2, 0.8, 0.4, 0.6])
    selected, quotas = datatailor_select(value, tau, tasks, 5)
    assert quotas == {"a": 1, "b": 4}
    assert np.flatnonzero(selected).tolist() == [1, 4, 5, 6, 7]


# ---------------------------------------------------------------------------------------------- GDO
def test_gdo_robust_z_and_quality_by_hand():
    np.testing.assert_allclose(robust_z(np.array([1.0, 2, 3, 4, 5])), (np.arange(1, 6) - 3) / (2 / 1.349))
    np.testing.assert_allclose(robust_z(np.array([2.0, 2, 2, 2, 5])), [0, 0, 0, 0, 3])  # IQR 0: scale 1
    q, parts = quality(np.zeros(3), np.ones(3), np.zeros(3))
    # σ(0) = .5 for image dependence and the stability proxy, exp(0) = 1, rep = 1, hardness 0
    np.testing.assert_allclose(q, 0.28 * 0.5 + 0.18 * 0.5 + 0.14 * 1 + 0.10 * 1 + 0.06 * 0)
    q2, _ = quality(np.array([0.0, 1.0, 2.0]), np.ones(3), np.zeros(3))
    assert q2[2] > q2[1] > q2[0]  # more image dependence, higher quality


def _s(i: str, q: str, a: str, images: tuple[str, ...] = ("/x.png",), dataset: str = "d") -> Sample:
    return Sample(f"{dataset}/{i}", dataset, i, ({"from": "human", "value": q}, {"from": "gpt", "value": a}),
                  images=images, task=dataset)


def test_gdo_dedup_drops_an_exact_repeat():
    samples = [_s("0", "What is it?", "cat"), _s("1", "What is it?", "cat"), _s("2", "What is it?", "dog"),
               _s("3", "What is it?", "cat", images=("/y.png",))]
    keys = np.array([content_hash(s) for s in samples], dtype=object)
    assert keys[0] == keys[1] and len(set(keys.tolist())) == 3  # another image: another sample
    score = np.array([0.9, 0.8, 0.5, 0.1])
    one = np.array(["s"] * 4, dtype=object)
    assert np.flatnonzero(gdo_construct(score, one, keys, 3)).tolist() == [0, 2, 3]
    # the repeat is taken only when the unique samples run out
    assert np.flatnonzero(gdo_construct(score, one, keys, 4)).tolist() == [0, 1, 2, 3]


def test_gdo_strata_quotas_by_preset():
    stratum = np.array(["a"] + ["b"] * 4 + ["c"] * 16, dtype=object)
    score = np.linspace(1, 0, 21)
    keys = np.array([str(i) for i in range(21)], dtype=object)
    per = lambda sel: [int(sel[stratum == s].sum()) for s in "abc"]  # noqa: E731
    assert per(gdo_construct(score, stratum, keys, 7, "minloss")) == [1, 1, 5]  # ∝ 1:4:16, largest remainder
    assert per(gdo_construct(score, stratum, keys, 7, "diverse", np.zeros(21, int))) == [1, 2, 4]  # ∝ √: 1:2:4


def test_gdo_diverse_fills_a_stratum_round_robin_over_coverage_clusters():
    stratum = np.array(["s"] * 6, dtype=object)
    score = np.array([0.9, 0.8, 0.7, 0.3, 0.2, 0.1])
    coverage = np.array([0, 0, 0, 1, 1, 2])
    keys = np.array(list("abcdef"), dtype=object)
    assert np.flatnonzero(gdo_construct(score, stratum, keys, 3, "diverse", coverage)).tolist() == [0, 3, 5]
    assert np.flatnonzero(gdo_construct(score, stratum, keys, 3, "minloss", coverage)).tolist() == [0, 1, 2]


def test_gdo_strata_split_sources_lengths_and_multiple_choice():
    samples = [_s("0", "Which? Options:\nA. cat\nB. dog", "A"), _s("1", "What animal is it?", "B"),
               _s("2", "What animal is it?", "a black cat"), _s("3", "What animal is it?", "a cat", dataset="e")]
    assert [is_multiple_choice(s) for s in samples] == [True, True, False, False]
    st = strata(samples, length_bins=1)
    assert st.tolist() == ["d|q0|a0|mc", "d|q0|a0|mc", "d|q0|a0|open", "e|q0|a0|open"]


# ---------------------------------------------------------------------------------------------- budgets
@pytest.mark.parametrize("budget", [0, 1, 13, 57, 120])
def test_every_method_returns_exactly_the_budget(budget):
    rng = np.random.default_rng(3)
    n = 120
    feats = rng.normal(size=(n, 5))
    tasks = np.array(["a"] * 70 + ["b"] * 40 + ["c"] * 10, dtype=object)
    want = min(budget, n)
    assert tive_select(feats, rng.random(n) + 0.1, tasks, budget, seed=0)[0].sum() == want
    assert mllm_selector_pick(rng.random(n), rng.integers(0, 4, n), budget, 0.5).sum() == want
    value, _ = datatailor_values(feats, rng.random(n), rng.integers(1, 4, n), tasks)
    assert datatailor_select(value, rng.random(n), tasks, budget)[0].sum() == want
    keys = np.array([str(i % 90) for i in range(n)], dtype=object)  # 30 exact repeats
    for preset in ("minloss", "diverse"):
        assert gdo_construct(rng.random(n), tasks, keys, budget, preset, rng.integers(0, 3, n)).sum() == want


# ---------------------------------------------------------------------------------------------- the model passes
RUN = ["stream.builtin=null", "training.epochs=1", "training.batch_size=16", "evaluation.max_samples=4",
       "evaluation.max_new_tokens=4", "evaluation.batch_size=16", "evaluation.before_training=false",
       "tracking.wandb=false", "features.dim=64", "lora.r=4", "selection.budget=0.25",
       "selection.mllm_selector.groups=3"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from adapt.data.demo_stream import write_demo_stream

    d = tmp_path_factory.mktemp("demo")
    write_demo_stream(d, seed=0, scale=0.03, progress=False)
    return d


def _run(demo, root, method: str, datasets: list[str], *sets: str):
    """A tiny run of ``method`` over ``datasets`` (one a round) with the default settings of the method."""
    from adapt.methods import SELECTORS
    from adapt.run import ContinualRun

    cfg = load_config(None, [*RUN, f"selection.method={method}", *sets])
    cfg.stream.datasets = [DatasetEntry(name=n, train=str(demo / n / "train.json"), eval=str(demo / n / "eval.json"))
                           for n in datasets]
    cfg.features.enabled = cfg.features.enabled or SELECTORS.get(method)(cfg).needs_features()
    ContinualRun.create(root, cfg, progress=False).run()
    return cfg


def _read(path):
    import json

    return json.loads(path.read_text())


def _attention_lora_weights(r: int) -> int:
    """LoRA A (r × in) and B (out × r) on q, k, v and o of every decoder layer of the built-in tiny
    LLaVA: hidden size h, as many key/value heads as heads, so every projection is h → h."""
    tiny = TinyModelConfig()
    h = tiny.text_hidden_size
    return tiny.text_layers * 4 * r * (h + h)


def test_only_the_round_models_variants_read_the_rounds_features():
    assert not MllmSelector(load_config(None)).needs_features()  # the seed model's own features
    assert MllmSelector(load_config(None, ["selection.mllm_selector.seed_fraction=0"])).needs_features()
    assert not Tive(load_config(None)).needs_features()  # the warm-up model's own features
    # no warm-up: the round's features are TIVE's only when they were taken on TIVE's layers
    assert not Tive(load_config(None, ["selection.tive.warmup_fraction=0"])).needs_features()
    assert Tive(load_config(None, ["selection.tive.warmup_fraction=0", "features.layers=attention"])).needs_features()


def test_mllm_selector_trains_a_seed_model_every_round_and_scores_with_it(demo, tmp_path):
    from adapt.features.store import FeatureStore
    from adapt.selection.base import phase_seed

    cfg = _run(demo, tmp_path / "run", "mllm_selector", ["grounding", "reasoning"])
    sizes = []
    for t in (0, 1):
        rd = tmp_path / "run" / "rounds" / str(t)
        sel = pd.read_parquet(rd / "selection.parquet")
        pool = sel["uid"].tolist()  # the round's active pool, in pool order
        n = len(pool)
        sizes.append(n)
        seed_dir = rd / "mllm_selector"
        assert (seed_dir / "warmup" / "adapter_config.json").is_file()  # the seed model of round t
        warm = _read(seed_dir / "warmup_uids.json")
        assert len(warm) == len(set(warm)) == round(0.1 * n) == _read(rd / "selector.json")["seed_samples"]
        rows = seed_rows(n, 0.1, np.random.default_rng(phase_seed(cfg.seed, t, "select")))
        assert warm == [pool[i] for i in rows]  # a random share of round t's whole active pool
        store = FeatureStore(seed_dir / "features")
        assert store.uids() == pool and store.complete
        # necessity = the seed model's answer loss (float32 in the store, float64 in the table: exact)
        np.testing.assert_array_equal(sel["score"].to_numpy(), store.scores()["loss"].to_numpy(dtype=np.float64))
        assert not (rd / "features").exists()  # the round's own features are not read, so not computed
    assert sizes[1] > sizes[0]  # round 1's pool holds the new dataset too


def test_tive_takes_its_gradients_on_every_attention_lora_layer(demo, tmp_path):
    _run(demo, tmp_path / "run", "tive", ["grounding"])
    rd = tmp_path / "run" / "rounds" / "0"
    assert _read(rd / "tive" / "features" / "meta.json")["layers"] == "attention"
    info = _read(rd / "selector.json")
    assert info["layers"] == "attention"
    assert info["lora_weights"] == _attention_lora_weights(4) == 8192
    assert (rd / "tive" / "warmup" / "adapter_config.json").is_file()


class _Samples:
    def __init__(self, samples):
        self.by_uid = {s.uid: s for s in samples}

    def samples(self, uids):
        return [self.by_uid[u] for u in uids]


@pytest.mark.parametrize("peft", [False, True])
def test_tive_without_warm_up_takes_its_own_layers_on_the_rounds_model(peft, tiny_models, toy_samples, tmp_path):
    """warmup_fraction 0 and features.layers (all) not TIVE's (attention): TIVE's own store on the
    round's model, in rounds/<t>/tive; the round's model itself is not changed."""
    from adapt.features.per_sample import lora_linears
    from adapt.layout import RoundLayout
    from adapt.methods.reference import reference_store
    from adapt.models.loading import load_model
    from adapt.models.lora import add_new_adapter
    from adapt.selection.base import SelectionContext

    cfg = load_config(None, ["features.dim=32", "features.batch_size=3", "lora.r=4",
                             "selection.tive.warmup_fraction=0"])
    assert cfg.features.layers == "all" and cfg.selection.tive.layers == "attention"
    bundle = load_model(tiny_models["tiny-llava"])
    if peft:  # the round's model as the features phase leaves it
        bundle.model = add_new_adapter(bundle.model, cfg.lora)
        linears = lora_linears(bundle.model, "attention")
        assert sum(lin.numel for lin in linears) == _attention_lora_weights(4)
        assert {lin.name.split(".self_attn.")[1].split(".")[0] for lin in linears} == {"q_proj", "k_proj", "v_proj",
                                                                                      "o_proj"}
    kind = type(bundle.model)
    pool = pd.DataFrame({"uid": [s.uid for s in toy_samples], "dataset": "toy", "task": "toy", "round_added": 0})
    ctx = SelectionContext(round=0, pool=pool, new_uids=pool["uid"].tolist(), budget=1, seed=0, config=cfg,
                           settings=cfg.selection.tive, data=_Samples(toy_samples),
                           files=RoundLayout(tmp_path / "rounds" / "0"), model=bundle)
    store = reference_store(ctx, "tive", np.zeros(0, np.int64), desc="tive", layers=cfg.selection.tive.layers)
    assert store.root == tmp_path / "rounds" / "0" / "tive" / "features" and store.complete
    assert store.meta["layers"] == "attention" and store.meta["lora_weights"] == _attention_lora_weights(4)
    assert _read(store.root / "meta.json")["layers"] == "attention"
    assert not (tmp_path / "rounds" / "0" / "features").exists()
    assert type(bundle.model) is kind  # no adapter added to the round's model


# ---------------------------------------------------------------------------------------------- DataTailor's states
@pytest.mark.numeric
@pytest.mark.parametrize("name,peft", [("tiny-llava", False), ("tiny-llava", True), ("tiny-qwen2-vl", True),
                                       ("tiny-causal-lm", True)])
def test_datatailor_hidden_states_before_and_after_the_final_norm(name, peft, tiny_models, toy_samples, tmp_path):
    """pre_norm: the last decoder layer's output (captured here by a forward hook on that layer) at
    the last valid token, and I, τ of it over the valid tokens; post_norm: ``hidden_states[-1]``."""
    from adapt.features.store import FeatureStore
    from adapt.models.collate import Collator
    from adapt.models.loading import load_model
    from adapt.models.lora import add_new_adapter
    from adapt.scoring.base import ScoringContext

    b = load_model(tiny_models[name], dtype="float64")
    if peft:
        b.model = add_new_adapter(b.model, load_config(None, ["lora.r=4"]).lora)
    b.model.eval()
    decoder = (b.model.get_base_model() if peft else b.model).get_decoder()
    batch = Collator(b.family, 256)(toy_samples)
    mask = batch["attention_mask"].bool()
    assert (~mask).any()  # the batch is padded: the valid tokens matter
    with torch.no_grad():
        post = b.model(**{k: v for k, v in batch.items() if k != "labels"}, output_hidden_states=True).hidden_states[-1]
    assert post.dtype == torch.float64
    rows = {}
    for hidden in ("pre_norm", "post_norm"):
        captured = []
        handle = decoder.layers[-1].register_forward_hook(
            lambda mod, args, out: captured.append(out[0] if isinstance(out, tuple) else out))
        try:
            ctx = ScoringContext.of_samples(toy_samples, model=b.model, family=b.family, max_length=256, batch_size=3,
                                            settings=SelectionConfig(datatailor={"hidden": hidden}))
            _, sig = pool_signals(ctx, tmp_path / hidden)
        finally:
            handle.remove()
        assert len(captured) == 1  # one batch, one forward
        store = FeatureStore(tmp_path / hidden)
        assert store.meta["hidden"] == hidden
        h = captured[0] if hidden == "pre_norm" else post
        feats = np.asarray(store.features())
        for i in range(len(toy_samples)):
            valid = h[i, mask[i]]
            # the store's path: float64 → float32 → the file's dtype, the same two roundings here
            np.testing.assert_array_equal(feats[i], valid[-1].float().numpy().astype(feats.dtype))
            info, tau = spectral_entropy(valid)
            assert sig["informativeness"][i] == np.float32(info) and sig["tau"][i] == np.float32(tau)
        rows[hidden] = feats
    assert not np.array_equal(rows["pre_norm"], rows["post_norm"])  # the final norm moved them


def test_datatailor_pre_norm_names_a_model_without_a_final_norm():
    class NoNorm(torch.nn.Module):
        pass

    with pytest.raises(ValueError, match="NoNorm"):
        final_norm(NoNorm())
