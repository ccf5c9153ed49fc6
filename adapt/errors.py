"""Errors that the CLI turns into one clear message and a non-zero exit."""

from __future__ import annotations


class AdaptError(Exception):
    """Base class of every error meant for the user (no traceback in the CLI)."""


class ConfigError(AdaptError):
    """A config file or override is invalid; the message names the file and the key."""


class DataError(AdaptError):
    """A dataset is invalid: names the file, the sample (id or line) and the problem."""

    def __init__(self, path: object, problem: str, sample: object | None = None) -> None:
        self.path = str(path)
        self.sample = sample
        self.problem = problem
        where = f"{self.path}" + (f", sample {sample}" if sample is not None else "")
        super().__init__(f"{where}: {problem}")
