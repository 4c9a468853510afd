"""DICOM series read as the NIfTI they were written from (``l2s_core.data.dicom``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from dicom_builder import CT, write_nifti_as_series  # skips without pydicom

from l2s_core.data.dicom import read_series
from l2s_core.data.io import read_image


def test_series_reads_as_the_nifti_it_was_written_from(real_ct: Path, tmp_path: Path) -> None:
    write_nifti_as_series(tmp_path / "ct", real_ct / CT)
    image, meta, series = read_series(tmp_path / "ct")
    expected, expected_meta = read_image(real_ct / CT)
    assert np.array_equal(image, expected)
    assert (
        np.allclose(meta.source_affine, expected_meta.source_affine) and meta.source_shape == expected_meta.source_shape
    )
    assert series.modality == "CT" and len(series.sop_instance_uids) == image.shape[0]
