"""``l2s import-dicom``: patient folders of DICOM series with RTSTRUCTs → an MSD-layout task.

``DICOM_ROOT/<patient>/…`` holds (in any sub-folders) a patient's CT or MR image series and
RTSTRUCT files. For each patient the first RTSTRUCT (in file-name order) with a structure named
like one of the names given (case and surrounding spaces ignored, aliases in the order given)
is rasterised onto the series it references (:func:`~l2s_core.data.dicom.rtstruct.rasterise`), and the
image and label are written as ``imagesTr/<patient>.nii.gz`` and ``labelsTr/<patient>.nii.gz``
on the series' grid, with a ``dataset.json`` that ``l2s prepare`` reads. Patients without the
structure are not dropped silently: they are returned, written to ``missing_structure.txt``
and printed by the command.

Example:
    >>> result = import_dicom("dicom_root", ["Spleen", "SPL"], "Task50_Spleen")  # doctest: +SKIP
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from l2s_core.data.dicom.rtstruct import rasterise, read_rtstruct
from l2s_core.data.dicom.series import dicom_headers, image_series, read_series_files
from l2s_core.data.io import to_source_grid, write_mask, write_nifti
from l2s_core.errors import ConfigError, DicomError
from l2s_core.files import atomic_write_text, remove_staged, remove_stale_staging, staging_folder

__all__ = ["MISSING_FILE", "ImportResult", "import_dicom"]

MISSING_FILE = "missing_structure.txt"


@dataclass(frozen=True)
class ImportResult:
    """Outcome of :func:`import_dicom`.

    Attributes:
        task_dir: the MSD task folder written.
        imported: patient → the ROI name matched.
        missing: patients without a structure of the names given (listed in ``missing_structure.txt``).
    """

    task_dir: Path
    imported: dict[str, str]
    missing: list[str]


def _import_patient(patient: Path, names: list[str], task_dir: Path) -> tuple[str, str] | None:
    """Write one patient's image and label; returns the ROI name matched and the series' modality, or ``None``."""
    headers = dicom_headers(sorted(p for p in patient.rglob("*") if p.is_file()))
    rtstructs = [path for path, ds in headers if ds.get("Modality") == "RTSTRUCT"]
    series = image_series(headers)
    for rt_path in rtstructs:
        structures = read_rtstruct(rt_path)
        roi = structures.find(names)
        if roi is None:
            continue
        referenced = [uid for uid in structures.series_uids if uid in series]
        if not referenced:
            raise DicomError(
                rt_path,
                f"references series {', '.join(structures.series_uids) or '(none)'}, "
                f"not one of the image series of {patient.name} ({', '.join(series) or 'none'})",
            )
        image, meta, info = read_series_files(series[referenced[0]], patient, dict(headers))
        if structures.frame_of_reference_uids and info.frame_of_reference_uid not in structures.frame_of_reference_uids:
            raise DicomError(
                rt_path,
                f"frame of reference {structures.frame_of_reference_uids[0]} differs from the "
                f"series' {info.frame_of_reference_uid}",
            )
        label = rasterise(structures.contours(roi), meta, info, rt_path)
        if not label.any():
            raise DicomError(rt_path, f"structure '{roi}' covers no voxel centre of the series")
        image_path = task_dir / "imagesTr" / f"{patient.name}.nii.gz"
        write_nifti(image_path, to_source_grid(image, meta), np.asarray(meta.source_affine), np.float32)
        write_mask(label, meta, task_dir / "labelsTr" / f"{patient.name}.nii.gz")
        return roi, info.modality
    return None


def import_dicom(dicom_root: str | Path, names: list[str], task_dir: str | Path, progress: bool = True) -> ImportResult:
    """Build an MSD task folder from patient folders of DICOM series and RTSTRUCTs.

    Args:
        dicom_root: folder of patient folders.
        names: the structure's name and aliases (matched ignoring case).
        task_dir: the MSD task folder to create (must not exist); its name is the task's name.
        progress: a progress bar over the patients.

    Returns:
        The :class:`ImportResult`.

    Raises:
        ConfigError: no names, ``task_dir`` exists, no patient folders, or no patient has the structure.
        DicomError: a bad series or RTSTRUCT (named in the message).
    """
    dicom_root, task_dir = Path(dicom_root), Path(task_dir)
    names = [n.strip() for n in names if n.strip()]
    if not names:
        raise ConfigError("--structure", "give the structure's name (and aliases, comma-separated)")
    if task_dir.exists():
        raise ConfigError(task_dir, "already exists; choose another --out or delete it")
    patients = (
        sorted(p for p in dicom_root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if dicom_root.is_dir()
        else []
    )
    if not patients:
        raise ConfigError(dicom_root, "no patient folders found (expected DICOM_ROOT/<patient>/...)")
    remove_stale_staging(task_dir.parent, task_dir.name)  # of a killed run
    staging = staging_folder(task_dir.parent, task_dir.name)
    try:
        imported: dict[str, str] = {}
        modalities: dict[str, str] = {}
        missing: list[str] = []
        for patient in tqdm(patients, desc="import-dicom", unit="patient", disable=not progress):
            found = _import_patient(patient, names, staging)
            if found is None:
                missing.append(patient.name)
            else:
                imported[patient.name], modalities[patient.name] = found
        if not imported:
            raise ConfigError(dicom_root, f"no patient has a structure named {' or '.join(names)}")
        if len(set(modalities.values())) > 1:
            raise DicomError(
                dicom_root, f"patients of different modalities {modalities}; import each modality separately"
            )
        modality = next(iter(modalities.values()))
        dataset = {
            "name": task_dir.name,
            "description": f"imported by l2s import-dicom from {dicom_root}",
            "modality": {"0": modality},
            "labels": {"0": "background", "1": names[0]},
            "numTraining": len(imported),
            "numTest": 0,
            "test": [],
            "training": [{"image": f"./imagesTr/{p}.nii.gz", "label": f"./labelsTr/{p}.nii.gz"} for p in imported],
        }
        atomic_write_text(staging / "dataset.json", json.dumps(dataset, indent=2) + "\n")
        atomic_write_text(staging / MISSING_FILE, "".join(f"{p}\n" for p in missing))
        staging.rename(task_dir)
    finally:
        remove_staged(staging, task_dir.parent)
    return ImportResult(task_dir, imported, missing)
