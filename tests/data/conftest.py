"""Fixtures for the data-layer tests: tiny MSD task folders written with nibabel."""

from __future__ import annotations

from pathlib import Path

import pytest
from msd_builder import REAL_CT, write_small_task


@pytest.fixture
def small_task(tmp_path: Path) -> Path:
    """A five-case MSD task (see :func:`msd_builder.write_small_task`)."""
    return write_small_task(tmp_path / "Task99_Box")


@pytest.fixture
def real_ct() -> Path:
    """The TotalSegmentator example CT folder in ../shared (skips when it is absent)."""
    if not (REAL_CT / "example_ct_sm.nii.gz").exists():
        pytest.skip(f"real CT example not found at {REAL_CT} (the shared data folder sits beside the project)")
    return REAL_CT
