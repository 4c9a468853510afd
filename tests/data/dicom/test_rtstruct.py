"""RTSTRUCT out and in (``l2s_core.data.dicom.rtstruct``): written by l2s and read back by an independent
reader (pydicom + matplotlib), contours of any length (standard DS values, and UN ones another
writer left) round-trip exactly, several ROIs in one structure set, and empty or unnamed
structures or unparseable contour data refused when read."""

from __future__ import annotations

import re
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

from l2s_core.data.dicom.rtstruct import Structure, rasterise, read_rtstruct, write_rtstruct
from l2s_core.data.dicom.series import read_series
from l2s_core.data.io import read_label, to_source_grid


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


def _small_rtstruct(tmp_path: Path):
    """A 16×12×6 series and an l2s RTSTRUCT of a box on it: ``(rtstruct path, meta, series)``."""
    import numpy as np
    from dicom_builder import write_ct_series

    data = np.random.default_rng(0).integers(-1000, 1000, (16, 12, 6)).astype(np.int16)
    write_ct_series(tmp_path / "ct", data, np.diag([-0.8, -0.8, 2.5, 1.0]))
    image, meta, series = read_series(tmp_path / "ct")
    mask = np.zeros(image.shape, np.uint8)
    mask[1:4, 3:8, 4:10] = 1
    write_rtstruct([Structure("Spleen", mask, "test")], meta, series, tmp_path / "rt.dcm")
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
        (_contour_data(["1.0", "2.0", "3.0", "4.0"]), "holds 4 numbers, not a multiple of 3"),
        (_contour_data(["1.0", "NaN", "3.0"]), "holds a value that is not a finite number"),
        (_first_point_at(1e9), "a contour reaches columns"),
    ],
)
def test_ambiguous_or_malformed_structures_are_one_line(tmp_path: Path, edit, says: str) -> None:
    """Two ROIs of one name were merged by exclusive or (the organ lost a slice, exit 0), names
    equal but for case or spaces picked one silently; a point at 1e9 mm asked 5 GiB; a missing
    ROINumber or ContourData not of (x, y, z) triples ended in a traceback."""
    from l2s_core.data.dicom.rtstruct import rasterise, read_rtstruct
    from l2s_core.errors import DicomError

    path, meta, series = _small_rtstruct(tmp_path)
    rt = pydicom.dcmread(path)
    edit(rt)
    rt.save_as(path)
    with pytest.raises(DicomError, match=re.escape(says)) as error:
        structures = read_rtstruct(path)
        rasterise(structures.contours("Spleen"), meta, series, path)
    assert str(error.value).startswith(f"{path}: ")
