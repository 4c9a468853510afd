"""Reading a study folder into data frames (``l2s_core.results.study_results``), on the synthetic study
of ``study_folder.synthetic_study``."""

from __future__ import annotations

from pathlib import Path

import pytest
from study_folder import DICE, RUNS, synthetic_study

from l2s_core.errors import ConfigError, InputDataError
from l2s_core.files import atomic_write_json, read_json
from l2s_core.results.study_results import SUMMARY_COLUMNS, load_study
from l2s_core.study.params import StudyParams
from l2s_core.train.run_files import BEST_FILE, RunSummary


def test_load_study_reads_organs_in_study_order_and_skips_unfinished_runs(tmp_path: Path) -> None:
    data = load_study(synthetic_study(tmp_path))
    assert data.organs == ("spleen", "heart")
    assert len(data.summaries) == sum(len(runs) for organ in RUNS.values() for runs in organ.values())
    assert 4 not in set(data.summaries.loc[data.summaries["organ"] == "spleen", "run"])
    assert len(data.runs) == sum(len(v) for organ in DICE.values() for split in organ.values() for v in split.values())
    assert data.cases["case_id"].map(type).eq(str).all()


def test_an_organ_dropped_from_the_study_file_is_not_in_the_study(tmp_path: Path) -> None:
    study = synthetic_study(tmp_path)
    snapshot = study / "study_params.json"
    atomic_write_json(  # spleen dropped, kidney new
        snapshot, {**read_json(snapshot), "organs": ["heart", "kidney"], "task_folders": {"kidney": "Task02_Heart"}}
    )
    data = load_study(study)
    assert data.organs == ("heart",)
    assert data.datasets["organ"].tolist() == ["heart"]
    for table in (data.summaries, data.cases, data.runs):
        assert set(table["organ"]) == {"heart"}
    atomic_write_json(
        snapshot, {**read_json(snapshot), "organs": ["kidney"], "task_folders": {"kidney": "Task02_Heart"}}
    )
    with pytest.raises(InputDataError, match="none of the study's organs is prepared"):
        load_study(study)


def test_load_study_without_prepared_organ_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(InputDataError, match="no prepared organ"):
        load_study(tmp_path)
    with pytest.raises(InputDataError, match="not found"):
        load_study(tmp_path / "missing")


def test_failed_and_blocked_steps_of_the_last_run_are_listed(tmp_path: Path) -> None:
    study = synthetic_study(tmp_path)
    atomic_write_json(
        study / "status.json",
        {
            "units": {
                "prepare/spleen": {"state": "done"},
                "prepare/kidney": {"state": "failed", "error": "InputDataError: case_3.nii.gz: truncated"},
                "evaluate/kidney/val": {"state": "blocked"},
            }
        },
    )
    failures = load_study(study).failures
    assert failures.to_dict("records") == [
        {"unit": "prepare/kidney", "state": "failed", "error": "InputDataError: case_3.nii.gz: truncated"},
        {"unit": "evaluate/kidney/val", "state": "blocked", "error": ""},
    ]


def test_summary_columns_are_fields_of_the_run_summary(tmp_path: Path) -> None:
    data = load_study(synthetic_study(tmp_path))
    fields = set(RunSummary.__dataclass_fields__)
    assert set(SUMMARY_COLUMNS[3:]) <= fields and list(data.summaries.columns) == list(SUMMARY_COLUMNS)


def test_a_run_without_best_weights_is_not_converged(tmp_path: Path) -> None:
    """Converged as evaluation counts it: the summary says so and ``best.pt`` exists."""
    study = synthetic_study(tmp_path)
    (study / "heart" / "organ" / "run_00" / BEST_FILE).unlink()
    summaries = load_study(study).summaries.set_index(["organ", "network", "run"])
    assert not summaries.loc[("heart", "organ", 0), "converged"]
    assert summaries.loc[("heart", "organ", 1), "converged"]


def test_a_snapshot_with_a_wrong_type_stops_with_one_line_naming_it(tmp_path: Path) -> None:
    study = synthetic_study(tmp_path)
    snapshot = study / "study_params.json"
    atomic_write_json(snapshot, {**read_json(snapshot), "runs": "ten"})
    with pytest.raises(ConfigError) as caught:
        load_study(study)
    assert str(caught.value) == f"{snapshot}: runs: expected int, got str 'ten'"


def test_the_snapshot_is_read_as_the_study_parameters(tmp_path: Path) -> None:
    study = synthetic_study(tmp_path)
    params = load_study(study).study_params
    assert isinstance(params, StudyParams)
    assert params.data == "phantom" and params.phantom.shape == (12, 16, 16) and params.organs == ("spleen", "heart")
