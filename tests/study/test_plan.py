"""The study plan: units, their needs and which steps are ready (no notebook is run)."""

from pathlib import Path

import yaml

from l2s_core.study.layout import StudyPaths
from l2s_core.study.params import load_study_params
from l2s_core.study.plan import BLOCKED, PENDING, StudyPlan
from l2s_core.study.step_records import DONE, FAILED


def _plan(tmp_path: Path) -> StudyPlan:
    path = tmp_path / "tiny.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "data": "phantom",
                "organs": ["spleen", "liver"],
                "networks": ["organ"],
                "runs": 1,
                "max_runs": 2,
                "evaluate": {"splits": ["val"]},
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
