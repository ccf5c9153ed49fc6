"""The feature store of one round: projected gradients and the scores of the same pass, by row.

Layout of a store folder (``RUN_DIR/rounds/<t>/features/``)::

    meta.json        n, dim, projector, seed, layers, columns of scores, unit, dtype (written last)
    uids.parquet     row -> uid (the pool order of the round)
    features.f16     memory-mapped float16 [n, dim] (features.f32 under dtype float32), row i
                     written in place by whoever computes it
    scores.f32       memory-mapped float32 [n, len(columns)] (SCORE_COLUMNS for gradient features)
    done.u8          memory-mapped uint8 [n]: 1 once row i's features and scores are flushed

A gradient store is a *unit* store (``unit: true`` in meta.json): each row is scaled to unit L2
norm before it is cast to the file's dtype, and its projected norm is the score ``proj_norm``.
Unnormalised projected gradients have entries of about ‖g‖/√d, which float16 flushes to 0 for a
well-learned sample; every reader of gradient features normalises the rows anyway (cosines,
spherical k-means, SemDeDup), as the reference does before it stores them (adymaharana/adapt-inf
``llava/grad_utils.py``, ``merge_and_normalize_info``). Other stores (hidden-state embeddings,
DataTailor's signals) keep their raw rows (``unit: false``, the default).

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

SCORE_COLUMNS = ("loss", "ppl", "el2n", "entropy", "grand", "answer_tokens", "entropy_all", "proj_norm")
"""The scores of the gradient pass (adapt.features.per_sample): the answer-token scores, GraNd
(``grand``, the unprojected gradient's norm), ``entropy_all`` (the predictive entropy over every
position) and ``proj_norm`` (the projected gradient's norm; the stored row is that vector over it)."""

FILE_DTYPES = {"float16": "features.f16", "float32": "features.f32"}


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
            self.unit = bool(self.meta.get("unit", False))  # stores written before these keys: raw float16
            self.dtype = str(self.meta.get("dtype", "float16"))
            if self.dtype not in FILE_DTYPES:
                raise ValueError(f"dtype {self.dtype!r}")
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptFileError(meta_path, f"no valid 'n', 'dim', 'scores' and 'dtype' ({exc})") from None
        for name, dtype, shape in self._layout():  # a file cut short
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
               unit: bool = False, dtype: str = "float16", **settings: Any) -> "FeatureStore":
        """Create the files (zero-filled, nothing done), or open the store already there when its
        settings and uids are the same (an interrupted extraction); a different one is an error.
        ``columns`` names the per-sample scores stored beside the features; ``unit`` stores each
        row scaled to unit norm (gradient stores), ``dtype`` (float16 | float32) is the file's."""
        root = Path(root)
        if dtype not in FILE_DTYPES:
            raise ValueError(f"feature store dtype {dtype!r}: one of {', '.join(FILE_DTYPES)}")
        meta = {"n": len(uids), "dim": dim, "scores": list(columns), "unit": unit, "dtype": dtype, **settings}
        if (root / "meta.json").is_file():
            old = read_json(root / "meta.json")
            same_uids = read_parquet(root / "uids.parquet")["uid"].tolist() == list(uids)
            if old == meta and same_uids:
                return cls(root)
            raise AdaptError(f"{root}: holds features of other settings or samples; remove it to recompute")
        root.mkdir(parents=True, exist_ok=True)
        write_with_atomic(root / "uids.parquet", lambda tmp: pd.DataFrame({"uid": list(uids)}).to_parquet(tmp))
        for name, ftype, shape in cls._files(len(uids), dim, len(columns), dtype):  # zero-filled files of the right size
            size = int(np.prod(shape)) * np.dtype(ftype).itemsize
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
    def _files(n: int, dim: int, ncols: int, dtype: str = "float16") -> list[tuple[str, str, tuple[int, ...]]]:
        return [(FILE_DTYPES[dtype], dtype, (n, dim)), ("scores.f32", "float32", (n, ncols)),
                ("done.u8", "uint8", (n,))]

    def _layout(self) -> list[tuple[str, str, tuple[int, ...]]]:
        return self._files(self.n, self.dim, len(self.columns), self.dtype)

    @property
    def _features_file(self) -> str:
        return FILE_DTYPES[self.dtype]

    def _map(self, name: str, mode: str = "r") -> np.memmap:
        for fname, dtype, shape in self._layout():
            if fname == name:
                if self.n == 0:
                    return np.zeros(shape, dtype=dtype)  # type: ignore[return-value]
                return np.memmap(self.root / fname, dtype=dtype, mode=mode, shape=shape)
        raise KeyError(name)

    # ---------------------------------------------------------------------------------- writing
    def write_rows(self, rows: np.ndarray, features: np.ndarray, scores: np.ndarray) -> None:
        """Write rows in place and flush them, then flag them done. A unit store scales each row
        to unit norm first, in float64 (the row's norm is the caller's score, e.g. ``proj_norm``)."""
        feats = self._map(self._features_file, "r+")
        sc = self._map("scores.f32", "r+")
        if self.unit:
            x = np.asarray(features, dtype=np.float64)
            norm = np.linalg.norm(x, axis=1, keepdims=True)
            features = x / np.where(norm > 0, norm, 1.0)
        feats[rows] = np.asarray(features).astype(self.dtype)
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
        """The stored rows ``[n, dim]`` in the file's dtype (a read-only memory map): unit rows in a
        unit store, the raw vectors otherwise."""
        return self._map(self._features_file)

    def normalized(self, rows: np.ndarray | slice = slice(None)) -> np.ndarray:
        """L2-normalised rows as float32 (a zero row stays zero)."""
        return unit_rows(self._map(self._features_file)[rows])

    def scores(self) -> pd.DataFrame:
        """uid and the scores of the gradient pass, one row per sample."""
        df = pd.DataFrame(np.array(self._map("scores.f32")), columns=self.columns)
        df.insert(0, "uid", self.uids())
        if "answer_tokens" in df:
            df["answer_tokens"] = df["answer_tokens"].astype(int)
        return df
