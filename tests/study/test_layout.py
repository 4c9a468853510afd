"""Where a study's files live: step ids, folders and the outputs that mark a step done."""

from pathlib import Path

import pytest

from l2s_core.study.layout import Step, StudyPaths
from l2s_core.study.step_records import StepRecord


def test_step_ids_and_run_folders():
    step = Step("train", "spleen", "organ", run=3)
    assert step.step_id == "train/spleen/organ/run_03" and step.unit_id == "train/spleen/organ"
    paths = StudyPaths(Path("/r"), "quick")
    assert paths.run_folder(step) == Path("/r/runs/quick/spleen/organ/run_03")
    assert paths.outputs(Step("evaluate", "liver", split="val"))[0].name == "val_cases.csv"


def test_every_kind_of_step_has_its_outputs_in_the_study_layout():
    paths = StudyPaths(Path("/r"), "quick")
    outputs = {
        kind: [str(p.relative_to("/r")) for p in paths.outputs(step)]
        for kind, step in {
            "prepare": Step("prepare", "liver"),
            "train": Step("train", "liver", "baseline", run=0),
            "evaluate": Step("evaluate", "liver", split="test"),
            "analysis": Step("analysis"),
            "report": Step("report"),
        }.items()
    }
    assert outputs == {
        "prepare": ["runs/quick/liver/prepared/split.json", "runs/quick/liver/prepared/prep.json"],
        "train": ["runs/quick/liver/baseline/run_00/summary.json"],
        "evaluate": ["runs/quick/liver/evaluation/test_cases.csv", "runs/quick/liver/evaluation/test_runs.csv"],
        "analysis": ["executed/quick/analysis.ipynb"],
        "report": ["reports/quick/report.html"],
    }
    with pytest.raises(ValueError, match="not a training step"):
        paths.run_folder(Step("prepare", "liver"))


def test_a_step_is_done_only_with_its_record_its_inputs_and_its_outputs(tmp_path):
    paths = StudyPaths(tmp_path, "tiny")
    step = Step("prepare", "spleen")
    record = StepRecord.ended_now(step.step_id, "done", 1.0, None, None, {"n": 1})
    record.write(paths.step_record(step))
    assert not paths.is_done(step, {"n": 1})  # its outputs are missing
    for output in paths.outputs(step):
        output.parent.mkdir(parents=True, exist_ok=True)
        output.touch()
    assert paths.is_done(step, {"n": 1})
    assert not paths.is_done(step, {"n": 2})  # other inputs: done again
