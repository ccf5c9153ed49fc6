"""A record's images: paths inside the dataset's image root, or image bytes embedded in the record.

Embedded images come in the layout of ``datasets.Image()`` (most Hub datasets): a struct
``{"bytes": ..., "path": ...}`` per image, in a ``save_to_disk`` folder or a Parquet file; or as a
binary column's raw bytes; a record may also carry a ``data:image/...;base64,`` URL. Their bytes are never decoded
at read time beyond a check: :class:`ImageStore` writes each one once, as it is, into a
content-addressed folder (``<sha256[:2]>/<sha256>.<format>``; images shared by many records are
stored once) and the sample names the file, so that the rest of ``adapt`` only ever sees paths and
reading a dataset takes bounded memory whatever its size. A run keeps its store inside the run
directory (``RUN_DIR/pool/images``); without a store (``adapt validate``) the bytes are checked and
the sample names the image by its digest (``embedded:<sha256>``), which nothing opens.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import os
from pathlib import Path
from typing import Any

from PIL import Image

from adapt.data.describe import short as _short
from adapt.errors import DataError, WriteError
from adapt.io import atomic_path

__all__ = ["EMBEDDED_PREFIX", "ImageChecker", "ImageStore", "embedded_bytes"]

EMBEDDED_PREFIX = "embedded:"  # an embedded image read without a store: checked, not written anywhere


def embedded_bytes(value: Any) -> bytes | None:
    """The bytes of an embedded image (a ``{"bytes": b"...", "path": ...}`` struct, or a binary
    column's raw bytes), or None when ``value`` is not one or carries no bytes (then its ``path``
    is the image)."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, dict) and "bytes" in value and isinstance(value["bytes"], (bytes, bytearray)):
        return bytes(value["bytes"])
    return None


def decode_data_url(url: str, path: Path, sample: str) -> bytes:
    """The bytes of a ``data:image/...;base64,`` URL."""
    head, _, payload = url.partition(",")
    if not head.startswith("data:image/") or not head.endswith(";base64"):
        raise DataError(path, f"an image data URL must be 'data:image/<format>;base64,...', got {url[:40]!r}",
                        sample=sample)
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise DataError(path, f"an image data URL is not valid base64: {exc}", sample=sample) from None


class ImageStore:
    """A content-addressed folder of image files (or, with ``root=None``, checking without writing).

    Args:
        root: the folder; created on the first write. None: check the bytes, store nothing.
    """

    def __init__(self, root: str | os.PathLike[str] | None) -> None:
        self.root = Path(root).resolve() if root is not None else None
        self.written = 0  # files written by this store object (already present ones not counted)

    def put(self, data: bytes, verify: bool, path: Path, sample: str) -> str:
        """Store one image's bytes as they are; returns the file's absolute path (or, without a
        root, ``embedded:<sha256>``). The bytes must be an image PIL can identify (and, with
        ``verify``, read through); else a :class:`DataError` naming the data file and the sample."""
        digest = hashlib.sha256(data).hexdigest()
        fmt = self._check(data, verify, path, sample)
        if self.root is None:
            return EMBEDDED_PREFIX + digest
        target = self.root / digest[:2] / f"{digest}.{fmt}"
        try:
            if target.is_file() and target.stat().st_size == len(data):
                return str(target)
            with atomic_path(target, sync=False) as tmp:  # content-addressed: a lost file is written again
                tmp.write_bytes(data)
        except WriteError:
            raise
        except OSError as exc:
            raise WriteError(target, exc) from exc
        self.written += 1
        return str(target)

    @staticmethod
    def _check(data: bytes, verify: bool, path: Path, sample: str) -> str:
        """The image's format as a file extension; a DataError if PIL cannot read it."""
        try:
            with Image.open(io.BytesIO(data)) as im:
                fmt = (im.format or "img").lower()
                if verify:
                    im.verify()
        except Exception as exc:  # PIL raises many types for broken data
            raise DataError(path, f"embedded image bytes ({len(data)} bytes) are not a readable image: {exc}",
                            sample=sample) from None
        return {"jpeg": "jpg"}.get(fmt, fmt)


class ImageChecker:
    """Resolves a record's images: paths inside the image root (each file checked once: datasets
    share images) and embedded bytes (handed to the :class:`ImageStore`)."""

    def __init__(self, data_path: Path, root: Path, verify: bool, store: ImageStore) -> None:
        self.data_path, self.root, self.verify, self.store = data_path, root, verify, store
        self._ok: set[str] = set()
        self.embedded = 0  # embedded images resolved so far

    def resolve(self, value: Any, sample: str) -> str:
        """One image of a record -> the absolute path of its file (checked), or a DataError."""
        data = embedded_bytes(value)
        if data is not None:
            self.embedded += 1
            return self.store.put(data, self.verify, self.data_path, sample)
        if isinstance(value, dict) and isinstance(value.get("path"), str):  # datasets.Image() without bytes
            value = value["path"]
        if not isinstance(value, str) or not value.strip():
            raise DataError(self.data_path, f"an image must be a non-empty path or a {{'bytes', 'path'}} struct, "
                                            f"got {_short(value)}", sample=sample)
        if value.startswith("data:"):
            self.embedded += 1
            return self.store.put(decode_data_url(value, self.data_path, sample), self.verify, self.data_path, sample)
        if value.startswith(("http://", "https://")):
            raise DataError(self.data_path, f"image {value[:80]!r} is a web address: adapt does not download "
                                            "images; download them and give their paths", sample=sample)
        if value.startswith("file://"):
            value = value[len("file://"):]
        p = Path(value).expanduser()
        full = (p if p.is_absolute() else self.root / p).resolve()  # resolves '..' and symlinks
        if not full.is_relative_to(self.root):
            raise DataError(self.data_path, f"image path {value!r} resolves to {full}, outside the image root "
                                            f"{self.root}", sample=sample)
        self._check_file(str(full), sample)
        return str(full)

    def _check_file(self, image: str, sample: str) -> None:
        if image in self._ok:
            return
        if not Path(image).is_file():
            raise DataError(self.data_path, f"image file missing: {image}", sample=sample)
        if self.verify:
            try:
                with Image.open(image) as im:
                    im.verify()
            except Exception as exc:
                raise DataError(self.data_path, f"unreadable image {image}: {exc}", sample=sample) from None
        self._ok.add(image)
