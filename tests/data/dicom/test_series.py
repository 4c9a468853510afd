"""DICOM series read as the NIfTI they were written from (``l2s_core.data.dicom.series``)."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from dicom_builder import CT, write_ct_series, write_nifti_as_series  # skips without pydicom

from l2s_core.data.dicom.series import read_series
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


def _small_series(folder: Path) -> list[Path]:
    data = np.random.default_rng(0).integers(-1000, 1000, (16, 12, 6)).astype(np.int16)
    write_ct_series(folder, data, np.diag([-0.8, -0.8, 2.5, 1.0]))
    return sorted(folder.iterdir())


def _edit_slice(path: Path, edit) -> None:
    from dicom_builder import pydicom

    ds = pydicom.dcmread(path)
    edit(ds)
    ds.save_as(path)


def _raw(keyword: str, value: bytes):
    """An edit that stores ``value`` as the DS element ``keyword`` unchecked (as another writer could)."""
    from pydicom.datadict import tag_for_keyword
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import Tag

    def edit(ds) -> None:
        tag = Tag(tag_for_keyword(keyword))
        ds._dict[tag] = RawDataElement(tag, "DS", len(value), value, 0, False, True)

    return edit


def _shift_in_plane(ds) -> None:
    ds.ImagePositionPatient = [float(ds.ImagePositionPatient[0]) + 40.0, *map(float, ds.ImagePositionPatient[1:])]


@pytest.mark.parametrize(
    "edit, says",
    [
        (lambda ds: setattr(ds, "Rows", 30000) or setattr(ds, "Columns", 30000), "Rows × Columns 30000×30000"),
        (lambda ds: delattr(ds, "Rows"), "Rows × Columns 0×16"),
        (lambda ds: delattr(ds, "SOPClassUID"), "an image slice without SOPClassUID"),
        (lambda ds: setattr(ds, "RescaleSlope", "1e308") or setattr(ds, "RescaleIntercept", "1e308"), "infinite"),
        (lambda ds: setattr(ds, "RescaleSlope", "inf"), "RescaleSlope is not finite"),
        (_raw("RescaleIntercept", b"one "), "RescaleIntercept is not a number"),
        (_raw("PixelSpacing", b"0.8\\abc "), "PixelSpacing holds a value that is not a number"),
        (_shift_in_plane, r"the slices are not stacked on one line: slice_00.\.dcm lies"),
    ],
)
def test_bad_or_hostile_slice_header_is_one_line(tmp_path: Path, edit, says: str) -> None:
    """A header that would allocate 33.5 GiB, a rescale that makes every pixel infinite (predicted
    on an all-NaN image, exit 0), a slice 40 mm aside, missing or unparseable attributes (tracebacks):
    each is one DicomError naming the file or series."""
    from l2s_core.errors import DicomError

    files = _small_series(tmp_path / "ct")
    _edit_slice(files[0], edit)
    with pytest.raises(DicomError, match=says):
        read_series(tmp_path / "ct")


def test_series_larger_than_the_available_memory_is_refused_before_reading(tmp_path: Path, monkeypatch) -> None:
    import l2s_core.processes
    from l2s_core.errors import DicomError

    _small_series(tmp_path / "ct")
    monkeypatch.setattr(l2s_core.processes, "available_memory", lambda: 16 * 12 * 6 * 4)  # one copy, not two
    with pytest.raises(DicomError, match=r"the 6×12×16 float32 series needs .* GiB of memory"):
        read_series(tmp_path / "ct")


def test_gantry_tilted_series_is_read_and_written_with_one_consistent_header(tmp_path: Path) -> None:
    """A tilted series has a sheared affine, which a NIfTI qform cannot hold: the mask is written
    with its sform and qform code 0, never with a qform that disagrees with the sform."""
    import nibabel as nib

    from l2s_core.data.io import write_mask

    affine = np.diag([-0.8, -0.8, 2.5, 1.0])
    affine[1, 2] = 0.5  # each slice 0.5 mm further in y: a gantry tilt of about 11°
    data = np.random.default_rng(0).integers(-1000, 1000, (16, 12, 6)).astype(np.int16)
    write_ct_series(tmp_path / "ct", data, affine)
    image, meta, _ = read_series(tmp_path / "ct")
    write_mask(image > 0, meta, tmp_path / "mask.nii.gz")
    written = nib.load(tmp_path / "mask.nii.gz")
    sform, sform_code = written.get_sform(coded=True)
    qform, qform_code = written.get_qform(coded=True)
    assert sform_code == 1 and np.allclose(sform, meta.source_affine, atol=1e-4)
    assert qform_code == 0 or np.allclose(qform, sform, atol=1e-4)
