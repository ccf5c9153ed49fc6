"""The DataPool: every sample a run has seen, persisted in RUN_DIR/pool (Parquet + a manifest).

Ingest appends a dataset atomically (the new table is written to a temp file and renamed; the
manifest follows). Pruned samples are tombstoned (status, round, reason) and never come back.
``samples.parquet`` is the source of truth; the manifest is rebuilt from it if the two disagree.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from adapt.data.sample import Sample
from adapt.errors import AdaptError, DataError
from adapt.io import read_json, write_json_atomic, write_with_atomic

SCHEMA = pa.schema([
    ("uid", pa.string()),
    ("dataset", pa.string()),
    ("task", pa.string()),
    ("round_added", pa.int32()),
    ("status", pa.string()),
    ("pruned_round", pa.int32()),
    ("pruned_reason", pa.string()),
    ("record", pa.string()),
])
ACTIVE, PRUNED = "active", "pruned"


def fingerprint(samples: Sequence[Sample]) -> str:
    """sha256 over the samples' serialised records, in order."""
    h = hashlib.sha256()
    for s in samples:
        h.update(s.to_json().encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()


class DataPool:
    """The persistent pool of a run (see module docstring)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._table: pd.DataFrame | None = None
        self._manifest: dict[str, Any] | None = None

    @property
    def samples_path(self) -> Path:
        return self.root / "samples.parquet"

    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    # ------------------------------------------------------------------ loading
    def _load(self) -> pd.DataFrame:
        if self._table is None:
            if self.samples_path.is_file():
                self._table = pq.read_table(self.samples_path).to_pandas()
            else:
                self._table = SCHEMA.empty_table().to_pandas()
        return self._table

    def _load_manifest(self) -> dict[str, Any]:
        if self._manifest is None:
            table = self._load()
            manifest = read_json(self.manifest_path) if self.manifest_path.is_file() else None
            if manifest is None or not self._consistent(manifest, table):
                manifest = self._rebuild_manifest(table, manifest)
            self._manifest = manifest
        return self._manifest

    @staticmethod
    def _consistent(manifest: dict[str, Any], table: pd.DataFrame) -> bool:
        counts = table["dataset"].value_counts().to_dict()
        listed = {d["name"]: d["num_samples"] for d in manifest.get("datasets", [])}
        return (listed == counts and manifest.get("num_samples") == len(table)
                and manifest.get("num_active") == int((table["status"] == ACTIVE).sum()))

    def _rebuild_manifest(self, table: pd.DataFrame, old: dict[str, Any] | None) -> dict[str, Any]:
        """The manifest from the table (after a crash between the two renames)."""
        known = {d["name"]: d for d in (old or {}).get("datasets", [])}
        meta = pq.read_schema(self.samples_path).metadata or {} if self.samples_path.is_file() else {}
        stored = json.loads(meta.get(b"adapt_datasets", b"{}")) if meta else {}
        datasets = []
        for name in pd.unique(table["dataset"]):
            rows = table[table["dataset"] == name]
            info = stored.get(name) or known.get(name) or {}
            datasets.append({
                "name": str(name), "source": info.get("source", ""), "task": str(rows["task"].iloc[0]),
                "round_added": int(rows["round_added"].iloc[0]), "num_samples": int(len(rows)),
                "fingerprint": info.get("fingerprint") or fingerprint([Sample.from_json(r) for r in rows["record"]]),
            })
        return self._manifest_for(table, datasets)

    @staticmethod
    def _manifest_for(table: pd.DataFrame, datasets: list[dict[str, Any]]) -> dict[str, Any]:
        return {"version": 1, "datasets": datasets, "num_samples": int(len(table)),
                "num_active": int((table["status"] == ACTIVE).sum())}

    # ------------------------------------------------------------------ writing
    def _write(self, table: pd.DataFrame, datasets: list[dict[str, Any]]) -> None:
        """Table then manifest, each atomically; in-memory state changes only on success."""
        arrow = pa.Table.from_pandas(table, schema=SCHEMA, preserve_index=False)
        extra = {d["name"]: {"source": d["source"], "fingerprint": d["fingerprint"]} for d in datasets}
        arrow = arrow.replace_schema_metadata({b"adapt_datasets": json.dumps(extra).encode()})
        self.root.mkdir(parents=True, exist_ok=True)
        write_with_atomic(self.samples_path, lambda tmp: pq.write_table(arrow, tmp))
        manifest = self._manifest_for(table, datasets)
        write_json_atomic(self.manifest_path, manifest)
        self._table, self._manifest = table, manifest

    def ingest(self, samples: list[Sample], dataset: str, round_added: int, source: str = "") -> int:
        """Append a dataset; a dataset already ingested with the same content is a no-op (returns 0)."""
        manifest = self._load_manifest()
        fp = fingerprint(samples)
        for d in manifest["datasets"]:
            if d["name"] == dataset:
                if d["fingerprint"] == fp:
                    return 0
                raise DataError(source or dataset, f"the pool already holds a different dataset named {dataset!r}")
        table = self._load()
        new_uids = [s.uid for s in samples]
        clash = set(new_uids) & set(table["uid"])
        if clash:
            raise DataError(source or dataset, f"uids already in the pool: {sorted(clash)[:3]}")
        new = pd.DataFrame({
            "uid": new_uids,
            "dataset": [s.dataset for s in samples],
            "task": [s.task or s.dataset for s in samples],
            "round_added": pd.array([round_added] * len(samples), dtype="int32"),
            "status": [ACTIVE] * len(samples),
            "pruned_round": pd.array([None] * len(samples), dtype="Int32"),
            "pruned_reason": pd.array([None] * len(samples), dtype=object),
            "record": [s.to_json() for s in samples],
        })
        combined = pd.concat([table, new], ignore_index=True) if len(table) else new
        datasets = manifest["datasets"] + [{
            "name": dataset, "source": source, "task": samples[0].task or dataset if samples else dataset,
            "round_added": round_added, "num_samples": len(samples), "fingerprint": fp,
        }]
        self._write(combined, datasets)
        return len(samples)

    def prune(self, uids: Iterable[str], round: int, reason: str) -> int:
        """Tombstone samples for good; already-pruned uids are left as they are. Returns #newly pruned."""
        uids = list(uids)
        table = self._load().copy()
        index = pd.Index(table["uid"])
        missing = [u for u in uids if u not in index]
        if missing:
            raise AdaptError(f"{self.samples_path}: cannot prune unknown uids {missing[:3]}")
        mask = table["uid"].isin(set(uids)) & (table["status"] == ACTIVE)
        n = int(mask.sum())
        if n == 0:
            return 0
        table.loc[mask, "status"] = PRUNED
        table["pruned_round"] = table["pruned_round"].astype("Int32")
        table.loc[mask, "pruned_round"] = round
        table["pruned_reason"] = table["pruned_reason"].astype(object)
        table.loc[mask, "pruned_reason"] = reason
        self._write(table, self._load_manifest()["datasets"])
        return n

    # ------------------------------------------------------------------ reading
    def has_dataset(self, name: str) -> bool:
        return any(d["name"] == name for d in self._load_manifest()["datasets"])

    def datasets(self) -> list[dict[str, Any]]:
        return [dict(d) for d in self._load_manifest()["datasets"]]

    def table(self, status: str | None = ACTIVE, columns: Sequence[str] | None = None) -> pd.DataFrame:
        """Rows in ingestion order; ``status=None`` for every row, tombstones included."""
        t = self._load()
        if status is not None:
            t = t[t["status"] == status]
        if columns is not None:
            t = t[list(columns)]
        return t.reset_index(drop=True)

    def active_uids(self) -> list[str]:
        return self.table(columns=["uid"])["uid"].tolist()

    def samples(self, uids: Sequence[str] | None = None) -> list[Sample]:
        """Active samples in ingestion order, or the given uids in the given order."""
        t = self._load()
        if uids is None:
            return [Sample.from_json(r) for r in t.loc[t["status"] == ACTIVE, "record"]]
        by_uid = pd.Series(t["record"].to_numpy(), index=t["uid"].to_numpy())
        missing = [u for u in uids if u not in by_uid.index]
        if missing:
            raise AdaptError(f"{self.samples_path}: unknown uids {missing[:3]}")
        return [Sample.from_json(r) for r in by_uid.loc[list(uids)]]

    def __len__(self) -> int:
        return int((self._load()["status"] == ACTIVE).sum())

    def num_total(self) -> int:
        return int(len(self._load()))
