"""Fixtures of the viewer tests: the prepared cube task and a new scan (the trained study's model
folder, ``model_dir``, is in ``tests/conftest.py``)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from msd_builder import CUBE_ORGAN, CUBE_SHAPE

from l2s_core.data.cache import PreparedTask

#: Scan shape in nibabel (x, y, z) order, stored LPS so that the explorer's RAS array is flipped.
SCAN_XYZ = (30, 34, 14)


@pytest.fixture
def task(prepared_task) -> PreparedTask:
    return prepared_task(shape=CUBE_SHAPE, organ=CUBE_ORGAN)


@pytest.fixture(scope="module")
def scan(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bright box on noise (like the training cases of the tiny study), stored LPS."""
    rng = np.random.default_rng(1)
    label = np.zeros(SCAN_XYZ, np.float32)
    label[9:23, 12:26, 4:10] = 1.0
    image = (100.0 * label + rng.normal(0, 20, SCAN_XYZ)).astype(np.float32)
    affine = np.diag([-1.5, -1.5, 3.0, 1.0])
    path = tmp_path_factory.mktemp("scans") / "new_patient.nii.gz"
    nib.save(nib.Nifti1Image(image, affine), path)
    return path
