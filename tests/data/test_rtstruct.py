"""RTSTRUCT out and in (``l2s_core.data.rtstruct``): written by l2s and read back by an independent
reader (pydicom + matplotlib), and empty or unnamed structures refused when read."""

from __future__ import annotations

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
