"""The study's status record (``status.json``): written and read back, and a corrupt file refused in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from study_folder import synthetic_study

from l2s_core.errors import InputDataError
from l2s_core.files import FORMAT_VERSION
from l2s_core.results.study_results import load_study
from l2s_core.study.status import StudyStatus, UnitStatus

STATUS = StudyStatus(
    study="quick",
    units={
        "prepare/spleen": UnitStatus("done"),
        "train/spleen/baseline": UnitStatus("done", runs=2, converged=1),
        "evaluate/spleen/val": UnitStatus("failed", error="RuntimeError: injected failure"),
        "report": UnitStatus("blocked"),
    },
    failed=("evaluate/spleen/val",),
    report=None,
)


def test_status_round_trip(tmp_path: Path) -> None:
    STATUS.write(tmp_path / "status.json")
    assert StudyStatus.read(tmp_path / "status.json") == STATUS
    values = json.loads((tmp_path / "status.json").read_text())
    assert values["format_version"] == FORMAT_VERSION and values["failed"] == ["evaluate/spleen/val"]
    assert values["units"]["train/spleen/baseline"] == {"state": "done", "runs": 2, "converged": 1, "error": None}


def test_failures_are_the_failed_and_blocked_units() -> None:
    assert list(STATUS.failures()) == ["evaluate/spleen/val", "report"]


@pytest.mark.parametrize(
    "content, problem",
    [
        ('{"units": {"prepare/spleen": {"state": "done"}', "not valid JSON"),
        (
            f'{{"format_version": {FORMAT_VERSION}, "units": {{"prepare/spleen": {{"state": 3}}}}}}',
            "units.prepare/spleen.state: unknown value 3; expected one of pending, running, done, failed, blocked",
        ),
        (
            f'{{"format_version": {FORMAT_VERSION}, "units": {{"prepare/spleen": {{"state": "finished"}}}}}}',
            "units.prepare/spleen.state: unknown value 'finished'",
        ),
        (
            f'{{"format_version": {FORMAT_VERSION}, "units": {{"prepare/spleen": {{"stat": "done"}}}}}}',
            "units.prepare/spleen.stat: unknown key",
        ),
    ],
)
def test_a_corrupt_status_file_stops_the_analysis_with_one_line_naming_it(
    tmp_path: Path, content: str, problem: str
) -> None:
    study = synthetic_study(tmp_path)
    (study / "status.json").write_text(content)
    with pytest.raises(InputDataError) as caught:
        load_study(study)
    message = str(caught.value)
    assert message.startswith(f"{study / 'status.json'}: ") and problem in message and "\n" not in message
