"""Step records and the study lock: what ``l2s run`` keeps on disk between runs."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from l2s_core.errors import FormatVersionError, InputDataError, StudyLockedError
from l2s_core.files import FORMAT_VERSION, atomic_write_json
from l2s_core.study.layout import Step, StudyPaths
from l2s_core.study.step_records import DONE, FAILED, StepRecord, study_lock

STEP = Step("evaluate", "spleen", split="val")
INPUTS = {"runs": {"train/spleen/organ": 2}, "evaluate": {"splits": ["val"], "fallback": "baseline"}}


def test_a_record_round_trips_with_the_same_keys_on_disk(tmp_path):
    paths = StudyPaths(tmp_path, "tiny")
    record = StepRecord.ended_now(STEP.step_id, DONE, 12.34567, "/x/evaluate/spleen/val.ipynb", None, INPUTS)
    assert record.seconds == 12.346 and record.host == socket.gethostname() and record.done
    record.write(paths.step_record(STEP))
    on_disk = json.loads(paths.step_record(STEP).read_text())
    assert list(on_disk) == [
        "format_version",
        "step",
        "state",
        "seconds",
        "finished",
        "host",
        "notebook",
        "error",
        "inputs",
    ]
    assert StepRecord.read(paths.step_record(STEP)) == record == paths.read_record(STEP)
    assert StepRecord.from_dict(record.to_dict()) == record
    assert paths.is_done(STEP, INPUTS) is False  # the outputs are missing
    for output in paths.outputs(STEP):
        output.parent.mkdir(parents=True, exist_ok=True)
        output.touch()
    assert paths.is_done(STEP, INPUTS)
    assert not paths.is_done(STEP, {**INPUTS, "runs": {"train/spleen/organ": 3}})  # more runs: done again


def test_a_failed_record_is_not_done(tmp_path):
    paths = StudyPaths(tmp_path, "tiny")
    record = StepRecord.ended_now(STEP.step_id, FAILED, 0.0, None, "RuntimeError: broken", {})
    record.write(paths.step_record(STEP))
    assert paths.read_record(STEP) == record and not record.done
    for output in paths.outputs(STEP):
        output.parent.mkdir(parents=True, exist_ok=True)
        output.touch()
    assert not paths.is_done(STEP, {})


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (f'{{"format_version": {FORMAT_VERSION}, "step": "evaluate/spl', "not valid JSON"),
        ("[1, 2, 3]", "expected a JSON object"),
        (
            f'{{"format_version": {FORMAT_VERSION}, "step": "evaluate/spleen/val", "state": "done"}}',
            "seconds: required key missing",
        ),
        (
            f'{{"format_version": {FORMAT_VERSION}, "step": "evaluate/spleen/val", "state": "running", "seconds": 1.0,'
            ' "finished": "2024-01-01T00:00:00", "host": "h", "notebook": null, "error": null, "inputs": {}}',
            "state: unknown value 'running'; expected one of done, failed",
        ),
        (f'{{"format_version": {FORMAT_VERSION}, "steps": 3}}', "steps: unknown key"),
    ],
    ids=["truncated", "not-an-object", "missing-key", "unknown-state", "alien"],
)
def test_a_corrupt_or_alien_record_is_no_record(tmp_path, content, problem):
    paths = StudyPaths(tmp_path, "tiny")
    path = paths.step_record(STEP)
    path.parent.mkdir(parents=True)
    path.write_text(content)
    with pytest.raises(InputDataError) as caught:
        StepRecord.read(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and problem in message and "\n" not in message
    assert paths.read_record(STEP) is None and not paths.is_done(STEP, {})


def test_a_missing_or_other_version_record_is_no_record(tmp_path):
    paths = StudyPaths(tmp_path, "tiny")
    assert paths.read_record(STEP) is None
    record = StepRecord.ended_now(STEP.step_id, DONE, 1.0, None, None, {})
    atomic_write_json(paths.step_record(STEP), {**record.to_dict(), "format_version": 99})
    with pytest.raises(FormatVersionError, match="format_version 99"):
        StepRecord.read(paths.step_record(STEP))
    assert paths.read_record(STEP) is None


def test_a_second_holder_is_refused_by_the_lock(tmp_path):
    lock_path = tmp_path / "runs" / "tiny" / "l2s_run.lock"
    with study_lock(lock_path):
        assert json.loads(lock_path.read_text())["pid"] == os.getpid()
        with pytest.raises(StudyLockedError) as caught:
            with study_lock(lock_path):
                pytest.fail("the lock was taken twice")
    assert str(caught.value).startswith(f"{lock_path}: held by pid {os.getpid()} on {socket.gethostname()} since ")
    with study_lock(lock_path):  # released when the block ended
        pass


def test_the_lock_of_a_dead_process_is_taken_over(tmp_path, capsys):
    lock_path = tmp_path / "l2s_run.lock"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    lock_path.write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "since": "2024-01-01T00:00:00"}))
    with study_lock(lock_path):
        assert json.loads(lock_path.read_text())["pid"] == os.getpid()
    assert f"{lock_path}: taking over the stale lock of pid {pid} (no longer running)" in capsys.readouterr().out


def test_an_unreadable_lock_file_is_taken(tmp_path, capsys):
    lock_path = Path(tmp_path / "l2s_run.lock")
    lock_path.write_bytes(b"\xff\xfe not json")
    with study_lock(lock_path):
        assert json.loads(lock_path.read_text())["host"] == socket.gethostname()
    assert capsys.readouterr().out == ""
