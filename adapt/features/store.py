"""The feature store of one round: projected gradients and the scores of the same pass, by row.

Layout of a store folder (``RUN_DIR/rounds/<t>/features/``)::

    meta.json        n, dim, projector, seed, layers, columns of scores (written last)
    uids.parquet     row -> uid (the pool order of the round)
    features.f16     memory-mapped float16 [n, dim], row i written in place by whoever computes it
    scores.f32       memory-mapped float32 [n, len(columns)] (SCORE_COLUMNS for gradient features)
    done.u8          memory-mapped uint8 [n]: 1 once row i's features and scores are flushed

Rows are flushed before their ``done`` flag, so an interrupted extraction resumes with the rows
not yet done, and ranks of ``accelerate launch`` write disjoint rows of the same files.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from adapt.errors import AdaptError, CorruptFileError, WriteError
from adapt.io import read_json, read_parquet, write_json_atomic, write_with_atomic

SCORE_COLUMNS = ("loss", "ppl", "el2n", "entropy", "grand", "answer_tokens")


def unit_rows(x: np.ndarray) -> np.ndarray:
    """The rows of ``x`` as float32 scaled to unit L2 norm (a zero row stays zero)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norm > 0, norm, 1.0)


class FeatureStore:
    """Open (or create with :meth:`create`) the store in ``root``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        meta_path = self.root / "meta.json"
        if not meta_path.is_file():
            raise AdaptError(f"{self.root}: no feature store here (meta.json missing)")
        self.meta: dict[str, Any] = read_json(meta_path)
        try:
            self.n = int(self.meta["n"])
            self.dim = int(self.meta["dim"])
            self.columns: list[str] = list(self.meta.get("scores", SCORE_COLUMNS))
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptFileError(meta_path, f"no valid 'n', 'dim' and 'scores' ({exc})") from None
        for name, dtype, shape in self._files(self.n, self.dim, len(self.columns)):  # a file cut short
            want = int(np.prod(shape)) * np.dtype(dtype).itemsize                   # would fail at the
            have = (self.root / name).stat().st_size if (self.root / name).is_file() else None  # memory map
            if have != want:
                raise CorruptFileError(self.root / name, "missing" if have is None else
                                       f"{have} bytes where {self.n} x {shape[1:] or 1} {dtype} take {want}")

    @staticmethod
    def exists(root: str | Path) -> bool:
        """Whether ``root`` holds a store (its meta.json, written last, is there)."""
        return (Path(root) / "meta.json").is_file()

    # ---------------------------------------------------------------------------------- creation
    @classmethod
    def create(cls, root: str | Path, uids: list[str], dim: int, columns: tuple[str, ...] = SCORE_COLUMNS,
               **settings: Any) -> "FeatureStore":
        """Create the files (zero-filled, nothing done), or open the store already there when its
        settings and uids are the same (an interrupted extraction); a different one is an error.
        ``columns`` names the per-sample scores stored beside the features."""
        root = Path(root)
        meta = {"n": len(uids), "dim": dim, "scores": list(columns), **settings}
        if (root / "meta.json").is_file():
            old = read_json(root / "meta.json")
            same_uids = read_parquet(root / "uids.parquet")["uid"].tolist() == list(uids)
            if old == meta and same_uids:
                return cls(root)
            raise AdaptError(f"{root}: holds features of other settings or samples; remove it to recompute")
        root.mkdir(parents=True, exist_ok=True)
        write_with_atomic(root / "uids.parquet", lambda tmp: pd.DataFrame({"uid": list(uids)}).to_parquet(tmp))
        for name, dtype, shape in cls._files(len(uids), dim, len(columns)):  # zero-filled raw files of the right size
            size = int(np.prod(shape)) * np.dtype(dtype).itemsize
            try:
                with open(root / name, "wb") as fh:
                    fh.truncate(size)
                    if size and hasattr(os, "posix_fallocate"):  # the space is taken now: a full disk is
                        try:                                      # an error here, not a crash mid-pass
                            os.posix_fallocate(fh.fileno(), 0, size)
                        except OSError as exc:
                            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                                raise  # a file system without fallocate keeps the sparse file
            except OSError as exc:
                raise WriteError(root / name, exc) from exc
        write_json_atomic(root / "meta.json", meta)  # last: a store without meta.json is not one
        return cls(root)

    @staticmethod
    def _files(n: int, dim: int, ncols: int) -> list[tuple[str, str, tuple[int, ...]]]:
        return [("features.f16", "float16", (n, dim)), ("scores.f32", "float32", (n, ncols)),
                ("done.u8", "uint8", (n,))]

    def _map(self, name: str, mode: str = "r") -> np.memmap:
        for fname, dtype, shape in self._files(self.n, self.dim, len(self.columns)):
            if fname == name:
                if self.n == 0:
                    return np.zeros(shape, dtype=dtype)  # type: ignore[return-value]
                return np.memmap(self.root / fname, dtype=dtype, mode=mode, shape=shape)
        raise KeyError(name)

    # ---------------------------------------------------------------------------------- writing
    def write_rows(self, rows: np.ndarray, features: np.ndarray, scores: np.ndarray) -> None:
        """Write rows in place and flush them, then flag them done."""
        feats = self._map("features.f16", "r+")
        sc = self._map("scores.f32", "r+")
        feats[rows] = features.astype(np.float16)
        sc[rows] = scores.astype(np.float32)
        feats.flush()
        sc.flush()
        done = self._map("done.u8", "r+")
        done[rows] = 1
        done.flush()

    # ---------------------------------------------------------------------------------- reading
    def done_mask(self) -> np.ndarray:
        return np.array(self._map("done.u8"), dtype=bool)

    @property
    def complete(self) -> bool:
        return bool(self.done_mask().all())

    def uids(self) -> list[str]:
        return read_parquet(self.root / "uids.parquet")["uid"].tolist()

    def features(self) -> np.ndarray:
        """The raw projected gradients, float16 ``[n, dim]`` (a read-only memory map)."""
        return self._map("features.f16")

    def normalized(self, rows: np.ndarray | slice = slice(None)) -> np.ndarray:
        """L2-normalised rows as float32 (a zero row stays zero)."""
        return unit_rows(self._map("features.f16")[rows])

    def scores(self) -> pd.DataFrame:
        """uid and the scores of the gradient pass, one row per sample."""
        df = pd.DataFrame(np.array(self._map("scores.f32")), columns=self.columns)
        df.insert(0, "uid", self.uids())
        if "answer_tokens" in df:
            df["answer_tokens"] = df["answer_tokens"].astype(int)
        return df
