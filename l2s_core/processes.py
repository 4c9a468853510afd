"""Lifetimes of the processes l2s starts, the memory they may use, and a test hook.

* :func:`die_with_parent`: a worker process (preparation pool, data-parallel rank) asks the
  Linux kernel for SIGKILL when its parent ends (``prctl(PR_SET_PDEATHSIG)``), so killing
  ``l2s prepare`` or a training run, even with SIGKILL, leaves no worker writing afterwards.
  The signal comes from the kernel itself, at once, whatever the worker is doing (also when
  it is stopped or blocked in a collective operation). Elsewhere than Linux it does nothing.
* :func:`available_memory`: bytes this process may still allocate (the smaller of the
  system's ``MemAvailable`` and the cgroup's remaining limit).
* :func:`stop_if_asked`: with the environment variable :data:`STOP_AT` set to a moment's
  name, the process stops itself (SIGSTOP) at that moment, so that a test can SIGKILL it
  exactly there (e.g. inside a file write, too brief to hit by timing). Unset, as always
  outside the tests, it does nothing.
"""

from __future__ import annotations

__all__ = ["STOP_AT", "available_memory", "die_with_parent", "process_alive", "require_memory", "stop_if_asked"]

import ctypes
import errno
import os
import signal
import sys
from pathlib import Path

from l2s_core.errors import L2SError

#: ``prctl`` option number of ``PR_SET_PDEATHSIG`` (linux/prctl.h).
_PR_SET_PDEATHSIG = 1
#: Environment variable naming the moment at which :func:`stop_if_asked` stops the process.
STOP_AT = "L2S_STOP_AT"


def die_with_parent(parent: int) -> None:
    """Have this process SIGKILLed by the kernel when its parent process ends (Linux).

    Call it first thing in a child process. The kernel ties the signal to the thread that
    started the child, so the parent must start it from a thread that lives as long as
    the child should (the main thread, or the thread that waits for the children).

    Args:
        parent: the pid of the process that started this one; if it has already ended
            (this process was re-parented before the call), this process ends at once.

    Raises:
        OSError: ``prctl`` refused the request.
    """
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"prctl(PR_SET_PDEATHSIG): {os.strerror(code)}")
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGKILL)


def process_alive(pid: int) -> bool:
    """Whether a process with this pid runs on this machine (it may belong to another user); a
    process that has ended but not yet been reaped (a zombie) does not run."""
    try:
        os.kill(pid, 0)
    except OSError as exc:
        return exc.errno == errno.EPERM
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:  # it ended just now, or there is no /proc to tell a zombie by (not Linux)
        return not Path("/proc").is_dir()


def _meminfo_available() -> int:
    """``MemAvailable`` of ``/proc/meminfo`` in bytes; free physical pages where it is missing."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def _cgroup_available() -> int | None:
    """Bytes left under this process's cgroup (v2) memory limit, ``None`` without a limit."""
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = Path("/sys/fs/cgroup/memory.current").read_text().strip()
    except OSError:
        return None
    return None if limit == "max" else max(0, int(limit) - int(used))


def available_memory() -> int:
    """Bytes that new allocations can use without swapping or hitting a container's limit."""
    cgroup = _cgroup_available()
    system = _meminfo_available()
    return system if cgroup is None else min(system, cgroup)


def require_memory(where: str | Path, needed: int, what: str, error: type[L2SError]) -> None:
    """Raise ``error`` naming ``where`` when ``needed`` bytes exceed :func:`available_memory`:
    the check made before a size read from a file is allocated.

    Args:
        where: the file the size comes from.
        needed: bytes about to be allocated.
        what: what they hold, e.g. ``"the (512, 512, 300) float32 image"``.
        error: the error type raised.
    """
    available = available_memory()
    if needed > available:
        raise error(
            where,
            f"{what} needs {needed / 2**30:.3g} GiB of memory, {available / 2**30:.3g} GiB are available; "
            "check the header's sizes or free memory",
        )


def stop_if_asked(moment: str) -> None:
    """Stop this process (SIGSTOP) when the environment variable :data:`STOP_AT` equals ``moment``.

    A test hook (see the module docstring); every process that reaches the moment stops.
    """
    if os.environ.get(STOP_AT) == moment:
        os.kill(os.getpid(), signal.SIGSTOP)
