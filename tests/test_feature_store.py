"""The feature store (rows in place, done flags, normalised view, resume, unit rows, the file's
dtype) and extraction over a pool: resumed and 2-process (`accelerate launch`) extractions equal a
1-process one; the hidden-state embedding comes from the gradient pass."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch

from adapt.errors import AdaptError
from adapt.features.store import SCORE_COLUMNS, FeatureStore

from tolerances import FLOAT64_NETWORK_RTOL, assert_within_one_ulp

EXTRACT = """
import sys, torch
from adapt.config import LoraSettings
from adapt.features.extract import extract_features
from adapt.features.per_sample import lora_linears
from adapt.features.projectors import PROJECTORS
from adapt.features.store import FeatureStore
from adapt.models.loading import load_model
from adapt.models.lora import add_new_adapter
from adapt.training.trainer import get_accelerator
from adapt.config import TrainingConfig
from adapt.data.readers import read_dataset

model_dir, data, store_dir = sys.argv[1:4]
acc = get_accelerator(TrainingConfig()) if len(sys.argv) > 4 else None
b = load_model(model_dir, dtype="float64")  # runs compared to one float16/float32 ulp: tests/tolerances.py
torch.manual_seed(0)
b.model = add_new_adapter(b.model, LoraSettings(r=4, alpha=8))
for name, p in b.model.named_parameters():
    if "lora_B" in name:
        torch.nn.init.normal_(p, std=0.05)
samples = read_dataset(data, name="d")
# one process makes the files and the others wait, as gradient_store does: a rank that creates them
# while another maps them truncates them under it (CI, 2026-12-04: rank 1 exited 1)
if acc is None or acc.is_main_process:
    FeatureStore.create(store_dir, [s.uid for s in samples], 256, projector="sjlt", seed=0, layers="all")
if acc is not None:
    acc.wait_for_everyone()
store = FeatureStore(store_dir)
extract_features(b.model, b.family, samples, store, PROJECTORS.get("sjlt")(256, seed=0),
                 lora_linears(b.model), batch_size=3, max_length=256, accelerator=acc, progress=False)
"""


def test_store_rows_flags_and_views(tmp_path):
    store = FeatureStore.create(tmp_path / "f", ["a/1", "a/2", "a/3"], 4, projector="sjlt", seed=0)
    assert store.done_mask().tolist() == [False] * 3
    store.write_rows(np.array([2, 0]), np.array([[3, 4, 0, 0], [0, 0, 0, 2]], np.float32),
                     np.arange(2 * len(SCORE_COLUMNS), dtype=np.float32).reshape(2, -1))
    again = FeatureStore(tmp_path / "f")
    assert again.done_mask().tolist() == [True, False, True] and not again.complete
    assert again.features()[2].tolist() == [3, 4, 0, 0] and again.features()[1].tolist() == [0, 0, 0, 0]
    np.testing.assert_allclose(again.normalized()[2], [0.6, 0.8, 0, 0])
    assert again.normalized()[1].tolist() == [0, 0, 0, 0]  # a zero row stays zero
    sc = again.scores()
    assert sc["uid"].tolist() == ["a/1", "a/2", "a/3"]
    assert sc.loc[2, "loss"] == 0 and sc.loc[0, "loss"] == len(SCORE_COLUMNS)  # row 0 got the 2nd score row
    # the same settings reopen it (resume); other settings are refused, the store untouched
    assert FeatureStore.create(tmp_path / "f", ["a/1", "a/2", "a/3"], 4, projector="sjlt", seed=0).complete is False
    with pytest.raises(AdaptError, match="other settings"):
        FeatureStore.create(tmp_path / "f", ["a/1", "a/2", "a/3"], 8, projector="sjlt", seed=0)
    assert FeatureStore(tmp_path / "f").features()[2].tolist() == [3, 4, 0, 0]


@pytest.fixture(scope="module")
def small_pool(tmp_path_factory):
    from adapt.data.demo_stream import write_demo_stream

    d = tmp_path_factory.mktemp("pool")
    write_demo_stream(d, seed=0, scale=0.005, progress=False)
    return d / "vqa_general" / "train.json"  # 12 samples


def _run(args: list[str], **kw) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600, **kw)
    # each rank's own lines first: the launcher's tail is the other rank's "connection closed"
    ranks = "\n".join(line for line in proc.stderr.splitlines() if line.startswith("[rank1]"))
    assert proc.returncode == 0, ranks[-3000:] + "\n" + proc.stderr[-3000:]


@pytest.mark.numeric
def test_resumed_and_two_process_extractions_equal_one_process(tmp_path, tiny_models, small_pool):
    script = tmp_path / "extract.py"
    script.write_text(EXTRACT)
    model = str(tiny_models["tiny-llava"])
    _run([sys.executable, str(script), model, str(small_pool), str(tmp_path / "one")])
    one = FeatureStore(tmp_path / "one")
    assert one.complete and one.n >= 10
    feats = np.array(one.features(), dtype=np.float32)
    assert np.abs(feats).sum(1).min() > 0  # every row written

    # an interrupted extraction: rows 0..4 done before, with the values the full run gave
    part = FeatureStore.create(tmp_path / "resumed", one.uids(), 256, projector="sjlt", seed=0, layers="all")
    part.write_rows(np.arange(5), feats[:5], one.scores().iloc[:5, 1:].to_numpy())
    _run([sys.executable, str(script), model, str(small_pool), str(tmp_path / "resumed")])
    resumed = np.array(FeatureStore(tmp_path / "resumed").features(), dtype=np.float32)
    np.testing.assert_array_equal(resumed[:5], feats[:5])  # rows done before were not recomputed
    assert_within_one_ulp(resumed, feats, np.float16)

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _run([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
          "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
          "--main_process_port", str(port), str(script), model, str(small_pool), str(tmp_path / "two"), "acc"])
    two = FeatureStore(tmp_path / "two")
    assert two.complete
    assert_within_one_ulp(two.features(), one.features(), np.float16)
    assert_within_one_ulp(two.scores().iloc[:, 1:].to_numpy(), one.scores().iloc[:, 1:].to_numpy(), np.float32)


def test_unit_store_keeps_a_tiny_norm_row(tmp_path):
    """A gradient store keeps each row at unit norm (its norm is the caller's proj_norm score):
    a row of norm 1e-8 has entries ~1e-9, below float16's smallest subnormal (2⁻²⁴ ≈ 6e-8), which
    a raw float16 store flushes to 0; the unit store gives back its direction within one ulp."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 64))
    x[0] *= 1e-8 / np.linalg.norm(x[0])
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)  # float64, worked out here
    scores = np.zeros((2, len(SCORE_COLUMNS)), np.float32)
    raw = FeatureStore.create(tmp_path / "raw", ["a/1", "a/2"], 64)
    raw.write_rows(np.arange(2), x, scores)
    assert not np.asarray(raw.features()[0], np.float32).any()  # what storing unnormalised rows did
    store = FeatureStore.create(tmp_path / "unit", ["a/1", "a/2"], 64, unit=True)
    store.write_rows(np.arange(2), x, scores)
    again = FeatureStore(tmp_path / "unit")
    assert again.unit and again.meta["unit"] is True and again.meta["dtype"] == "float16"
    assert again.features().dtype == np.float16 and (tmp_path / "unit" / "features.f16").is_file()
    assert_within_one_ulp(again.features(), unit, np.float16)
    zero = FeatureStore.create(tmp_path / "zero", ["a/1"], 4, unit=True)
    zero.write_rows(np.arange(1), np.zeros((1, 4)), scores[:1])
    assert zero.features()[0].tolist() == [0, 0, 0, 0]  # a zero row stays zero


def test_float32_store_dtype_keeps_float32(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 16)) * np.array([[1e-8], [1.0], [1e8]])
    store = FeatureStore.create(tmp_path / "f", ["a/1", "a/2", "a/3"], 16, unit=True, dtype="float32")
    store.write_rows(np.arange(3), x, np.zeros((3, len(SCORE_COLUMNS)), np.float32))
    again = FeatureStore(tmp_path / "f")
    assert again.meta["dtype"] == "float32" and again.features().dtype == np.float32
    assert (tmp_path / "f" / "features.f32").stat().st_size == 3 * 16 * 4 and not (tmp_path / "f" / "features.f16").exists()
    assert_within_one_ulp(again.features(), x / np.linalg.norm(x, axis=1, keepdims=True), np.float32)
    with pytest.raises(ValueError, match="dtype"):
        FeatureStore.create(tmp_path / "g", ["a/1"], 4, dtype="bfloat16")


@pytest.mark.numeric
@pytest.mark.parametrize("family", ["tiny-llava", "tiny-qwen2-vl", "tiny-causal-lm"])
def test_hidden_state_embedding_comes_from_the_gradient_pass(family, tiny_models, toy_samples, tmp_path):
    """pool.prune_embedding=hidden: the gradient pass writes, from the same forward, each sample's
    last hidden states averaged over its own tokens (whatever else shares its padded batch), raw
    rows; the gradient store beside it holds unit rows with their norm in proj_norm."""
    from adapt.config import FeaturesConfig, LoraSettings
    from adapt.features.extract import gradient_store
    from adapt.features.projectors import PROJECTORS
    from adapt.models.collate import Collator
    from adapt.models.loading import load_model
    from adapt.models.lora import add_new_adapter

    b = load_model(tiny_models[family], dtype="float64")
    torch.manual_seed(0)
    b.model = add_new_adapter(b.model, LoraSettings(r=4, alpha=8))
    for name, p in b.model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.05)
    b.model.eval()
    fc = FeaturesConfig(dim=64, batch_size=3)
    store = gradient_store(b.model, b.family, toy_samples, tmp_path / "f", fc, seed=0, max_length=256,
                           progress=False, hidden=tmp_path / "h")
    hidden = FeatureStore(tmp_path / "h")
    assert store.complete and hidden.complete and store.unit and not hidden.unit
    collate = Collator(b.family, 256)
    for i, s in enumerate(toy_samples):
        batch = collate([s])
        with torch.no_grad():
            h = b.model(**{k: v for k, v in batch.items() if k != "labels"}, output_hidden_states=True).hidden_states[-1]
        want = h[0].mean(0).numpy()
        # stored as float16 from float64: within half a float16 ulp (2⁻¹¹ relative; 2⁻²⁵ absolute
        # below float16's normal range) of the float64 mean
        np.testing.assert_allclose(np.asarray(hidden.features()[i], dtype=np.float64), want,
                                   rtol=2.0**-11 + FLOAT64_NETWORK_RTOL, atol=2.0**-25)
        assert hidden.scores()["tokens"][i] == batch["attention_mask"].sum()
    # the gradient rows beside it: unit rows of the projection, its norm stored as proj_norm
    from adapt.features.per_sample import lora_linears, per_sample_gradients

    batch = collate(toy_samples)
    sizes = [int(x.prod()) for x in batch["image_grid_thw"]] if "image_grid_thw" in batch else None
    linears = lora_linears(b.model)
    for lin in linears:
        lin.module.weight.requires_grad_(True)
    res = per_sample_gradients(b.model, batch, linears, images_per_sample=[
        len(s.images) if b.family.uses_images else 0 for s in toy_samples], image_sizes=sizes)
    proj = PROJECTORS.get("sjlt")(64, seed=0).project(res.grads).numpy()
    norm = np.linalg.norm(proj, axis=1)
    assert_within_one_ulp(store.features(), proj / norm[:, None], np.float16)
    assert_within_one_ulp(store.scores()["proj_norm"].to_numpy(), norm, np.float32)
