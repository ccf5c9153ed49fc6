"""DataPool: persistence, tombstones that never return, idempotent and atomic ingest, crash repair."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_readers import BAD, bad_input, good_records, make_data_dir, write_dataset

import adapt.data.pool as pool_module
from adapt.data.pool import DataPool, UnknownUidError, fingerprint
from adapt.data.readers import read_dataset
from adapt.data.sample import Sample
from adapt.errors import AdaptError, DataError


def make(dataset: str, n: int, offset: int = 0, task: str | None = None) -> list[Sample]:
    return [Sample(f"{dataset}/{i}", dataset, str(i), ({"from": "human", "value": f"q{i + offset}"},
                                                      {"from": "gpt", "value": f"a{i}"}),
                   task=task or dataset, extra={"k": i})
            for i in range(n)]


def tree_digest(root: Path) -> dict[str, str]:
    """sha256 of every file under root (temp files included)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_empty_pool_creates_nothing_until_the_first_write(tmp_path):
    pool = DataPool(tmp_path / "pool")
    assert len(pool) == 0 and pool.num_total() == 0 and pool.datasets() == [] and pool.samples() == []
    assert list(pool.table().columns) == ["uid", "dataset", "task", "round_added", "status", "pruned_round",
                                          "pruned_reason", "record"]
    assert not (tmp_path / "pool").exists()


def test_ingest_and_reopen(tmp_path):
    pool = DataPool(tmp_path / "pool")
    a, b = make("a", 5), make("b", 3, task="vqa")
    assert pool.ingest(a, "a", round_added=0, source="a.json") == 5
    assert pool.ingest(b, "b", round_added=1, source="b.json") == 3
    assert sorted(p.name for p in (tmp_path / "pool").iterdir()) == ["manifest.json", "samples.parquet"]
    again = DataPool(tmp_path / "pool")
    assert len(again) == 8 and again.num_total() == 8
    assert again.active_uids() == [s.uid for s in a + b]
    assert again.samples() == a + b and [s.extra for s in again.samples()] == [s.extra for s in a + b]
    assert again.samples(["b/2", "a/0"]) == [b[2], a[0]]
    assert again.has_dataset("a") and not again.has_dataset("c")
    assert again.datasets() == [
        {"name": "a", "source": "a.json", "task": "a", "round_added": 0, "num_samples": 5,
         "fingerprint": fingerprint(a)},
        {"name": "b", "source": "b.json", "task": "vqa", "round_added": 1, "num_samples": 3,
         "fingerprint": fingerprint(b)},
    ]
    manifest = json.loads((tmp_path / "pool" / "manifest.json").read_text())
    assert manifest == {"version": 1, "datasets": again.datasets(), "num_samples": 8, "num_active": 8}


def test_on_disk_format(tmp_path):
    pool = DataPool(tmp_path / "pool")
    pool.ingest(make("a", 3), "a", round_added=2)
    pool.prune(["a/1"], round=3, reason="dup")
    t = pq.read_table(tmp_path / "pool" / "samples.parquet")
    assert t.schema.remove_metadata() == pa.schema([
        ("uid", pa.string()), ("dataset", pa.string()), ("task", pa.string()), ("round_added", pa.int32()),
        ("status", pa.string()), ("pruned_round", pa.int32()), ("pruned_reason", pa.string()),
        ("record", pa.string())])
    rows = t.to_pylist()
    assert [r["status"] for r in rows] == ["active", "pruned", "active"]
    assert [r["pruned_round"] for r in rows] == [None, 3, None]
    assert [r["pruned_reason"] for r in rows] == [None, "dup", None]
    assert [Sample.from_json(r["record"]) for r in rows] == make("a", 3)
    meta = pq.read_metadata(tmp_path / "pool" / "samples.parquet").metadata
    assert json.loads(meta[b"adapt_pool"])["datasets"][0]["name"] == "a"


def test_table_columns_and_dtypes(tmp_path):
    pool = DataPool(tmp_path / "pool")
    pool.ingest(make("a", 4), "a", round_added=0)
    pool.prune(["a/2"], round=1, reason="r")
    full = pool.table(status=None)
    assert full["round_added"].dtype == "int32" and str(full["pruned_round"].dtype) == "Int32"
    assert full["pruned_round"].isna().tolist() == [True, True, False, True]
    assert pool.table(columns=["uid", "record"])["uid"].tolist() == ["a/0", "a/1", "a/3"]
    assert Sample.from_json(pool.table(columns=["record", "uid"])["record"][2]) == make("a", 4)[3]
    assert pool.table(status="pruned", columns=["uid", "pruned_round"]).to_dict("list") == {
        "uid": ["a/2"], "pruned_round": [1]}
    t = pool.table(columns=["uid"])
    t.loc[0, "uid"] = "changed"  # a copy: the pool is not changed
    assert pool.active_uids()[0] == "a/0"
    with pytest.raises(AdaptError, match="unknown status"):
        pool.table(status="gone")
    with pytest.raises(AdaptError, match="unknown pool column"):
        pool.table(columns=["uid", "nope"])


def test_pruned_samples_are_tombstoned_and_never_return(tmp_path):
    pool = DataPool(tmp_path / "pool")
    pool.ingest(make("a", 5), "a", round_added=0)
    assert pool.prune(["a/1", "a/3"], round=0, reason="semdedup") == 2
    before = tree_digest(tmp_path / "pool")
    assert pool.prune(["a/1"], round=2, reason="again") == 0  # already pruned: a no-op, nothing written
    assert pool.prune([], round=2, reason="none") == 0
    assert tree_digest(tmp_path / "pool") == before
    pool.ingest(make("b", 2), "b", round_added=1)
    reopened = DataPool(tmp_path / "pool")
    assert len(reopened) == 5 and reopened.num_total() == 7
    assert reopened.active_uids() == ["a/0", "a/2", "a/4", "b/0", "b/1"]
    assert [s.uid for s in reopened.samples()] == reopened.active_uids()
    dead = reopened.table(status="pruned")
    assert list(dead["uid"]) == ["a/1", "a/3"]
    assert list(dead["pruned_round"]) == [0, 0] and list(dead["pruned_reason"]) == ["semdedup", "semdedup"]
    assert reopened.samples(["a/3"]) == [make("a", 5)[3]]  # still readable, never active
    # re-ingesting the same dataset does not bring them back; nor does a later prune change them
    assert reopened.ingest(make("a", 5), "a", round_added=3) == 0
    assert reopened.prune(["a/0", "a/1"], round=4, reason="later") == 1
    final = DataPool(tmp_path / "pool")
    assert "a/1" not in final.active_uids() and "a/0" not in final.active_uids()
    dead = final.table(status="pruned", columns=["uid", "pruned_round", "pruned_reason"]).set_index("uid")
    assert dead.loc["a/1"].tolist() == [0, "semdedup"] and dead.loc["a/0"].tolist() == [4, "later"]
    assert final.manifest()["num_active"] == 4 and final.manifest()["num_samples"] == 7


def test_unknown_uids(tmp_path):
    pool = DataPool(tmp_path / "pool")
    pool.ingest(make("a", 2), "a", round_added=0)
    before = tree_digest(tmp_path / "pool")
    with pytest.raises(UnknownUidError, match="unknown uid.*'zzz'") as info:
        pool.prune(["a/0", "zzz"], round=1, reason="x")
    assert isinstance(info.value, AdaptError) and isinstance(info.value, KeyError)
    assert str(info.value).startswith(str(tmp_path))
    assert tree_digest(tmp_path / "pool") == before and len(pool) == 2  # a/0 untouched
    with pytest.raises(UnknownUidError, match="'nope'"):
        pool.samples(["a/1", "nope"])


def test_same_dataset_again_is_a_noop_and_different_content_is_an_error(tmp_path):
    pool = DataPool(tmp_path / "pool")
    pool.ingest(make("a", 3), "a", round_added=0, source="a.json")
    before = tree_digest(tmp_path / "pool")
    assert DataPool(tmp_path / "pool").ingest(make("a", 3), "a", round_added=5) == 0  # a resumed ingest
    assert tree_digest(tmp_path / "pool") == before
    with pytest.raises(DataError, match="already holds a dataset named 'a' with different content"):
        pool.ingest(make("a", 3, offset=10), "a", round_added=1, source="a2.json")
    with pytest.raises(DataError, match="already holds a dataset named 'a'"):
        pool.ingest(make("a", 2), "a", round_added=1)  # a prefix is different content too
    assert tree_digest(tmp_path / "pool") == before


def _renamed(samples: list[Sample], dataset: str) -> list[Sample]:
    return [Sample(s.uid, dataset, s.id, s.conversations, s.images, s.task, s.extra) for s in samples]


@pytest.mark.parametrize("case", ["uid_clash", "uid_repeated", "empty", "wrong_dataset"])
def test_bad_ingest_leaves_the_pool_byte_identical(case, tmp_path):
    pool = DataPool(tmp_path / "pool")
    pool.ingest(make("a", 3), "a", round_added=0)
    before = tree_digest(tmp_path / "pool")
    samples, words = {
        "uid_clash": (_renamed(make("a", 2), "b"), "uid 'a/0' is already in the pool (dataset 'a')"),
        "uid_repeated": (make("b", 2) + make("b", 1), "uid repeated within the dataset: 'b/0'"),
        "empty": ([], "no samples"),
        "wrong_dataset": (make("c", 1), "belongs to dataset 'c', not 'b'"),
    }[case]
    with pytest.raises(DataError, match=words.replace("(", r"\(").replace(")", r"\)")):
        pool.ingest(samples, "b", round_added=1)
    assert tree_digest(tmp_path / "pool") == before and not pool.has_dataset("b")


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_leaves_the_pool_byte_identical(case, tmp_path):
    data = make_data_dir(tmp_path)
    good = write_dataset("json", data / "good", good_records())
    pool = DataPool(tmp_path / "run" / "pool")
    pool.ingest(read_dataset(good, "good", image_root=data), "good", round_added=0, source=str(good))
    before = tree_digest(tmp_path / "run")
    path = bad_input(case, data)
    with pytest.raises(DataError) as info:
        pool.ingest(read_dataset(path, "bad"), "bad", round_added=1, source=str(path))
    assert str(path.resolve()) in str(info.value)
    assert tree_digest(tmp_path / "run") == before
    reopened = DataPool(tmp_path / "run" / "pool")
    assert len(reopened) == 3 and [d["name"] for d in reopened.datasets()] == ["good"]


def _half_written_parquet(self, batch, *args, **kwargs):
    _real_write_batch(self, batch.slice(0, 1))
    raise OSError(28, "No space left on device")


_real_write_batch = pq.ParquetWriter.write_batch


def test_failed_write_leaves_the_pool_byte_identical(tmp_path, monkeypatch):
    pool = DataPool(tmp_path / "pool")
    pool.ingest(make("a", 3), "a", round_added=0)
    before = tree_digest(tmp_path / "pool")
    monkeypatch.setattr(pq.ParquetWriter, "write_batch", _half_written_parquet)
    with pytest.raises(OSError, match="No space left"):
        pool.ingest(make("b", 2), "b", round_added=1)
    with pytest.raises(OSError, match="No space left"):
        pool.prune(["a/0"], round=1, reason="x")
    monkeypatch.undo()
    assert tree_digest(tmp_path / "pool") == before  # byte-identical, and no temp files left behind
    assert len(pool) == 3 and not pool.has_dataset("b")  # the in-memory pool did not change either
    reopened = DataPool(tmp_path / "pool")
    assert len(reopened) == 3 and not reopened.has_dataset("b")
    assert reopened.ingest(make("b", 2), "b", round_added=1) == 2  # and it works afterwards


def test_crash_between_the_two_renames_is_repaired_on_open(tmp_path, monkeypatch):
    pool = DataPool(tmp_path / "pool")
    pool.ingest(make("a", 3), "a", round_added=0, source="a.json")
    stale = (tmp_path / "pool" / "manifest.json").read_bytes()

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pool_module, "write_json_atomic", killed)
    with pytest.raises(KeyboardInterrupt):
        pool.ingest(make("b", 2), "b", round_added=1, source="b.json")
    monkeypatch.undo()
    assert (tmp_path / "pool" / "manifest.json").read_bytes() == stale  # the Parquet file is ahead
    reopened = DataPool(tmp_path / "pool")
    assert [d["name"] for d in reopened.datasets()] == ["a", "b"]
    assert reopened.datasets()[1]["source"] == "b.json" and len(reopened) == 5
    assert json.loads((tmp_path / "pool" / "manifest.json").read_text()) == reopened.manifest()  # rewritten
    assert reopened.ingest(make("b", 2), "b", round_added=1) == 0  # the resumed ingest is a no-op
    assert len(pool) == 5  # the old object reloads what is on disk


def test_manifest_is_rebuilt_from_the_parquet_file(tmp_path):
    pool = DataPool(tmp_path / "pool")
    pool.ingest(make("a", 3), "a", round_added=0, source="a.json")
    pool.ingest(make("b", 2), "b", round_added=1, source="b.json")
    pool.prune(["b/0"], round=1, reason="x")
    good = json.loads((tmp_path / "pool" / "manifest.json").read_text())
    for broken in (b"{not json", b'{"version": 1, "datasets": [], "num_samples": 0, "num_active": 0}'):
        (tmp_path / "pool" / "manifest.json").write_bytes(broken)
        assert DataPool(tmp_path / "pool").manifest() == good
        assert json.loads((tmp_path / "pool" / "manifest.json").read_text()) == good
    # a Parquet file without our metadata: entries (fingerprints included) are recomputed from the rows
    t = pq.read_table(tmp_path / "pool" / "samples.parquet")
    pq.write_table(t.replace_schema_metadata(None), tmp_path / "pool" / "samples.parquet")
    (tmp_path / "pool" / "manifest.json").unlink()
    rebuilt = DataPool(tmp_path / "pool")
    assert rebuilt.manifest() == {**good, "datasets": [dict(d, source="") for d in good["datasets"]]}
    assert rebuilt.ingest(make("a", 3), "a", round_added=0) == 0


def test_stale_temp_files_are_removed_by_the_next_write(tmp_path):
    pool = DataPool(tmp_path / "pool")
    pool.ingest(make("a", 2), "a", round_added=0)
    (tmp_path / "pool" / ".samples.parquet.abc123.tmp").write_bytes(b"killed writer")
    assert len(DataPool(tmp_path / "pool")) == 2  # opening ignores it
    pool.ingest(make("b", 1), "b", round_added=1)
    assert sorted(p.name for p in (tmp_path / "pool").iterdir()) == ["manifest.json", "samples.parquet"]


def test_two_handles_see_each_others_writes(tmp_path):
    p1, p2 = DataPool(tmp_path / "pool"), DataPool(tmp_path / "pool")
    p1.ingest(make("a", 2), "a", round_added=0)
    assert len(p2) == 2 and p2.has_dataset("a")
    p2.prune(["a/0"], round=0, reason="x")
    assert p1.active_uids() == ["a/1"] and p1.samples() == [make("a", 2)[1]]


def test_a_larger_pool(tmp_path):
    n = 20_000
    pool = DataPool(tmp_path / "pool")
    pool.ingest(make("a", n), "a", round_added=0)
    pool.ingest(make("b", n), "b", round_added=1)
    uids = pool.table(columns=["uid"])["uid"]
    assert pool.prune(uids[::2], round=1, reason="half") == n
    reopened = DataPool(tmp_path / "pool")
    assert len(reopened) == n and reopened.num_total() == 2 * n
    t = reopened.table(status=None, columns=["uid", "dataset", "status"])
    assert isinstance(t, pd.DataFrame) and (t["status"] == "pruned").sum() == n
    assert [s.uid for s in reopened.samples(["b/19999", "a/1"])] == ["b/19999", "a/1"]


def test_ingest_streams_a_generator_a_batch_at_a_time(tmp_path, monkeypatch):
    monkeypatch.setattr(pool_module, "WRITE_BATCH", 4)
    pool = DataPool(tmp_path / "pool")
    pool.ingest(make("a", 5), "a", round_added=0)
    pulled = []

    def stream():
        for s in make("b", 10):
            pulled.append(s.uid)
            yield s

    assert pool.ingest(stream(), "b", round_added=1) == 10
    pf = pq.ParquetFile(tmp_path / "pool" / "samples.parquet")
    assert [pf.metadata.row_group(i).num_rows for i in range(pf.num_row_groups)] == [4, 1, 4, 4, 2]
    assert pool.samples() == make("a", 5) + make("b", 10)
    assert pool.datasets()[1]["fingerprint"] == fingerprint(make("b", 10))
    assert DataPool(tmp_path / "pool").samples() == make("a", 5) + make("b", 10)
    assert pool.ingest(iter(make("b", 10)), "b", round_added=2) == 0  # the same stream again: a no-op


def test_an_error_while_streaming_leaves_the_pool_byte_identical(tmp_path, monkeypatch):
    monkeypatch.setattr(pool_module, "WRITE_BATCH", 2)
    pool = DataPool(tmp_path / "pool")
    pool.ingest(make("a", 3), "a", round_added=0)
    before = tree_digest(tmp_path / "pool")

    def broken():
        yield from make("b", 5)
        raise DataError("b.json", "invalid JSON", sample="record 5")

    with pytest.raises(DataError, match="record 5"):
        pool.ingest(broken(), "b", round_added=1)
    assert tree_digest(tmp_path / "pool") == before and not pool.has_dataset("b")
    with pytest.raises(DataError, match="uid 'a/1' is already in the pool"):  # found after the last batch
        pool.ingest(iter(make("b", 4) + [Sample(uid="a/1", dataset="b", id="1", conversations=())]), "b", 1)
    assert tree_digest(tmp_path / "pool") == before and len(DataPool(tmp_path / "pool")) == 3
