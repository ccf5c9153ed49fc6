"""Bad input met by a real run, through the command line (issue 6, item 4).

One small run finishes its first round (session fixture); each case copies it and then:

- a broken dataset arrives as round 1 (the corpus of tests/test_readers.py, the kinds the issue
  names): ``adapt run --resume`` exits with status 2 and one message naming the file, the sample
  and the problem, and the pool is byte-identical;
- a file of the run directory is damaged from outside (state.json, stream.json, the pool, a
  selection, an adapter, an eval file, the feature store, metrics.jsonl): the resume is refused
  with one message naming the file (exit status 1), no traceback, and nothing is changed.

The config kinds (an unknown key, a budget above the pool, k above the samples, a model path that
does not exist) are in tests/test_cli.py.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import yaml
from test_readers import BAD, bad_input, make_data_dir
from typer.testing import CliRunner

from adapt.cli import app
from adapt.data.demo_stream import write_demo_stream

runner = CliRunner()

# The dataset kinds of the list, each a case of test_readers.BAD (which has more)
DATASET_CASES = [
    "json_truncated", "json_invalid", "bad_id_type", "turn_value_not_a_string", "empty_conversations",
    "first_turn_not_human", "unknown_role", "missing_image", "unreadable_image", "zero_byte_image",
    "image_escapes_root", "absolute_image_outside_root", "symlink_escapes_root", "uid_clash", "json_not_utf8",
    "empty_json", "json_huge_record", "jsonl_invalid_line", "parquet_broken",
]


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and "wandb" not in p.parts and p.name != "run.lock"}


@pytest.fixture(scope="session")
def round0_run(tmp_path_factory) -> Path:
    """A run of one dataset (round 0 done: ingest, features, Adapt-∞ selection, training,
    evaluation, pruning, checkpoint)."""
    root = tmp_path_factory.mktemp("round0")
    data = root / "data"
    write_demo_stream(data, seed=0, scale=0.02, progress=False)
    cfg = root / "c.yaml"
    cfg.write_text(yaml.safe_dump({
        "stream": {"builtin": None, "datasets": [{"name": "grounding", "train": str(data / "grounding/train.json"),
                                                  "eval": str(data / "grounding/eval.json")}]},
        "training": {"epochs": 1.0}, "evaluation": {"max_samples": 4, "max_new_tokens": 8, "before_training": False},
        "lora": {"r": 4}, "tracking": {"wandb": False}, "features": {"enabled": True, "dim": 32},
        "selection": {"method": "adapt_inf", "k": 2, "budget": 0.5}}))
    run = root / "run"
    res = runner.invoke(app, ["run", str(cfg), "--run-dir", str(run), "--quiet"])
    assert res.exit_code == 0, res.output
    return run


def _copy(run: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(run, dst)
    return dst


def _add_round(run: Path, train: Path) -> None:
    """What a config with this dataset as round 1 gives (add-dataset would refuse it up front)."""
    stream = json.loads((run / "stream.json").read_text())
    stream["datasets"].append({"name": "bad", "train": str(train), "eval": None, "metric": "exact", "task": None,
                               "image_root": None})
    (run / "stream.json").write_text(json.dumps(stream))


@pytest.mark.parametrize("case", DATASET_CASES)
def test_a_broken_dataset_stops_the_run_with_exit_2_and_the_pool_unchanged(case, round0_run, tmp_path):
    run = _copy(round0_run, tmp_path)
    path = bad_input(case, make_data_dir(tmp_path))
    _add_round(run, path)
    pool = _digest(run / "pool")
    res = runner.invoke(app, ["run", "--resume", str(run), "--quiet"])
    _, words, sample = BAD[case]
    out = " ".join(res.output.split())  # the console may wrap a long message
    assert res.exit_code == 2, res.output
    assert out.startswith(f"error: {path.resolve()}"), out
    assert all(w in out for w in words), out
    assert sample is None or f"sample {sample}: " in out, out
    assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1, res.output
    assert _digest(run / "pool") == pool
    state = json.loads((run / "state.json").read_text())
    assert state["phase"] == "ingest" and "1:ingest" not in state["finished"]


def _cut(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _state_without_finished(run: Path) -> None:
    s = json.loads((run / "state.json").read_text())
    del s["finished"]
    (run / "state.json").write_text(json.dumps(s))


def _log_shortened(run: Path) -> None:
    lines = (run / "metrics.jsonl").read_text().splitlines(keepends=True)
    (run / "metrics.jsonl").write_text("".join(lines[:-1]))


# case: (damage the run directory, the file the message must name, words it must contain)
DAMAGE = {
    "state_not_json": (lambda r: (r / "state.json").write_text('{"round": 0, "fin'), "state.json", "not valid JSON"),
    "state_wrong_shape": (_state_without_finished, "state.json", "field 'finished' is missing"),
    "stream_not_json": (lambda r: (r / "stream.json").write_bytes(b"\xff\xfe"), "stream.json", "not UTF-8"),
    "pool_cut_short": (lambda r: _cut(r / "pool" / "samples.parquet"), "pool/samples.parquet", "cannot read the pool"),
    "selection_garbage": (lambda r: (r / "rounds/0/selection.parquet").write_bytes(b"PAR1 no footer"),
                          "rounds/0/selection.parquet", "not a readable Parquet file"),
    "adapter_cut_short": (lambda r: _cut(r / "rounds/0/adapter/adapter_model.safetensors"),
                          "rounds/0/adapter/adapter_model.safetensors", "unreadable safetensors"),
    "eval_not_json": (lambda r: (r / "rounds/0/eval.json").write_text("{"), "rounds/0/eval.json", "not valid JSON"),
    "features_cut_short": (lambda r: _cut(r / "rounds/0/features/features.f16"), "rounds/0/features/features.f16",
                           "bytes where"),
    "metrics_log_shortened": (_log_shortened, "metrics.jsonl", "events were lost"),
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_a_damaged_run_directory_is_reported_not_a_traceback(case, round0_run, tmp_path):
    run = _copy(round0_run, tmp_path)
    damage, name, words = DAMAGE[case]
    damage(run)
    before = _digest(run)
    res = runner.invoke(app, ["run", "--resume", str(run), "--quiet"])
    out = " ".join(res.output.split())
    assert res.exit_code == 1, res.output
    assert out.startswith(f"error: {run / name}: damaged ("), out
    assert words in out and "Traceback" not in res.output, out
    assert _digest(run) == before  # nothing was changed


def test_the_fixture_run_resumes_cleanly_when_nothing_is_damaged(round0_run, tmp_path):
    run = _copy(round0_run, tmp_path)
    before = _digest(run / "pool")
    res = runner.invoke(app, ["run", "--resume", str(run), "--quiet"])
    assert res.exit_code == 0, res.output
    assert _digest(run / "pool") == before
    events = [json.loads(x)["event"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert events.count("config") == 1  # a resumed finished run logs nothing again
    assert events == [json.loads(x)["event"] for x in (round0_run / "metrics.jsonl").read_text().splitlines()]


def test_events_of_an_interrupted_phase_and_a_torn_line_are_cut_on_resume(round0_run, tmp_path):
    """metrics.jsonl is append-only with its committed length in state.json: what a killed phase
    logged after the last commit (here an event and half a line) goes when the run resumes."""
    run = _copy(round0_run, tmp_path)
    log = run / "metrics.jsonl"
    committed = log.read_bytes()
    assert json.loads((run / "state.json").read_text())["log_bytes"] == len(committed)
    with open(log, "a") as fh:
        fh.write(json.dumps({"event": "metrics", "step": 1, "time": 0.0, "metrics": {"x": 1}}) + "\n")
        fh.write('{"event": "metr')
    res = runner.invoke(app, ["run", "--resume", str(run), "--quiet"])
    assert res.exit_code == 0, res.output
    assert log.read_bytes() == committed
