"""The state of a study after the last ``l2s run``: :class:`StudyStatus`, kept as
``runs/<study>/status.json`` (:data:`~l2s_core.study.layout.STATUS_FILE`).

The runner (:mod:`l2s_core.study.runner`) writes it after every step; the analysis
(:mod:`l2s_core.results.study_results`) reads the failed and blocked steps from it.

Example:
    >>> status = StudyStatus("quick", {"prepare/spleen": UnitStatus("failed", error="OSError: disk full")})
    >>> status.failures()
    {'prepare/spleen': UnitStatus(state='failed', runs=None, converged=None, error='OSError: disk full')}
"""

from __future__ import annotations

__all__ = ["StudyStatus", "UnitStatus"]

import dataclasses

from l2s_core.records import Record
from l2s_core.vocabulary import UnitState

#: States of a unit that did not and will not succeed in this ``l2s run``.
_FAILURE_STATES: tuple[UnitState, ...] = ("failed", "blocked")


@dataclasses.dataclass(frozen=True)
class UnitStatus:
    """The state of one unit of the study graph (:class:`~l2s_core.study.plan.Unit`).

    Attributes:
        state: ``pending``, ``running``, ``done``, ``failed`` or ``blocked``.
        runs: training runs finished (training chains only).
        converged: training runs that converged (training chains only).
        error: last line of the error of a failed unit.
    """

    state: UnitState
    runs: int | None = None
    converged: int | None = None
    error: str | None = None


@dataclasses.dataclass(frozen=True)
class StudyStatus(Record):
    """The state of every unit of a study after the last ``l2s run``.

    Attributes:
        study: the study name.
        units: unit id (e.g. ``train/spleen/baseline``) → its state.
        failed: the ids of the failed units.
        report: the rendered report, or ``None`` where it was not made.
    """

    study: str = ""
    units: dict[str, UnitStatus] = dataclasses.field(default_factory=dict)
    failed: tuple[str, ...] = ()
    report: str | None = None

    def failures(self) -> dict[str, UnitStatus]:
        """Unit id → state of the units that failed or are blocked by a failure."""
        return {unit_id: unit for unit_id, unit in self.units.items() if unit.state in _FAILURE_STATES}
