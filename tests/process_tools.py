"""Helpers of the tests that start real processes, hold them at a moment and kill them.

Processes are started with one torch/OpenMP thread (the volumes are tiny). A process is held
at a named moment with the environment variable :data:`l2s_core.processes.STOP_AT` (it stops
itself there with SIGSTOP), which :func:`wait_stopped` waits for; the test then SIGKILLs it.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from l2s_core.processes import STOP_AT

#: A line of a tqdm progress bar, e.g. ``prepare Task:  20%|██        | 1/5 [00:00<00:02, 1.42case/s]``.
PROGRESS_BAR = re.compile(r"^.*:\s+\d+%\|")
#: How long a test waits for a process to reach a moment or to end (generous on a busy machine).
PATIENCE_SECONDS = 120


def environment(stop_at: str | None = None) -> dict[str, str]:
    """This process's environment with one thread, and :data:`STOP_AT` set to ``stop_at`` (or unset)."""
    env = {key: value for key, value in os.environ.items() if key != STOP_AT}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    if stop_at is not None:
        env[STOP_AT] = stop_at
    return env


def start_module(*args: str | Path, stop_at: str | None = None) -> subprocess.Popen:
    """Start ``python -m ARGS`` (see :func:`environment`), output captured as text."""
    return subprocess.Popen(
        [sys.executable, "-m", *map(str, args)],
        env=environment(stop_at),
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def run_module(*args: str | Path) -> subprocess.CompletedProcess:
    """Run ``python -m ARGS`` to its end (see :func:`environment`), output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", *map(str, args)], capture_output=True, text=True, env=environment(), timeout=300
    )


def state(pid: int) -> str | None:
    """The state letter of a process (``R``, ``S``, ``T`` stopped, ``Z`` ended, ...), ``None`` once reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return None


def running(pid: int) -> bool:
    """Whether a process exists and has not ended (a zombie has ended)."""
    return state(pid) not in (None, "Z", "X")


def children(pid: int) -> list[int]:
    """The pids of a process's children (empty once it has ended)."""
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except FileNotFoundError:
        return []
    found: list[int] = []
    for task in tasks:
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except FileNotFoundError:
            continue
    return found


def descendants(pid: int) -> list[int]:
    """The pids of a process's children, their children and so on."""
    found = children(pid)
    return found + [d for child in found for d in descendants(child)]


def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Poll ``condition`` until it holds.

    Raises:
        AssertionError: it did not hold within :data:`PATIENCE_SECONDS` (saying ``what``).
    """
    deadline = time.monotonic() + PATIENCE_SECONDS
    while not condition():
        assert time.monotonic() < deadline, f"not within {PATIENCE_SECONDS} s: {what}"
        time.sleep(0.01)


def wait_stopped(process: subprocess.Popen, pid: int | None = None) -> None:
    """Wait until ``pid`` (default: ``process`` itself) has stopped itself at its moment (state ``T``).

    Raises:
        AssertionError: ``process`` ended first (with its output), or the patience ran out.
    """
    pid = process.pid if pid is None else pid

    def stopped() -> bool:
        assert process.poll() is None, f"ended before its moment: {process.communicate()}"
        return state(pid) == "T"

    wait_until(stopped, f"process {pid} stopping at its moment")


def kill_and_reap(process: subprocess.Popen) -> None:
    """SIGKILL a started process and collect its exit (it must have been killed, not ended)."""
    process.kill()
    process.communicate()
    assert process.returncode == -9, process.returncode


def ended_after_continuing(pid: int) -> bool:
    """SIGCONT a process held by the harness (it may stop again at its next moment); whether it
    has ended. A signal other than SIGKILL, e.g. a pool's SIGTERM, waits while it is stopped."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGCONT)
    return not running(pid)


def wait_gone(pids: list[int], what: str) -> None:
    """Wait until every process of ``pids`` has ended (died with its parent)."""
    wait_until(lambda: not any(running(pid) for pid in pids), what)


def error_lines(stderr: str) -> list[str]:
    """The lines of ``stderr`` that are not progress bars (tqdm separates its updates with ``\\r``)."""
    lines = [line for line in re.split(r"[\r\n]+", stderr) if line.strip()]
    return [line for line in lines if not PROGRESS_BAR.match(line)]


def assert_output_is_one_error_line(stdout: str, stderr: str, *parts: str) -> None:
    """No traceback anywhere in the output, and one stderr line (progress bars aside) holding
    every part (the file or parameter, and the problem)."""
    assert "Traceback" not in stdout + stderr, stdout + stderr
    lines = error_lines(stderr)
    assert len(lines) == 1, stderr
    assert all(part in lines[0] for part in parts), (lines[0], parts)


def assert_one_line_error(result: subprocess.CompletedProcess, *parts: str) -> None:
    """Exit status 2 and :func:`assert_output_is_one_error_line`."""
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert_output_is_one_error_line(result.stdout, result.stderr, *parts)
