"""Errors that the CLI turns into one clear message and a non-zero exit."""

from __future__ import annotations


class AdaptError(Exception):
    """Base class of every error meant for the user (no traceback in the CLI; exit status 1)."""

    exit_code = 1


class InputError(AdaptError):
    """Bad input from the user (a command-line argument, a config, a dataset): exit status 2."""

    exit_code = 2


class ConfigError(InputError):
    """A config file or override is invalid; the message names the file and the key."""


class UnknownNameError(ConfigError, KeyError):
    """A name that a registry does not hold (a method, a sampler, an expert, a metric, ...): the
    message names the key, the file, the name and the known names. Still a ``KeyError``."""

    def __str__(self) -> str:
        return str(self.args[0])


class DataError(InputError):
    """A dataset is invalid: names the file, the sample (id or line) and the problem."""

    def __init__(self, path: object, problem: str, sample: object | None = None) -> None:
        self.path = str(path)
        self.sample = sample
        self.problem = problem
        where = f"{self.path}" + (f", sample {sample}" if sample is not None else "")
        super().__init__(f"{where}: {problem}")


class WriteError(AdaptError, OSError):
    """A file of the run directory could not be written (no space left, permission denied): the
    message names the file and the cause; what was there before is intact. Still an ``OSError``
    (with the cause's ``errno``) for code that catches those."""

    def __init__(self, path: object, exc: OSError) -> None:
        cause = exc.strerror or str(exc)
        super().__init__(f"{path}: cannot write it ({cause}); nothing already stored was changed: "
                         "fix the cause, then continue with `adapt run --resume RUN_DIR`")
        self.errno, self.strerror, self.filename = exc.errno, exc.strerror, str(path)

    def __str__(self) -> str:
        return str(self.args[0])


class CorruptFileError(AdaptError):
    """A file of the run directory cannot be read back: damaged on disk, cut short by a copy, or
    edited by hand (adapt's own writes are atomic, so a kill never leaves one half written). The
    message names the file and what is wrong; nothing was changed."""

    def __init__(self, path: object, problem: str) -> None:
        self.path, self.problem = str(path), problem
        super().__init__(f"{path}: damaged ({problem}); nothing was changed. Restore the file from a copy, "
                         "or start the run again in another directory")
