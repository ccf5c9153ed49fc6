"""DataPool: persistence, tombstones that never return, idempotent and atomic ingest."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from adapt.data.pool import DataPool
from adapt.data.sample import Sample
from adapt.errors import AdaptError, DataError


def make(dataset: str, n: int, offset: int = 0) -> list[Sample]:
    return [Sample(f"{dataset}/{i}", dataset, str(i), ({"from": "human", "value": f"q{i + offset}"},
                                                      {"from": "gpt", "value": f"a{i}"}), task=dataset)
            for i in range(n)]


def digest(root: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.iterdir())}


def test_ingest_and_reopen(tmp_path):
    pool = DataPool(tmp_path / "pool")
    assert pool.ingest(make("a", 5), "a", round_added=0, source="a.json") == 5
    assert pool.ingest(make("b", 3), "b", round_added=1, source="b.json") == 3
    again = DataPool(tmp_path / "pool")
    assert len(again) == 8 and again.num_total() == 8
    assert again.active_uids() == [f"a/{i}" for i in range(5)] + [f"b/{i}" for i in range(3)]
    assert again.samples(["b/2", "a/0"]) == [make("b", 3)[2], make("a", 5)[0]]
    assert [d["name"] for d in again.datasets()] == ["a", "b"]
    assert again.datasets()[1]["round_added"] == 1 and again.datasets()[1]["source"] == "b.json"
    t = again.table()
    assert list(t["round_added"]) == [0] * 5 + [1] * 3


def test_pruned_samples_are_tombstoned_and_never_return(tmp_path):
    pool = DataPool(tmp_path / "pool")
    pool.ingest(make("a", 5), "a", round_added=0)
    assert pool.prune(["a/1", "a/3"], round=0, reason="semdedup") == 2
    assert pool.prune(["a/1"], round=2, reason="again") == 0  # already pruned: untouched
    pool.ingest(make("b", 2), "b", round_added=1)
    reopened = DataPool(tmp_path / "pool")
    assert len(reopened) == 5 and reopened.num_total() == 7
    assert "a/1" not in reopened.active_uids()
    dead = reopened.table(status="pruned")
    assert list(dead["uid"]) == ["a/1", "a/3"]
    assert list(dead["pruned_round"]) == [0, 0] and list(dead["pruned_reason"]) == ["semdedup", "semdedup"]
    # re-ingesting the same dataset does not bring them back
    assert reopened.ingest(make("a", 5), "a", round_added=3) == 0
    assert "a/1" not in DataPool(tmp_path / "pool").active_uids()
    with pytest.raises(AdaptError, match="unknown uids"):
        reopened.prune(["zzz"], round=1, reason="x")


def test_same_name_different_content_is_an_error(tmp_path):
    pool = DataPool(tmp_path / "pool")
    pool.ingest(make("a", 3), "a", round_added=0)
    before = digest(tmp_path / "pool")
    with pytest.raises(DataError, match="different dataset named 'a'"):
        pool.ingest(make("a", 3, offset=10), "a", round_added=1)
    assert digest(tmp_path / "pool") == before


def test_failed_write_leaves_the_pool_byte_identical(tmp_path, monkeypatch):
    pool = DataPool(tmp_path / "pool")
    pool.ingest(make("a", 3), "a", round_added=0)
    before = digest(tmp_path / "pool")

    def broken(table, where, *a, **k):
        Path(where).write_bytes(b"PAR1 half written")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pq, "write_table", broken)
    with pytest.raises(OSError, match="No space left"):
        pool.ingest(make("b", 2), "b", round_added=1)
    monkeypatch.undo()
    assert digest(tmp_path / "pool") == before  # no temp files left either
    reopened = DataPool(tmp_path / "pool")
    assert len(reopened) == 3 and not reopened.has_dataset("b")


def test_manifest_is_rebuilt_when_a_crash_left_it_stale(tmp_path):
    pool = DataPool(tmp_path / "pool")
    pool.ingest(make("a", 3), "a", round_added=0, source="a.json")
    stale = (tmp_path / "pool" / "manifest.json").read_bytes()
    pool.ingest(make("b", 2), "b", round_added=1, source="b.json")
    (tmp_path / "pool" / "manifest.json").write_bytes(stale)  # as if killed between the two renames
    reopened = DataPool(tmp_path / "pool")
    assert [d["name"] for d in reopened.datasets()] == ["a", "b"]
    assert reopened.datasets()[1]["source"] == "b.json"
    assert reopened.ingest(make("b", 2), "b", round_added=1) == 0  # fingerprint still matches
