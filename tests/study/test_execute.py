"""Executing one step: its request, its notebook (Papermill replaced here) and its record."""

from pathlib import Path

import papermill
import pytest

from l2s_core.errors import ConfigError
from l2s_core.notebook_files import notebooks_dir
from l2s_core.study import execute
from l2s_core.study.execute import (
    check_kernel,
    check_notebooks,
    error_line,
    execute_step,
    step_gpus,
    step_request,
)
from l2s_core.study.layout import Step, StudyPaths

PREPARE = Step("prepare", "spleen")


def test_requests_of_each_kind_of_step():
    paths = StudyPaths(Path("/root"), "quick")
    train = step_request(Step("train", "spleen", "organ", run=1), paths, notebooks_dir(), "0,1", {})
    assert train.notebook == notebooks_dir() / "train.ipynb"
    assert train.parameters == {
        "params_path": "/root/runs/quick/study_params.json",
        "root": "/root",
        "organ": "spleen",
        "network": "organ",
        "run": 1,
        "gpus": "0,1",
    }
    assert "gpus" not in step_request(PREPARE, paths, notebooks_dir(), "0", {}).parameters
    evaluate = step_request(Step("evaluate", "spleen", split="val"), paths, notebooks_dir(), "0,1", {})
    assert evaluate.parameters["gpus"] == "0"  # evaluation predicts on one device: the slot's first GPU
    assert (
        step_request(Step("evaluate", "spleen", split="val"), paths, notebooks_dir(), None, {}).parameters["gpus"]
        is None
    )
    analysis = step_request(Step("analysis"), paths, notebooks_dir(), None, {"runs": {}})
    assert analysis.parameters == {"study_dir": "/root/runs/quick"} and analysis.inputs == {"runs": {}}
    report = step_request(Step("report"), paths, notebooks_dir(), None, {})
    assert report.notebook is None and report.parameters == {}


def test_gpus_of_each_kind_of_step_for_local_slots_and_slurm_jobs():
    assert [step_gpus(kind, 2) for kind in ("prepare", "train", "evaluate", "analysis", "report")] == [0, 2, 1, 0, 0]


def test_missing_kernel_and_notebooks_are_named(tmp_path, monkeypatch):
    check_notebooks(notebooks_dir())
    with pytest.raises(ConfigError, match="prepare.ipynb: study notebook not found"):
        check_notebooks(tmp_path)
    monkeypatch.setattr(execute, "KERNEL_NAME", "l2s-not-installed")
    with pytest.raises(ConfigError, match="Jupyter kernel 'l2s-not-installed': not installed"):
        check_kernel()


def test_error_line_is_the_last_line_of_the_error():
    assert error_line(ValueError("first\nlast\n\n")) == "ValueError: last"
    assert error_line(KeyboardInterrupt()) == "KeyboardInterrupt"
    failed_cell = papermill.PapermillExecutionError(3, 3, "raise", "RuntimeError", "deep\ninjected failure", [])
    assert error_line(failed_cell) == "RuntimeError: injected failure"


@pytest.mark.parametrize("outcome", ["done", "raises", "no-outputs"])
def test_a_step_ends_with_its_record(tmp_path, monkeypatch, outcome):
    paths = StudyPaths(tmp_path, "tiny")
    calls = []

    def fake_notebook(source, output, **kwargs):
        calls.append((source, output, kwargs))
        Path(output).write_text("{}")
        if outcome == "raises":
            raise RuntimeError("injected failure")
        if outcome == "done":
            for path in paths.outputs(PREPARE):
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text("{}")

    monkeypatch.setattr(papermill, "execute_notebook", fake_notebook)
    request = step_request(PREPARE, paths, notebooks_dir(), None, {})
    record = execute_step(request)
    ((source, output, kwargs),) = calls
    assert Path(source) == notebooks_dir() / "prepare.ipynb" and Path(output) == paths.executed_notebook(PREPARE)
    assert kwargs["kernel_name"] == execute.KERNEL_NAME and kwargs["cwd"] == str(tmp_path)
    assert record == paths.read_record(PREPARE)
    assert record.step == "prepare/spleen" and record.notebook == str(paths.executed_notebook(PREPARE))
    error = {
        "done": None,
        "raises": "RuntimeError: injected failure",
        "no-outputs": f"L2SError: {paths.outputs(PREPARE)[0]}: step prepare/spleen finished without writing this file",
    }[outcome]
    assert record.error == error and record.done == (outcome == "done")
    assert paths.is_done(PREPARE, {}) == (outcome == "done")


def test_a_report_without_analysis_fails_with_its_record(tmp_path):
    paths = StudyPaths(tmp_path, "tiny")
    report = Step("report")
    record = execute_step(step_request(report, paths, notebooks_dir(), None, {"runs": {}}))
    assert record.state == "failed" and record.notebook is None and record.inputs == {"runs": {}}
    assert "executed analysis notebook not found" in record.error
    assert paths.read_record(report) == record
