"""DICOM series read as the NIfTI they were written from (``l2s_core.data.dicom``)."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
from dicom_builder import CT, write_ct_series, write_nifti_as_series  # skips without pydicom

from l2s_core.data.dicom import read_series
from l2s_core.data.io import orient_to_ras, read_image


def test_series_reads_as_the_nifti_it_was_written_from(real_ct: Path, tmp_path: Path) -> None:
    write_nifti_as_series(tmp_path / "ct", real_ct / CT)
    image, meta, series = read_series(tmp_path / "ct")
    expected, expected_meta = read_image(real_ct / CT)
    assert np.array_equal(image, expected)
    assert (
        np.allclose(meta.source_affine, expected_meta.source_affine) and meta.source_shape == expected_meta.source_shape
    )
    assert series.modality == "CT" and len(series.sop_instance_uids) == image.shape[0]


def test_series_read_holds_little_more_than_the_volume(tmp_path: Path) -> None:
    """The slices go straight into one float32 volume, reoriented with one copy: no list of
    decoded datasets, float32 slices and a stacked copy besides (which peaked near 4× the volume)."""
    data = np.random.default_rng(0).integers(-1000, 2000, (128, 128, 64)).astype(np.int16)
    affine = np.diag([-0.8, -0.8, 2.5, 1.0])  # an axial DICOM series: flipped in x and y to RAS
    write_ct_series(tmp_path / "ct", data, affine)
    expected, _ = orient_to_ras(data.astype(np.float32), affine, tmp_path)
    read_series(tmp_path / "ct")  # pydicom's first pixel decoding imports its handlers: not counted
    tracemalloc.start()
    try:
        image, _, _ = read_series(tmp_path / "ct")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert image.shape == (64, 128, 128) and image.dtype == np.float32
    assert np.array_equal(image, expected)
    assert peak < 2.5 * image.nbytes, f"peak {peak / image.nbytes:.2f}× the volume"
