"""Phantom tasks written as Medical Segmentation Decathlon (MSD) task folders (``l2s phantom``).

Each task of :mod:`l2s_core.data.phantom.anatomy` is written as ``<out>/<TaskNN_Name>/dataset.json``,
``imagesTr/<case>.nii.gz`` and ``labelsTr/<case>.nii.gz``, with the non-RAS (LPS-like) affine and
anisotropic spacing of :mod:`l2s_core.data.phantom.render`, so that it is read by exactly the
same code as a real MSD download. The cases' shapes and spacings come from
:mod:`l2s_core.data.phantom.geometry` (one fixed shape, or the MSD tasks' ranges). A case
rendered as an image ``(C, z, y, x)`` and a label ``(z, y, x)`` is stored in nibabel's
``(x, y, z[, C])`` order: 3D for one channel, 4D for several.

Every case has its own random stream ``np.random.default_rng([seed, organ index, case index])``;
gzip timestamps are zero, so the same seed gives byte-identical files. The generator settings
are recorded in :data:`SETTINGS_FILE` in each task folder: a rerun with the same settings skips
finished cases, one with other settings (or into a folder of other data) is refused.

Example:
    >>> folders = generate_phantom_tasks("data/phantom", settings=PhantomSettings(n_cases=10))  # doctest: +SKIP
    >>> folders["spleen"]  # doctest: +SKIP
    PosixPath('data/phantom/Task09_Spleen')
"""

from __future__ import annotations

__all__ = [
    "GENERATOR_VERSION",
    "SETTINGS_FILE",
    "TASK_FOLDERS",
    "generate_phantom_task",
    "generate_phantom_tasks",
    "write_phantom_cases",
]

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from l2s_core.data.io import write_nifti
from l2s_core.data.phantom.anatomy import ORGANS, phantom_task
from l2s_core.data.phantom.geometry import case_geometries
from l2s_core.data.phantom.render import render_case
from l2s_core.data.phantom.settings import PhantomSettings
from l2s_core.errors import ConfigError, FormatVersionError, InputDataError
from l2s_core.files import atomic_write_json, atomic_write_text, read_json
from l2s_core.vocabulary import MSD_TASK_FOLDERS

#: Organ → the MSD task folder name of its phantom (e.g. ``Task09_Spleen``).
TASK_FOLDERS = MSD_TASK_FOLDERS
#: Written with the generator settings into each task folder; bumped when the phantoms change.
GENERATOR_VERSION = 1
SETTINGS_FILE = "phantom.json"
_NIFTI = ".nii.gz"
_UNITS = ("mm", "sec")


def _write_case(task_dir: Path, case_id: str, image: np.ndarray, label: np.ndarray, affine: np.ndarray) -> None:
    """Write ``image`` ``(C, z, y, x)`` and ``label`` ``(z, y, x)`` in nibabel's ``(x, y, z[, C])`` order."""
    image_xyz = image[0].transpose(2, 1, 0) if image.shape[0] == 1 else image.transpose(3, 2, 1, 0)
    write_nifti(task_dir / "imagesTr" / f"{case_id}{_NIFTI}", image_xyz, affine, xyzt_units=_UNITS)
    write_nifti(task_dir / "labelsTr" / f"{case_id}{_NIFTI}", label.transpose(2, 1, 0), affine, xyzt_units=_UNITS)


def _dataset_json(organ: str, case_ids: list[str]) -> str:
    """The MSD ``dataset.json`` text of a phantom task."""
    task = phantom_task(organ)
    meta = {
        "name": task.name,
        "description": f"l2s synthetic phantom of the MSD {TASK_FOLDERS[organ]} task: generated images, "
        "not patient data",
        "reference": "l2s_core.data.phantom.task (layout of the Medical Segmentation Decathlon, http://medicaldecathlon.com)",
        "licence": "CC0-1.0 (synthetic data)",
        "release": f"l2s phantom generator {GENERATOR_VERSION}",
        "tensorImageSize": "4D" if len(task.modality) > 1 else "3D",
        "modality": task.modality,
        "labels": task.labels,
        "numTraining": len(case_ids),
        "numTest": 0,
        "training": [{"image": f"./imagesTr/{c}{_NIFTI}", "label": f"./labelsTr/{c}{_NIFTI}"} for c in case_ids],
        "test": [],
    }
    return json.dumps(meta, indent=4) + "\n"


def _claim_folder(task_dir: Path, settings: dict[str, object]) -> None:
    """Record the generator settings in ``task_dir``, or check that they match a previous run.

    Raises:
        ConfigError: the folder holds other data, or a phantom made with other settings.
    """
    settings_path = task_dir / SETTINGS_FILE
    if settings_path.is_file():
        try:
            previous = {k: v for k, v in read_json(settings_path).items() if k != "format_version"}
        except (InputDataError, FormatVersionError) as exc:
            raise ConfigError(
                task_dir, f"unreadable phantom settings ({exc.problem}); delete the folder to regenerate"
            ) from None
        if previous != settings:
            raise ConfigError(
                task_dir,
                f"holds a phantom made with {previous}, not {settings}; "
                "choose another output folder or delete this one",
            )
        return
    if task_dir.exists() and any(task_dir.iterdir()):
        raise ConfigError(
            task_dir, f"exists and is not an l2s phantom folder (no {SETTINGS_FILE}); refusing to write into it"
        )
    atomic_write_json(settings_path, settings)


def generate_phantom_task(
    organ: str, out_dir: str | Path, settings: PhantomSettings | None = None, progress: bool = True
) -> Path:
    """Write one phantom task folder in MSD layout.

    Cases already present (image and label) are skipped, so a rerun with the same settings
    resumes; ``dataset.json`` is written last.

    Args:
        organ: one of :data:`~l2s_core.data.phantom.anatomy.ORGANS`.
        out_dir: folder that receives the task folder :data:`TASK_FOLDERS` ``[organ]``.
        settings: profile, cases (ids ``<organ>_001`` ...), shape (``fixed``: the field of
            view is fixed, the spacing follows), scale (``msd``: the field of view is kept) and
            seed of the random streams (:class:`~l2s_core.data.phantom.settings.PhantomSettings`;
            ``None``: its defaults).
        progress: show a progress bar over the cases.

    Returns:
        The task folder.

    Raises:
        ConfigError: unknown organ, a scale outside ``(0, 1]``, or a task folder that holds other
            data or a phantom made with other settings.
    """
    phantom_task(organ)
    settings = settings or PhantomSettings()
    shape, seed, profile, scale = settings.shape, settings.seed, settings.profile, settings.scale
    geometries = case_geometries(organ, settings.n_cases, shape, seed, profile, scale)
    task_dir = Path(out_dir) / TASK_FOLDERS[organ]
    recorded: dict[str, object] = {
        "generator_version": GENERATOR_VERSION,
        "organ": organ,
        "shape": list(shape),
        "seed": seed,
    }
    if profile != "fixed":
        recorded = {
            "generator_version": GENERATOR_VERSION,
            "organ": organ,
            "profile": profile,
            "scale": scale,
            "seed": seed,
        }
    _claim_folder(task_dir, recorded)
    write_phantom_cases(organ, task_dir, geometries, seed, progress)
    return task_dir


def write_phantom_cases(
    organ: str,
    task_dir: str | Path,
    geometries: Sequence[tuple[tuple[int, int, int], tuple[float, float, float] | None]],
    seed: int = 0,
    progress: bool = True,
) -> list[str]:
    """Render and write one case per ``(shape, spacing)`` into a task folder, then its ``dataset.json``.

    Cases already present are skipped. :func:`generate_phantom_task` calls this after checking
    the folder; a benchmark can call it with geometries of its own (e.g. a 500×512×512 liver).

    Args:
        organ: one of :data:`~l2s_core.data.phantom.anatomy.ORGANS`.
        task_dir: the task folder (created).
        geometries: ``(z, y, x)`` shape and spacing in mm (``None``: the anatomy's field of view
            divided by the shape) of each case.
        seed: seed of the random streams.
        progress: show a progress bar over the cases.

    Returns:
        The case ids ``<organ>_001`` ...
    """
    task_dir = Path(task_dir)
    organ_index = ORGANS.index(organ)
    case_ids = [f"{organ}_{i + 1:03d}" for i in range(len(geometries))]
    for case_index, case_id in enumerate(tqdm(case_ids, desc=f"phantom {organ}", unit="case", disable=not progress)):
        if all((task_dir / sub / f"{case_id}{_NIFTI}").is_file() for sub in ("imagesTr", "labelsTr")):
            continue
        rng = np.random.default_rng([seed, organ_index, case_index])
        case_shape, spacing = geometries[case_index]
        _write_case(task_dir, case_id, *render_case(organ, case_shape, rng, spacing))
    atomic_write_text(task_dir / "dataset.json", _dataset_json(organ, case_ids))
    return case_ids


def generate_phantom_tasks(
    out_dir: str | Path,
    organs: Sequence[str] = ORGANS,
    settings: PhantomSettings | None = None,
    progress: bool = True,
) -> dict[str, Path]:
    """Write the phantom task folders of several organs (see :func:`generate_phantom_task`).

    Returns:
        Organ → task folder, in the order of ``organs``.

    Raises:
        ConfigError: an unknown organ (checked before anything is written) or a bad argument.
    """
    for organ in organs:
        phantom_task(organ)
    return {organ: generate_phantom_task(organ, out_dir, settings, progress) for organ in dict.fromkeys(organs)}
