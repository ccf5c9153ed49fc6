"""Caption pre-training of the built-in tiny LLaVA: deterministic corpus, train digits only, and a
model that has learnt the captions (its caption loss falls)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from adapt.config import TinyModelConfig
from adapt.builtin import CAPTION_PROMPT, caption_corpus, caption_item


def test_corpus_is_deterministic_and_in_the_llava_shape(tmp_path):
    a = caption_corpus(tmp_path / "a", 40, seed=3)
    b = caption_corpus(tmp_path / "b", 40, seed=3)
    assert [s.conversations for s in a] == [s.conversations for s in b]
    assert [open(s.images[0], "rb").read() for s in a] == [open(s.images[0], "rb").read() for s in b]
    for s in a:
        assert s.conversations[0] == {"from": "human", "value": f"<image>\n{CAPTION_PROMPT}"}
        assert s.conversations[1]["from"] == "gpt" and s.conversations[1]["value"]
    kinds = {s.conversations[1]["value"].split()[1] for s in a}
    assert {"handwritten", "flag"} <= kinds  # digits and flags as well as shapes


def test_digit_captions_come_from_the_pool_given():
    from sklearn.datasets import load_digits

    digits = load_digits()
    pool = np.array([0, 1])  # digits 0 and 1 in scikit-learn's order
    rng = np.random.default_rng(0)
    texts = [caption_item(rng, digits, pool)[1] for _ in range(200)]
    numbers = {t.rsplit(" ", 1)[1] for t in texts if t.startswith("the handwritten digit")}
    assert numbers == {"0", "1"}


def test_shape_captions_name_each_shape_with_its_quadrant():
    from sklearn.datasets import load_digits

    rng, digits = np.random.default_rng(1), load_digits()
    texts = [caption_item(rng, digits, np.arange(10))[1] for _ in range(300)]
    multi = [t for t in texts if " and a " in t]
    assert multi
    for t in multi:  # "a red circle at the top left, a blue square at the top right and a ..."
        parts = t.replace(" and ", ", ").split(", ")
        assert all(p.startswith("a ") and " at the " in p for p in parts), t
        places = [p.split(" at the ")[1] for p in parts]
        assert len(set(places)) == len(places)  # distinct quadrants


def test_pretraining_lowers_the_caption_loss(tmp_path):
    from adapt.models.collate import Collator
    from adapt.models.loading import load_model
    from adapt.builtin import build_builtin

    fresh = build_builtin("tiny-llava", tmp_path / "fresh", TinyModelConfig(), seed=0)
    trained = build_builtin("tiny-llava", tmp_path / "trained", TinyModelConfig(pretrain_steps=40), seed=0,
                            progress=False)
    held_out = caption_corpus(tmp_path / "held", 32, seed=99)

    def loss(path):
        b = load_model(path, "llava", "float32")
        batch = Collator(b.family, 128)(held_out)
        with torch.no_grad():
            return float(b.model(**batch).loss)

    before, after = loss(fresh), loss(trained)
    assert after < 0.5 * before


def test_pretraining_runs_on_its_own_thread_count_and_gives_the_process_its_own_back(tmp_path, monkeypatch):
    """The cached base must not depend on the machine's core count or OMP_NUM_THREADS (a float32 sum
    split over another number of threads is summed in another order): pre-training trains on
    PRETRAIN_THREADS threads, then the process has its own count again."""
    import adapt.training.trainer as trainer
    from adapt.builtin import PRETRAIN_THREADS, pretrain_on_captions
    from adapt.models.tiny import build_tiny_llava

    seen = []
    monkeypatch.setattr(trainer, "train_round", lambda *a, **k: seen.append(torch.get_num_threads()))
    build_tiny_llava(tmp_path, TinyModelConfig(), 0)
    own = torch.get_num_threads()
    try:
        torch.set_num_threads(PRETRAIN_THREADS + 1)
        pretrain_on_captions(tmp_path, steps=1, seed=0, progress=False)
        assert seen == [PRETRAIN_THREADS] and torch.get_num_threads() == PRETRAIN_THREADS + 1
    finally:
        torch.set_num_threads(own)
