"""``l2s import-dicom`` on the real CT's spleen (``l2s_core.data.dicom.import_task``), with RTSTRUCTs made by
rt-utils: the label matches the NIfTI one, patients without the structure are listed, and an
RTSTRUCT of another series or no patient with the structure is one line."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from cli_runner import assert_one_line_error, run_l2s
from dicom_builder import CT, SEG, mask_dice, write_nifti_as_series  # skips without pydicom

from l2s_core.data.dicom.import_task import MISSING_FILE
from l2s_core.data.io import read_image, read_label
from l2s_core.data.msd import read_task


def test_import_dicom_rasterises_the_spleen_like_the_nifti_label(
    real_ct: Path, patient_root: Path, tmp_path: Path, capsys
) -> None:
    task = tmp_path / "Task50_Spleen"
    code, out, err = run_l2s(capsys, "import-dicom", patient_root, "--structure", "milz, Spleen", "--out", task)
    assert code == 0, err
    assert "1 patients imported" in out and "p2" in out and (task / MISSING_FILE).read_text() == "p2\n"
    label, label_meta = read_label(task / "labelsTr" / "p1.nii.gz")
    expected, expected_meta = read_label(real_ct / SEG)
    dice = mask_dice(label, expected == 1)
    print(f"import-dicom spleen vs NIfTI label: Dice {dice:.4f}", file=sys.stderr)
    assert dice >= 0.95
    assert np.allclose(label_meta.source_affine, expected_meta.source_affine)
    image, _ = read_image(task / "imagesTr" / "p1.nii.gz")
    assert np.array_equal(image, read_image(real_ct / CT)[0])
    assert [c.case_id for c in read_task(task).cases] == ["p1"]  # what l2s prepare reads


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


def test_staging_folders_of_a_killed_import_are_removed(patient_root: Path, tmp_path: Path, capsys) -> None:
    """A killed ``l2s import-dicom`` left ``.<out>.partial-*`` (full images) forever."""
    stale = tmp_path / ".task.partial-999999999-0a1b2c3d"
    (stale / "imagesTr").mkdir(parents=True)
    (stale / "imagesTr" / "p1.nii.gz").write_bytes(b"a full image")
    code, _, err = run_l2s(capsys, "import-dicom", patient_root, "--structure", "spleen", "--out", tmp_path / "task")
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dicom", "task"]  # the patients, the task
