"""A stream dataset with invalid samples: the run stops with exit status 2 naming the file, the line
and the problem, the pool byte-identical; ``--skip-invalid`` quarantines them into
``pool/rejected.jsonl`` with their reasons and the run goes on."""

from __future__ import annotations

import json

import yaml
from typer.testing import CliRunner

from adapt.cli import app
from adapt.data.demo_stream import write_demo_stream

runner = CliRunner()


def test_invalid_samples_stop_the_run_or_are_quarantined(tmp_path):
    data = tmp_path / "data"
    write_demo_stream(data, seed=0, scale=0.02, progress=False)
    records = json.loads((data / "reasoning/train.json").read_text())
    lines = [json.dumps(r) for r in records]
    lines[2] = "{oops"                                                        # line 3: not JSON
    bad_id = records[4]["id"]
    lines[4] = json.dumps(dict(records[4], conversations=[{"from": "human", "value": "<image>\nQ?"}]))  # line 5
    bad = data / "reasoning" / "mixed.jsonl"
    bad.write_text("\n".join(lines) + "\n")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({
        "stream": {"builtin": None, "datasets": [
            {"name": "grounding", "train": str(data / "grounding/train.json"), "eval": str(data / "grounding/eval.json")},
            {"name": "mixed", "train": str(bad), "eval": str(data / "reasoning/eval.json")}]},
        "training": {"epochs": 1.0}, "evaluation": {"max_samples": 4, "max_new_tokens": 8, "before_training": False},
        "lora": {"r": 4}, "tracking": {"wandb": False}, "selection": {"method": "random"}}))
    run = tmp_path / "run"

    res = runner.invoke(app, ["run", str(cfg), "--run-dir", str(run), "--quiet"])
    assert res.exit_code == 2, res.output
    assert str(bad) in res.output and "line 3" in res.output and "invalid JSON" in res.output
    pool_bytes = (run / "pool/samples.parquet").read_bytes()
    state = json.loads((run / "state.json").read_text())
    assert state["round"] == 1 and state["phase"] == "ingest" and "1:ingest" not in state["finished"]
    res = runner.invoke(app, ["run", "--resume", str(run), "--quiet"])  # the same stop, nothing changed
    assert res.exit_code == 2 and "line 3" in res.output
    assert (run / "pool/samples.parquet").read_bytes() == pool_bytes
    assert not (run / "pool/rejected.jsonl").exists()

    res = runner.invoke(app, ["run", "--resume", str(run), "--quiet", "--skip-invalid"])
    assert res.exit_code == 0, res.output
    rejected = [json.loads(x) for x in (run / "pool/rejected.jsonl").read_text().splitlines()]
    assert [(r["dataset"], r["split"], r["sample"]) for r in rejected] == \
        [("mixed", "train", "line 3"), ("mixed", "train", f"{bad_id} (line 5)")]
    assert "invalid JSON" in rejected[0]["reason"] and rejected[0]["record"] is None
    assert "no answer turn" in rejected[1]["reason"] and rejected[1]["record"]["id"] == bad_id
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["rounds_done"] == 2
    assert metrics["pool_per_dataset"][-1] == {"grounding": len(json.loads((data / "grounding/train.json").read_text())),
                                               "mixed": len(records) - 2}
    assert yaml.safe_load((run / "config.yaml").read_text())["stream"]["skip_invalid"] is True
