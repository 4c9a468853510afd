"""Turn an MSD task folder into the prepared cache that training reads (``l2s prepare``).

Per case (see :mod:`l2s_core.data.cache` for the layout): the normalised full-resolution image
and organ mask, a low-resolution copy resized to ``(z // 3, y // 2, x // 2)`` with
``skimage.transform.resize`` as in the paper, and the organ crop (largest component of the mask
plus 15 voxels, zero-filled beyond the image). Cases run in parallel processes; finished cases
are skipped on a rerun; a case is written under a temporary folder name and renamed into place
when complete.

The worker processes are as many as the cores, the cases and the available memory allow: a
case's peak memory is estimated from its image header (:data:`PEAK_FLOAT32_COPIES` float32
copies of the volume). They die with the process that started them (also when it is
SIGKILLed), an :class:`~l2s_core.errors.L2SError` of a worker is raised as itself, and after
an error the cases being prepared at that moment are finished before it is raised. The
staging folders of a killed run (``cases/.<id>.partial-<pid>-<random>``, pid of a process no
longer running) are removed by the next run. One ``l2s prepare`` per prepared folder at a time.
"""

from __future__ import annotations

__all__ = [
    "ALREADY_PREPARED",
    "EXCLUDED",
    "PREPARED",
    "CaseStatus",
    "PEAK_FLOAT32_COPIES",
    "case_peak_bytes",
    "depth_axis_warning",
    "downsample_image",
    "downsample_mask",
    "lowres_shape",
    "prepare_task",
    "read_case",
    "worker_count",
]

import dataclasses
import multiprocessing
import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from skimage.transform import resize
from tqdm.auto import tqdm

from l2s_core.boxes import crop as crop_box
from l2s_core.boxes import expand_box, largest_component, largest_component_box
from l2s_core.data.io import image_voxels, read_image, read_label
from l2s_core.data.msd import (
    MSDCase,
    MSDTask,
    check_label_values,
    check_organ_labels,
    organ_mask,
    read_task,
    selected_cases,
)
from l2s_core.data.normalise import CtStats, foreground_intensity_stats, normalise
from l2s_core.data.prepared_layout import (
    CASE_META_FILE,
    CASES_DIR,
    EXCLUDED_FILE,
    LOWRES_DIVISORS,
    PREP_FILE,
    SPLIT_FILE,
    CaseMeta,
    Exclusions,
    PrepareSettings,
    TaskPreparation,
    array_file,
)
from l2s_core.data.split import save_split, split_cases
from l2s_core.errors import ConfigError, EmptyOrganError, InputDataError, L2SError
from l2s_core.files import (
    atomic_save_npy,
    remove_staged,
    remove_stale_staging,
    staging_folder,
)
from l2s_core.processes import available_memory, die_with_parent

#: Peak memory of preparing one case, in float32 copies of its full-resolution volume: the
#: estimate that bounds the parallel workers, and the bound ``tests/data/test_prepare.py``
#: checks (preparation holds the image, its normalised copy or one derived array, the mask).
PEAK_FLOAT32_COPIES = 4
PREPARED = "prepared"
ALREADY_PREPARED = "already prepared"
EXCLUDED = "excluded"


def lowres_shape(shape: Sequence[int], divisors: Sequence[int] = LOWRES_DIVISORS) -> tuple[int, int, int]:
    """The low-resolution shape: the paper's ``(z // 3, y // 2, x // 2)`` by default (at least 1 per
    axis); the released code's divisors are ``(2, 3, 2)``."""
    return tuple(max(1, int(s) // d) for s, d in zip(shape, divisors))  # type: ignore[return-value]


def downsample_image(image: np.ndarray, divisors: Sequence[int] = LOWRES_DIVISORS) -> np.ndarray:
    """Resize a ``(z, y, x)`` image to :func:`lowres_shape` with ``skimage.transform.resize``
    (linear, anti-aliased), as the paper made its low-resolution dataset; float32."""
    return resize(image, lowres_shape(image.shape, divisors), order=1, preserve_range=True, anti_aliasing=True).astype(
        np.float32
    )


def downsample_mask(mask: np.ndarray, divisors: Sequence[int] = LOWRES_DIVISORS) -> np.ndarray:
    """Resize a ``(z, y, x)`` mask to :func:`lowres_shape` as float, then round; uint8."""
    small = resize(
        mask.astype(np.float32), lowres_shape(mask.shape, divisors), order=1, preserve_range=True, anti_aliasing=False
    )
    return np.rint(small).astype(np.uint8)


#: A volume's slice axis is the axis whose spacing is at least this many times S's (see
#: :func:`depth_axis_warning`).
SLICE_AXIS_RATIO = 1.5


def depth_axis_warning(path: str | Path, spacing: Sequence[float]) -> str | None:
    """Why a volume's depth axis may not be its slice axis, or ``None``.

    The paper's low-resolution rule ("a third of their depth") and its patch (64 deep) treat the
    array's first axis as the depth; l2s's first axis is RAS S (superior). That is the slice
    axis of an axial scan; where another axis has the largest voxel spacing (a sagittal or
    coronal acquisition), it is the slice axis instead, and the warning says so. Near-isotropic
    voxels (the largest spacing less than :data:`SLICE_AXIS_RATIO` times S's) have no slice axis
    to speak of and give no warning.

    Args:
        path: the image, named in the warning.
        spacing: voxel size in mm, ``(z, y, x)`` of the RAS array.
    """
    largest = int(np.argmax(spacing))
    if spacing[largest] < SLICE_AXIS_RATIO * spacing[0]:
        return None
    axes = ("S (z)", "A (y)", "R (x)")
    return (
        f"{path}: the largest voxel spacing ({spacing[largest]:g} mm) is along {axes[largest]}, not along "
        f"the depth axis S (z, {spacing[0]:g} mm): the depth divisor and patch depth apply to S"
    )


def read_case(case: MSDCase, task: MSDTask, channel: int) -> tuple[np.ndarray, np.ndarray, Any, list[int]]:
    """Read and cross-check one case's image and label.

    Returns:
        ``(image, label, image_meta, label_values)`` with ``(z, y, x)`` arrays.

    Raises:
        InputDataError: unreadable files, shape or affine mismatch, undeclared label values.
    """
    image, image_meta = read_image(case.image_path, channel=channel)
    label, label_meta = read_label(case.label_path)
    if image.shape != label.shape:
        raise InputDataError(
            case.label_path,
            f"label shape {label.shape} (z, y, x) differs from image {case.image_path.name} {image.shape}",
        )
    if not np.allclose(image_meta.source_affine, label_meta.source_affine, rtol=1e-4, atol=1e-3):
        raise InputDataError(case.label_path, f"label affine differs from the affine of image {case.image_path.name}")
    values = check_label_values(label, task.labels, case.label_path)
    return image, label, image_meta, values


@dataclass(frozen=True)
class CaseStatus:
    """What preparing one case did.

    Attributes:
        outcome: :data:`PREPARED`, :data:`ALREADY_PREPARED` (by an earlier run) or :data:`EXCLUDED`.
        reason: why the case was excluded (``""`` otherwise).
    """

    outcome: str
    reason: str = ""

    def __str__(self) -> str:
        return f"{self.outcome}: {self.reason}" if self.reason else self.outcome


def _prepare_case(
    case: MSDCase, task: MSDTask, settings: PrepareSettings, ct_stats: CtStats | None, out_dir: Path
) -> tuple[str, CaseStatus]:
    """Prepare one case into ``out_dir/cases/<id>``; returns ``(case_id, status)``."""
    final = out_dir / CASES_DIR / case.case_id
    if (final / CASE_META_FILE).exists():
        return case.case_id, CaseStatus(ALREADY_PREPARED)
    image, label, image_meta, values = read_case(case, task, settings.channel)
    if (depth_warning := depth_axis_warning(case.image_path, image_meta.spacing)) is not None:
        warnings.warn(depth_warning, stacklevel=1)
    mask = organ_mask(label, settings.organ_labels)
    del label  # a full-size array no longer needed: memory is what bounds the parallel workers
    organ_box = largest_component_box(mask)
    if organ_box is None:
        raise EmptyOrganError(
            case.label_path,
            "the organ mask is empty, so no organ box can be cropped (use --skip-empty to leave such cases out)",
        )
    box = expand_box(organ_box, settings.crop_margin)
    image = normalise(image, settings.normalisation, ct_stats)
    staging = staging_folder(out_dir / CASES_DIR, case.case_id)
    staging.mkdir(parents=True)
    try:  # each derived array is written as soon as it is made, so that only one is held at a time
        atomic_save_npy(staging / array_file("full", "image"), image)
        atomic_save_npy(staging / array_file("full", "label"), mask)
        atomic_save_npy(staging / array_file("lowres", "image"), downsample_image(image, settings.lowres_divisors))
        atomic_save_npy(staging / array_file("lowres", "label"), downsample_mask(mask, settings.lowres_divisors))
        atomic_save_npy(staging / array_file("crop", "image"), crop_box(image, box))
        crop_mask = crop_box(mask, box)
        atomic_save_npy(
            staging / array_file("crop", "label"),
            largest_component(crop_mask) if settings.crop_label == "largest_component" else crop_mask,
        )
        CaseMeta(
            case_id=case.case_id,
            image_path=str(case.image_path),
            label_path=str(case.label_path),
            source=image_meta,
            original_shape=image.shape,  # type: ignore[arg-type]
            lowres_shape=lowres_shape(image.shape, settings.lowres_divisors),
            organ_box=organ_box,
            crop_box=box,
            crop_margin=settings.crop_margin,
            label_values=tuple(values),
            organ_voxels=int(mask.sum()),
            foreground_share=float(mask.mean()),
        ).write(staging / CASE_META_FILE)
        remove_staged(final, out_dir / CASES_DIR)  # a stale incomplete folder (no meta.json) from an older layout
        os.replace(staging, final)
    finally:
        remove_staged(staging, out_dir / CASES_DIR)
    return case.case_id, CaseStatus(PREPARED)


def _prepare_case_or_exclude(
    case: MSDCase, task: MSDTask, settings: PrepareSettings, ct_stats: CtStats | None, out_dir: Path, skip_empty: bool
) -> tuple[str, CaseStatus]:
    try:
        return _prepare_case(case, task, settings, ct_stats, out_dir)
    except EmptyOrganError as exc:
        if not skip_empty:
            raise
        return case.case_id, CaseStatus(EXCLUDED, str(exc))


def _image_and_mask(case: MSDCase, task: MSDTask, settings: PrepareSettings) -> tuple[np.ndarray, np.ndarray]:
    image, label, _, _ = read_case(case, task, settings.channel)
    return image, organ_mask(label, settings.organ_labels)


def _check_preparation(out_dir: Path, preparation: TaskPreparation) -> TaskPreparation | None:
    """The ``prep.json`` of ``out_dir`` (``None`` if it has none), checked to describe the same task
    and settings as ``preparation``.

    Raises:
        ConfigError: the folder was prepared from another task or with other settings.
    """
    path = out_dir / PREP_FILE
    if not path.exists():
        return None
    previous = TaskPreparation.read(path)
    identity = {"task_name": preparation.task_name, "task_dir": preparation.task_dir, **preparation.settings.to_dict()}
    before = {"task_name": previous.task_name, "task_dir": previous.task_dir, **previous.settings.to_dict()}
    for key, value in identity.items():
        if before[key] != value:
            raise ConfigError(
                path,
                f"this folder was prepared with {key}={before[key]!r}, now {value!r}; "
                "use another --out folder or delete this one",
            )
    return previous


def case_peak_bytes(case: MSDCase) -> int:
    """Estimated peak memory of preparing ``case``, from its image header alone (see
    :data:`PEAK_FLOAT32_COPIES`).

    Raises:
        InputDataError: the image header is unreadable.
    """
    return PEAK_FLOAT32_COPIES * np.dtype(np.float32).itemsize * image_voxels(case.image_path)


def worker_count(requested: int | None, peak_bytes: Sequence[int]) -> int:
    """Processes to prepare cases with: ``requested`` (default: every core), at most one per case,
    and no more than the available memory holds at the largest case's estimated peak; at least one.

    Args:
        requested: ``--workers``, ``None`` for the default.
        peak_bytes: estimated peak memory of each case to prepare (:func:`case_peak_bytes`).
    """
    by_memory = available_memory() // max(max(peak_bytes, default=1), 1)
    return max(1, min(requested or os.cpu_count() or 1, len(peak_bytes), by_memory))


def _prepare_in_pool(
    args: list[tuple], workers: int, out_dir: Path, statuses: dict[str, CaseStatus], bar: tqdm
) -> None:
    """Prepare the cases of ``args`` in ``workers`` processes that die with this one.

    On an error (of a case, or a worker killed) the cases not yet started are cancelled and
    those in progress finished before it is raised.

    Raises:
        L2SError: of a case as raised there; one naming the prepared folder when a worker died.
    """
    context = multiprocessing.get_context("spawn")  # the parent of each worker is this process (die_with_parent)
    with ProcessPoolExecutor(
        max_workers=workers, mp_context=context, initializer=die_with_parent, initargs=(os.getpid(),)
    ) as pool:
        futures = [pool.submit(_prepare_case_or_exclude, *a) for a in args]
        try:
            for future in futures:
                case_id, status = future.result()
                statuses[case_id] = status
                bar.update()
        except BrokenProcessPool:
            raise L2SError(
                out_dir,
                "a preparation worker process died (killed, e.g. for lack of memory); "
                "prepared cases are kept, run again (with fewer --workers)",
            ) from None
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def _record_exclusions(out_dir: Path, excluded: dict[str, str]) -> None:
    if excluded:
        Exclusions({**Exclusions.of_folder(out_dir).cases, **excluded}).write(out_dir / EXCLUDED_FILE)


def prepare_task(
    task_dir: str | Path,
    out_dir: str | Path,
    settings: PrepareSettings | None = None,
    skip_empty: bool = False,
    workers: int | None = None,
    progress: bool = True,
) -> dict[str, CaseStatus]:
    """Prepare every training case of an MSD task folder.

    Args:
        task_dir: MSD task folder (``dataset.json``, ``imagesTr/``, ``labelsTr/``).
        out_dir: prepared task folder (created; resumed if it exists with the same settings).
        settings: normalisation, channel, organ labels, split rule... (default: the paper's).
        skip_empty: leave out cases whose organ mask is empty (recorded in ``excluded.json``)
            instead of stopping with an error.
        workers: parallel processes (default: all cores); at most the number of cases, and
            at most as many as the available memory holds (:func:`worker_count`).
        progress: show a progress bar.

    Returns:
        case id → its :class:`CaseStatus`.

    Raises:
        InputDataError: a problem with a file of the task (named in the message); cases
            prepared before it stay prepared.
        ConfigError: the settings differ from those ``out_dir`` was prepared with, or the
            channel is not one that ``dataset.json`` declares (checked before anything is written).
    """
    settings = settings or PrepareSettings()
    task = read_task(task_dir)
    check_organ_labels(settings.organ_labels, task)
    if not 0 <= settings.channel < len(task.modality):
        raise ConfigError(
            "channel",
            f"{settings.channel} is not a channel of {task.name}: its dataset.json declares "
            f"{len(task.modality)} ({', '.join(f'{k} = {v}' for k, v in task.modality.items())})",
        )
    cases = selected_cases(task, settings.max_cases)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    preparation = TaskPreparation(
        task_name=task.name,
        task_dir=str(task.root.resolve()),
        settings=settings,
        modality=dict(task.modality),
        labels={str(k): v for k, v in task.labels.items()},
    )
    previous = _check_preparation(out_dir, preparation)
    split = split_cases([c.case_id for c in cases], seed=settings.split_seed, order=settings.split_order)
    if not (out_dir / SPLIT_FILE).exists():
        save_split(out_dir / SPLIT_FILE, split, settings.split_seed, settings.split_order)
    ct_stats = previous.ct_stats if previous else None
    if settings.normalisation == "ct" and ct_stats is None:
        train = [c for c in cases if c.case_id in set(split["train"])]
        ct_stats = foreground_intensity_stats(_image_and_mask(c, task, settings) for c in train)
    if previous is None:
        dataclasses.replace(preparation, ct_stats=ct_stats).write(out_dir / PREP_FILE)
    remove_stale_staging(out_dir / CASES_DIR)
    workers = worker_count(workers, [case_peak_bytes(c) for c in cases])
    statuses: dict[str, CaseStatus] = {}
    args = [(c, task, settings, ct_stats, out_dir, skip_empty) for c in cases]
    bar = tqdm(total=len(args), desc=f"prepare {task.name}", unit="case", disable=not progress)
    try:
        if workers == 1:
            for a in args:
                case_id, status = _prepare_case_or_exclude(*a)
                statuses[case_id] = status
                bar.update()
        else:
            _prepare_in_pool(args, workers, out_dir, statuses, bar)
    finally:
        bar.close()
        _record_exclusions(out_dir, {k: s.reason for k, s in statuses.items() if s.outcome == EXCLUDED})
    if all(status.outcome == EXCLUDED for status in statuses.values()):
        raise EmptyOrganError(
            task.root / "labelsTr",
            f"the organ (labels {settings.organ_labels or 'non-zero'}) is absent in every case; check --organ-labels",
        )
    return statuses
