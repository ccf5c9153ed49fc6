"""The feature store (rows in place, done flags, normalised view, resume) and extraction over a
pool: resumed and 2-process (`accelerate launch`) extractions equal a 1-process one."""

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

from tolerances import FLOAT64_NETWORK_RTOL, UNIT_ROUNDOFF, assert_within_one_ulp

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
store = FeatureStore.create(store_dir, [s.uid for s in samples], 256, projector="sjlt", seed=0, layers="all")
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
    assert proc.returncode == 0, proc.stderr[-3000:]


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


@pytest.mark.numeric
@pytest.mark.parametrize("family", ["tiny-llava", "tiny-qwen2-vl", "tiny-causal-lm"])
def test_hidden_state_embedding_is_the_mean_of_the_last_layer(family, tiny_models, toy_samples, tmp_path):
    """pool.prune_embedding=hidden: each row is the last hidden states averaged over the sample's
    own tokens, whatever else shares its padded batch."""
    from adapt.features.extract import extract_hidden
    from adapt.models.collate import Collator
    from adapt.models.loading import load_model

    b = load_model(tiny_models[family], dtype="float64")
    dim = b.model.get_input_embeddings().embedding_dim
    store = FeatureStore.create(tmp_path / "h", [s.uid for s in toy_samples], dim, projector="hidden-mean")
    extract_hidden(b.model, b.family, toy_samples, store, batch_size=3, max_length=256, progress=False)
    assert store.complete
    collate = Collator(b.family, 256)
    for i, s in enumerate(toy_samples):
        batch = collate([s])
        with torch.no_grad():
            h = b.model(**{k: v for k, v in batch.items() if k != "labels"}, output_hidden_states=True).hidden_states[-1]
        want = h[0].mean(0).numpy()
        # stored as float16 (through float32): within half a float16 ulp (2⁻¹¹ relative; 2⁻²⁵ absolute
        # below float16's normal range) plus the float32 step's 2⁻²⁴, of the float64 mean
        np.testing.assert_allclose(np.asarray(store.features()[i], dtype=np.float64), want,
                                   rtol=2.0**-11 + UNIT_ROUNDOFF[torch.float32] + FLOAT64_NETWORK_RTOL, atol=2.0**-25)
