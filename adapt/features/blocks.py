"""Reading a feature matrix ``[n, d]`` in blocks of unit rows, whether it is in memory or a feature
store's memory map, so that memory stays O(block · d) however large the pool is.

A memory map read by indexing leaves every page it touched resident in the process (a 10-million-row
float16 store is 5 GiB of resident pages after one pass). The store's files are therefore read with
plain file reads into a block-sized buffer: the operating system's page cache keeps the file warm for
the next pass, and the process holds only the block it works on.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator

import numpy as np

from adapt.features.store import unit_rows

BLOCK_ROWS = 65_536


def _backing_file(x: np.ndarray) -> tuple[str, int] | None:
    """(path, byte offset) of a whole memory-mapped file opened by :class:`numpy.memmap` (a store's
    ``features()``); None for an array in memory or a view of a map (read by indexing)."""
    if isinstance(x, np.memmap) and isinstance(x.base, mmap.mmap) and x.filename and x.flags.c_contiguous:
        return str(x.filename), int(x.offset)
    return None


def _read_range(x: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Rows ``start:stop`` of ``x`` as a new array in its dtype (a file read for a memory map)."""
    backing = _backing_file(x)
    if backing is None:
        return np.array(x[start:stop])
    path, offset = backing
    row_bytes = int(np.prod(x.shape[1:], dtype=np.int64)) * x.dtype.itemsize
    with open(path, "rb") as fh:
        fh.seek(offset + start * row_bytes)
        out = np.fromfile(fh, dtype=x.dtype, count=(stop - start) * (row_bytes // x.dtype.itemsize))
    return out.reshape((stop - start, *x.shape[1:]))


def iter_unit_blocks(x: np.ndarray, block: int = BLOCK_ROWS) -> Iterator[tuple[int, np.ndarray]]:
    """``(start, unit rows start:start+len)`` over ``x`` in blocks of ``block`` rows (float32)."""
    for s in range(0, len(x), block):
        yield s, unit_rows(_read_range(x, s, min(len(x), s + block)))


def take_unit_rows(x: np.ndarray, rows: np.ndarray, block: int = BLOCK_ROWS) -> np.ndarray:
    """The unit rows ``x[rows]`` (float32, in the order of ``rows``), read block by block: only the
    blocks holding a wanted row are read, and at most one block is held beside the result."""
    rows = np.asarray(rows, dtype=np.int64)
    out = np.empty((len(rows), *x.shape[1:]), dtype=np.float32)
    if not len(rows):
        return out
    if _backing_file(x) is None:
        out[:] = unit_rows(x[rows])
        return out
    order = np.argsort(rows, kind="stable")
    sorted_rows = rows[order]
    bounds = np.searchsorted(sorted_rows, np.arange(0, len(x) + block, block))
    for b in range(len(bounds) - 1):
        lo, hi = bounds[b], bounds[b + 1]
        if lo == hi:
            continue
        start = b * block
        chunk = _read_range(x, start, min(len(x), start + block))
        out[order[lo:hi]] = unit_rows(chunk[sorted_rows[lo:hi] - start])
    return out
