"""Errors a user of l2s can meet.

Every error raised on purpose by l2s is an :class:`L2SError`. Its message is one line that
names the file or parameter concerned and says what is wrong with it, so that the command
line and the notebooks can show it without a traceback from deep inside numpy or nibabel.

Every error pickles to an equal error (same type, ``where`` and ``problem``), so it crosses
process boundaries intact: from a preparation worker, a DataLoader worker or a data-parallel
rank to the process that reports it.
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DicomError",
    "EmptyOrganError",
    "FormatVersionError",
    "InputDataError",
    "L2SError",
    "ModelFolderError",
    "StudyLockedError",
    "check_choice",
    "require_positive",
]

from collections.abc import Collection
from pathlib import Path


class L2SError(Exception):
    """Base class of every deliberate l2s error.

    Args:
        where: the file, folder or parameter the problem is about (shown first).
        problem: what is wrong, in one sentence.
    """

    def __init__(self, where: str | Path, problem: str) -> None:
        self.where = str(where)
        self.problem = " ".join(problem.split())  # one line, even when it quotes a multi-line library error
        super().__init__(f"{self.where}: {self.problem}")

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        """Rebuild from ``(where, problem)`` when unpickled (the default would pass the one
        formatted message, which ``__init__`` cannot take)."""
        return type(self), (self.where, self.problem)


class InputDataError(L2SError):
    """A task folder, image, label or ``dataset.json`` that cannot be used as it is."""


class EmptyOrganError(InputDataError):
    """A label whose organ mask is empty, so no organ box can be cropped."""


class DicomError(InputDataError):
    """A DICOM series or RTSTRUCT that cannot be used: several series in one folder, missing or
    unevenly spaced slices, an RTSTRUCT referencing another series, an empty or unnamed structure."""


class ModelFolderError(L2SError):
    """A model folder (``l2s export``) whose files do not match its card, or a scan it cannot segment."""


class ConfigError(L2SError):
    """A parameter file or argument with an unknown key, a wrong type or a bad value."""


class CheckpointError(L2SError):
    """A checkpoint that is corrupt, missing or from another architecture."""


class FormatVersionError(L2SError):
    """A metadata file written by an incompatible version of l2s."""


class StudyLockedError(L2SError):
    """Another ``l2s run`` process is already working on the same study folder."""


def check_choice(name: str | Path, value: object, choices: Collection[object], extra: str = "") -> None:
    """Raise a :class:`ConfigError` ``"<name>: must be one of <choices><extra>, got <value>"`` unless
    ``value`` is one of ``choices`` (the one wording of every refused choice).

    Args:
        name: the parameter or option (e.g. ``"split"``, ``"--method"``).
        value: what was given.
        choices: what may be given, in the order the message lists them.
        extra: words after the list, e.g. ``" or None"``.
    """
    if value not in choices:
        raise ConfigError(name, f"must be one of {', '.join(map(str, choices))}{extra}, got {value!r}")


def require_positive(owner: str, **values: int) -> None:
    """Raise a :class:`ConfigError` naming the first of ``values`` that is below 1.

    Args:
        owner: what the values configure (e.g. ``"UNet3D"``), named in the error.
        values: name → value.
    """
    for name, value in values.items():
        if value < 1:
            raise ConfigError(f"{owner} {name}", f"must be at least 1, got {value}")
