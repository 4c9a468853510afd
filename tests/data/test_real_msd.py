"""Real MSD files (../shared/data/Task04_Hippocampus) through preparation as ordinary input: images
stored as uint8 and as float32, labels stored as float32 holding integers, intensity maxima from
about 110 to 1.7e6 between cases, volumes smaller than any patch with odd sides; and a label with
a non-integer value stopped with one line naming the file. (The whole protocol on real cases, to
``l2s predict``: ``tests/study/test_real_study.py``.)"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from cli_runner import assert_one_line_error
from msd_builder import real_hippocampus

from l2s_core.data.cache import PreparedTask
from l2s_core.data.prepare import prepare_task
from l2s_core.data.prepared_layout import PrepareSettings

#: Real cases and what their files bring (the task's manifest.csv): the image's stored dtype and
#: intensity maximum, the label's stored dtype.
CASES = {
    "hippocampus_001": ("uint8", 139.0, "uint8"),
    "hippocampus_003": ("float32", 2776.88, "float32"),  # a float32 label holding 0, 1, 2
    "hippocampus_172": ("uint8", 112.0, "uint8"),  # the smallest maximum
    "hippocampus_210": ("float32", 1704295.25, "uint8"),  # the largest maximum
    "hippocampus_243": ("float32", 2277.43, "float32"),
}


def write_task(root: Path, source: Path, case_ids: list[str]) -> Path:
    """An MSD-layout folder of ``case_ids`` from ``source``: links to the real files and a
    ``dataset.json`` listing them (with the source's header)."""
    meta = json.loads((source / "dataset.json").read_text())
    for folder in ("imagesTr", "labelsTr"):
        (root / folder).mkdir(parents=True)
        for case_id in case_ids:
            (root / folder / f"{case_id}.nii.gz").symlink_to(source / folder / f"{case_id}.nii.gz")
    training = [{"image": f"./imagesTr/{c}.nii.gz", "label": f"./labelsTr/{c}.nii.gz"} for c in case_ids]
    (root / "dataset.json").write_text(json.dumps({**meta, "numTraining": len(case_ids), "training": training}))
    return root


def test_real_files_of_mixed_dtypes_and_ranges_prepare_as_ordinary_input(tmp_path: Path) -> None:
    source = real_hippocampus()
    for case_id, (image_dtype, maximum, label_dtype) in CASES.items():  # the files are what this test is about
        image = nib.load(source / "imagesTr" / f"{case_id}.nii.gz")
        assert (str(image.get_data_dtype()), label_dtype) == (
            image_dtype,
            str(nib.load(source / "labelsTr" / f"{case_id}.nii.gz").get_data_dtype()),
        )
        assert float(np.max(image.dataobj)) == pytest.approx(maximum, rel=1e-4)
    task_dir = write_task(tmp_path / "Task04_Hippocampus", source, list(CASES))
    statuses = prepare_task(task_dir, tmp_path / "prepared", PrepareSettings(normalisation="zscore"), workers=1)
    assert {str(s) for s in statuses.values()} == {"prepared"}
    task = PreparedTask(tmp_path / "prepared")
    assert task.preparation.task_name == "Hippocampus"  # named by its dataset.json
    for case_id in CASES:
        case = task.case(case_id)
        label = np.asarray(nib.load(source / "labelsTr" / f"{case_id}.nii.gz").dataobj)
        image, mask = case.array("full", "image"), case.array("full", "label")
        assert case.meta.label_values == (0, 1, 2)
        assert case.meta.organ_voxels == int(np.count_nonzero(label)) == int(mask.sum())  # anterior + posterior
        assert abs(float(image.mean())) < 1e-3 and float(image.std()) == pytest.approx(1.0, abs=1e-3)
        assert image.dtype == np.float32 and mask.dtype == np.uint8
        assert all(side < 64 for side in image.shape)  # smaller than the paper's patch on every axis
    shapes = [task.case(c).meta.original_shape for c in CASES]
    assert any(side % 2 for shape in shapes for side in shape)  # odd sides


def test_a_label_with_a_non_integer_value_is_one_line_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = real_hippocampus()
    task_dir = write_task(tmp_path / "Task04_Hippocampus", source, ["hippocampus_001", "hippocampus_003"])
    bad = task_dir / "labelsTr" / "hippocampus_003.nii.gz"
    real = nib.load(source / "labelsTr" / "hippocampus_003.nii.gz")
    label = np.asarray(real.dataobj).copy()
    label[label > 0] = np.where(label[label > 0] == 2, 2.0, 1.5)  # float32: the anterior part now 1.5
    bad.unlink()
    nib.save(nib.Nifti1Image(label, real.affine, real.header), bad)
    assert_one_line_error(
        capsys,
        "prepare",
        task_dir,
        "--out",
        tmp_path / "prepared",
        "--workers",
        "1",
        names=bad,
        says="non-integer values",
    )
    assert (tmp_path / "prepared" / "cases" / "hippocampus_001").is_dir()  # nothing prepared before is lost
