"""experiments/learning_rates.py: each task's learning rate in its own round, worked by hand."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))

import learning_rates  # noqa: E402


def _digest(acc, before, selected):
    return {"tasks": ["a", "b"], "accuracy_matrix": acc, "accuracy_before": before, "selected_per_dataset": selected}


def test_own_round_rate_by_hand():
    # a arrives in round 0: error 1 − 0.2 = 0.8 before (the base model), 1 − 0.6 = 0.4 after, 100 of it trained:
    # r = ln(0.8 / 0.4) / 100; b arrives in round 1: error 1 − 0.1 = 0.9 after round 0, 0 after round 1
    # (floored at 0.05), 50 of it trained: r = ln(0.9 / 0.05) / 50
    d = _digest([[0.6, 0.1], [0.5, 1.0]], [0.2, 0.0], [{"a": 100}, {"a": 30, "b": 50}])
    out = learning_rates.own_round_rates(d, floor=0.05)
    assert out["a"][:3] == (100, pytest.approx(0.8), pytest.approx(0.4))
    assert out["a"][3] == pytest.approx(math.log(2) / 100)
    assert out["b"][:3] == (50, pytest.approx(0.9), pytest.approx(0.0))
    assert out["b"][3] == pytest.approx(math.log(0.9 / 0.05) / 50)


def test_rate_table_is_the_mean_and_std_over_seeds(tmp_path):
    # two seeds of row "r": a's rates ln 2 / 100 and ln 2 / 50 -> mean 10.40 per 1,000, std (ddof 1) 4.90;
    # x: 100 and 50 -> 75; errors 80 -> 40 both
    (tmp_path / "s").mkdir()
    for seed, x in ((0, 100), (1, 50)):
        d = _digest([[0.6, 0.1], [0.5, 0.8]], [0.2, 0.0], [{"a": x}, {"a": 10, "b": 10}])
        (tmp_path / "s" / f"r-s{seed}.json").write_text(json.dumps(d))
    table = learning_rates.rate_table(tmp_path, "s", ["r", "missing"], floor=0.005)
    rates = [math.log(2) / 100, math.log(2) / 50]
    mean = 1000 * sum(rates) / 2
    std = 1000 * abs(rates[0] - rates[1]) / math.sqrt(2)
    assert table[0] == ["a", "75", "80.0 → 40.0", f"{mean:.2f} ± {std:.2f}", "—", "—", "—"]
    assert f"{mean:.2f} ± {std:.2f}" == "10.40 ± 4.90"
    assert [row[0] for row in table] == ["a", "b"]


def test_the_readme_quotes_the_rates_the_digests_give():
    """README's learning-rate sentence is what the script prints from the committed digests."""
    runs = ROOT / "experiments" / "results" / "runs"

    def rate(stream, task):
        row = next(r for r in learning_rates.rate_table(runs, stream, ["random"], 0.005) if r[0] == task)
        mean, std = (float(v) for v in row[3].split(" ± "))
        return f"{mean:.1f} ± {std:.1f}"

    readme = " ".join((ROOT / "README.md").read_text().split())
    assert (f"knowledge {rate('default', 'vqa_knowledge')} on `default` and {rate('alt', 'vqa_knowledge')} on `alt`, "
            f"multi-image {rate('default', 'multi_image')} and {rate('alt', 'multi_image')}, "
            f"reasoning {rate('default', 'reasoning')} and {rate('alt', 'reasoning')}") in readme


def test_whole_run_sums_the_rounds_and_keeps_the_first_rate_used():
    # a trained 100 + 30, b 50; last scores 0.5 and 1.0; a's rate measured in round 0 (0.002) is kept
    # though round 1 lists another; b has none
    d = {**_digest([[0.6, 0.1], [0.5, 1.0]], [0.2, 0.0], [{"a": 100}, {"a": 30, "b": 50}]),
         "task_rates": [{"a": 0.002}, {"a": 0.003}]}
    out = learning_rates.whole_run(d)
    assert out["a"] == (130, 0.5, 0.002)
    assert out["b"][:2] == (50, 1.0) and math.isnan(out["b"][2])
    del d["task_rates"]
    assert math.isnan(learning_rates.whole_run(d)["a"][2])


def test_whole_run_table_reads_only_the_seeds_asked_for(tmp_path):
    (tmp_path / "s").mkdir()
    for seed, x in ((0, 100), (1, 50), (2, 999)):
        d = {**_digest([[0.6, 0.1], [0.5, 0.8]], [0.2, 0.0], [{"a": x}, {"a": 10, "b": 10}]),
             "task_rates": [{"a": 0.001 * (seed + 1)}]}
        (tmp_path / "s" / f"r-s{seed}.json").write_text(json.dumps(d))
    table = learning_rates.whole_run_table(tmp_path, "s", ["r"], seeds=[0, 1])
    # a: trained 110 and 60 -> 85 ± 35; last score 50.0 both; rates 1 and 2 per 1,000 -> 1.50 ± 0.71
    assert table[0] == ["a", "85 ± 35", "50.0 ± 0.0", "1.50 ± 0.71"]
    assert table[1] == ["b", "10 ± 0", "80.0 ± 0.0", "—"]


def test_the_readme_quotes_the_gain_candidates_trainings_the_digests_give():
    """README's paragraph on `budget.split: gain`: grounding's and the others' trainings and last scores
    (seeds 0–2, against `hindsight` on the same seeds) and the probe's rates are what the script prints."""
    runs = ROOT / "experiments" / "results" / "runs"

    def cell(stream, task, row, k):
        table = learning_rates.whole_run_table(runs, stream, ["hindsight_gain", "hindsight"], [0, 1, 2])
        return next(r for r in table if r[0] == task)[1 + 3 * row + k].split(" ± ")[0]

    def trained(stream, task):
        return f"{int(cell(stream, task, 0, 0)):,}", f"{int(cell(stream, task, 1, 0)):,}"

    readme = " ".join((ROOT / "README.md").read_text().split())
    g, h = trained("default", "grounding")
    assert f"grounding trained {g} times over the six rounds on `default` ({h})" in readme
    g, h = trained("alt", "grounding")
    assert f"and {g} on `alt` ({h})" in readme
    assert (f"ending at {cell('default', 'grounding', 0, 1)} against {cell('default', 'grounding', 1, 1)} and "
            f"{cell('alt', 'grounding', 0, 1)} against {cell('alt', 'grounding', 1, 1)}") in readme
    for stream, task, name in (("default", "vqa_multilingual", "multilingual"), ("default", "reasoning", "reasoning"),
                               ("alt", "vqa_general", "general VQA")):
        g, h = trained(stream, task)
        assert (f"{name} trained {g} times against {h} for {cell(stream, task, 0, 1)} against "
                f"{cell(stream, task, 1, 1)}") in readme or (
                f"{name} {g} against {h} for {cell(stream, task, 0, 1)} against {cell(stream, task, 1, 1)}") in readme
    assert (f"a rate of {cell('default', 'grounding', 0, 2)} per 1,000 samples, against "
            f"{float(cell('default', 'vqa_knowledge', 0, 2)):.1f} for knowledge and "
            f"{float(cell('default', 'multi_image', 0, 2)):.1f} for multi-image") in readme
