"""What ``l2s run`` keeps on disk about a study between runs: step records and the study lock.

* :class:`StepRecord`: the record of a step's last execution,
  ``runs/<study>/steps/<step id>.json`` (the path is :meth:`StudyPaths.step_record
  <l2s_core.study.plan.StudyPaths.step_record>`). It is written atomically after the step
  ended, so it is either whole or absent; :meth:`StudyPaths.read_record
  <l2s_core.study.plan.StudyPaths.read_record>` treats a missing or unreadable one as no record.
* :func:`study_lock`: one ``l2s run`` per study at a time, through the lock file
  ``runs/<study>/l2s_run.lock`` (an advisory ``flock`` that dies with its holder).

This module imports no heavy library (no torch, no Papermill), like :mod:`l2s_core.study.plan`.
"""

from __future__ import annotations

__all__ = ["DONE", "FAILED", "StepRecord", "study_lock"]

import contextlib
import dataclasses
import datetime
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

from l2s_core.errors import StudyLockedError
from l2s_core.files import exclusive_lock
from l2s_core.processes import process_alive
from l2s_core.records import Record
from l2s_core.vocabulary import StepState

#: How a step's execution ended: the states a step record holds (also states of a study's units).
DONE: Final = "done"
FAILED: Final = "failed"


def _now() -> str:
    return datetime.datetime.now().isoformat(timespec="seconds")


@dataclasses.dataclass(frozen=True)
class StepRecord(Record):
    """The record of a step's last execution.

    Attributes:
        step: the step id (``train/spleen/organ/run_00``).
        state: ``done`` or ``failed``.
        seconds: wall-clock seconds of the execution.
        finished: when it ended (ISO 8601, seconds).
        host: the host it ran on.
        notebook: the executed notebook (``None`` for the report, or when the step never ran).
        error: the last line of its error (``None`` when done).
        inputs: what the result depends on (:meth:`StudyPlan.inputs
            <l2s_core.study.plan.StudyPlan.inputs>`); a done step whose inputs changed is done again.
    """

    step: str
    state: StepState
    seconds: float
    finished: str
    host: str
    notebook: str | None
    error: str | None
    inputs: dict[str, Any]

    @classmethod
    def ended_now(
        cls,
        step: str,
        state: StepState,
        seconds: float,
        notebook: str | None,
        error: str | None,
        inputs: dict[str, Any],
    ) -> StepRecord:
        """The record of a step that ended just now on this host (``seconds`` rounded to ms)."""
        return cls(step, state, round(seconds, 3), _now(), socket.gethostname(), notebook, error, inputs)

    @property
    def done(self) -> bool:
        """Whether the step finished without error."""
        return self.state == DONE


@contextlib.contextmanager
def study_lock(lock_path: Path) -> Iterator[None]:
    """Hold the study's lock file while the block runs.

    The lock is an advisory ``flock`` on ``lock_path``, which also records the holder's pid
    and host. The operating system releases it when the holder dies, so the lock of a dead
    ``l2s run`` is taken over by the next one.

    Args:
        lock_path: the lock file (created).

    Raises:
        StudyLockedError: another process holds the lock (the message names the file and its pid).
    """

    def refusal(holder: dict[str, Any]) -> StudyLockedError:
        return StudyLockedError(
            lock_path,
            f"held by pid {holder.get('pid', '?')} on {holder.get('host', '?')} "
            f"since {holder.get('since', '?')}: another `l2s run` is working on this study; "
            "wait for it to finish or stop it",
        )

    with exclusive_lock(lock_path, refusal) as previous:
        if (
            previous.get("host") == socket.gethostname()
            and isinstance(previous.get("pid"), int)
            and not process_alive(previous["pid"])
        ):
            print(f"{lock_path}: taking over the stale lock of pid {previous['pid']} (no longer running)")
        yield
