"""Loggers (disk, offline wandb), plots and the report."""

import json
import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("WANDB_MODE", "offline")

from adapt.errors import AdaptError  # noqa: E402
from adapt.evaluation.continual_metrics import continual_metrics  # noqa: E402
from adapt.tracking.loggers import (  # noqa: E402
    DiskLogger,
    MetricLogger,
    MultiLogger,
    NullLogger,
    WandbLogger,
    build_loggers,
    read_metrics_jsonl,
)
from adapt.tracking.plots import (  # noqa: E402
    plot_accuracy_matrix,
    plot_accuracy_vs_samples,
    plot_composition,
    plot_forgetting_curves,
    plot_runs_comparison,
    spread_labels,
)
from adapt.tracking.report import format_pct, load_run, print_report, write_report  # noqa: E402
from adapt.tracking.wandb_file import offline_run_dirs, read_offline_wandb_history  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_DISABLED", raising=False)


def assert_png(path: Path) -> None:
    assert path.is_file(), path
    data = path.read_bytes()
    assert len(data) > 1000 and data[:8] == PNG_MAGIC, path


def small_png(path: Path) -> Path:
    plot_composition([{"a": 1}], path, "x")
    return path


# ------------------------------------------------------------------------------- loggers
def test_disk_logger_lines(tmp_path):
    lg = DiskLogger(tmp_path)
    assert isinstance(lg, MetricLogger)
    lg.log_config({"seed": 3, "path": Path("/x")})
    lg.log({"round": 0, "avg_accuracy": 0.5, "method": "adapt", "bad": float("nan")}, step=0)
    lg.log({"round": 1, "avg_accuracy": 0.75}, step=1)
    lg.log_table("accuracy_matrix", ["after", "a"], [["0", 0.5], ["1", 0.75]], step=1)
    img = small_png(tmp_path / "plots" / "p.png")
    lg.log_image("heat", img, step=1)
    lg.log_summary({"final/a": 0.75, "final/b": float("inf")})
    lg.finish()

    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 6
    events = [json.loads(line) for line in lines]  # strict JSON, one object a line
    assert [e["event"] for e in events] == ["config", "metrics", "metrics", "table", "image", "summary"]
    assert events[0]["step"] is None and events[0]["config"] == {"seed": 3, "path": "/x"}
    assert events[1]["step"] == 0
    assert events[1]["metrics"] == {"round": 0, "avg_accuracy": 0.5, "method": "adapt", "bad": None}
    assert events[2]["metrics"]["avg_accuracy"] == 0.75
    assert events[3]["columns"] == ["after", "a"] and events[3]["rows"][1] == ["1", 0.75]
    assert events[4]["name"] == "heat" and events[4]["path"] == "plots/p.png"
    assert events[5]["step"] is None and events[5]["metrics"] == {"final/a": 0.75, "final/b": None}
    assert all("time" in e for e in events)

    # a second logger on the same run appends (resume); a torn last line is skipped on read
    DiskLogger(tmp_path).log({"round": 2}, step=2)
    with open(tmp_path / "metrics.jsonl", "a") as fh:
        fh.write('{"event": "metr')
    back = read_metrics_jsonl(tmp_path / "metrics.jsonl")
    assert len(back) == 7 and back[-1]["metrics"] == {"round": 2}


class Recorder:
    def __init__(self):
        self.calls = []

    def log(self, metrics, step):
        self.calls.append(("log", metrics, step))

    def log_table(self, name, columns, rows, step):
        self.calls.append(("table", name, step))

    def log_image(self, name, path, step):
        self.calls.append(("image", name, step))

    def log_summary(self, metrics):
        self.calls.append(("summary", metrics))

    def log_config(self, config):
        self.calls.append(("config",))

    def finish(self):
        self.calls.append(("finish",))


def test_multi_logger_fans_out(tmp_path):
    a, b = Recorder(), Recorder()
    multi = MultiLogger([a, NullLogger(), b])
    assert isinstance(multi, MetricLogger) and isinstance(NullLogger(), MetricLogger) and isinstance(a, MetricLogger)
    multi.log_config({})
    multi.log({"x": 1}, step=4)
    multi.log_table("t", ["c"], [[1]], step=4)
    multi.log_image("i", tmp_path / "i.png", step=4)
    multi.log_summary({"s": 2})
    multi.finish()
    assert a.calls == b.calls == [("config",), ("log", {"x": 1}, 4), ("table", "t", 4), ("image", "i", 4),
                                  ("summary", {"s": 2}), ("finish",)]


def test_wandb_offline_round_trip(tmp_path):
    run_dir = tmp_path / "run"
    lg = WandbLogger(run_dir, project="adapt-test", mode="offline", name="rt", tags=("t1",), group="g")
    assert isinstance(lg, MetricLogger)
    lg.log_config({"seed": 7, "selection": {"budget": 0.1}})
    lg.log({"round": 0, "avg_accuracy": 0.5, "method": "adapt"}, step=0)
    lg.log({"round": 1, "avg_accuracy": 0.75, "eval/vqa": 0.125}, step=1)
    lg.log_table("accuracy_matrix", ["after", "vqa"], [["0", 0.5], ["1", float("nan")]], step=1)
    lg.log_image("heat", small_png(tmp_path / "p.png"), step=1)
    lg.finish()
    lg.finish()  # idempotent

    dirs = offline_run_dirs(run_dir)
    assert len(dirs) == 1 and dirs[0].parent == run_dir / "wandb" and dirs[0].name.startswith("offline-run-")
    assert lg.run_path == dirs[0] and dirs[0].name.endswith(lg.run_id)
    rows = read_offline_wandb_history(run_dir)
    assert len(rows) == 2
    assert rows[0]["_step"] == 0 and rows[0]["round"] == 0 and rows[0]["avg_accuracy"] == 0.5
    assert rows[0]["method"] == "adapt"
    assert rows[1]["_step"] == 1 and rows[1]["round"] == 1 and rows[1]["avg_accuracy"] == 0.75
    assert rows[1]["eval/vqa"] == 0.125
    assert rows[1]["accuracy_matrix"]["_type"] == "table-file"
    table = (dirs[0] / "files" / rows[1]["accuracy_matrix"]["path"]).read_text()
    strict = json.loads(table, parse_constant=lambda c: pytest.fail(f"{c} in the table file: not JSON"))
    assert strict["data"] == [["0", 0.5], ["1", None]]
    assert rows[1]["heat"]["_type"] == "image-file"
    assert (dirs[0] / "files" / rows[1]["heat"]["path"]).is_file()
    # the same rows from the run folder and from the .wandb file itself
    assert read_offline_wandb_history(dirs[0]) == rows
    assert read_offline_wandb_history(next(dirs[0].glob("run-*.wandb"))) == rows


def test_wandb_two_runs_in_one_process_and_a_torn_file(tmp_path):
    a = WandbLogger(tmp_path / "a")
    b = WandbLogger(tmp_path / "b")
    assert a.run_id != b.run_id
    for i in range(50):  # enough to fill more than one 32 KiB block
        a.log({"i": i, "pad": "x" * 1500}, step=i)
        b.log({"j": -i}, step=i)
    a.finish()
    b.finish()
    ra, rb = read_offline_wandb_history(tmp_path / "a"), read_offline_wandb_history(tmp_path / "b")
    assert [r["i"] for r in ra] == list(range(50)) and "j" not in ra[0]
    assert [r["j"] for r in rb] == [-i for i in range(50)]

    # a run killed mid-write: the readable prefix comes back, no error
    src = next(offline_run_dirs(tmp_path / "a")[0].glob("run-*.wandb"))
    torn = tmp_path / "torn" / src.name
    torn.parent.mkdir()
    data = src.read_bytes()
    torn.write_bytes(data[: len(data) * 2 // 3])
    part = read_offline_wandb_history(torn)
    assert 0 < len(part) < 50 and [r["i"] for r in part] == list(range(len(part)))


def test_read_history_without_a_run(tmp_path):
    with pytest.raises(AdaptError, match=str(tmp_path)):
        read_offline_wandb_history(tmp_path)
    bad = tmp_path / "run-x.wandb"
    bad.write_bytes(b"not a wandb file")
    with pytest.raises(AdaptError, match="not a wandb run file"):
        read_offline_wandb_history(bad)


def test_build_loggers(tmp_path):
    only_disk = build_loggers(tmp_path / "a", {"wandb": False})
    assert [type(x) for x in only_disk] == [DiskLogger]
    disabled = build_loggers(tmp_path / "b", {"wandb_mode": "disabled"})
    assert [type(x) for x in disabled] == [DiskLogger]
    both = build_loggers(tmp_path / "c", {"run_name": "demo", "tags": ["x"], "project": "p"})
    assert [type(x) for x in both] == [DiskLogger, WandbLogger]
    assert both.loggers[1].mode == "offline"
    both.log({"a": 1.5}, step=0)
    both.finish()
    assert read_metrics_jsonl(tmp_path / "c" / "metrics.jsonl")[0]["metrics"] == {"a": 1.5}
    assert read_offline_wandb_history(tmp_path / "c")[0]["a"] == 1.5
    with pytest.raises(AdaptError, match="wandb_mode"):
        build_loggers(tmp_path / "d", {"wandb_mode": "cloud"})


# ------------------------------------------------------------------------------- plots
def test_plots_write_valid_pngs(tmp_path):
    R = [[0.8, float("nan"), 0.0], [0.6, 0.9, None], [0.5, 0.7, 0.95]]
    tasks = ["vqa", "count", "ground"]
    assert_png(plot_accuracy_matrix(R, tasks, tmp_path / "m.png", title="t", R0=[0.0, 0.05, 0.1]))
    assert_png(plot_accuracy_matrix(R[:1], tasks, tmp_path / "m1.png"))  # partial run
    assert_png(plot_forgetting_curves(R, tasks, tmp_path / "f.png"))
    assert_png(plot_composition([{"vqa": 10}, {"vqa": 4, "count": 8}, {}], tmp_path / "c.png", "selected"))
    assert_png(plot_runs_comparison({"a": {"avg_accuracy": 0.5, "bwt": -0.1, "forgetting": 0.1},
                                     "b": {"avg_accuracy": 0.6, "bwt": None}}, tmp_path / "r.png"))
    assert_png(plot_accuracy_vs_samples({"a": (100.0, 0.5, 0.1), "b": (100.0, 0.52, float("nan")),
                                         "c": (400.0, 0.7, 0.0)}, tmp_path / "s.png"))
    assert_png(plot_accuracy_vs_samples({}, tmp_path / "s0.png"))  # nothing finished yet: an empty plot
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temp files


def test_spread_labels_keeps_order_and_gap():
    # sweep up: 50, 70, 72 (71 + 1), 74 (72.5 + 1.5); mean displacement 0.625 taken off every label
    assert spread_labels([70.0, 71.0, 72.5, 50.0], 2.0) == [69.375, 71.375, 73.375, 49.375]
    assert spread_labels([5.0], 2.0) == [5.0] and spread_labels([], 2.0) == []


# ------------------------------------------------------------------------------- report
R3 = [[0.8, 0.1, 0.0], [0.6, 0.9, 0.2], [0.5, 0.7, 0.95]]
R3_0 = [0.0, 0.05, 0.1]


def fabricate_run(run_dir: Path, R=R3, R0=R3_0, method="adapt", **extra) -> Path:
    run_dir.mkdir(parents=True)
    metrics = {
        "method": method, "tasks": ["vqa", "count", "ground"], "accuracy_matrix": R, "accuracy_before": R0,
        **continual_metrics(R, R0), "samples_trained": [100, 120, 90][: len(R)],
        "pool_size": [1000, 1800, 2500][: len(R)],
        "selected_per_dataset": [{"vqa": 100}, {"vqa": 40, "count": 80}, {"vqa": 20, "count": 30, "ground": 40}][: len(R)],
        "phase_seconds": {"train": 120.5, "evaluate": 30.2}, "wall_seconds": 150.7, "rounds_done": len(R),
        "rounds_total": 3, "config": {"seed": 0},
    }
    metrics |= extra
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    return run_dir


def test_format_pct():
    assert format_pct(0.71666) == "71.7"
    assert format_pct(-0.25) == "-25.0"
    assert format_pct(None) == "—" and format_pct(float("nan")) == "—"
    assert format_pct(1) == "100.0"


def test_single_run_report(tmp_path):
    run = fabricate_run(tmp_path / "adapt-demo")
    path = write_report([run])
    assert path == run / "report.md"
    text = path.read_text()
    # comparison row: A 71.7, MAA 75.6, F 25.0, BWT -25.0, FWT 7.5, 310 samples, 2m 31s
    assert "| adapt-demo | adapt | 71.7 | 75.6 | 25.0 | -25.0 | 7.5 | 310 | 2m 31s |" in text
    # the accuracy matrix as a table
    assert "| before training | 0.0 | 5.0 | 10.0 |" in text
    assert "| after vqa | 80.0 | 10.0 | 0.0 |" in text
    assert "| after ground | 50.0 | 70.0 | 95.0 |" in text
    for name in ("accuracy_matrix", "forgetting", "selection_per_round"):
        assert_png(run / "plots" / f"{name}.png")
        assert f"(plots/{name}.png)" in text
    assert load_run(run)["avg_accuracy"] == pytest.approx(2.15 / 3)


def test_report_names_rows_by_the_round_that_brought_each_task(tmp_path):
    # vqa and count arrived together in round 0 (a dataset without an eval split had round 1)
    run = fabricate_run(tmp_path / "late", task_rounds=[0, 0, 2])
    text = write_report([run]).read_text()
    assert "| after vqa+count | 80.0 | 10.0 | 0.0 |" in text
    assert "| after round 1 | " in text and "| after ground | 50.0 | 70.0 | 95.0 |" in text


def test_several_runs_report(tmp_path):
    a = fabricate_run(tmp_path / "runs" / "adapt")
    # a run still going, without R0 (FWT undefined) and without selection counts
    b = fabricate_run(tmp_path / "runs" / "random", R=R3[:1], R0=None, method="random", selected_per_dataset=[])
    path = write_report([a, b])
    assert path == tmp_path / "runs" / "report" / "report.md"
    text = path.read_text()
    assert "| adapt | adapt | 71.7 | 75.6 | 25.0 | -25.0 | 7.5 |" in text
    # one round: A = MAA = 80.0, F/BWT/FWT undefined
    assert "| random | random | 80.0 | 80.0 | — | — | — | 100 | 2m 31s |" in text
    assert "partial run" in text
    assert_png(tmp_path / "runs" / "report" / "plots" / "comparison.png")
    assert "(plots/comparison.png)" in text and "(../adapt/plots/accuracy_matrix.png)" in text
    assert (a / "report.md").is_file() and (b / "report.md").is_file()
    assert not (b / "plots" / "selection_per_round.png").exists()

    out = write_report([a, b], tmp_path / "elsewhere")
    assert out == tmp_path / "elsewhere" / "report.md" and out.is_file()

    from rich.console import Console

    console = Console(record=True, width=200)
    print_report([a, b], console)
    shown = console.export_text()
    assert "71.7" in shown and "-25.0" in shown and "random" in shown and "—" in shown


def test_missing_or_bad_metrics_json(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(AdaptError, match=str(missing / "metrics.json")):
        load_run(missing)
    with pytest.raises(AdaptError, match="metrics.json"):
        write_report([missing])
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "metrics.json").write_text("{not json")
    with pytest.raises(AdaptError, match=str(bad / "metrics.json")):
        load_run(bad)
    (bad / "metrics.json").write_text(json.dumps({"tasks": ["a"]}))
    with pytest.raises(AdaptError, match="accuracy_matrix"):
        load_run(bad)
    (bad / "metrics.json").write_text(json.dumps({"tasks": ["a"], "accuracy_matrix": [[0.1, 0.2]]}))
    with pytest.raises(AdaptError, match="row 0"):
        load_run(bad)
    shutil.rmtree(bad)


# ------------------------------------------------------------------------------- the run's tracker
def test_tracker_logs_the_metrics_after_each_round(tmp_path):
    """RunTracker on a hand-worked 3-round run, read back from the offline wandb file and metrics.jsonl."""
    from adapt.config import load_config
    from adapt.io import write_json_atomic
    from adapt.layout import BEFORE_TRAINING, RunLayout
    from adapt.run.state import RunState
    from adapt.run.summary import RunTracker, collect_metrics
    from adapt.tracking.wandb_file import read_offline_wandb_summary

    tasks = ["vqa", "count", "ground"]
    R = [[0.5, 0.1, 0.0], [0.8, 0.6, 0.2], [0.7, 0.3, 0.9]]  # test_continual_metrics: after each round by hand
    R0 = [0.0, 0.05, 0.1]
    layout = RunLayout(tmp_path / "run")
    cfg = load_config(None, ["tracking.wandb=true", "tracking.wandb_mode=offline"])
    state = RunState.load_or_new(layout.state, 0, log=layout.events)
    write_json_atomic(layout.round(BEFORE_TRAINING).eval, {"scores": dict(zip(tasks, R0))})
    tracker = RunTracker(layout, cfg, state)
    for t in range(3):
        write_json_atomic(layout.round(t).eval, {"scores": dict(zip(tasks, R[t]))})
        write_json_atomic(layout.round(t).train, {"samples": 10 + t, "last_loss": 1.0})
        state.mark(t, "evaluate", 1.0)
        metrics = collect_metrics(layout, state, cfg, "random", tasks, 3, one_round=False)
        tracker.log_round(t, metrics, pool_size=100, round_labels=tasks)
    tracker.log_final(metrics)
    tracker.close()

    # by hand (A, MAA, BWT, F, FWT and F per task after rounds 0, 1, 2)
    want = [
        {"continual/avg_accuracy": 0.5, "continual/maa": 0.5, "continual/fwt": 0.05},
        {"continual/avg_accuracy": 0.7, "continual/maa": 0.6, "continual/bwt": 0.3, "continual/forgetting": -0.3,
         "continual/fwt": 0.075, "forgetting/vqa": -0.3},
        {"continual/avg_accuracy": 1.9 / 3, "continual/maa": (1.2 + 1.9 / 3) / 3, "continual/bwt": -0.05,
         "continual/forgetting": 0.2, "continual/fwt": 0.075, "forgetting/vqa": 0.1, "forgetting/count": 0.3},
    ]
    prefixes = ("continual/", "forgetting/")
    history = read_offline_wandb_history(layout.root)
    run_files = offline_run_dirs(layout.root)[0] / "files"
    assert [r["_step"] for r in history] == [r["round"] for r in history] == [0, 1, 2]
    for t, row in enumerate(history):
        assert {k: v for k, v in row.items() if k.startswith(prefixes)} == pytest.approx(want[t])
        assert [row[f"eval/{k}"] for k in tasks] == pytest.approx(R[t])
        # both views of the matrix so far, under their own keys
        table, heat = row["accuracy_matrix/table"], row["accuracy_matrix/heatmap"]
        assert table["_type"] == "table-file" and heat["_type"] == "image-file"
        back = json.loads((run_files / table["path"]).read_text())
        assert back["columns"] == ["after", *tasks]
        assert back["data"] == [["before training", *R0]] + [[k, *r] for k, r in zip(tasks, R[: t + 1])]
        assert_png(run_files / heat["path"])
        assert_png(tmp_path / "run" / "plots" / f"accuracy_matrix_round_{t}.png")

    summary = read_offline_wandb_summary(layout.root)
    assert summary["final/avg_accuracy"] == pytest.approx(1.9 / 3) and summary["final/bwt"] == pytest.approx(-0.05)
    assert summary["final/forgetting"] == pytest.approx(0.2) and summary["final/fwt"] == pytest.approx(0.075)
    assert summary["final/forgetting/vqa"] == pytest.approx(0.1)
    assert summary["final/forgetting/count"] == pytest.approx(0.3) and "final/forgetting/ground" not in summary
    assert summary["final/samples_trained"] == 33
    assert summary["continual/forgetting"] == pytest.approx(0.2)  # the last round's value

    # metrics.jsonl holds the same events
    events = read_metrics_jsonl(layout.events)
    scalars = [e for e in events if e["event"] == "metrics"]
    assert [e["step"] for e in scalars] == [0, 1, 2]
    for t, e in enumerate(scalars):
        assert {k: v for k, v in e["metrics"].items() if k.startswith(prefixes)} == pytest.approx(want[t])
    media = [(e["event"], e["name"], e["step"]) for e in events if e["event"] in ("table", "image")]
    assert media == [(kind, f"accuracy_matrix/{name}", t) for t in range(3)
                     for kind, name in (("table", "table"), ("image", "heatmap"))]
    assert [e for e in events if e["event"] == "table"][-1]["rows"] == back["data"]
    assert [e["metrics"] for e in events if e["event"] == "summary"] == [pytest.approx(
        {k: v for k, v in summary.items() if k.startswith("final/")})]
