"""``l2s predict`` with several model folders on a DICOM series: one RTSTRUCT with a TG-263-named ROI
per organ, one DICOM-SEG with a SNOMED-coded segment per organ (read back with highdicom and with
pydicom), a label map beside the per-organ masks, one predictions.csv row per scan and organ, and
each scan read and normalised once."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from cli_runner import assert_one_line_error, run_l2s

from l2s_core import __version__
from l2s_core.deploy.model_folder import CARD_FILE, sha256_of
from l2s_core.deploy.predict import PREDICTION_COLUMNS

CT = "example_ct_sm.nii.gz"


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0, b > 0
    return 2.0 * float((a & b).sum()) / max(float(a.sum() + b.sum()), 1.0)


@pytest.fixture(scope="module")
def series_dir(real_ct: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from dicom_builder import write_nifti_as_series

    folder = tmp_path_factory.mktemp("dicom") / "patient_1"
    write_nifti_as_series(folder, real_ct / CT)
    return folder


@pytest.fixture(scope="module")
def liver_dir(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The spleen model folder again, its card naming the liver (a second organ of the same
    normalisation: its networks are the spleen's, so the two organs overlap entirely)."""
    folder = tmp_path_factory.mktemp("models") / "liver"
    shutil.copytree(model_dir, folder)
    card = json.loads((folder / CARD_FILE).read_text())
    card["organ"], card["labels"] = "liver", {"0": "background", "1": "liver"}
    (folder / CARD_FILE).write_text(json.dumps(card))
    return folder


@pytest.fixture(scope="module")
def two_organs(model_dir: Path, liver_dir: Path, series_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """``l2s predict spleen liver patient_1 --dicom-seg``, counting the reads and normalisations."""
    pytest.importorskip("highdicom", reason="DICOM-SEG needs the dicom extra (highdicom)")
    import l2s_core.deploy.scan_input as scan_input

    counts = {"read_series": 0, "normalise": 0}

    def counted(name, function):
        def wrapper(*args, **kwargs):
            counts[name] += 1
            return function(*args, **kwargs)

        return wrapper

    out = tmp_path_factory.mktemp("out")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(scan_input, "read_series", counted("read_series", scan_input.read_series))
        patch.setattr(scan_input, "normalise", counted("normalise", scan_input.normalise))
        from l2s_core.cli import main

        code = main(["predict", str(model_dir), str(liver_dir), str(series_dir), "--out", str(out), "--dicom-seg"])
    assert code == 0
    return out, counts


def test_one_row_per_organ_and_each_scan_read_and_normalised_once(two_organs, model_dir: Path) -> None:
    out, counts = two_organs
    table = pd.read_csv(out / "predictions.csv")
    assert list(table.columns) == list(PREDICTION_COLUMNS)
    assert list(table["structure"]) == ["Spleen", "Liver"] and list(table["label"]) == [1, 2]
    assert (table["box_grows"] >= 0).all() and set(table["fallback"]) <= {"none", "whole_image"}
    # read once to check every input before anything is written, once to
    # segment: never once per organ; normalised once for both organs (one normalisation)
    assert counts == {"read_series": 2, "normalise": 1}
    spleen = np.asarray(nib.load(str(out / "patient_1_Spleen.nii.gz")).dataobj)
    liver = np.asarray(nib.load(str(out / "patient_1_Liver.nii.gz")).dataobj)
    label_map = np.asarray(nib.load(str(out / "patient_1.nii.gz")).dataobj)
    assert spleen.any() and np.array_equal(spleen, liver)  # the same networks: the organs overlap entirely
    assert np.array_equal(label_map, spleen)  # overlaps keep the first organ given (label 1)
    assert table["volume_ml"].iloc[0] == pytest.approx(table["volume_ml"].iloc[1])


def test_one_rtstruct_with_a_tg263_roi_per_organ(two_organs, series_dir: Path) -> None:
    from dicom_builder import independent_mask, pydicom

    out, _ = two_organs
    rt = pydicom.dcmread(out / "patient_1_rtstruct.dcm")
    assert [r.ROIName for r in rt.StructureSetROISequence] == ["Spleen", "Liver"]
    assert {o.RTROIInterpretedType for o in rt.RTROIObservationsSequence} == {"ORGAN"}
    assert len({tuple(r.ROIDisplayColor) for r in rt.ROIContourSequence}) == 2
    descriptions = [r.ROIGenerationDescription for r in rt.StructureSetROISequence]
    assert descriptions[0].startswith(f"l2s {__version__} spleen model ")
    assert descriptions[1].startswith(f"l2s {__version__} liver model ")
    for name in ("Spleen", "Liver"):
        mask = np.asarray(nib.load(str(out / f"patient_1_{name}.nii.gz")).dataobj)
        assert _dice(independent_mask(series_dir, out / "patient_1_rtstruct.dcm", name), mask) >= 0.95


def test_one_seg_with_a_snomed_segment_per_organ_reads_back(
    two_organs, series_dir: Path, model_dir: Path, liver_dir: Path
) -> None:
    import highdicom as hd
    from dicom_builder import pydicom

    out, _ = two_organs
    path = out / "patient_1_seg.dcm"
    slices = {ds.SOPInstanceUID: ds for ds in (pydicom.dcmread(p) for p in series_dir.iterdir())}
    order = sorted(slices, key=lambda uid: int(slices[uid].InstanceNumber))  # slice k of the NIfTI
    masks = {n: np.asarray(nib.load(str(out / f"patient_1_{n}.nii.gz")).dataobj) > 0 for n in ("Spleen", "Liver")}
    shas = {"Spleen": sha256_of(model_dir / CARD_FILE), "Liver": sha256_of(liver_dir / CARD_FILE)}
    assert shas["Spleen"] != shas["Liver"]

    seg = hd.seg.segread(path)  # highdicom
    assert seg.SegmentationType == "BINARY"
    for number, (name, code) in enumerate((("Spleen", "78961009"), ("Liver", "10200004")), start=1):
        description = seg.get_segment_description(number)
        assert description.segment_label == name
        assert description.segmented_property_type.value == code
        assert description.segmented_property_type.scheme_designator == "SCT"
        assert description.algorithm_type.value == "AUTOMATIC"
        algorithm = description.algorithm_identification[0]
        assert algorithm.AlgorithmVersion == __version__ and shas[name] in algorithm.AlgorithmParameters
        pixels = seg.get_pixels_by_source_instance(
            source_sop_instance_uids=order, segment_numbers=[number], ignore_spatial_locations=True
        )[..., 0]  # (slice k, row j, column i)
        assert _dice(pixels.transpose(2, 1, 0), masks[name]) == 1.0

    ds = pydicom.dcmread(path)  # pydicom: frames onto the series' slices
    assert ds.Modality == "SEG" and ds.SeriesInstanceUID != next(iter(slices.values())).SeriesInstanceUID
    frames = ds.pixel_array.reshape(-1, ds.Rows, ds.Columns)
    rebuilt = {name: np.zeros_like(mask) for name, mask in masks.items()}
    names = {int(s.SegmentNumber): s.SegmentLabel for s in ds.SegmentSequence}
    for frame, group in zip(frames, ds.PerFrameFunctionalGroupsSequence):
        uid = group.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        name = names[int(group.SegmentIdentificationSequence[0].ReferencedSegmentNumber)]
        rebuilt[name][:, :, order.index(uid)] |= frame.T > 0
    for name, mask in masks.items():
        assert _dice(rebuilt[name], mask) == 1.0


def test_the_same_structure_twice_is_refused(model_dir: Path, series_dir: Path, tmp_path: Path, capsys) -> None:
    assert_one_line_error(
        capsys,
        "predict",
        model_dir,
        model_dir,
        series_dir,
        "--out",
        tmp_path,
        names=model_dir,
        says="give each organ once",
    )


def test_no_input_after_the_models_is_refused(model_dir: Path, tmp_path: Path, capsys) -> None:
    assert_one_line_error(capsys, "predict", model_dir, "--out", tmp_path, names="INPUT", says="at least one")
    code, _, err = run_l2s(capsys, "predict", tmp_path / "nothing", "--out", tmp_path)
    assert code == 2 and "is not a model folder" in err
