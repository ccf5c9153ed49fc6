"""Atomic file writes: temp file in the same folder + fsync + rename (DESIGN.md, run directory);
and the reads of run-directory files, which report a damaged file clearly."""

from __future__ import annotations

import errno
import json
import os
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from adapt.errors import CorruptFileError, WriteError

if TYPE_CHECKING:
    import pandas as pd


@contextmanager
def atomic_path(path: str | os.PathLike[str], sync: bool = True) -> Iterator[Path]:
    """Yield a temp path beside ``path``; on success fsync it (unless ``sync`` is False: a file
    that is written again when lost, such as a content-addressed image) and rename it over ``path``.

    On any error the temp file is removed and ``path`` is left as it was; an ``OSError`` (no space
    left, permission denied) becomes a :class:`~adapt.errors.WriteError` naming ``path``.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise WriteError(path, exc) from exc
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if sync:
            with open(tmp_path, "rb+") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp_path, path)
        if sync:
            _fsync_dir(path.parent)
    except OSError as exc:  # no space left, permission denied, ...: the old file stays
        tmp_path.unlink(missing_ok=True)
        raise WriteError(path, exc) from exc
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def _usual_permissions(folder: Path) -> None:
    """rw for all (dirs rwx) less the umask, as ``open()`` and ``mkdir()`` give, for everything in ``folder``."""
    mask = _umask()
    for p in [folder, *folder.rglob("*")]:
        if not p.is_symlink():
            os.chmod(p, (0o777 if p.is_dir() else 0o666) & ~mask)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | os.PathLike[str], obj: Any, indent: int | None = 2) -> None:
    write_text_atomic(path, json.dumps(obj, indent=indent, sort_keys=False, default=_json_default) + "\n")


def write_with_atomic(path: str | os.PathLike[str], writer: Callable[[Path], None]) -> None:
    """Call ``writer(tmp_path)`` and move the result over ``path`` atomically."""
    with atomic_path(path) as tmp:
        writer(tmp)


def write_dir_atomic(out: str | os.PathLike[str], writer: Callable[[Path], None]) -> None:
    """Write a folder atomically: ``writer(tmp_folder)``, then rename it to ``out`` (an old ``out``
    is removed first). Its files get the usual permissions (some writers, safetensors' among them,
    make 0600 temp files)."""
    import shutil

    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        if tmp.exists():
            shutil.rmtree(tmp)
        writer(tmp)
        _usual_permissions(tmp)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise WriteError(out, exc) from exc


def read_json(path: str | os.PathLike[str]) -> Any:
    """A JSON file of the run directory; one that is not valid JSON is a :class:`CorruptFileError`
    (a missing file stays a ``FileNotFoundError``: callers look before they read)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CorruptFileError(path, f"not valid JSON: {exc}") from None
    except UnicodeDecodeError as exc:
        raise CorruptFileError(path, f"not UTF-8 text (bad byte at offset {exc.start})") from None


def read_parquet(path: str | os.PathLike[str], columns: list[str] | None = None) -> "pd.DataFrame":
    """A Parquet file of the run directory; one pyarrow cannot read (or without ``columns``) is a
    :class:`CorruptFileError`."""
    import pandas as pd

    if not Path(path).is_file():
        raise FileNotFoundError(errno.ENOENT, "no such file", str(path))
    try:
        return pd.read_parquet(path, columns=columns)
    except Exception as exc:  # pyarrow raises several types for broken files
        raise CorruptFileError(path, f"not a readable Parquet file: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None


def _json_default(obj: Any) -> Any:
    try:
        import numpy as np

        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
