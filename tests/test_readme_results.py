"""The README's results tables are the ones experiments/compare.py wrote: every table line under a
stream's heading is, verbatim, a line of experiments/results/<stream>.md (regenerated with
``python experiments/compare.py``), so a number in the README cannot drift from the run tables."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from adapt.data.demo_stream import STREAMS

ROOT = Path(__file__).resolve().parents[1]


def section(text: str, heading: str) -> str:
    """The text under ``heading`` (a whole line) up to the next heading of any level."""
    lines = text.splitlines()
    start = lines.index(heading) + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("#")), len(lines))
    return "\n".join(lines[start:end])


@pytest.mark.parametrize("stream", list(STREAMS))
def test_the_readme_tables_of_a_stream_are_compare_py_s(stream):
    readme = (ROOT / "README.md").read_text()
    results = set((ROOT / "experiments" / "results" / f"{stream}.md").read_text().splitlines())
    table = [line for line in section(readme, f"### The `{stream}` stream").splitlines() if line.startswith("| ")]
    assert len(table) >= 4, f"no results table under the {stream!r} heading"
    assert [line for line in table if line not in results] == []


def table_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("| ")]


def first_table(text: str) -> list[str]:
    """The lines of the first markdown table in ``text``."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("| ")), len(lines))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("| ")), len(lines))
    return lines[start:end]


@pytest.mark.parametrize("stream", list(STREAMS))
def test_the_readme_one_shot_tables_are_compare_py_s(stream):
    readme = (ROOT / "README.md").read_text()
    results = set((ROOT / "experiments" / "results" / f"{stream}_oneshot.md").read_text().splitlines())
    table = first_table(section(readme, f"#### One shot on the `{stream}` stream"))
    assert len(table) >= 4, f"no one-shot table under the {stream!r} heading"
    assert [line for line in table if line not in results] == []


def test_the_readme_one_shot_summary_quotes_the_tables():
    """The summary (each method's A as % of multitask's at 15%, one column per stream) holds the
    "% of multitask" means of each stream's one-shot table, and random's in the sentence before it."""
    readme = (ROOT / "README.md").read_text()
    summary = section(readme, "#### One shot on the `alt` stream").split("beside `random`'s")[1]
    pct, delta = {}, {}
    for stream in STREAMS:
        text = (ROOT / "experiments" / "results" / f"{stream}_oneshot.md").read_text()
        at15 = text.split("## 15% of the union")[1].split("\n\n")[1]
        cells = {row.split(" | ")[0].strip("| `").split("`")[0]: row.split(" | ") for row in table_lines(at15)[2:]}
        pct[stream] = {m: c[3].split(" ±")[0] for m, c in cells.items()}
        delta[stream] = {m: c[4] for m, c in cells.items()}
    head = summary.split(":")[0]  # "72.0 / 65.9"
    assert head.strip() == " / ".join(pct[s]["random"] for s in STREAMS)
    rows = table_lines(summary)[2:]
    assert len(rows) == len(pct["default"]) - 1  # every method but random
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        method = cells[0].strip("`").split("`")[0]
        assert cells[1:1 + len(STREAMS)] == [pct[s][method] for s in STREAMS], method
        # the paired differences quoted beside them, one per stream in that order
        quoted = re.findall(r"[−+]?\d+\.\d ± \d+\.\d", cells[-1])
        assert [q.replace("−", "-").lstrip("+") for q in quoted] == [delta[s][method] for s in STREAMS], method


FRESH_HEADING = "### Fresh data: `hindsight` on redrawn streams"


def test_the_readme_fresh_data_table_is_worked_out_from_the_digests():
    """Each row of the fresh-data table (stream seed, stream, the hindsight row whose defaults ran; A of
    random, hindsight and multitask; hindsight − random; hindsight − (random + ½(multitask − random)); F
    of random and hindsight) is recomputed here from the digests under
    experiments/results/fresh/stream-seed-K/runs/, model seed 0."""
    import json

    rows = [line for line in section((ROOT / "README.md").read_text(), FRESH_HEADING).splitlines()
            if re.match(r"\| \d+ \|", line)]  # the data rows, not the header and its rule
    assert len(rows) >= 4
    for line in rows:
        cells = [c.strip() for c in line.strip("|").split("|")]
        k, stream, ours = cells[0], cells[1].strip("`"), cells[2].strip("`")
        def value(row: str, key: str) -> float:
            path = ROOT / "experiments" / "results" / "fresh" / f"stream-seed-{k}" / "runs" / stream / f"{row}-s0.json"
            return 100 * (json.loads(path.read_text())[key] or 0.0)
        assert ours in ("hindsight", "hindsight_task_floor"), line
        r, h, m = (value(n, "avg_accuracy") for n in ("random", ours, "multitask"))
        want = [r, h, m, h - r, h - (r + (m - r) / 2), value("random", "forgetting"), value(ours, "forgetting")]
        assert cells[3:] == [f"{v:+.1f}" if i in (3, 4) else f"{v:.1f}" for i, v in enumerate(want)], line


SAME_BASE_HEADING = "### One machine, one arithmetic: the targets on pinned runs"


def test_the_readme_same_base_tables_are_compare_py_s():
    """The section on the runs made on the pinned arithmetic: every table line after "On `<stream>`:"
    (up to the next stream's) is a line of experiments/results/same_base/<stream>.md."""
    readme = (ROOT / "README.md").read_text()
    text = section(readme, SAME_BASE_HEADING)
    for stream in STREAMS:
        results = set((ROOT / "experiments" / "results" / "same_base" / f"{stream}.md").read_text().splitlines())
        part = text.split(f"On `{stream}`:")[1].split("On `")[0]
        table = table_lines(part)
        assert len(table) >= 3, f"no same-base table for {stream!r}"
        assert [line for line in table if line not in results] == []
