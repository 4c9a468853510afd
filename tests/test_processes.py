"""Lifetimes of started processes, the memory they may use and the stop hook
(``l2s_core.processes``), on real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest
from process_tools import (
    PATIENCE_SECONDS,
    environment,
    kill_and_reap,
    running,
    state,
    wait_gone,
    wait_stopped,
    wait_until,
)

from l2s_core import processes
from l2s_core.processes import available_memory, process_alive

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG and /proc are Linux's")
GIB = 1 << 30


def _start_python(code: str, *args: str, stop_at: str | None = None) -> subprocess.Popen:
    """Start ``python -c CODE ARGS`` (one thread, ``STOP_AT`` as given), output captured as text."""
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        env=environment(stop_at),
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


@linux
@pytest.mark.slow
def test_process_alive_while_running_not_once_ended_or_a_zombie() -> None:
    assert process_alive(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        assert process_alive(child.pid)
    finally:
        child.kill()
    wait_until(lambda: state(child.pid) == "Z", "the killed child becoming a zombie (not yet reaped)")
    assert not process_alive(child.pid)
    child.wait()
    assert not process_alive(child.pid)


def test_available_memory_is_the_smaller_of_the_system_and_the_cgroup(monkeypatch: pytest.MonkeyPatch) -> None:
    total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert 0 < available_memory() <= total
    monkeypatch.setattr(processes, "_meminfo_available", lambda: 8 * GIB)
    for cgroup, expected in ((None, 8 * GIB), (2 * GIB, 2 * GIB), (16 * GIB, 8 * GIB), (0, 0)):
        monkeypatch.setattr(processes, "_cgroup_available", lambda cgroup=cgroup: cgroup)
        assert available_memory() == expected, cgroup


STOPPING = """
    from l2s_core.processes import stop_if_asked

    stop_if_asked("another moment")
    print("passed another moment", flush=True)
    stop_if_asked("the moment")
    print("went on")
"""


@linux
@pytest.mark.slow
def test_stop_if_asked_stops_the_process_at_its_moment_only() -> None:
    process = _start_python(STOPPING, stop_at="the moment")
    try:
        wait_stopped(process)
        os.kill(process.pid, signal.SIGCONT)
        out, err = process.communicate(timeout=PATIENCE_SECONDS)
    finally:
        if process.poll() is None:  # held at another moment too
            kill_and_reap(process)
    assert (process.returncode, out) == (0, "passed another moment\nwent on\n"), err
    unset = _start_python(STOPPING)  # STOP_AT unset (environment() removes it): never stops
    out, err = unset.communicate(timeout=PATIENCE_SECONDS)
    assert (unset.returncode, out) == (0, "passed another moment\nwent on\n"), err


@linux
@pytest.mark.slow
@pytest.mark.parametrize(
    ("parent", "returncode"), [("own", 0), ("gone", -signal.SIGKILL)], ids=["parent_running", "parent_gone"]
)
def test_die_with_parent_goes_on_under_its_parent_and_ends_at_once_without_it(parent: str, returncode: int) -> None:
    process = _start_python(
        """
        import os, sys
        from l2s_core.processes import die_with_parent

        die_with_parent(os.getppid() if sys.argv[1] == "own" else 1)  # pid 1: not this process's parent
        print("alive")
        """,
        parent,
    )
    out, err = process.communicate(timeout=PATIENCE_SECONDS)
    assert process.returncode == returncode, err
    assert out == ("alive\n" if returncode == 0 else "")


@linux
@pytest.mark.slow
def test_die_with_parent_kills_the_child_when_its_parent_is_killed() -> None:
    child_code = (
        "import sys, time; from l2s_core.processes import die_with_parent; "
        "die_with_parent(int(sys.argv[1])); print('ready', flush=True); time.sleep(600)"
    )
    parent = _start_python(
        """
        import os, subprocess, sys

        child = subprocess.Popen([sys.executable, "-c", sys.argv[1], str(os.getpid())])
        print(child.pid, flush=True)
        child.wait()
        """,
        child_code,
    )
    assert parent.stdout is not None and parent.stderr is not None
    try:
        lines = {parent.stdout.readline().strip() for _ in range(2)}  # the child's pid and its "ready", in any order
        assert "ready" in lines, lines  # the child has asked for the signal
        (child_pid,) = (int(line) for line in lines if line != "ready")
        assert running(child_pid)
    finally:
        parent.kill()
        parent.wait()  # not communicate(): a surviving child would hold the pipes open
        parent.stdout.close()
        parent.stderr.close()
    try:
        wait_gone([child_pid], f"child {child_pid} dying with its killed parent")
    finally:
        if running(child_pid):
            os.kill(child_pid, signal.SIGKILL)
