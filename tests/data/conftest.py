"""Fixtures for the data-layer tests: tiny MSD task folders written with nibabel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from msd_builder import REAL_CT, write_case, write_dataset_json

@pytest.fixture
def small_task(tmp_path: Path) -> Path:
    """A five-case MSD task, (x, y, z) = (24, 20, 12) LPS, a box organ with a tumour label 2."""
    root = tmp_path / "Task99_Box"
    rng = np.random.default_rng(0)
    ids = [f"box_{i}" for i in range(5)]
    for i, case_id in enumerate(ids):
        image = rng.normal(0, 100, (24, 20, 12)).astype(np.int16)
        label = np.zeros((24, 20, 12), np.uint8)
        label[4 + i:12 + i, 5:11, 2:7] = 1
        label[6 + i:8 + i, 6:8, 3:5] = 2
        image[label > 0] += 300
        write_case(root, case_id, image, label)
    write_dataset_json(root, ids)
    return root


@pytest.fixture
def real_ct() -> Path:
    """The TotalSegmentator example CT folder in ../shared (skips when it is absent)."""
    if not (REAL_CT / "example_ct_sm.nii.gz").exists():
        pytest.skip(f"real CT example not found at {REAL_CT} (the shared data folder sits beside the project)")
    return REAL_CT
