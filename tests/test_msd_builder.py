"""The test run's own checks (run by tests/conftest.py)."""

from pathlib import Path

import pytest
from msd_builder import REAL_CT, REAL_HIPPOCAMPUS, require_real_ct_in_ci, require_real_hippocampus_in_ci


def test_missing_real_ct_fails_the_run_in_ci_only(tmp_path: Path) -> None:
    with pytest.raises(pytest.UsageError, match="CI is set but the real CT example is missing"):
        require_real_ct_in_ci({"CI": "true"}, tmp_path)
    require_real_ct_in_ci({}, tmp_path)  # outside CI its tests skip, with the reason printed by -rs
    if (REAL_CT / "example_ct_sm.nii.gz").is_file():
        require_real_ct_in_ci({"CI": "true"}, REAL_CT)


def test_missing_real_msd_task_fails_the_run_in_ci_only(tmp_path: Path) -> None:
    with pytest.raises(pytest.UsageError, match="CI is set but the real MSD task Task04_Hippocampus is missing"):
        require_real_hippocampus_in_ci({"CI": "true"}, tmp_path)
    require_real_hippocampus_in_ci({}, tmp_path)
    if (REAL_HIPPOCAMPUS / "dataset.json").is_file():
        require_real_hippocampus_in_ci({"CI": "true"}, REAL_HIPPOCAMPUS)
