"""The README's results tables are the ones experiments/compare.py wrote: every table line under a
stream's heading is, verbatim, a line of experiments/results/<stream>.md (regenerated with
``python experiments/compare.py``), so a number in the README cannot drift from the run tables."""

from __future__ import annotations

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
