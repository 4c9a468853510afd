"""RTSTRUCT out and in (``l2s_core.data.rtstruct``): written by l2s and read back by an independent
reader (pydicom + matplotlib), contours of any length (standard DS values, and UN ones another
writer left) round-trip exactly, several ROIs in one structure set, and empty or unnamed
structures or unparseable contour data refused when read."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from cli_runner import assert_one_line_error, run_l2s
from dicom_builder import (  # skips without pydicom
    CT,
    SEG,
    independent_mask,
    mask_dice,
    pydicom,
    real_spleen,
    write_ct_series,
    write_nifti_as_series,
)

from l2s_core.data.dicom import read_series
from l2s_core.data.io import read_label, to_source_grid
from l2s_core.data.rtstruct import Structure, rasterise, read_rtstruct, write_rtstruct


def test_rtstruct_written_by_l2s_reads_back_independently(real_ct: Path, tmp_path: Path) -> None:
    write_nifti_as_series(tmp_path / "ct", real_ct / CT)
    image, meta, series = read_series(tmp_path / "ct")
    label, _ = read_label(real_ct / SEG)
    write_rtstruct([Structure("Spleen", label == 1, "test")], meta, series, tmp_path / "rt.dcm")
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


def _comb(shape_ij: tuple[int, int], teeth: int, width: int, length: int) -> np.ndarray:
    """A comb on one ``(i, j)`` slice: a spine along i and ``teeth`` teeth of ``width`` columns
    and ``length`` rows, one gap of ``width`` between them (one very long outline)."""
    comb = np.zeros(shape_ij, dtype=bool)
    comb[4 : 4 + 2 * width * teeth, 4:8] = True
    for t in range(teeth):
        comb[4 + 2 * width * t : 4 + 2 * width * t + width, 8 : 8 + length] = True
    return comb


@pytest.fixture(params=["real_ct_grid", "512x512_grid"])
def long_contour_patient(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, np.ndarray]:
    """A patient folder (``p1/CT``) whose series has one comb-shaped organ: on the real CT's grid
    (122×101 pixels, an outline of ~10,000 points) or on a 512×512 grid (~9,000 points).
    Returns the patient root and the mask as a nibabel ``(i, j, k)`` array."""
    if request.param == "real_ct_grid":
        real_ct = request.getfixturevalue("real_ct")
        img = nib.load(str(real_ct / CT))
        data, affine = np.asarray(img.dataobj), img.affine
        comb = _comb(data.shape[:2], teeth=55, width=1, length=85)
    else:
        data = np.zeros((512, 512, 3), dtype=np.int16)
        affine = np.diag([0.7, 0.7, 2.5, 1.0])
        comb = _comb(data.shape[:2], teeth=60, width=2, length=70)
    mask = np.zeros(data.shape[:3], dtype=bool)
    mask[:, :, 1] = comb
    write_ct_series(tmp_path / "dicom" / "p1" / "CT", data, affine)
    return tmp_path / "dicom", mask


def _write_l2s_rtstruct(root: Path, mask_ijk: np.ndarray) -> Path:
    image, meta, series = read_series(root / "p1" / "CT")
    ras = np.asarray(mask_ijk, dtype=np.uint8)
    from l2s_core.data.io import orient_to_ras

    mask = orient_to_ras(ras, np.asarray(meta.source_affine), "mask")[0]
    write_rtstruct([Structure("Comb", mask, "test")], meta, series, root / "p1" / "rtstruct.dcm")
    return root / "p1" / "rtstruct.dcm"


def _l2s_read_back(root: Path, rt_path: Path) -> np.ndarray:
    """The ROI rasterised by l2s, as a nibabel ``(i, j, k)`` array."""
    _, meta, series = read_series(root / "p1" / "CT")
    structures = read_rtstruct(rt_path)
    return to_source_grid(rasterise(structures.contours("Comb"), meta, series, rt_path), meta) > 0


def _import_back(root: Path, tmp_path: Path, capsys) -> np.ndarray:
    task = tmp_path / "task"
    code, _, err = run_l2s(capsys, "import-dicom", root, "--structure", "comb", "--out", task)
    assert code == 0, err
    return np.asarray(nib.load(str(task / "labelsTr" / "p1.nii.gz")).dataobj) > 0


def test_long_contours_round_trip_through_standard_readers(
    long_contour_patient: tuple[Path, np.ndarray], tmp_path: Path, capsys
) -> None:
    root, mask = long_contour_patient
    rt_path = _write_l2s_rtstruct(root, mask)
    rt = pydicom.dcmread(rt_path)  # the standard reader
    element = rt.ROIContourSequence[0].ContourSequence[0]["ContourData"]
    assert element.VR == "DS" and len(element.value) == 3 * int(
        rt.ROIContourSequence[0].ContourSequence[0].NumberOfContourPoints
    )
    assert len(element.value) // 3 > 5000
    assert rt.file_meta.TransferSyntaxUID == pydicom.uid.ImplicitVRLittleEndian
    assert mask_dice(independent_mask(root / "p1" / "CT", rt_path, "Comb"), mask) == 1.0
    assert mask_dice(_l2s_read_back(root, rt_path), mask) == 1.0
    assert mask_dice(_import_back(root, tmp_path, capsys), mask) == 1.0


def test_explicit_vr_file_with_un_contour_data_imports_correctly(
    long_contour_patient: tuple[Path, np.ndarray], tmp_path: Path, capsys
) -> None:
    root, mask = long_contour_patient
    rt_path = _write_l2s_rtstruct(root, mask)
    other = pydicom.dcmread(rt_path)  # another tool re-writes it in explicit VR: pydicom leaves long DS as UN
    other.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    with pytest.warns(UserWarning, match="64 kByte"):
        other.save_as(rt_path, enforce_file_format=True)
    element = pydicom.dcmread(rt_path).ROIContourSequence[0].ContourSequence[0]["ContourData"]
    assert element.VR == "UN" and isinstance(element.value, bytes)
    assert mask_dice(_l2s_read_back(root, rt_path), mask) == 1.0
    assert mask_dice(_import_back(root, tmp_path, capsys), mask) == 1.0


@pytest.mark.parametrize(
    ("value", "says"), [(b"1.0\\2.5\\x7\\", "not a backslash-separated"), (b"1.0\\2.0", "multiple of 3")]
)
def test_unparseable_un_contour_data_is_one_line(
    patient_root: Path, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch, value: bytes, says: str
) -> None:
    path = patient_root / "p1" / "rtstruct.dcm"
    rt = pydicom.dcmread(path)
    number = next(int(r.ROINumber) for r in rt.StructureSetROISequence if r.ROIName == "SPLEEN")
    roi = next(r for r in rt.ROIContourSequence if int(r.ReferencedROINumber) == number)
    from pydicom.dataelem import DataElement

    with monkeypatch.context() as patch:  # as another writer would leave it: UN, not converted to DS
        patch.setattr(pydicom.config, "replace_un_with_known_vr", False)
        roi.ContourSequence[0]["ContourData"] = DataElement(0x30060050, "UN", value)
        rt.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
        rt.save_as(path)
        assert pydicom.dcmread(path).ROIContourSequence[0].ContourSequence[0]["ContourData"].VR == "UN"
    assert_one_line_error(
        capsys, "import-dicom", patient_root, "--structure", "spleen", "--out", tmp_path / "task", names=path, says=says
    )


def test_several_structures_in_one_set_overlap_with_distinct_colours(real_ct: Path, tmp_path: Path) -> None:
    write_nifti_as_series(tmp_path / "ct", real_ct / CT)
    _, meta, series = read_series(tmp_path / "ct")
    label, _ = read_label(real_ct / SEG)
    body = np.zeros_like(label, dtype=bool)
    body[2:-2, 10:-10, 10:-10] = True  # overlaps both organs
    masks = {"Spleen": label == 1, "Liver": label == 5, "Body": body}
    write_rtstruct([Structure(n, m, f"model {n}") for n, m in masks.items()], meta, series, tmp_path / "rt.dcm")
    rt = pydicom.dcmread(tmp_path / "rt.dcm")
    assert [r.ROIName for r in rt.StructureSetROISequence] == list(masks)
    assert [r.ROIGenerationAlgorithm for r in rt.StructureSetROISequence] == ["AUTOMATIC"] * 3
    assert [r.ROIGenerationDescription for r in rt.StructureSetROISequence] == [f"model {n}" for n in masks]
    assert {o.RTROIInterpretedType for o in rt.RTROIObservationsSequence} == {"ORGAN"}
    assert len({tuple(r.ROIDisplayColor) for r in rt.ROIContourSequence}) == 3
    assert "generated automatically" in rt.StructureSetDescription
    structures = read_rtstruct(tmp_path / "rt.dcm")
    for name, mask in masks.items():
        back = rasterise(structures.contours(name), meta, series, tmp_path / "rt.dcm")
        assert mask_dice(back, mask) >= 0.95
        assert (
            mask_dice(independent_mask(tmp_path / "ct", tmp_path / "rt.dcm", name), to_source_grid(mask, meta)) >= 0.95
        )
