"""The units of a study, their dependencies, and which step may run next.

A study is a set of units with dependencies:

* ``prepare/<organ>``: phantom generation (``data: phantom``) and the prepared cache;
* ``train/<organ>/<network>``: a chain of training runs 0, 1, ... of one network, made one
  after another until ``runs`` have converged or ``max_runs`` were made; needs the organ's
  ``prepare``;
* ``evaluate/<organ>/<split>``: needs every training chain of the organ;
* ``analysis``: waits until every evaluation is done, failed or blocked, and runs when at
  least one is done (only when the study has an analysis notebook), so that one organ's
  failure does not hide the others: the report covers what finished and lists what failed;
* ``report``: needs the analysis.

Each execution is a :class:`~l2s_core.study.layout.Step`. A step is done when its record in
``runs/<study>/steps/<step id>.json`` (a :class:`~l2s_core.study.step_records.StepRecord`, written
atomically after the step finished) says so,
its outputs exist and the record's ``inputs`` are still the step's inputs (for evaluation,
analysis and report: the number of runs of each training chain and the evaluation options,
so that raising ``runs`` redoes them); anything else is done again. :class:`StudyPlan` keeps the state of
every unit while a study runs and answers which steps are ready; it executes nothing (see
:mod:`l2s_core.study.runner` and :mod:`l2s_core.study.execute`); where the files live is
:mod:`l2s_core.study.layout`.
"""

from __future__ import annotations

__all__ = ["NOTEBOOK_KINDS", "StudyPlan", "Unit"]

import dataclasses
from typing import TYPE_CHECKING, Any, Final

from l2s_core.study.layout import Step, StudyPaths
from l2s_core.study.status import UnitStatus
from l2s_core.study.step_records import DONE, FAILED
from l2s_core.train.run_files import FinishedRun, finished_summary
from l2s_core.vocabulary import UnitState

if TYPE_CHECKING:
    from l2s_core.study.params import StudyParams

#: States of a unit: those of its steps' records (``DONE``, ``FAILED``) and three more.
PENDING: Final = "pending"
RUNNING: Final = "running"
BLOCKED: Final = "blocked"
#: Steps executed as notebooks ``notebooks/<kind>.ipynb``; ``report`` is rendered in Python.
NOTEBOOK_KINDS = ("prepare", "train", "evaluate", "analysis")


@dataclasses.dataclass
class Unit:
    """A node of the study graph with its state.

    Attributes:
        step: the unit's step (for a training chain: its first run, ``run=0``).
        needs: unit ids that must be done first.
        state: ``pending``, ``running``, ``done``, ``failed`` or ``blocked``.
        made: training runs finished (chains only).
        converged: training runs that converged (chains only).
        error: last line of the error of a failed unit.
        needs_settled: the unit waits for its needs to end (done, failed or blocked) rather
            than to succeed, and runs when at least one is done (the analysis).
    """

    step: Step
    needs: list[str]
    state: UnitState = PENDING
    made: int = 0
    converged: int = 0
    error: str | None = None
    needs_settled: bool = False

    @property
    def is_chain(self) -> bool:
        return self.step.kind == "train"

    def next_step(self) -> Step:
        """The step to execute next (the chain's next run)."""
        return dataclasses.replace(self.step, run=self.made) if self.is_chain else self.step


class StudyPlan:
    """The units of a study and their states; decides which steps are ready.

    On creation, steps already done on disk count as done (training chains count their
    finished runs and converged runs), so a study started again continues where it stopped.

    Args:
        params: the study parameters.
        paths: the study's folders.
        with_analysis: whether the study has an analysis notebook (adds ``analysis`` and
            ``report``).
    """

    def __init__(self, params: StudyParams, paths: StudyPaths, with_analysis: bool) -> None:
        self.params = params
        self.paths = paths
        self.units: dict[str, Unit] = {}
        for organ in params.organs:
            self._add(Step("prepare", organ), [])
        for organ in params.organs:
            for network in params.networks:
                self._add(Step("train", organ, network, run=0), [f"prepare/{organ}"])
        for organ in params.organs:
            chains = [f"train/{organ}/{network}" for network in params.networks]
            for split in params.evaluate.splits:
                self._add(Step("evaluate", organ, split=split), chains)
        if with_analysis:
            self._add(Step("analysis"), [u for u in self.units if u.startswith("evaluate/")], needs_settled=True)
            self._add(Step("report"), ["analysis"])
        for unit in self.units.values():
            self._load(unit)

    def _add(self, step: Step, needs: list[str], needs_settled: bool = False) -> None:
        self.units[step.unit_id] = Unit(step, needs, needs_settled=needs_settled)

    def _needs_met(self, unit: Unit) -> bool:
        """Whether the unit's needs let it run: all done, or (``needs_settled``) all ended and one done."""
        states = [self.units[n].state for n in unit.needs]
        if unit.needs_settled:
            return all(s in (DONE, FAILED, BLOCKED) for s in states) and DONE in states
        return all(s == DONE for s in states)

    def _load(self, unit: Unit) -> None:
        """Set the unit's state from the records and outputs on disk (needs are loaded first)."""
        if not unit.is_chain:
            done = self._needs_met(unit) and self.paths.is_done(unit.step, self.inputs(unit.step))
            unit.state = DONE if done else PENDING
            return
        while not self._chain_complete(unit) and self.paths.is_done(unit.next_step(), {}):
            self._count_run(unit, unit.next_step())
        unit.state = DONE if self._chain_complete(unit) else PENDING

    def _chain_complete(self, unit: Unit) -> bool:
        return unit.converged >= self.params.runs or unit.made >= self.params.max_runs

    def _count_run(self, unit: Unit, step: Step) -> None:
        """Count a finished run of the chain; it counts as converged as evaluation counts it
        (:attr:`FinishedRun.converged <l2s_core.train.run_files.FinishedRun.converged>`)."""
        folder = self.paths.run_folder(step)
        summary = finished_summary(folder)
        unit.made += 1
        if summary is not None and step.network is not None and step.run is not None:
            unit.converged += FinishedRun(step.network, step.run, folder, summary).converged

    def inputs(self, step: Step) -> dict[str, Any]:
        """What a step's result depends on beyond its own files (stored in its record).

        Evaluation, analysis and report depend on the runs made by the training chains they
        (transitively) need and on the evaluation options (analysis and report also on the
        list of splits; an evaluation of one split does not, so adding a split keeps the
        others done); other steps: nothing (training refuses a run folder made with other
        settings by itself).
        """
        if step.kind not in ("evaluate", "analysis", "report"):
            return {}
        organs = [step.organ] if step.kind == "evaluate" else list(self.params.organs)
        runs = {
            f"train/{organ}/{network}": self.units[f"train/{organ}/{network}"].made
            for organ in organs
            for network in self.params.networks
        }
        evaluate = self.params.evaluate
        options: dict[str, Any] = {
            "fallback": evaluate.fallback,
            "surface_tolerance_mm": evaluate.surface_tolerance_mm,
            "box_mapping": evaluate.box_mapping,
        }
        if evaluate.guard_grows:  # only when on: studies without the guard keep their inputs
            options["guard_grows"] = evaluate.guard_grows
        if step.kind != "evaluate":  # one split's evaluation does not depend on the others
            options["splits"] = list(evaluate.splits)
        return {"runs": runs, "evaluate": options}

    def ready(self) -> list[Step]:
        """Steps that may start now: pending units whose needs are all done, in study order."""
        return [unit.next_step() for unit in self.units.values() if unit.state == PENDING and self._needs_met(unit)]

    def start(self, step: Step) -> None:
        """Mark the unit of ``step`` as running."""
        self.units[step.unit_id].state = RUNNING

    def finish(self, step: Step, succeeded: bool, error: str | None = None) -> None:
        """Record the end of ``step``.

        A finished training run is counted (its summary is read); its chain goes on unless
        complete. A failed step fails its unit and blocks every unit that depends on it.

        Args:
            step: the step that ended.
            succeeded: whether it finished without error.
            error: last line of its error.
        """
        unit = self.units[step.unit_id]
        if not succeeded:
            unit.state, unit.error = FAILED, error
            self._block_dependents(step.unit_id)
            return
        if unit.is_chain:
            self._count_run(unit, step)
            unit.state = DONE if self._chain_complete(unit) else PENDING
        else:
            unit.state = DONE

    def _block_dependents(self, unit_id: str) -> None:
        for other_id, other in self.units.items():
            if unit_id in other.needs and other.state == PENDING:
                if other.needs_settled:
                    if all(self.units[n].state in (FAILED, BLOCKED) for n in other.needs):
                        other.state = BLOCKED  # nothing it waits for can succeed any more
                        self._block_dependents(other_id)
                    continue
                other.state = BLOCKED
                self._block_dependents(other_id)

    def expected_steps(self) -> int:
        """Executions the study needs in all, as far as known now (chains may need more)."""
        total = 0
        for unit in self.units.values():
            if unit.is_chain:
                missing = 0 if unit.state == DONE else max(1, self.params.runs - unit.converged)
                total += unit.made + min(missing, self.params.max_runs - unit.made)
            else:
                total += 1
        return total

    def finished_steps(self) -> int:
        """Executions finished so far (done units and finished training runs)."""
        return sum(unit.made if unit.is_chain else unit.state == DONE for unit in self.units.values())

    def status(self) -> dict[str, UnitStatus]:
        """Unit id → its state (with ``runs``, ``converged`` for chains and ``error`` if failed)."""
        return {
            unit_id: UnitStatus(
                unit.state,
                runs=unit.made if unit.is_chain else None,
                converged=unit.converged if unit.is_chain else None,
                error=unit.error,
            )
            for unit_id, unit in self.units.items()
        }

    def status_table(self) -> str:
        """A text table: one row per organ; prepare, each network's chain and each split."""
        params = self.params
        header = ["organ", "prepare", *params.networks, *(f"evaluate {s}" for s in params.evaluate.splits)]
        rows = [header]
        for organ in params.organs:
            cells = [organ, self.units[f"prepare/{organ}"].state]
            for network in params.networks:
                unit = self.units[f"train/{organ}/{network}"]
                cells.append(f"{unit.state} {unit.converged}/{params.runs} conv, {unit.made} runs")
            cells += [self.units[f"evaluate/{organ}/{split}"].state for split in params.evaluate.splits]
            rows.append(cells)
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
        lines += [
            f"{unit_id}: {self.units[unit_id].state}" for unit_id in ("analysis", "report") if unit_id in self.units
        ]
        lines += [f"{unit_id} failed: {unit.error}" for unit_id, unit in self.units.items() if unit.state == FAILED]
        return "\n".join(lines)
