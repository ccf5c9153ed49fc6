"""One run per directory: a second run is refused naming the holder, a dead holder's lock is
taken over, and a dataset added while a run goes on is ingested as its next round."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from adapt.cli import app
from adapt.config import DatasetEntry, load_config
from adapt.data.demo_stream import write_demo_stream
from adapt.run import ContinualRun
from adapt.run.phases import RoundPhases
from adapt.runlock import RunLock, RunLocked

runner = CliRunner()


def _holder(run_dir) -> subprocess.Popen:
    """Another process that takes the lock and keeps it."""
    code = ("import sys, time; from adapt.runlock import RunLock; RunLock(sys.argv[1]).acquire(); "
            "print('held', flush=True); time.sleep(120)")
    p = subprocess.Popen([sys.executable, "-c", code, str(run_dir)], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "held"
    return p


def test_a_second_run_is_refused_naming_the_holder_and_a_dead_holder_frees_it(tmp_path):
    run_dir = tmp_path / "run"
    holder = _holder(run_dir)
    try:
        with pytest.raises(RunLocked) as info:
            RunLock(run_dir).acquire()
        assert f"in use by process {holder.pid} on " in str(info.value)
        # through the CLI: a clear message and a non-zero exit, nothing written
        cfg = tmp_path / "c.yaml"
        cfg.write_text("selection:\n  method: random\n")
        res = runner.invoke(app, ["run", str(cfg), "--run-dir", str(run_dir)])
        assert res.exit_code == 1 and f"process {holder.pid}" in res.output
        assert sorted(p.name for p in run_dir.iterdir()) == ["run.lock"]
        assert RunLock(run_dir).live_holder()["pid"] == holder.pid
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert RunLock(run_dir).live_holder() is None
    with RunLock(run_dir) as lock:  # the kernel dropped the dead process's lock
        assert lock.holder()["pid"] == os.getpid()
    assert RunLock(run_dir).acquire().holder()["pid"] == os.getpid()


def test_a_waiting_lock_blocks_until_the_holder_leaves(tmp_path):
    holder = _holder(tmp_path)
    start = time.perf_counter()
    subprocess.Popen(["sh", "-c", f"sleep 1; kill -9 {holder.pid}"])
    with RunLock(tmp_path, wait=True):
        assert time.perf_counter() - start >= 0.9
    holder.wait()


def test_a_dataset_added_during_a_run_is_its_next_round(tmp_path, monkeypatch):
    data = tmp_path / "data"
    write_demo_stream(data, seed=0, scale=0.02, progress=False)
    cfg = load_config(None, ["stream.builtin=null", "training.epochs=1", "evaluation.max_samples=6",
                             "evaluation.max_new_tokens=8", "tracking.wandb=false", "lora.r=4",
                             "selection.method=random"])
    cfg.stream.datasets = [DatasetEntry(name="grounding", train=str(data / "grounding/train.json"),
                                        eval=str(data / "grounding/eval.json"))]
    run = ContinualRun.create(tmp_path / "run", cfg, progress=False)
    train = RoundPhases.train
    added = []

    def train_then_add(self, t):  # another user adds a dataset while round 0 trains
        train(self, t)
        if t == 0:
            res = runner.invoke(app, ["add-dataset", str(tmp_path / "run"), str(data / "reasoning/train.json"),
                                      "--name", "reasoning", "--eval", str(data / "reasoning/eval.json")])
            added.append(res)

    monkeypatch.setattr(RoundPhases, "train", train_then_add)
    metrics = run.run()
    assert added and added[0].exit_code == 0, added[0].output
    assert metrics["tasks"] == ["grounding", "reasoning"] and metrics["rounds_done"] == 2
    assert len(metrics["accuracy_matrix"][0]) == 2  # round 0's model was evaluated on it too
