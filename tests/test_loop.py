"""The continual run end to end on a small built-in stream: files of the run-directory contract,
metrics recomputed from the per-round files, resume after a kill, add-dataset, wandb offline."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from adapt.config import load_config
from adapt.evaluation.continual_metrics import continual_metrics
from adapt.run import ContinualRun

from tolerances import assert_within_one_ulp

SMALL = [
    "stream.scale=0.04",
    "training.epochs=1",
    "training.first_round_epochs=2",
    "training.batch_size=16",
    "evaluation.max_samples=12",
    "evaluation.max_new_tokens=16",
    "lora.r=4",
]
TIMING_KEYS = {"phase_seconds", "wall_seconds"}


def small_config(tmp_path: Path, *extra: str):
    return load_config(None, SMALL + [f"stream.data_dir={tmp_path / 'data'}", "tracking.wandb=false", *extra])


def comparable(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k not in TIMING_KEYS}


@pytest.fixture(scope="module")
def random_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("loop")
    cfg = load_config(None, SMALL + [f"stream.data_dir={tmp / 'data'}", "selection.method=random",
                                     "selection.budget=0.25", "tracking.wandb=true"])
    run = ContinualRun.create(tmp / "run", cfg, progress=False)
    metrics = run.run()
    return tmp / "run", metrics


def test_run_directory_contract(random_run):
    run_dir, metrics = random_run
    for name in ("config.yaml", "state.json", "stream.json", "base.json", "metrics.json", "metrics.jsonl", "report.md",
                 "pool/manifest.json", "pool/samples.parquet", "plots/accuracy_matrix.png"):
        assert (run_dir / name).is_file(), name
    state = json.loads((run_dir / "state.json").read_text())
    assert state["status"] == "finished"
    tasks = metrics["tasks"]
    assert len(tasks) == 6 and len(metrics["accuracy_matrix"]) == 6
    assert metrics["task_rounds"] == list(range(6))  # each dataset has an eval split: task j came in round j
    # the defaults train a LoRA adapter from round 0 on (lora.first_round=lora)
    for t in range(0, 6):
        assert (run_dir / f"rounds/{t}/adapter/adapter_model.safetensors").is_file()
    for t in range(6):
        sel = pd.read_parquet(run_dir / f"rounds/{t}/selection.parquet")
        assert {"uid", "cluster", "expert", "score", "selected"} <= set(sel.columns)
        pool_json = json.loads((run_dir / f"rounds/{t}/pool.json").read_text())
        # random: 25% of the active pool of the round
        assert int(sel["selected"].sum()) == round(0.25 * pool_json["active"])
        assert metrics["samples_trained"][t] == int(sel["selected"].sum())
        ev = json.loads((run_dir / f"rounds/{t}/eval.json").read_text())
        assert [ev["scores"][k] for k in tasks] == metrics["accuracy_matrix"][t]


def test_the_run_records_the_base_it_started_from(random_run):
    """base.json (and metrics.json's base_model): the built-in base's folder, the sha256 of its weights and
    the CPU arithmetic of the process (adapt.numerics)."""
    import hashlib

    run_dir, metrics = random_run
    base = json.loads((run_dir / "base.json").read_text())
    weights = Path(base["path"]) / "model.safetensors"
    assert base["name_or_path"] == "builtin:tiny-llava"
    assert base["weights_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert metrics["base_model"] == base
    assert set(base["cpu_numerics"]) == {"isa", "torch_cpu_capability", "mkl_cbwr", "onednn_max_cpu_isa"}


def test_metrics_follow_the_definitions(random_run):
    run_dir, metrics = random_run
    ref = continual_metrics(metrics["accuracy_matrix"], metrics["accuracy_before"])
    for k in ("avg_accuracy", "maa", "bwt", "forgetting", "fwt"):
        assert metrics[k] == pytest.approx(ref[k])
    # and A by hand from the last row
    last = metrics["accuracy_matrix"][-1]
    assert metrics["avg_accuracy"] == pytest.approx(sum(last) / len(last))


def test_offline_wandb_run_holds_the_logged_metrics(random_run):
    from adapt.evaluation.continual_metrics import METRIC_KEYS, metrics_after_round
    from adapt.tracking.loggers import read_metrics_jsonl
    from adapt.tracking.wandb_file import read_offline_wandb_history, read_offline_wandb_summary

    run_dir, metrics = random_run
    rows = read_offline_wandb_history(run_dir)
    by_round = {r["round"]: r for r in rows if "round" in r}
    assert sorted(by_round) == list(range(6))
    events = {e["step"]: e["metrics"] for e in read_metrics_jsonl(run_dir / "metrics.jsonl") if e["event"] == "metrics"}
    R, R0, tasks = metrics["accuracy_matrix"], metrics["accuracy_before"], metrics["tasks"]
    for t, row in enumerate(R):
        got = by_round[t]
        for task, v in zip(tasks, row):
            assert got[f"eval/{task}"] == pytest.approx(v)
        after = metrics_after_round(R, R0, t)
        for k in METRIC_KEYS:  # absent while not defined (BWT and F in round 0)
            assert got.get(f"continual/{k}") == pytest.approx(after[k]), (t, k)
        for j, task in enumerate(tasks):  # forgetting per task, by hand from the matrix
            want = max(R[s][j] for s in range(j, t)) - R[t][j] if j < t else None
            assert got.get(f"forgetting/{task}") == pytest.approx(want), (t, task)
        assert got["accuracy_matrix/table"]["_type"] == "table-file"
        assert got["accuracy_matrix/heatmap"]["_type"] == "image-file"
        # metrics.jsonl has the same scalars, round by round
        assert events[t] == pytest.approx({k: v for k, v in got.items() if not k.startswith("_")
                                           and not isinstance(v, dict)})
    summary = read_offline_wandb_summary(run_dir)
    for k in METRIC_KEYS:
        assert summary.get(f"final/{k}") == pytest.approx(metrics[k]) == summary.get(f"continual/{k}")
    assert summary["final/samples_trained"] == sum(metrics["samples_trained"])
    assert [summary.get(f"final/forgetting/{k}") for k in tasks] == pytest.approx(metrics["forgetting_per_task"])


def test_pool_holds_every_dataset(random_run):
    from adapt.data.pool import DataPool

    run_dir, metrics = random_run
    pool = DataPool(run_dir / "pool")
    assert [d["name"] for d in pool.datasets()] == metrics["tasks"]
    assert len(pool) == metrics["pool_size"][-1]


def test_full_and_multitask(tmp_path):
    full = ContinualRun.create(tmp_path / "full", small_config(tmp_path, "selection.method=full"), progress=False).run()
    pool_rows = [sum(c.values()) for c in full["pool_per_dataset"]]
    # full trains on exactly the dataset of the round
    assert full["samples_trained"] == [pool_rows[0]] + [b - a for a, b in zip(pool_rows, pool_rows[1:])]
    multi = ContinualRun.create(tmp_path / "multi", small_config(tmp_path, "selection.method=multitask"),
                                progress=False).run()
    assert len(multi["accuracy_matrix"]) == 1 and len(multi["accuracy_matrix"][0]) == 6
    assert multi["samples_trained"] == [pool_rows[-1]]
    assert multi["bwt"] is None and multi["forgetting"] is None


def _adapt(*args: str, **kw) -> subprocess.Popen:
    env = dict(os.environ, WANDB_MODE="offline", WANDB_SILENT="true")
    return subprocess.Popen([sys.executable, "-m", "adapt", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kw)


def test_resume_after_kill_gives_the_same_metrics(tmp_path):
    cfg_file = tmp_path / "small.yaml"
    cfg_file.write_text(small_config(tmp_path).to_yaml())
    ref = _adapt("run", str(cfg_file), "selection.method=random", "--run-dir", str(tmp_path / "ref"), "--quiet")
    out, _ = ref.communicate(timeout=600)
    assert ref.returncode == 0, out

    killed = _adapt("run", str(cfg_file), "selection.method=random", "--run-dir", str(tmp_path / "killed"), "--quiet")
    state = tmp_path / "killed" / "state.json"
    deadline = time.time() + 300
    while time.time() < deadline:  # kill while round 2 trains
        if state.is_file():
            try:
                s = json.loads(state.read_text())
            except json.JSONDecodeError:
                s = {}
            if s.get("round") == 2 and s.get("phase") == "train":
                break
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    killed.communicate()
    s = json.loads(state.read_text())
    assert s["status"] == "running" and "2:train" not in s["finished"]

    resumed = _adapt("run", "--resume", str(tmp_path / "killed"), "--quiet")
    out, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, out
    a = json.loads((tmp_path / "ref" / "metrics.json").read_text())
    b = json.loads((tmp_path / "killed" / "metrics.json").read_text())
    assert comparable(a) == comparable(b)
    for t in range(6):
        sa = pd.read_parquet(tmp_path / "ref" / f"rounds/{t}/selection.parquet")
        sb = pd.read_parquet(tmp_path / "killed" / f"rounds/{t}/selection.parquet")
        pd.testing.assert_frame_equal(sa, sb)


def test_add_dataset_is_ingested_at_the_next_round(tmp_path):
    from adapt.cli import app
    from typer.testing import CliRunner

    cfg = small_config(tmp_path, "selection.method=full")
    run = ContinualRun.create(tmp_path / "run", cfg, progress=False)
    # keep the first two built-in datasets only, the third arrives later via add-dataset
    stream = json.loads((tmp_path / "run" / "stream.json").read_text())
    third = stream["datasets"][2]
    stream["datasets"] = stream["datasets"][:2]
    (tmp_path / "run" / "stream.json").write_text(json.dumps(stream))
    first = run.run()
    assert len(first["accuracy_matrix"]) == 2 and len(first["tasks"]) == 2

    res = CliRunner().invoke(app, ["add-dataset", str(tmp_path / "run"), third["train"], "--name", "late",
                                   "--eval", third["eval"], "--metric", third["metric"]])
    assert res.exit_code == 0, res.output
    again = ContinualRun.resume(tmp_path / "run", progress=False).run()
    assert again["tasks"][-1] == "late" and len(again["accuracy_matrix"]) == 3
    # earlier rounds were evaluated on the new dataset too: the matrix has no holes
    assert all(v == v for row in again["accuracy_matrix"] for v in row)
    assert again["accuracy_matrix"][:2] != first["accuracy_matrix"]  # a column was added
    assert [r[:2] for r in again["accuracy_matrix"][:2]] == first["accuracy_matrix"]


def test_merge_between_rounds_rebuilds_the_trained_chain(tmp_path):
    """lora.between_rounds=merge: round t's adapter applies on rounds 0..t-1 merged (stock peft)."""
    import torch
    from peft import PeftModel

    from adapt.models.loading import load_model

    cfg = small_config(tmp_path, "selection.method=random", "lora.first_round=full", "lora.between_rounds=merge")
    run = ContinualRun.create(tmp_path / "run", cfg, progress=False)
    metrics = run.run()
    assert len(metrics["accuracy_matrix"]) == 6
    rd = tmp_path / "run" / "rounds"
    manual = load_model(rd / "0" / "model", cfg.model.family, cfg.model.dtype).model
    for t in (1, 2):
        manual = PeftModel.from_pretrained(manual, str(rd / str(t) / "adapter")).merge_and_unload()
    ours = ContinualRun.resume(tmp_path / "run", progress=False).models.build_after(2).model
    a, b = manual.state_dict(), ours.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # and round 2's adapter is not the whole change since round 0: round 1's merge is in the weights
    only_two = PeftModel.from_pretrained(load_model(rd / "0" / "model", cfg.model.family, cfg.model.dtype).model,
                                         str(rd / "2" / "adapter")).merge_and_unload().state_dict()
    assert any(not torch.equal(only_two[k], b[k]) for k in b)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_under_accelerate_launch(tmp_path):
    """`accelerate launch --num_processes 2 -m adapt run`: DDP training, evaluation split over the
    ranks and gathered in order, every file written once by the main process."""
    import math

    from adapt.evaluation.generation import generate_answers

    cfg_file = tmp_path / "small.yaml"
    cfg_file.write_text(small_config(tmp_path, "selection.method=random", "evaluation.batch_size=1").to_yaml())
    run_dir = tmp_path / "run"
    env = dict(os.environ, WANDB_MODE="offline", WANDB_SILENT="true", OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(_free_port()),
           "-m", "adapt", "run", str(cfg_file), "--run-dir", str(run_dir), "--quiet"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (proc.stdout + proc.stderr).count("samples trained") == 1  # the summary: main process only
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert json.loads((run_dir / "state.json").read_text())["status"] == "finished"
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    per_round = [r["step"] for r in rows if r["event"] == "metrics" and "eval/grounding" in r["metrics"]]
    assert per_round == list(range(6))  # logged once per round, by the main process
    # each rank trained on half of the batches of an epoch
    train = json.loads((run_dir / "rounds/1/train.json").read_text())
    batches = math.ceil(train["samples"] / 16)
    assert train["steps"] == math.ceil(math.ceil(batches / 2) * train["epochs"])
    # the gathered answers are, sample by sample, the answers one process gives with the saved model
    run = ContinualRun.resume(run_dir, progress=False)
    bundle = run.models.after(5)
    preds = pd.read_json(run_dir / "rounds/5/predictions.jsonl", lines=True)
    for task in run.phases.eval_tasks():
        samples = task.samples[: run.config.evaluation.max_samples]
        ours = generate_answers(bundle.model, bundle.family, samples, run.config.evaluation,
                                run.config.model.max_length, progress=False)
        got = preds[preds["task"] == task.name]
        assert got["uid"].tolist() == [s.uid for s in samples]
        assert got["prediction"].fillna("").astype(str).tolist() == ours
    assert len(metrics["accuracy_matrix"]) == 6


@pytest.mark.numeric
def test_features_every_round_match_a_direct_computation(tmp_path):
    """features.enabled: rounds/<t>/features holds every active sample's projected gradient of the
    adapter round t trains, equal to a direct per-sample computation on that model."""
    import numpy as np

    from adapt.features.per_sample import lora_linears, per_sample_gradients
    from adapt.features.projectors import PROJECTORS
    from adapt.features.store import FeatureStore
    from adapt.models.collate import Collator

    cfg = small_config(tmp_path, "selection.method=random", "features.enabled=true", "features.every_round=true",
                       "features.dim=256", "features.batch_size=8", "model.dtype=float64")  # compared to one ulp: tests/tolerances.py
    run = ContinualRun.create(tmp_path / "run", cfg, progress=False)
    metrics = run.run()
    assert metrics["phase_seconds"]["features"] > 0
    for t in range(6):
        store = FeatureStore(tmp_path / "run" / f"rounds/{t}/features")
        assert store.complete and store.n == sum(metrics["pool_per_dataset"][t].values())
    t = 2
    store = FeatureStore(tmp_path / "run" / f"rounds/{t}/features")
    run = ContinualRun.resume(tmp_path / "run", progress=False)
    bundle, full = run.models.to_train(t)
    assert not full
    samples = run.pool.samples(store.uids()[:4])
    batch = Collator(bundle.family, cfg.model.max_length)(samples)
    linears = lora_linears(bundle.model)
    for lin in linears:
        lin.module.weight.requires_grad_(True)
    res = per_sample_gradients(bundle.model, batch, linears, images_per_sample=[len(s.images) for s in samples])
    direct = PROJECTORS.get("sjlt")(256, seed=cfg.seed).project(res.grads).numpy()
    assert direct.dtype == np.float64
    norm = np.linalg.norm(direct, axis=1)  # stored: the unit rows, their norm as proj_norm
    assert_within_one_ulp(store.features()[:4], direct / norm[:, None], np.float16)
    assert_within_one_ulp(store.scores()["proj_norm"].to_numpy()[:4], norm, np.float32)
    assert_within_one_ulp(store.scores()["loss"].to_numpy()[:4], res.loss.numpy(), np.float32)


@pytest.mark.numeric
def test_merge_features_are_taken_on_the_previous_adapter(tmp_path):
    """lora.between_rounds=merge with features.adapter=previous (default): round t ≥ 1's features are
    the gradients of round t-1's trained adapter, loaded unmerged on rounds 0..t-2 merged (the
    reference differentiates the previous round's adapter), so the A-gradients count; training still
    starts from a fresh adapter; under features.adapter=fresh every A-gradient is 0."""
    from adapt.features.per_sample import lora_linears, per_sample_gradients
    from adapt.features.projectors import PROJECTORS
    from adapt.features.store import FeatureStore
    from adapt.models.collate import Collator
    from adapt.models.lora import load_adapter

    cfg = small_config(tmp_path, "selection.method=random", "features.enabled=true", "features.every_round=true",
                       "features.dim=256", "features.batch_size=8", "model.dtype=float64",  # one ulp: tests/tolerances.py
                       "lora.between_rounds=merge")
    run = ContinualRun.create(tmp_path / "run", cfg, progress=False)
    run.models.base_path()
    for t in range(3):  # round 1 on round 0's adapter; round 2 on round 1's, over round 0 merged
        for phase, fn, every_rank in run.phase_table(t, run.rounds()[t]):
            run._timed(t, phase, fn, every_rank)
    rounds = tmp_path / "run" / "rounds"
    projector = PROJECTORS.get("sjlt")(256, seed=cfg.seed)

    def gradients(model, family, uids):
        samples = run.pool.samples(uids)
        linears = lora_linears(model)
        for lin in linears:
            lin.module.weight.requires_grad_(True)
        return per_sample_gradients(model, Collator(family, cfg.model.max_length)(samples), linears,
                                    images_per_sample=[len(s.images) for s in samples])

    for t in (1, 2):
        store = FeatureStore(rounds / f"{t}/features")
        b = run.models.load(run.models.base_path())  # by hand: the base, rounds < t-1 merged, round t-1's adapter
        for s in range(t - 1):
            b.model = load_adapter(b.model, rounds / f"{s}/adapter", trainable=False).merge_and_unload()
        b.model = load_adapter(b.model, rounds / f"{t - 1}/adapter", trainable=False)
        b.model.eval()
        res = gradients(b.model, b.family, store.uids()[:4])
        direct = projector.project(res.grads).numpy()
        norm = np.linalg.norm(direct, axis=1)
        assert_within_one_ulp(store.features()[:4], direct / norm[:, None], np.float16)
        assert_within_one_ulp(store.scores()["proj_norm"].to_numpy()[:4], norm, np.float32)
        a_part = projector.project({k: v for k, v in res.grads.items() if ".lora_A." in k}).numpy()
        assert (np.linalg.norm(a_part, axis=1) > 0).all()  # the trained adapter's B ≠ 0

    assert run.models.for_features(2) is not None  # cached; training must not be handed it
    bundle, full = run.models.to_train(2)
    b_weights = [p for n, p in bundle.model.named_parameters() if "lora_B" in n]
    assert not full and b_weights and all(p.abs().max().item() == 0 for p in b_weights)

    run.config.features.adapter = "fresh"  # the same chain: round 1's features on the adapter round 1 trains
    assert not run.models.previous_adapter(1)
    b = run.models.for_features(1)
    res = gradients(b.model, b.family, FeatureStore(rounds / "1/features").uids()[:4])
    a = [k for k in res.grads if ".lora_A." in k]
    assert a and all(res.grads[k].abs().max().item() == 0 for k in a)
    assert max(res.grads[k].abs().max().item() for k in res.grads if ".lora_B." in k) > 0


def test_pruning_on_hidden_states_runs_the_gradient_pass():
    """The hidden-state embedding comes from the features phase, so a capped pool with the
    selector's own pruning needs that phase whichever embedding it prunes on."""
    from types import SimpleNamespace

    from adapt.run.phases import RoundPhases

    class Pruner:
        joint = False

        def needs_features(self):
            return False

        def has_own_pruning(self):
            return True

    for embedding in ("gradient", "hidden"):
        for cap, once, want in (("pool.max_size=40", False, True), ("pool.max_size=null", False, False),
                                ("pool.max_size=40", True, False)):  # one round: no later round to prune for
            cfg = load_config(None, [f"pool.prune_embedding={embedding}", cap, f"stream.all_at_once={once}"])
            phases = SimpleNamespace(config=cfg, selector=Pruner())
            phases.own_pruning = lambda phases=phases: RoundPhases.own_pruning(phases)
            run = SimpleNamespace(config=cfg, selector=phases.selector, phases=phases)
            assert ContinualRun.needs_features(run) == want
            assert RoundPhases.prunes_on_hidden(phases) == (want and embedding == "hidden")


def test_adapt_inf_round_by_round(tmp_path):
    """adapt_inf: exactly the budget each round, each cluster's expert is the entropy criterion's
    choice on the stored scores, and the experts' scores sit in scores.parquet."""
    from adapt.selection.expert_choice import choose_expert

    with pytest.raises(Exception, match="features.enabled"):
        ContinualRun.create(tmp_path / "nofeat", small_config(tmp_path, "selection.method=adapt_inf"), progress=False)
    cfg = small_config(tmp_path, "selection.method=adapt_inf", "selection.adapt_inf.k=3", "features.enabled=true",
                       "features.dim=64", "selection.budget=0.3")
    metrics = ContinualRun.create(tmp_path / "run", cfg, progress=False).run()
    assert len(metrics["accuracy_matrix"]) == 6
    experts = cfg.selection.adapt_inf.experts
    for t in range(6):
        sel = pd.read_parquet(tmp_path / "run" / f"rounds/{t}/selection.parquet")
        scores = pd.read_parquet(tmp_path / "run" / f"rounds/{t}/scores.parquet")
        assert int(sel["selected"].sum()) == round(0.3 * len(sel)) == metrics["samples_trained"][t]
        assert sel["uid"].tolist() == scores["uid"].tolist() and set(experts) <= set(scores.columns)
        for c, grp in scores.groupby("cluster"):
            want = choose_expert({e: grp[e].to_numpy() for e in experts})[0]
            assert set(sel.loc[grp.index, "expert"]) == {want}
            assert np.array_equal(sel.loc[grp.index, "score"], grp[want])  # the expert's score, copied
        info = json.loads((tmp_path / "run" / f"rounds/{t}/experts.json").read_text())
        assert [c["expert"] for c in info["clusters"]] == sel.groupby("cluster")["expert"].first().tolist()
        assert [c["quota"] for c in info["clusters"]] == sel.groupby("cluster")["selected"].sum().tolist()
        assert (tmp_path / "run" / f"plots/selection_round_{t}.png").stat().st_size > 0
    assert "![round 5: selection by cluster, expert and task](plots/selection_round_5.png)" in \
        (tmp_path / "run" / "report.md").read_text()
    from adapt.tracking.loggers import read_metrics_jsonl

    events = read_metrics_jsonl(tmp_path / "run" / "metrics.jsonl")  # what wandb was given, round by round
    images = [e for e in events if e["event"] == "image" and e["name"] == "selection_by_cluster"]
    tables = [e for e in events if e["event"] == "table" and e["name"] == "experts_per_cluster"]
    assert [e["path"] for e in images] == [f"plots/selection_round_{t}.png" for t in range(6)]
    assert [e["step"] for e in tables] == list(range(6))
    info5 = json.loads((tmp_path / "run" / "rounds/5/experts.json").read_text())
    assert tables[-1]["rows"] == [[5, c["cluster"], c["size"], c["expert"], c["quota"]] for c in info5["clusters"]]


@pytest.mark.parametrize("embedding,store", [("gradient", "features"), ("hidden", "hidden")])
def test_adapt_inf_prunes_with_semdedup_to_the_cap(tmp_path, embedding, store):
    from adapt.data.pool import DataPool
    from adapt.features.store import FeatureStore

    cfg = small_config(tmp_path, "selection.method=adapt_inf", "selection.adapt_inf.k=2", "features.enabled=true",
                       "features.dim=64", "pool.max_size=40", "selection.adapt_inf.experts=[ppl, el2n]",
                       f"pool.prune_embedding={embedding}")
    metrics = ContinualRun.create(tmp_path / "run", cfg, progress=False).run()
    assert all(n <= 40 for n in metrics["pool_size"]) and metrics["pool_size"][-1] == 40
    pool = DataPool(tmp_path / "run" / "pool")
    pruned = pool.table(status="pruned", columns=["uid", "pruned_round", "pruned_reason"])
    assert len(pruned) > 0 and set(pruned["pruned_reason"]) == {
        f"semdedup on {embedding} (adapt_inf; order arrival, split uniform, index auto)"}  # pool.prune_* defaults
    assert len(pool) == 40
    last = max(int(r) for r in pruned["pruned_round"])
    assert (tmp_path / "run" / f"rounds/{last}/hidden/meta.json").is_file() == (embedding == "hidden")
    # exactly the rows semdedup_keep drops on that round's embedding
    from adapt.selection.pruning import semdedup_keep

    sel = pd.read_parquet(tmp_path / "run" / f"rounds/{last}/selection.parquet")
    keep = semdedup_keep(FeatureStore(tmp_path / "run" / f"rounds/{last}/{store}").features(), sel["cluster"], 40)
    want = set(sel["uid"]) - set(sel["uid"].iloc[keep])
    assert set(pruned.loc[pruned["pruned_round"] == last, "uid"]) == want


def test_resolve_budget_of_the_pool_or_of_the_samples_seen():
    from adapt.selection import resolve_budget

    assert resolve_budget(0.25, 300) == 75                 # of the active pool
    assert resolve_budget(0.25, 300, seen=400) == 100      # of every sample ingested
    assert resolve_budget(0.25, 90, seen=400) == 90        # at most the active pool
    assert resolve_budget(50, 300, seen=400) == 50         # a count is a count
    assert resolve_budget(0.001, 300, seen=400) == 1       # at least one


def test_budget_of_seen_trains_a_fraction_of_every_sample_ingested(tmp_path):
    """``selection.budget_of: seen`` with a capped pool: each round trains round(fraction · samples
    ingested up to it), capped at the active pool, more than the fraction of the active pool once
    pruning has begun."""
    from adapt.data.pool import DataPool

    cfg = small_config(tmp_path, "selection.method=random", "selection.budget=0.3", "pool.max_size=0.5",
                       "selection.budget_of=seen", "training.first_round_epochs=1", "evaluation.max_samples=4")
    metrics = ContinualRun.create(tmp_path / "run", cfg, progress=False).run()
    added = DataPool(tmp_path / "run" / "pool").table(status=None, columns=["round_added"])["round_added"]
    for t, n in enumerate(metrics["samples_trained"]):
        active = len(pd.read_parquet(tmp_path / "run" / f"rounds/{t}/selection.parquet"))
        seen = int((added <= t).sum())
        assert n == min(active, max(1, round(0.3 * seen)))
        assert (n > round(0.3 * active)) == (t > 0)  # round 0 has pruned nothing yet
