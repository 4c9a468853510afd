"""Writers of tiny MSD task folders (nibabel .nii.gz + dataset.json) shared by the tests, and the
real CT example beside the project."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

LPS_AFFINE = np.diag([-1.5, -1.5, 4.0, 1.0])
REAL_CT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "totalsegmentator_example"
#: The cube task of ``tests/conftest.py``'s ``make_task`` (its defaults): ``(z, y, x)`` volume shape
#: and half-open ``(z0, y0, x0, z1, y1, x1)`` organ box.
CUBE_SHAPE = (12, 16, 16)
CUBE_ORGAN = (3, 4, 4, 7, 10, 10)


def require_real_ct_in_ci(environ: Mapping[str, str], folder: Path) -> None:
    """Fail the test run in CI (``CI`` set) when the real CT example is missing, instead of
    letting its tests skip and the run pass without them.

    Raises:
        pytest.UsageError: ``CI`` is set and ``folder`` lacks the example CT.
    """
    if environ.get("CI") and not (folder / "example_ct_sm.nii.gz").is_file():
        raise pytest.UsageError(
            f"CI is set but the real CT example is missing at {folder} (../shared beside the "
            "project); the real-CT tests would be skipped"
        )


def write_case(
    root: Path,
    case_id: str,
    image: np.ndarray,
    label: np.ndarray,
    affine: np.ndarray = LPS_AFFINE,
    label_affine: np.ndarray | None = None,
) -> None:
    """Write imagesTr/<id>.nii.gz and labelsTr/<id>.nii.gz (arrays in nibabel (x, y, z) order)."""
    (root / "imagesTr").mkdir(parents=True, exist_ok=True)
    (root / "labelsTr").mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(image, affine), root / "imagesTr" / f"{case_id}.nii.gz")
    nib.save(
        nib.Nifti1Image(label, label_affine if label_affine is not None else affine),
        root / "labelsTr" / f"{case_id}.nii.gz",
    )


def write_dataset_json(root: Path, case_ids: list[str], labels: dict[str, str] | None = None) -> None:
    """Write an MSD ``dataset.json`` listing ``case_ids`` as training cases."""
    meta = {
        "name": root.name,
        "modality": {"0": "CT"},
        "labels": labels or {"0": "background", "1": "organ", "2": "tumour"},
        "numTraining": len(case_ids),
        "training": [{"image": f"./imagesTr/{c}.nii.gz", "label": f"./labelsTr/{c}.nii.gz"} for c in case_ids],
    }
    (root / "dataset.json").write_text(json.dumps(meta))


def write_small_task(root: Path) -> Path:
    """Five cases, (x, y, z) = (24, 20, 12) LPS int16, a box organ (label 1) with a tumour (label 2)."""
    rng = np.random.default_rng(0)
    ids = [f"box_{i}" for i in range(5)]
    for i, case_id in enumerate(ids):
        image = rng.normal(0, 100, (24, 20, 12)).astype(np.int16)
        label = np.zeros((24, 20, 12), np.uint8)
        label[4 + i : 12 + i, 5:11, 2:7] = 1
        label[6 + i : 8 + i, 6:8, 3:5] = 2
        image[label > 0] += 300
        write_case(root, case_id, image, label)
    write_dataset_json(root, ids)
    return root


def write_cuboid_task(
    root: Path,
    shape: tuple[int, int, int],
    boxes: list[tuple[int, int, int, int, int, int]],
    prefix: str,
    contrast: float,
    noise_sd: float,
    spacing_xyz: tuple[float, float, float],
    organ_name: str,
) -> Path:
    """An MSD task with one case per ``(z0, y0, x0, z1, y1, x1)`` box: the organ (label 1) is the
    box, the image ``contrast * label`` plus Gaussian noise (seed 0), ``(z, y, x)`` ``shape``."""
    rng = np.random.default_rng(0)
    ids = [f"{prefix}_{i}" for i in range(len(boxes))]
    for case_id, (z0, y0, x0, z1, y1, x1) in zip(ids, boxes):
        label = np.zeros(shape, np.uint8)
        label[z0:z1, y0:y1, x0:x1] = 1
        image = (contrast * label + rng.normal(0, noise_sd, shape)).astype(np.float32)
        write_case(
            root, case_id, image.transpose(2, 1, 0), label.transpose(2, 1, 0), affine=np.diag([*spacing_xyz, 1.0])
        )
    write_dataset_json(root, ids, labels={"0": "background", "1": organ_name})
    return root
