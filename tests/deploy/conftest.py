"""Fixtures of the deploy tests: the real CT example (the trained study and its model folder,
``study_dir`` and ``model_dir``, are in ``tests/conftest.py``, shared with the viewer tests)."""

from __future__ import annotations

from pathlib import Path

import pytest
from msd_builder import REAL_CT


@pytest.fixture(scope="session")
def real_ct() -> Path:
    """The TotalSegmentator example CT folder in ../shared (skips when it is absent)."""
    if not (REAL_CT / "example_ct_sm.nii.gz").exists():
        pytest.skip(f"real CT example not found at {REAL_CT} (the shared data folder sits beside the project)")
    return REAL_CT
