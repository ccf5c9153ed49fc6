"""Issue 20, item 4: a usable model per round, and a run directory that can be moved.

One small ``lora.between_rounds: merge`` run on two datasets of the built-in stream (its data inside
the run directory, as the demo's) is stopped after round 0, moved, resumed to the end with
``adapt run --resume`` and exported with ``adapt export``; the exported models, loaded with stock
transformers / peft classes only, answer the eval samples greedily exactly as the run did
(rounds/<t>/predictions.jsonl), where round 1's adapter on the plain base (what its
adapter_config.json used to name) does not. A ``continue`` run on a text-only local checkpoint
checks the other chain and stock ``AutoPeftModelForCausalLM`` on the run's own adapter.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from adapt.cli import app
from adapt.config import load_config
from adapt.data.stream import iter_entry, load_stream
from adapt.evaluation.generation import generate_answers
from adapt.models.families import FAMILIES
from adapt.run import ContinualRun

runner = CliRunner()
SMALL = ["stream.scale=0.04", "training.epochs=1", "training.batch_size=16", "training.lr=2e-4",
         "evaluation.max_samples=8", "evaluation.max_new_tokens=12", "evaluation.before_training=false",
         "lora.r=4", "model.dtype=float64", "tracking.wandb=false", "selection.method=random"]
# lr 2e-4: answers stay varied (a larger step makes every answer "" in round 1, which proves nothing);
# float64: merged and unmerged adapters give the same greedy tokens, no near-tie flips (tests/tolerances.py)


def _keep_two_datasets(run_dir: Path) -> None:
    stream = json.loads((run_dir / "stream.json").read_text())
    stream["datasets"] = stream["datasets"][:2]
    (run_dir / "stream.json").write_text(json.dumps(stream))


def _predictions(run_dir: Path, t: int) -> dict[str, list[dict]]:
    rows = [json.loads(line) for line in (run_dir / f"rounds/{t}/predictions.jsonl").read_text().splitlines()]
    out: dict[str, list[dict]] = {}
    for r in rows:
        out.setdefault(r["task"], []).append(r)
    return out


def _answers(model, folder: Path, run_dir: Path) -> dict[str, tuple[list[str], list[str]]]:
    """Greedy answers of ``model`` to the run's eval samples, prompted in the family's layout with the
    tokenizer and image processor read from ``folder`` by stock transformers: {task: (uids, answers)}."""
    from transformers import AutoConfig, AutoImageProcessor, AutoTokenizer

    cfg = load_config(run_dir / "config.yaml")
    mcfg = AutoConfig.from_pretrained(folder)
    name = {"llava": "llava", "llama": "causal_lm"}[mcfg.model_type]
    family = FAMILIES.get(name)(mcfg, AutoTokenizer.from_pretrained(folder),
                                AutoImageProcessor.from_pretrained(folder) if name == "llava" else None)
    out = {}
    for e in load_stream(run_dir):
        samples = list(iter_entry(e, "eval", cfg.stream))[: cfg.evaluation.max_samples]
        out[e.name] = ([s.uid for s in samples], generate_answers(model, family, samples, cfg.evaluation,
                                                                  cfg.model.max_length, progress=False))
    return out


def _assert_answers_like_the_run(got: dict, run_dir: Path, t: int) -> None:
    stored = _predictions(run_dir, t)
    assert set(got) == set(stored)
    for task, (uids, answers) in got.items():
        assert uids == [r["uid"] for r in stored[task]]
        assert answers == [r["prediction"] for r in stored[task]], task


@pytest.fixture(scope="module")
def moved_merge_run(tmp_path_factory):
    """(the moved run directory, where it was, its merged export of round 1, its --adapter export)."""
    tmp = tmp_path_factory.mktemp("export")
    first = tmp / "first" / "run"
    cfg = load_config(None, SMALL + ["lora.between_rounds=merge"])
    run = ContinualRun.create(first, cfg, progress=False)
    _keep_two_datasets(first)
    run.state.set(status="running")
    for phase, fn, every_rank in run.phase_table(0, run.rounds()[0]):  # round 0, then the run stops
        run._timed(0, phase, fn, every_rank)
    run.tracker.close()
    moved = tmp / "elsewhere" / "run"
    moved.parent.mkdir()
    shutil.move(str(first), str(moved))
    assert not first.exists()
    res = runner.invoke(app, ["run", "--resume", str(moved), "--quiet"])
    assert res.exit_code == 0, res.output
    merged, adapter = tmp / "out" / "merged", tmp / "out" / "adapter"
    for args in ([str(merged)], [str(adapter), "--round", "1", "--adapter"]):
        res = runner.invoke(app, ["export", str(moved), *args])
        assert res.exit_code == 0, res.output
    return moved, first.resolve(), merged, adapter


def test_a_moved_run_resumes_to_the_end(moved_merge_run):
    moved, was, _, _ = moved_merge_run
    state = json.loads((moved / "state.json").read_text())
    assert state["status"] == "finished" and "1:checkpoint" in state["finished"]
    metrics = json.loads((moved / "metrics.json").read_text())
    assert len(metrics["accuracy_matrix"]) == 2
    # round 1 trained on round-0 samples too, whose pool records name their images (in the run's data/)
    # relative to the run directory: nothing in the pool names where the run was
    table = pd.read_parquet(moved / "pool/samples.parquet")
    pool = {u: json.loads(r) for u, r in zip(table["uid"], table["record"])}
    first_round = set(table.loc[table["round_added"] == 0, "uid"])
    sel = pd.read_parquet(moved / "rounds/1/selection.parquet")
    old = [u for u in sel.loc[sel["selected"], "uid"] if u in first_round and pool[u]["images"]]
    assert old, "round 1 selected no sample ingested before the move"
    assert all(p.startswith("data/") for u in old for p in pool[u]["images"])
    # what the run directory names inside itself, it names relative to itself or by a marker
    stream = json.loads((moved / "stream.json").read_text())["datasets"]
    assert [d["train"] for d in stream] == [f"data/{d['name']}/train.json" for d in stream]
    assert [e.train for e in load_stream(moved)] == [str(moved.resolve() / "data" / d["name"] / "train.json")
                                                      for d in stream]
    bases = [json.loads((moved / f"rounds/{t}/adapter/adapter_config.json").read_text())["base_model_name_or_path"]
             for t in (0, 1)]
    assert bases == ["builtin:tiny-llava", "adapt-run:after-round-0"]
    for f in [moved / "stream.json", *moved.glob("rounds/*/adapter/*.json"), *moved.glob("rounds/*/adapter/*.md")]:
        assert str(was) not in f.read_text() and str(moved.resolve()) not in f.read_text(), f


def test_the_merged_export_answers_like_the_run_with_stock_transformers(moved_merge_run):
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    from adapt.builtin import builtin_checkpoint

    moved, _, merged, _ = moved_merge_run
    info = json.loads((merged / "adapt_export.json").read_text())
    assert (info["round"], info["kind"], info["auto_class"]) == (1, "merged", "AutoModelForImageTextToText")
    assert info["weights"] == ["rounds/0/adapter", "rounds/1/adapter"]
    assert not list(merged.glob("adapter_*"))  # every weight merged: nothing for peft
    model = AutoModelForImageTextToText.from_pretrained(merged)
    got = _answers(model, merged, moved)
    _assert_answers_like_the_run(got, moved, 1)
    assert len({a for _, answers in got.values() for a in answers}) > 4  # answers that tell models apart
    # round 1's adapter on the plain base, the model its adapter_config.json named before: other answers
    cfg = load_config(moved / "config.yaml")
    base = builtin_checkpoint(cfg.model, cfg.seed, progress=False)
    wrong = PeftModel.from_pretrained(AutoModelForImageTextToText.from_pretrained(base), str(moved / "rounds/1/adapter"))
    assert _answers(wrong, merged, moved) != got


def test_the_adapter_export_loads_with_stock_peft_and_answers_like_the_run(moved_merge_run):
    from peft import AutoPeftModel, AutoPeftModelForCausalLM, PeftModel

    moved, _, _, out = moved_merge_run
    cfg = json.loads((out / "adapter/adapter_config.json").read_text())
    assert cfg["base_model_name_or_path"] == str((out / "base").resolve())
    model = AutoPeftModel.from_pretrained(str(out / "adapter"))
    assert isinstance(model, PeftModel)
    _assert_answers_like_the_run(_answers(model, out / "base", moved), moved, 1)
    # the run's own round-1 adapter names a model no folder holds: stock peft refuses it, no wrong model
    with pytest.raises(Exception):
        AutoPeftModelForCausalLM.from_pretrained(str(moved / "rounds/1/adapter"))


def test_export_refuses_bad_input_with_exit_2_naming_the_path(moved_merge_run, tmp_path):
    moved, _, merged, _ = moved_merge_run
    cases = [
        (["export", str(moved), str(tmp_path / "a"), "--round", "2"], [str(moved.resolve() / "rounds" / "2"),
                                                                         "has not finished training"]),
        (["export", str(tmp_path / "nowhere"), str(tmp_path / "b")], [str(tmp_path / "nowhere"), "not a run directory"]),
        (["export", str(moved), str(merged)], [str(merged), "not an empty folder"]),
        (["export", str(moved), str(moved / "inside")], [str(moved.resolve() / "inside"), "inside the run directory"]),
    ]
    for args, words in cases:
        res = runner.invoke(app, args)
        out = " ".join(res.output.split())
        assert res.exit_code == 2 and all(w in out for w in words), res.output
        assert "Traceback" not in res.output
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_a_continue_run_on_a_local_text_checkpoint_exports_and_its_adapters_load_with_stock_peft(
        moved_merge_run, tmp_path):
    """``continue``: round t's adapter on the base itself, a local checkpoint that its
    adapter_config.json names, so stock ``AutoPeftModelForCausalLM`` loads the run's own adapter."""
    from peft import AutoPeftModelForCausalLM
    from transformers import AutoModelForCausalLM

    from adapt.models.tiny import build_tiny_causal_lm

    moved = moved_merge_run[0]
    ckpt = build_tiny_causal_lm(tmp_path / "ckpt")
    cfg = load_config(None, SMALL + [f"model.name_or_path={ckpt}", "lora.between_rounds=continue",
                                     f"stream.data_dir={moved / 'data'}"])  # the same built-in stream, read in place
    run_dir = tmp_path / "run"
    ContinualRun.create(run_dir, cfg, progress=False)
    _keep_two_datasets(run_dir)
    assert len(ContinualRun.resume(run_dir, progress=False).run()["accuracy_matrix"]) == 2
    adapter_cfg = json.loads((run_dir / "rounds/1/adapter/adapter_config.json").read_text())
    assert adapter_cfg["base_model_name_or_path"] == str(ckpt.resolve())
    _assert_answers_like_the_run(_answers(AutoPeftModelForCausalLM.from_pretrained(str(run_dir / "rounds/1/adapter")),
                                          ckpt, run_dir), run_dir, 1)
    out = tmp_path / "out"
    res = runner.invoke(app, ["export", str(run_dir), str(out)])  # the last round trained: 1
    assert res.exit_code == 0, res.output
    info = json.loads((out / "adapt_export.json").read_text())
    assert (info["round"], info["auto_class"], info["weights"]) == (1, "AutoModelForCausalLM", ["rounds/1/adapter"])
    _assert_answers_like_the_run(_answers(AutoModelForCausalLM.from_pretrained(out), out, run_dir), run_dir, 1)
