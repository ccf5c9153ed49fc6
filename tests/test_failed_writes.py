"""A write that fails (no space left) in the pool, the feature store, an adapter or a checkpoint:
one clear error naming the file, the files already stored unchanged, no temp file left, and
``--resume`` then finishes the run exactly as an uninterrupted one."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pandas as pd
import pytest

from adapt.config import load_config
from adapt.errors import WriteError
from adapt.run import ContinualRun
from adapt.run.models import ModelChain

TIMING = {"phase_seconds", "wall_seconds"}
SMALL = ["stream.scale=0.03", "training.epochs=1", "training.batch_size=16", "evaluation.max_samples=8",
         "evaluation.max_new_tokens=8", "lora.r=4", "tracking.wandb=false", "features.enabled=true",
         "features.dim=32", "selection.method=adapt_inf", "selection.adapt_inf.k=2", "selection.budget=0.3"]


def _cfg(tmp: Path):
    return load_config(None, SMALL + [f"stream.data_dir={tmp / 'data'}"])


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ref")
    metrics = ContinualRun.create(tmp / "run", _cfg(tmp), progress=False).run()
    return tmp, metrics


def _enospc(path: object) -> OSError:
    return OSError(errno.ENOSPC, "No space left on device", str(path))


@pytest.mark.parametrize("target", ["pool", "features", "adapter", "checkpoint"])
def test_a_failed_write_keeps_what_was_stored_and_resume_finishes(target, reference, tmp_path, monkeypatch):
    import adapt.features.store as store_mod
    import adapt.io as io_mod

    ref_dir, ref_metrics = reference
    run_dir = tmp_path / "run"
    seen: dict[str, int] = {}
    before: dict[str, bytes | None] = {}

    def nth(name: str, n: int) -> bool:
        seen[name] = seen.get(name, 0) + 1
        return seen[name] == n

    real_replace = io_mod.os.replace

    def failing_replace(src, dst):  # the pool's 3rd write (round 2's ingest), round 3's metrics.json
        name = Path(dst).name
        if (target == "pool" and name == "samples.parquet" and nth(name, 3)) or \
                (target == "checkpoint" and name == "metrics.json" and nth(name, 4)):
            before["path"] = str(dst)
            before["bytes"] = Path(dst).read_bytes() if Path(dst).exists() else None
            raise _enospc(dst)
        return real_replace(src, dst)

    real_fallocate = store_mod.os.posix_fallocate

    def failing_fallocate(fd, offset, size):  # round 1's feature store
        if target == "features" and nth("features", 4):  # 3 files per store: the 1st file of round 1's
            raise _enospc("features.f16")
        return real_fallocate(fd, offset, size)

    real_save = ModelChain.save_weights

    def failing_save(model, bundle, out, full):  # round 2's adapter, half-written
        if target == "adapter" and nth("adapter", 3):
            Path(out).mkdir(parents=True, exist_ok=True)
            (Path(out) / "adapter_model.safetensors").write_bytes(b"partial")
            raise _enospc(Path(out) / "adapter_model.safetensors")
        return real_save(model, bundle, out, full)

    monkeypatch.setattr(io_mod.os, "replace", failing_replace)
    monkeypatch.setattr(store_mod.os, "posix_fallocate", failing_fallocate)
    monkeypatch.setattr(ModelChain, "save_weights", staticmethod(failing_save))
    run = ContinualRun.create(run_dir, _cfg(ref_dir), progress=False)
    with pytest.raises(WriteError) as info:
        run.run()
    msg = str(info.value)
    assert "No space left on device" in msg and "adapt run --resume" in msg
    state = json.loads((run_dir / "state.json").read_text())
    phase = state["phase"]
    assert f"{state['round']}:{phase}" not in state["finished"]
    assert {"pool": "ingest", "features": "features", "adapter": "train", "checkpoint": "checkpoint"}[target] == phase
    if "path" in before:  # the file that failed to be replaced is as it was
        assert Path(before["path"]).read_bytes() == before["bytes"]
        assert Path(before["path"]).name in msg
    if target == "adapter":
        assert not (run_dir / f"rounds/{state['round']}/adapter").exists()
        assert "adapter" in msg
    assert not [p for p in run_dir.rglob("*.tmp")]  # no temp file left behind

    monkeypatch.undo()  # the disk has room again
    metrics = ContinualRun.resume(run_dir, progress=False).run()
    assert {k: v for k, v in metrics.items() if k not in TIMING} == \
        {k: v for k, v in ref_metrics.items() if k not in TIMING}
    for t in range(len(metrics["accuracy_matrix"])):
        pd.testing.assert_frame_equal(pd.read_parquet(run_dir / f"rounds/{t}/selection.parquet"),
                                      pd.read_parquet(ref_dir / f"run/rounds/{t}/selection.parquet"))
    pd.testing.assert_frame_equal(pd.read_parquet(run_dir / "pool/samples.parquet"),
                                  pd.read_parquet(ref_dir / "run/pool/samples.parquet"))
