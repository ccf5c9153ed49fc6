"""experiments/chaos_resume.py, the 3-kill version: SIGKILL at three moments of an Adapt-∞ run
with pruning, resume each time, and the outcome is the uninterrupted run's; and the comparison it
makes does notice a changed selection or pool."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))

from chaos_resume import same_outcome  # noqa: E402


def test_three_kills_and_resumes_give_the_uninterrupted_outcome(tmp_path):
    cfg = tmp_path / "small.yaml"
    cfg.write_text(f"""stream: {{scale: 0.04, data_dir: {tmp_path / 'data'}}}
training: {{epochs: 1, first_round_epochs: 2, batch_size: 16}}
evaluation: {{max_samples: 12, max_new_tokens: 16}}
lora: {{r: 4}}
tracking: {{wandb: false}}
features: {{enabled: true, dim: 64}}
selection: {{method: adapt_inf, k: 3, budget: 0.3}}
pool: {{max_size: 0.8}}
""")
    out = tmp_path / "chaos"
    res = subprocess.run([sys.executable, str(ROOT / "experiments" / "chaos_resume.py"), "--config", str(cfg),
                          "--trials", "1", "--kills", "3", "--out", str(out), "--seed", "1", "--keep"],
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout + res.stderr
    trial = [line for line in res.stdout.splitlines() if line.startswith("trial 0:")][0]
    assert trial.count("round ") >= 3 and trial.endswith("-> identical"), trial
    assert "1/1 trials identical" in res.stdout

    ref, run = out / "reference", out / "trial-0"
    assert same_outcome(ref, run) == []
    changed = tmp_path / "changed"
    shutil.copytree(run, changed)
    sel_path = changed / "rounds" / "2" / "selection.parquet"
    sel = pd.read_parquet(sel_path)
    sel.loc[0, "selected"] = not sel.loc[0, "selected"]
    sel.to_parquet(sel_path, index=False)
    pool = pd.read_parquet(changed / "pool" / "samples.parquet")
    pool.loc[0, "status"] = "pruned" if pool.loc[0, "status"] == "active" else "active"
    pool.to_parquet(changed / "pool" / "samples.parquet", index=False)
    log = (changed / "metrics.jsonl").read_text().splitlines()
    (changed / "metrics.jsonl").write_text("\n".join(log[:-1] + [log[-2]]) + "\n")  # an event twice, one lost
    assert same_outcome(ref, changed) == ["rounds/2/selection.parquet", "pool", "metrics.jsonl"]
    # each event once: the events of a phase a kill interrupted were cut before it ran again
    assert [json.loads(x)["event"] for x in (run / "metrics.jsonl").read_text().splitlines()].count("config") == 1


def test_the_comparison_ignores_only_where_each_run_keeps_its_data(tmp_path):
    """The demo config writes the stream into RUN_DIR/data: two runs' pools differ by that prefix
    in the image paths and nothing else, which is the same outcome; any other change is not."""
    import json

    runs = []
    for name in ("ref", "trial"):
        d = tmp_path / name
        (d / "rounds" / "0").mkdir(parents=True)
        (d / "pool").mkdir()
        (d / "metrics.json").write_text(json.dumps({"avg_accuracy": 0.5, "wall_seconds": len(name)}))
        (d / "metrics.jsonl").write_text(json.dumps({"event": "metrics", "step": 0, "time": len(name)}) + "\n")
        pd.DataFrame({"uid": ["a/1"], "selected": [True]}).to_parquet(d / "rounds" / "0" / "selection.parquet")
        record = json.dumps({"uid": "a/1", "images": [str(d.resolve() / "data" / "a" / "1.png")]})
        pd.DataFrame({"uid": ["a/1"], "record": [record]}).to_parquet(d / "pool" / "samples.parquet")
        runs.append(d)
    assert same_outcome(*runs) == []
    other = pd.DataFrame({"uid": ["a/1"], "record": [json.dumps({"uid": "a/1", "images": ["/elsewhere/1.png"]})]})
    other.to_parquet(runs[1] / "pool" / "samples.parquet")
    assert same_outcome(*runs) == ["pool"]
