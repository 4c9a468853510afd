"""Medical Segmentation Decathlon (MSD) task folders: ``dataset.json``, ``imagesTr/``, ``labelsTr/``.

:func:`read_task` validates a task folder before anything is prepared, so that a half-copied
dataset stops with a message naming the file at fault instead of failing part way through.
"""

from __future__ import annotations

__all__ = [
    "MSDCase",
    "MSDTask",
    "NIFTI_SUFFIX",
    "case_id_of",
    "check_label_values",
    "check_organ_labels",
    "organ_mask",
    "read_task",
    "selected_cases",
]

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from l2s_core.errors import ConfigError, InputDataError
from l2s_core.files import NESTED_TOO_DEEPLY, is_plain_name

NIFTI_SUFFIX = ".nii.gz"


@dataclass(frozen=True)
class MSDCase:
    """One training case: an image and its label file."""

    case_id: str
    image_path: Path
    label_path: Path


@dataclass(frozen=True)
class MSDTask:
    """A validated MSD task folder.

    Attributes:
        root: the task folder.
        name: ``dataset.json``'s ``name``.
        modality: channel index (as a string) → modality name, e.g. ``{"0": "T2", "1": "ADC"}``.
        labels: label value → class name, e.g. ``{0: "background", 1: "pancreas", 2: "cancer"}``.
        cases: training cases sorted by case id.
    """

    root: Path
    name: str
    modality: dict[str, str]
    labels: dict[int, str]
    cases: list[MSDCase] = field(default_factory=list)


def case_id_of(path: Path) -> str:
    """Case id of an MSD file name: ``spleen_10.nii.gz`` → ``spleen_10``."""
    name = path.name
    return name[: -len(NIFTI_SUFFIX)] if name.endswith(NIFTI_SUFFIX) else path.stem


def _nifti_files(folder: Path) -> dict[str, Path]:
    # macOS copies leave "._name" resource files beside the real ones; they are not cases.
    return {case_id_of(p): p for p in folder.glob("*.nii*") if not p.name.startswith(".")}


def _load_dataset_json(path: Path) -> dict:
    if not path.is_file():
        raise InputDataError(
            path, "dataset.json not found; an MSD task folder needs dataset.json, imagesTr/ and labelsTr/"
        )
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputDataError(path, f"not valid JSON ({exc})") from None
    except RecursionError:
        raise InputDataError(path, NESTED_TOO_DEEPLY) from None
    if not isinstance(meta, dict):
        raise InputDataError(path, "expected a JSON object at the top level")
    for key, kind in (("training", list), ("labels", dict), ("modality", dict)):
        if not isinstance(meta.get(key), kind):
            raise InputDataError(path, f"key '{key}' missing or not a {kind.__name__}")
    return meta


def _parse_labels(raw: dict, path: Path) -> dict[int, str]:
    labels: dict[int, str] = {}
    for key, name in raw.items():
        try:
            labels[int(key)] = str(name)
        except (TypeError, ValueError):
            raise InputDataError(path, f"label key {key!r} is not an integer") from None
    if 0 not in labels:
        raise InputDataError(path, "labels must define 0 (background)")
    return labels


def read_task(task_dir: str | Path) -> MSDTask:
    """Read and validate an MSD task folder.

    Images and labels are paired by case id. Every entry of ``dataset.json``'s ``training``
    list must name an existing image and label, and every file in ``imagesTr/`` and
    ``labelsTr/`` must have its partner.

    Raises:
        InputDataError: missing or malformed ``dataset.json``, an image without a label, a
            label without an image, or a listed file that does not exist.
    """
    root = Path(task_dir)
    if not root.is_dir():
        raise InputDataError(root, "task folder not found")
    json_path = root / "dataset.json"
    meta = _load_dataset_json(json_path)
    images = _nifti_files(root / "imagesTr")
    labels = _nifti_files(root / "labelsTr")
    for case_id in sorted(images.keys() - labels.keys()):
        raise InputDataError(images[case_id], f"image without a label (expected labelsTr/{case_id}{NIFTI_SUFFIX})")
    for case_id in sorted(labels.keys() - images.keys()):
        raise InputDataError(labels[case_id], f"label without an image (expected imagesTr/{case_id}{NIFTI_SUFFIX})")

    cases = []
    for i, entry in enumerate(meta["training"]):
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("image"), str)
            or not isinstance(entry.get("label"), str)
        ):
            raise InputDataError(json_path, f"training[{i}] must be an object with string 'image' and 'label'")
        image_path = (root / entry["image"]).absolute()
        label_path = (root / entry["label"]).absolute()
        for p in (image_path, label_path):
            if not p.is_file():
                raise InputDataError(p, f"listed in {json_path} (training[{i}]) but not found")
        if case_id_of(image_path) != case_id_of(label_path):
            raise InputDataError(json_path, f"training[{i}] pairs {image_path.name} with {label_path.name}")
        if not is_plain_name(case_id_of(image_path)):
            raise InputDataError(
                json_path,
                f"training[{i}] gives the case id {case_id_of(image_path)!r} (file {image_path.name!r}), "
                "not a plain name: a case id names a folder, so it must be non-empty, hold no '/' or '\\' "
                "and not start with '.'",
            )
        cases.append(MSDCase(case_id_of(image_path), image_path, label_path))
    if not cases:
        raise InputDataError(json_path, "the training list is empty")
    ids = [c.case_id for c in cases]
    if len(set(ids)) != len(ids):
        raise InputDataError(json_path, "the training list names a case more than once")
    return MSDTask(
        root=root,
        name=str(meta.get("name", root.name)),
        modality={str(k): str(v) for k, v in meta["modality"].items()},
        labels=_parse_labels(meta["labels"], json_path),
        cases=sorted(cases, key=lambda c: c.case_id),
    )


def selected_cases(task: MSDTask, max_cases: int | None) -> list[MSDCase]:
    """The cases a preparation takes: the first ``max_cases`` case ids in string order (``None``:
    every case): ``liver_0, liver_1, liver_10, liver_100, ...``, so ``max_cases: 69`` of MSD's
    ``liver_0 ... liver_130`` is not ``liver_0 ... liver_68``.

    Raises:
        ConfigError: ``max_cases`` below 1.
    """
    if max_cases is not None and max_cases < 1:
        raise ConfigError("max_cases", f"must be at least 1, got {max_cases}")
    return sorted(task.cases, key=lambda c: c.case_id)[:max_cases]


def organ_mask(label: np.ndarray, organ_labels: Sequence[int] | None = None) -> np.ndarray:
    """The organ mask of a ``(z, y, x)`` label map as uint8.

    Args:
        label: the label map.
        organ_labels: label values merged into the organ; ``None`` (default) means every
            non-zero label (the paper: pancreas and liver tumours and both prostate zones
            count as organ).
    """
    if organ_labels is None:
        return (label > 0).astype(np.uint8)
    return np.isin(label, np.asarray(list(organ_labels))).astype(np.uint8)


def check_label_values(label: np.ndarray, allowed: dict[int, str], path: Path) -> list[int]:
    """Return the label values present, raising if any is not declared in ``dataset.json``."""
    present = [int(v) for v in np.unique(label)]
    unexpected = sorted(set(present) - set(allowed))
    if unexpected:
        raise InputDataError(path, f"unexpected label values {unexpected}; dataset.json declares {sorted(allowed)}")
    return present


def check_organ_labels(organ_labels: Sequence[int] | None, task: MSDTask) -> None:
    """Raise :class:`ConfigError` if ``organ_labels`` names values the task does not declare."""
    if organ_labels is None:
        return
    unknown = sorted(set(organ_labels) - set(task.labels))
    if unknown or 0 in organ_labels:
        raise ConfigError("organ_labels", f"{list(organ_labels)} must be non-zero labels of {task.name}: {task.labels}")
