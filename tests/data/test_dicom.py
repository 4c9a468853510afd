"""DICOM series, RTSTRUCT in and out, and ``l2s import-dicom`` on the real CT's spleen, with the
RTSTRUCTs made or read by libraries independent of l2s (rt-utils writes, pydicom + matplotlib read)."""

from __future__ import annotations

import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from cli_runner import assert_one_line_error, run_l2s
from dicom_builder import independent_mask, pydicom, rt_utils_rtstruct, write_nifti_as_series  # skips without pydicom

from l2s_core.data.dicom import read_series
from l2s_core.data.import_dicom import MISSING_FILE
from l2s_core.data.io import read_image, read_label
from l2s_core.data.msd import read_task
from l2s_core.data.rtstruct import write_rtstruct

CT, SEG = "example_ct_sm.nii.gz", "example_seg.nii.gz"


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0, b > 0
    return 2.0 * float((a & b).sum()) / max(float(a.sum() + b.sum()), 1.0)


def _spleen(real_ct: Path) -> np.ndarray:
    return np.asarray(nib.load(str(real_ct / SEG)).dataobj) == 1


@pytest.fixture
def patient_root(real_ct: Path, tmp_path: Path) -> Path:
    """Two patients with the real CT: p1 has an rt-utils RTSTRUCT with 'SPLEEN' and 'Liver',
    p2 one with only 'Liver' (so it lacks the spleen)."""
    root = tmp_path / "dicom"
    liver = np.asarray(nib.load(str(real_ct / SEG)).dataobj) == 5
    for patient, masks in (("p1", {"SPLEEN": _spleen(real_ct), "Liver": liver}), ("p2", {"Liver": liver})):
        write_nifti_as_series(root / patient / "CT", real_ct / CT)
        rt_utils_rtstruct(root / patient / "CT", masks, root / patient / "rtstruct.dcm")
    return root


def test_series_reads_as_the_nifti_it_was_written_from(real_ct: Path, tmp_path: Path) -> None:
    write_nifti_as_series(tmp_path / "ct", real_ct / CT)
    image, meta, series = read_series(tmp_path / "ct")
    expected, expected_meta = read_image(real_ct / CT)
    assert np.array_equal(image, expected)
    assert (
        np.allclose(meta.source_affine, expected_meta.source_affine) and meta.source_shape == expected_meta.source_shape
    )
    assert series.modality == "CT" and len(series.sop_instance_uids) == image.shape[0]


def test_import_dicom_rasterises_the_spleen_like_the_nifti_label(
    real_ct: Path, patient_root: Path, tmp_path: Path, capsys
) -> None:
    task = tmp_path / "Task50_Spleen"
    code, out, err = run_l2s(capsys, "import-dicom", patient_root, "--structure", "milz, Spleen", "--out", task)
    assert code == 0, err
    assert "1 patients imported" in out and "p2" in out and (task / MISSING_FILE).read_text() == "p2\n"
    label, label_meta = read_label(task / "labelsTr" / "p1.nii.gz")
    expected, expected_meta = read_label(real_ct / SEG)
    dice = _dice(label, expected == 1)
    print(f"import-dicom spleen vs NIfTI label: Dice {dice:.4f}", file=sys.stderr)
    assert dice >= 0.95
    assert np.allclose(label_meta.source_affine, expected_meta.source_affine)
    image, _ = read_image(task / "imagesTr" / "p1.nii.gz")
    assert np.array_equal(image, read_image(real_ct / CT)[0])
    assert [c.case_id for c in read_task(task).cases] == ["p1"]  # what l2s prepare reads


def test_rtstruct_written_by_l2s_reads_back_independently(real_ct: Path, tmp_path: Path) -> None:
    write_nifti_as_series(tmp_path / "ct", real_ct / CT)
    image, meta, series = read_series(tmp_path / "ct")
    label, _ = read_label(real_ct / SEG)
    write_rtstruct(label == 1, meta, series, "Spleen", tmp_path / "rt.dcm")
    dice = _dice(independent_mask(tmp_path / "ct", tmp_path / "rt.dcm", "Spleen"), _spleen(real_ct))
    assert dice >= 0.95
    rt = pydicom.dcmread(tmp_path / "rt.dcm")
    assert (
        rt.ReferencedFrameOfReferenceSequence[0]
        .RTReferencedStudySequence[0]
        .RTReferencedSeriesSequence[0]
        .SeriesInstanceUID
        == series.series_uid
    )


def test_rtstruct_referencing_another_series_is_refused(
    real_ct: Path, patient_root: Path, tmp_path: Path, capsys
) -> None:
    ct = patient_root / "p1" / "CT"
    for path in ct.iterdir():
        path.unlink()
    write_nifti_as_series(ct, real_ct / CT)  # a new series UID: the RTSTRUCT now references a series not there
    assert_one_line_error(
        capsys,
        "import-dicom",
        patient_root,
        "--structure",
        "spleen",
        "--out",
        tmp_path / "task",
        names=patient_root / "p1" / "rtstruct.dcm",
        says="references series",
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


def test_no_patient_with_the_structure(patient_root: Path, tmp_path: Path, capsys) -> None:
    assert_one_line_error(
        capsys,
        "import-dicom",
        patient_root,
        "--structure",
        "kidney,nier",
        "--out",
        tmp_path / "task",
        names=patient_root,
        says="kidney or nier",
    )
    assert not (tmp_path / "task").exists()
