"""Where a study's files live: :class:`Step` (one execution of a study) and :class:`StudyPaths`.

Layout of a study under its root::

    runs/<study>/
      study_params.json         the validated parameters the notebooks read
      l2s_run.lock              held by the l2s run working on the study
      status.json               the state of every unit after the last l2s run
      steps/<step id>.json      a step's StepRecord (l2s_core.study.step_records)
      phantom/                  generated MSD task folders (data: phantom)
      <organ>/prepared/         the prepared task (l2s_core.data.prepared_layout)
      <organ>/<network>/run_<ii>/   a training run (l2s_core.train.run_files)
      <organ>/evaluation/       <split>_cases.csv, <split>_runs.csv (l2s_core.evaluation_tables)
    executed/<study>/<step id>.ipynb   executed notebooks
    reports/<study>/report.html

No heavy library is imported here, so notebooks and tables use :class:`StudyPaths` cheaply.
"""

from __future__ import annotations

__all__ = ["PARAMS_SNAPSHOT_FILE", "STATUS_FILE", "Step", "StudyPaths"]

import dataclasses
from pathlib import Path
from typing import Any

from l2s_core.data.prepared_layout import PREP_FILE, PREPARED_DIR, SPLIT_FILE
from l2s_core.errors import FormatVersionError, InputDataError
from l2s_core.evaluation_tables import EVALUATION_DIR, cases_file, runs_file
from l2s_core.study.step_records import StepRecord
from l2s_core.train.run_files import SUMMARY_FILE

#: The validated parameters of a study, which its notebooks read (``runs/<study>/``).
PARAMS_SNAPSHOT_FILE = "study_params.json"
#: The state of every unit after the last ``l2s run`` (``runs/<study>/``).
STATUS_FILE = "status.json"


@dataclasses.dataclass(frozen=True)
class Step:
    """One execution of a study: a notebook run, or the report.

    Attributes:
        kind: ``prepare``, ``train``, ``evaluate``, ``analysis`` or ``report``.
        organ: the organ (prepare, train, evaluate).
        network: the network (train).
        run: the run index (train).
        split: the split (evaluate).
    """

    kind: str
    organ: str | None = None
    network: str | None = None
    run: int | None = None
    split: str | None = None

    @property
    def step_id(self) -> str:
        """``prepare/spleen``, ``train/spleen/baseline/run_00``, ``evaluate/spleen/val``, ``analysis``."""
        run = None if self.run is None else f"run_{self.run:02d}"
        return "/".join(part for part in (self.kind, self.organ, self.network, run, self.split) if part is not None)

    @property
    def unit_id(self) -> str:
        """The unit the step belongs to (a training chain for train steps, else the step)."""
        return "/".join(part for part in (self.kind, self.organ, self.network, self.split) if part is not None)

    @property
    def organ_name(self) -> str:
        """The organ of a prepare, train or evaluate step."""
        if self.organ is None:
            raise ValueError(f"{self.step_id} has no organ")
        return self.organ

    def arguments(self) -> dict[str, Any]:
        """The step's own notebook parameters (organ, network, run, split where set)."""
        names = ("organ", "network", "run", "split")
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}


@dataclasses.dataclass(frozen=True)
class StudyPaths:
    """Where a study's files live under a study root (see the study layout in the README).

    Attributes:
        root: the study root (``l2s run --root``, default the working directory).
        study: the study name.
    """

    root: Path
    study: str

    @property
    def study_dir(self) -> Path:
        """``runs/<study>``: data, runs, evaluation, analysis, records."""
        return self.root / "runs" / self.study

    @property
    def executed_dir(self) -> Path:
        """``executed/<study>``: executed notebooks."""
        return self.root / "executed" / self.study

    @property
    def report_path(self) -> Path:
        """``reports/<study>/report.html``."""
        return self.root / "reports" / self.study / "report.html"

    @property
    def params_snapshot(self) -> Path:
        """The validated parameters the notebooks read."""
        return self.study_dir / PARAMS_SNAPSHOT_FILE

    @property
    def lock_path(self) -> Path:
        """Lock file held by the ``l2s run`` working on the study."""
        return self.study_dir / "l2s_run.lock"

    @property
    def phantom_dir(self) -> Path:
        """Phantom MSD task folders (``data: phantom``)."""
        return self.study_dir / "phantom"

    @property
    def status_path(self) -> Path:
        """State of every unit after the last ``l2s run``."""
        return self.study_dir / STATUS_FILE

    @property
    def submitit_dir(self) -> Path:
        """Logs and pickles of steps run through submitit."""
        return self.study_dir / "submitit"

    def organ_dir(self, organ: str) -> Path:
        return self.study_dir / organ

    def prepared_dir(self, organ: str) -> Path:
        return self.organ_dir(organ) / PREPARED_DIR

    def run_dir(self, organ: str, network: str, run: int) -> Path:
        return self.organ_dir(organ) / network / f"run_{run:02d}"

    def run_folder(self, step: Step) -> Path:
        """The run folder of a training step."""
        if step.organ is None or step.network is None or step.run is None:
            raise ValueError(f"{step.step_id} is not a training step")
        return self.run_dir(step.organ, step.network, step.run)

    def evaluation_dir(self, organ: str) -> Path:
        return self.organ_dir(organ) / EVALUATION_DIR

    def executed_notebook(self, step: Step) -> Path:
        """The executed notebook of a notebook step (``executed/<study>/<step id>.ipynb``)."""
        return self.executed_dir / f"{step.step_id}.ipynb"

    def step_record(self, step: Step) -> Path:
        """The record of a step's last execution (``runs/<study>/steps/<step id>.json``)."""
        return self.study_dir / "steps" / f"{step.step_id}.json"

    def outputs(self, step: Step) -> list[Path]:
        """The files a finished step leaves; all must exist for the step to count as done."""
        if step.kind == "prepare":
            return [self.prepared_dir(step.organ_name) / SPLIT_FILE, self.prepared_dir(step.organ_name) / PREP_FILE]
        if step.kind == "train":
            return [self.run_folder(step) / SUMMARY_FILE]
        if step.kind == "evaluate":
            folder = self.evaluation_dir(step.organ_name)
            split = step.split or ""
            return [folder / cases_file(split), folder / runs_file(split)]
        if step.kind == "analysis":
            return [self.executed_notebook(step)]
        return [self.report_path]

    def read_record(self, step: Step) -> StepRecord | None:
        """The step's record, or ``None`` when there is none or it is unreadable (then the step
        is done again)."""
        try:
            return StepRecord.read(self.step_record(step))
        except (InputDataError, FormatVersionError):
            return None

    def is_done(self, step: Step, inputs: dict[str, Any]) -> bool:
        """Whether the step finished (record says done) with these ``inputs`` and its outputs exist."""
        record = self.read_record(step)
        return (
            record is not None
            and record.done
            and record.inputs == inputs
            and all(p.exists() for p in self.outputs(step))
        )
