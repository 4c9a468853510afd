"""The study plan: units, their needs and which steps are ready (no notebook is run)."""

from pathlib import Path

import yaml
from study_folder import run_summary

from l2s_core.study.layout import Step, StudyPaths
from l2s_core.study.params import load_study_params
from l2s_core.study.plan import BLOCKED, PENDING, StudyPlan
from l2s_core.study.step_records import DONE, FAILED, StepRecord
from l2s_core.train.run_files import BEST_FILE, SUMMARY_FILE


def _plan(tmp_path: Path, splits: tuple[str, ...] = ("val",)) -> StudyPlan:
    path = tmp_path / "tiny.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "data": "phantom",
                "organs": ["spleen", "liver"],
                "networks": ["organ"],
                "runs": 1,
                "max_runs": 2,
                "evaluate": {"splits": list(splits)},
            }
        )
    )
    params = load_study_params(path)
    return StudyPlan(params, StudyPaths(tmp_path, params.study), with_analysis=True)


def _finish(plan: StudyPlan, unit_id: str, succeeded: bool) -> None:
    step = plan.units[unit_id].next_step()
    plan.start(step)
    plan.finish(step, succeeded, None if succeeded else "Error: broken")


def test_a_fresh_plan_starts_with_preparation(tmp_path):
    plan = _plan(tmp_path)
    assert [s.step_id for s in plan.ready()] == ["prepare/spleen", "prepare/liver"]
    assert plan.units["analysis"].needs == ["evaluate/spleen/val", "evaluate/liver/val"]


def test_analysis_runs_over_what_finished_when_one_organ_fails(tmp_path):
    plan = _plan(tmp_path)
    plan.units["prepare/spleen"].state = DONE
    plan.units["train/spleen/organ"].state = DONE
    _finish(plan, "prepare/liver", succeeded=False)
    assert plan.units["train/liver/organ"].state == BLOCKED
    assert plan.units["evaluate/liver/val"].state == BLOCKED
    assert plan.units["analysis"].state == PENDING  # it waits for the spleen's evaluation
    assert [s.step_id for s in plan.ready()] == ["evaluate/spleen/val"]
    plan.units["evaluate/spleen/val"].state = DONE
    assert [s.step_id for s in plan.ready()] == ["analysis"]


def test_analysis_is_blocked_when_every_evaluation_fails(tmp_path):
    plan = _plan(tmp_path)
    for unit_id in ("prepare/spleen", "prepare/liver", "train/spleen/organ", "train/liver/organ"):
        plan.units[unit_id].state = DONE
    _finish(plan, "evaluate/spleen/val", succeeded=False)
    assert plan.units["analysis"].state == PENDING
    _finish(plan, "evaluate/liver/val", succeeded=False)
    assert plan.units["analysis"].state == plan.units["report"].state == BLOCKED
    assert plan.units["evaluate/liver/val"].state == FAILED and plan.ready() == []


def _done_on_disk(plan: StudyPlan, step: Step) -> None:
    """A done record of ``step`` with the plan's inputs, and the step's outputs."""
    StepRecord.ended_now(step.step_id, DONE, 1.0, None, None, plan.inputs(step)).write(plan.paths.step_record(step))
    for output in plan.paths.outputs(step):
        output.parent.mkdir(parents=True, exist_ok=True)
        output.touch()


def _converged_run_on_disk(plan: StudyPlan, organ: str, run: int, best_weights: bool = True) -> None:
    """A done training run whose summary says converged (with ``best.pt`` unless told otherwise)."""
    step = Step("train", organ, "organ", run=run)
    _done_on_disk(plan, step)
    run_summary("organ", run, converged=True).write(plan.paths.run_folder(step) / SUMMARY_FILE)
    if best_weights:
        (plan.paths.run_folder(step) / BEST_FILE).touch()


def test_a_run_without_best_weights_does_not_count_as_converged(tmp_path):
    plan = _plan(tmp_path)
    _done_on_disk(plan, Step("prepare", "spleen"))
    _converged_run_on_disk(plan, "spleen", 0, best_weights=False)
    chain = _plan(tmp_path).units["train/spleen/organ"]
    assert (chain.made, chain.converged, chain.state) == (1, 0, PENDING)
    _converged_run_on_disk(plan, "spleen", 1)
    chain = _plan(tmp_path).units["train/spleen/organ"]
    assert (chain.made, chain.converged, chain.state) == (2, 1, DONE)


def test_adding_a_split_keeps_the_done_evaluations_done(tmp_path):
    plan = _plan(tmp_path)
    for organ in ("spleen", "liver"):
        _done_on_disk(plan, Step("prepare", organ))
        _converged_run_on_disk(plan, organ, 0)
    plan = _plan(tmp_path)
    assert plan.units["train/spleen/organ"].state == DONE
    _done_on_disk(plan, Step("evaluate", "spleen", split="val"))
    assert _plan(tmp_path).units["evaluate/spleen/val"].state == DONE
    with_test = _plan(tmp_path, splits=("val", "test"))
    assert with_test.units["evaluate/spleen/val"].state == DONE
    assert with_test.units["evaluate/spleen/test"].state == PENDING
    assert with_test.inputs(Step("analysis"))["evaluate"]["splits"] == ["val", "test"]
