"""One process per run directory: an advisory lock on ``RUN_DIR/run.lock`` (``fcntl.flock``).

The kernel releases the lock when its holder exits, however it exits (SIGKILL, OOM, a lost node),
so a lock left by a dead process is stale by construction: the next ``adapt run`` takes it over.
The file records who holds it (pid, host, command, since) so that a refused second run can name
the process.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from adapt.errors import AdaptError
from adapt.layout import RunLayout


class RunLocked(AdaptError):
    """Another live process holds the run directory."""


class RunLock:
    """``with RunLock(run_dir):`` holds the run directory for the block; a second holder is refused
    (``wait=False``) or waits (``wait=True``)."""

    def __init__(self, run_dir: str | Path, what: str = "run", wait: bool = False, path: Path | None = None) -> None:
        self.path = Path(path) if path is not None else RunLayout(Path(run_dir)).lock
        self.what = what
        self.wait = wait  # block until free (short critical sections, e.g. editing stream.json)
        self._fd: int | None = None

    @classmethod
    def on_stream(cls, run_dir: str | Path, what: str) -> "RunLock":
        """The lock held while stream.json is read, changed and written back (waits its turn)."""
        return cls(run_dir, what, wait=True, path=RunLayout(Path(run_dir)).stream_lock)

    def holder(self) -> dict[str, Any]:
        """What the lock file says about its holder ({} when unreadable)."""
        try:
            return json.loads(self.path.read_text(encoding="utf-8") or "{}")
        except (OSError, ValueError):
            return {}

    def live_holder(self) -> dict[str, Any] | None:
        """The holder when a live process holds the lock now, else None (tries it and lets go)."""
        if not self.path.is_file():
            return None
        try:
            RunLock(self.path.parent, path=self.path).acquire().release()
        except RunLocked:
            return self.holder()
        return None

    def acquire(self) -> "RunLock":
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if self.wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            h = self.holder()
            who = f"process {h.get('pid', '?')} on {h.get('host', '?')}"
            if h.get("command"):
                who += f" ({h['command']})"
            since = f", since {h['since']}" if h.get("since") else ""
            raise RunLocked(f"{self.path.parent}: in use by {who}{since}; wait for it to finish or stop it "
                            f"(a run that died leaves no live lock)") from None
        info = {"pid": os.getpid(), "host": socket.gethostname(), "what": self.what,
                "command": " ".join(Path(a).name if i == 0 else a for i, a in enumerate(sys.argv))[:300],
                "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        import fcntl

        try:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
