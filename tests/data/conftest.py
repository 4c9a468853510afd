"""Fixtures for the data-layer tests: tiny MSD task folders written with nibabel, the real CT example
and DICOM patient folders made from it."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
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


@pytest.fixture
def patient_root(real_ct: Path, tmp_path: Path) -> Path:
    """Two patients with the real CT: p1 has an rt-utils RTSTRUCT with 'SPLEEN' and 'Liver',
    p2 one with only 'Liver' (so it lacks the spleen)."""
    from dicom_builder import CT, SEG, real_spleen, rt_utils_rtstruct, write_nifti_as_series  # skips without pydicom

    root = tmp_path / "dicom"
    liver = np.asarray(nib.load(str(real_ct / SEG)).dataobj) == 5
    for patient, masks in (("p1", {"SPLEEN": real_spleen(real_ct), "Liver": liver}), ("p2", {"Liver": liver})):
        write_nifti_as_series(root / patient / "CT", real_ct / CT)
        rt_utils_rtstruct(root / patient / "CT", masks, root / patient / "rtstruct.dcm")
    return root
