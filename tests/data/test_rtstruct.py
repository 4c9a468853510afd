"""RTSTRUCT out and in (``l2s_core.data.rtstruct``): written by l2s and read back by an independent
reader (pydicom + matplotlib), and empty or unnamed structures refused when read."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from cli_runner import assert_one_line_error
from dicom_builder import (  # skips without pydicom
    CT,
    SEG,
    independent_mask,
    mask_dice,
    pydicom,
    real_spleen,
    write_nifti_as_series,
)

from l2s_core.data.dicom import read_series
from l2s_core.data.io import read_label
from l2s_core.data.rtstruct import write_rtstruct


def test_rtstruct_written_by_l2s_reads_back_independently(real_ct: Path, tmp_path: Path) -> None:
    write_nifti_as_series(tmp_path / "ct", real_ct / CT)
    image, meta, series = read_series(tmp_path / "ct")
    label, _ = read_label(real_ct / SEG)
    write_rtstruct(label == 1, meta, series, "Spleen", tmp_path / "rt.dcm")
    dice = mask_dice(independent_mask(tmp_path / "ct", tmp_path / "rt.dcm", "Spleen"), real_spleen(real_ct))
    assert dice >= 0.95
    rt = pydicom.dcmread(tmp_path / "rt.dcm")
    assert (
        rt.ReferencedFrameOfReferenceSequence[0]
        .RTReferencedStudySequence[0]
        .RTReferencedSeriesSequence[0]
        .SeriesInstanceUID
        == series.series_uid
    )


@pytest.mark.parametrize(("edit", "says"), [("empty", "is empty"), ("unnamed", "has no name")])
def test_empty_or_unnamed_structure_is_refused(
    patient_root: Path, tmp_path: Path, capsys, edit: str, says: str
) -> None:
    path = patient_root / "p1" / "rtstruct.dcm"
    rt = pydicom.dcmread(path)
    number = next(int(r.ROINumber) for r in rt.StructureSetROISequence if r.ROIName == "SPLEEN")
    if edit == "empty":
        del next(r for r in rt.ROIContourSequence if int(r.ReferencedROINumber) == number).ContourSequence
    else:
        next(r for r in rt.StructureSetROISequence if r.ROIName == "Liver").ROIName = ""
    rt.save_as(path)
    assert_one_line_error(
        capsys, "import-dicom", patient_root, "--structure", "spleen", "--out", tmp_path / "task", names=path, says=says
    )


def _small_rtstruct(tmp_path: Path):
    """A 16×12×6 series and an l2s RTSTRUCT of a box on it: ``(rtstruct path, meta, series)``."""
    import numpy as np
    from dicom_builder import write_ct_series

    data = np.random.default_rng(0).integers(-1000, 1000, (16, 12, 6)).astype(np.int16)
    write_ct_series(tmp_path / "ct", data, np.diag([-0.8, -0.8, 2.5, 1.0]))
    image, meta, series = read_series(tmp_path / "ct")
    mask = np.zeros(image.shape, np.uint8)
    mask[1:4, 3:8, 4:10] = 1
    write_rtstruct(mask, meta, series, "Spleen", tmp_path / "rt.dcm")
    return tmp_path / "rt.dcm", meta, series


def _second_roi_named(name: str):
    def edit(rt) -> None:
        from copy import deepcopy

        roi, contours = deepcopy(rt.StructureSetROISequence[0]), deepcopy(rt.ROIContourSequence[0])
        roi.ROINumber, roi.ROIName, contours.ReferencedROINumber = 2, name, 2
        del contours.ContourSequence[1]  # the same organ one slice short: merged by XOR it lost a slice
        rt.StructureSetROISequence.append(roi)
        rt.ROIContourSequence.append(contours)

    return edit


def _contour_data(values: list[str]):
    def edit(rt) -> None:
        contour = rt.ROIContourSequence[0].ContourSequence[0]
        contour.ContourData = values
        contour.NumberOfContourPoints = len(values) // 3

    return edit


def _first_point_at(x_mm: float):
    def edit(rt) -> None:
        contour = rt.ROIContourSequence[0].ContourSequence[0]
        contour.ContourData = [f"{x_mm:g}", *contour.ContourData[1:]]

    return edit


@pytest.mark.parametrize(
    ("edit", "says"),
    [
        (
            _second_roi_named("Spleen"),
            "ambiguous structure names (equal ignoring case and spaces): 'Spleen' and 'Spleen'",
        ),
        (_second_roi_named(" SPLEEN"), "'Spleen' and 'SPLEEN'"),
        (_second_roi_named("S pleen"), "'Spleen' and 'S pleen'"),
        (lambda rt: delattr(rt.StructureSetROISequence[0], "ROINumber"), "an item without a valid ROINumber"),
        (_contour_data(["1.0", "2.0", "3.0", "4.0"]), "ContourData of 4 numbers, not finite (x, y, z) triples"),
        (_contour_data(["1.0", "NaN", "3.0"]), "ContourData of 3 numbers, not finite"),
        (_first_point_at(1e9), "a contour reaches columns"),
    ],
)
def test_ambiguous_or_malformed_structures_are_one_line(tmp_path: Path, edit, says: str) -> None:
    """Two ROIs of one name were merged by exclusive or (the organ lost a slice, exit 0), names
    equal but for case or spaces picked one silently; a point at 1e9 mm asked 5 GiB; a missing
    ROINumber or ContourData not of (x, y, z) triples ended in a traceback."""
    from l2s_core.data.rtstruct import rasterise, read_rtstruct
    from l2s_core.errors import DicomError

    path, meta, series = _small_rtstruct(tmp_path)
    rt = pydicom.dcmread(path)
    edit(rt)
    rt.save_as(path)
    with pytest.raises(DicomError, match=re.escape(says)) as error:
        structures = read_rtstruct(path)
        rasterise(structures.contours("Spleen"), meta, series, path)
    assert str(error.value).startswith(f"{path}: ")
