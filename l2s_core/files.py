"""Atomic file writes and versioned JSON metadata.

Every file that a later stage reads (cache arrays, metadata, checkpoints, summaries, result
tables) is written to a temporary name in the destination folder and renamed into place, so
that an interrupted or failing write never leaves a file that looks valid.

For the kill tests, :func:`atomic_open` offers two moments to
:func:`l2s_core.processes.stop_if_asked`: ``"writing <name>"`` (the content is in the
temporary file, not yet renamed) and ``"wrote <name>"`` (just renamed into place).
"""

from __future__ import annotations

__all__ = [
    "FORMAT_VERSION",
    "NESTED_TOO_DEEPLY",
    "PARTIAL_MARK",
    "check_format_version",
    "atomic_open",
    "atomic_save_npy",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "exclusive_lock",
    "is_plain_name",
    "read_json",
    "remove_stale_staging",
    "remove_staged",
    "staging_folder",
]

import contextlib
import datetime
import fcntl
import glob
import json
import os
import shutil
import socket
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from l2s_core.errors import FormatVersionError, InputDataError, L2SError
from l2s_core.processes import process_alive, stop_if_asked

_UMASK = os.umask(0)
os.umask(_UMASK)

#: The problem of a JSON or YAML file nested deeper than Python's parsers recurse.
NESTED_TOO_DEEPLY = "nested too deeply to read (thousands of levels of lists or objects)"
#: Marks a staging folder: ``.<name>.partial-<pid>-<random>`` (:func:`staging_folder`).
PARTIAL_MARK = ".partial-"
#: Written into every metadata file; bumped when a layout changes incompatibly.
FORMAT_VERSION = 2


@contextlib.contextmanager
def atomic_open(path: str | Path) -> Iterator[BinaryIO]:
    """Open a temporary file next to ``path`` for binary writing; rename it into place on success.

    On any exception the temporary file is removed and ``path`` is left as it was; an
    ``OSError`` that names no file (a full disk while writing) is raised again naming ``path``.

    Example:
        >>> with atomic_open("out.bin") as f:  # doctest: +SKIP
        ...     f.write(b"data")
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the mode open() would
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            stop_if_asked(f"writing {path.name}")
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
        stop_if_asked(f"wrote {path.name}")
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        if isinstance(exc, OSError) and exc.filename is None and exc.errno is not None:
            # a write into the open file (a full disk) names no file: name the one being written
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path) as handle:
        handle.write(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: dict[str, Any]) -> None:
    """Write ``obj`` as indented JSON with ``format_version`` added, atomically."""
    payload = {"format_version": FORMAT_VERSION, **obj}
    atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=False) + "\n")


def atomic_save_npy(path: str | Path, array: np.ndarray) -> None:
    """Save ``array`` as ``.npy`` atomically (readable later with ``np.load(mmap_mode="r")``)."""
    with atomic_open(path) as handle:
        np.save(handle, np.ascontiguousarray(array), allow_pickle=False)


def check_format_version(source: str | Path, version: Any) -> None:
    """The one check of a ``format_version`` read from a file l2s wrote.

    Raises:
        FormatVersionError: ``version`` is not :data:`FORMAT_VERSION` (the message names ``source``).
    """
    if version != FORMAT_VERSION:
        raise FormatVersionError(
            source,
            f"format_version {version!r}, this l2s reads version {FORMAT_VERSION}; "
            "re-create it with this version of l2s",
        )


def read_json(path: str | Path) -> dict[str, Any]:
    """Read a JSON object written by l2s and check its ``format_version``.

    Raises:
        InputDataError: the file is missing or not a JSON object.
        FormatVersionError: the file was written by an incompatible l2s version.
    """
    path = Path(path)
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputDataError(path, "file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputDataError(path, f"not valid JSON ({exc})") from None
    except RecursionError:
        raise InputDataError(path, NESTED_TOO_DEEPLY) from None
    if not isinstance(obj, dict):
        raise InputDataError(path, "expected a JSON object")
    check_format_version(path, obj.get("format_version"))
    return obj


def is_plain_name(name: str) -> bool:
    """Whether ``name`` can name a file or folder inside another without leaving or hiding in it:
    not empty, no path separator (``/`` or ``\\``) or NUL, and no leading dot (so neither ``.`` nor ``..``)."""
    return bool(name) and not name.startswith(".") and not any(c in name for c in "/\\\0")


def remove_staged(target: str | Path, area: str | Path) -> None:
    """Remove the folder ``target`` (if present; what cannot be removed is left), which must lie
    strictly inside ``area``, the folder in which the caller stages its own work: a last guard so
    that no path built from user input (``area/..``, a symbolic link) makes l2s delete what it did
    not create.

    Raises:
        L2SError: ``target``, resolved, is ``area`` itself or lies outside it, or is a symbolic link.
    """
    target, area = Path(target), Path(area)
    resolved, inside = target.resolve(), area.resolve()
    if target.is_symlink() or resolved == inside or inside not in resolved.parents:
        raise L2SError(target, f"refusing to remove: it is not a folder l2s staged inside {area}")
    shutil.rmtree(target, ignore_errors=True)


def staging_folder(parent: Path, name: str) -> Path:
    """A new staging path (not created) for ``parent/name``: ``parent/.<name>.partial-<pid>-<random>``,
    built there and renamed into place when complete; the pid tells a later run whether its
    maker still runs (:func:`remove_stale_staging`)."""
    return parent / f".{name}{PARTIAL_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}"


def remove_stale_staging(parent: Path, name: str | None = None) -> None:
    """Remove the staging folders in ``parent`` (of ``name``, or of any name) whose maker no longer
    runs (killed); those of running processes, and symbolic links, stay."""
    pattern = f".{'*' if name is None else glob.escape(name)}{PARTIAL_MARK}*"
    for folder in parent.glob(pattern):
        pid = folder.name.rpartition(PARTIAL_MARK)[2].split("-")[0]
        if not folder.is_symlink() and not (pid.isdigit() and process_alive(int(pid))):
            remove_staged(folder, parent)


@contextlib.contextmanager
def exclusive_lock(lock_path: Path, refusal: Callable[[dict[str, Any]], L2SError]) -> Iterator[dict[str, Any]]:
    """Hold ``lock_path`` (created) while the block runs, or refuse at once.

    The lock is an advisory ``flock``, which also records the holder's pid, host and start time
    in the file. The operating system releases it when the holder dies, so the lock of a killed
    process is taken over by the next one.

    Args:
        lock_path: the lock file.
        refusal: the error to raise, given the recorded holder (``pid``, ``host``, ``since``;
            empty when unreadable), when another process holds the lock.

    Yields:
        The holder recorded before this one (empty if none): a process no longer running when
        the lock was left by a killed one.
    """
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise refusal(_lock_holder(fd)) from None
        previous = _lock_holder(fd)
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": datetime.datetime.now().isoformat(timespec="seconds"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
        yield previous
    finally:
        os.close(fd)  # closing the descriptor releases the flock


def _lock_holder(fd: int) -> dict[str, Any]:
    """The holder recorded in a lock file (empty when unreadable)."""
    try:
        holder = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return holder if isinstance(holder, dict) else {}
