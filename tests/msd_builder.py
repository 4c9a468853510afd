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
#: The real MSD task beside the project (../shared/data/Task04_Hippocampus: 260 MRI cases, MSD layout).
REAL_HIPPOCAMPUS = REAL_CT.parent / "Task04_Hippocampus"
#: The cube task of ``tests/conftest.py``'s ``make_task`` (its defaults): ``(z, y, x)`` volume shape
#: and half-open ``(z0, y0, x0, z1, y1, x1)`` organ box.
CUBE_SHAPE = (12, 16, 16)
CUBE_ORGAN = (3, 4, 4, 7, 10, 10)


def require_real_data_in_ci(environ: Mapping[str, str], file: Path, what: str) -> None:
    """Fail the test run in CI (``CI`` set) when a real data file is missing, instead of letting
    its tests skip and the run pass without them.

    Args:
        environ: the environment.
        file: a file of the real data that must exist.
        what: the data in words, e.g. ``"the real CT example"``.

    Raises:
        pytest.UsageError: ``CI`` is set and ``file`` is missing.
    """
    if environ.get("CI") and not file.is_file():
        raise pytest.UsageError(
            f"CI is set but {what} is missing at {file.parent} (../shared beside the "
            "project); its tests would be skipped"
        )


def require_real_ct_in_ci(environ: Mapping[str, str], folder: Path) -> None:
    """:func:`require_real_data_in_ci` for the real CT example in ``folder``."""
    require_real_data_in_ci(environ, folder / "example_ct_sm.nii.gz", "the real CT example")


def require_real_hippocampus_in_ci(environ: Mapping[str, str], folder: Path) -> None:
    """:func:`require_real_data_in_ci` for the real MSD task ``folder`` (Task04_Hippocampus)."""
    require_real_data_in_ci(environ, folder / "dataset.json", "the real MSD task Task04_Hippocampus")


def real_hippocampus() -> Path:
    """The real MSD task folder Task04_Hippocampus; the calling test skips, with the reason, when it
    is absent (in CI the run fails first: :func:`require_real_hippocampus_in_ci`)."""
    if not (REAL_HIPPOCAMPUS / "dataset.json").is_file():
        pytest.skip(f"real MSD task not found at {REAL_HIPPOCAMPUS} (the shared data folder sits beside the project)")
    return REAL_HIPPOCAMPUS


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
