"""What a task's cases look like on the measures the report uses: the organ's foreground share,
its extent in voxels, and the intensities inside and outside it (``benchmarks/bench_phantom_realism.py``
sets the phantoms beside a real task with it).

Each case is read as preparation reads it (:func:`~l2s_core.data.prepare.read_case`: RAS
``(z, y, x)``, the organ = the non-zero labels) and its image z-scored per case, as the
studies' ``normalisation: zscore`` does, so that tasks of any intensity scale compare; the raw
intensity maxima are kept as read.
"""

from __future__ import annotations

__all__ = ["CaseStatistics", "TaskStatistics", "case_statistics", "task_statistics"]

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from l2s_core.boxes import bounding_box
from l2s_core.data.msd import organ_mask, read_task, selected_cases
from l2s_core.data.normalise import normalise
from l2s_core.data.prepare import read_case
from l2s_core.errors import EmptyOrganError


@dataclass(frozen=True)
class CaseStatistics:
    """One case on the report's measures.

    Attributes:
        shape: ``(z, y, x)`` of the image.
        foreground_share: organ voxels / image voxels.
        organ_extent: ``(z, y, x)`` sides of the organ's bounding box, in voxels.
        raw_max: the image's largest intensity as stored.
        inside_mean: mean of the z-scored image inside the organ.
        inside_sd: its standard deviation inside the organ.
        outside_mean: mean of the z-scored image outside the organ.
        outside_sd: its standard deviation outside the organ.
    """

    shape: tuple[int, int, int]
    foreground_share: float
    organ_extent: tuple[int, int, int]
    raw_max: float
    inside_mean: float
    inside_sd: float
    outside_mean: float
    outside_sd: float

    @property
    def contrast(self) -> float:
        """Organ against the rest, in standard deviations of the rest: (inside mean − outside mean) / outside sd."""
        return (self.inside_mean - self.outside_mean) / max(self.outside_sd, 1e-8)


def case_statistics(image: np.ndarray, mask: np.ndarray) -> CaseStatistics:
    """The :class:`CaseStatistics` of a ``(z, y, x)`` image and its organ mask of the same shape.

    Raises:
        ValueError: the mask holds no organ voxel.
    """
    box = bounding_box(mask)
    if box is None:
        raise ValueError("the organ mask is empty")
    organ = mask > 0
    scored = normalise(image, "zscore")
    inside, outside = scored[organ], scored[~organ]
    return CaseStatistics(
        shape=tuple(int(s) for s in image.shape),  # type: ignore[arg-type]
        foreground_share=float(organ.mean()),
        organ_extent=(box[3] - box[0], box[4] - box[1], box[5] - box[2]),
        raw_max=float(image.max()),
        inside_mean=float(inside.mean()),
        inside_sd=float(inside.std()),
        outside_mean=float(outside.mean()) if outside.size else float("nan"),
        outside_sd=float(outside.std()) if outside.size else float("nan"),
    )


@dataclass(frozen=True)
class TaskStatistics:
    """A task's cases on the report's measures: means over the cases, with ranges where they matter.

    Attributes:
        task_name: ``dataset.json``'s name.
        n_cases: cases measured.
        shape: mean ``(z, y, x)`` of the images, in voxels.
        foreground_percent: mean organ share of the image, in %.
        foreground_percent_range: smallest and largest case's share, in %.
        organ_extent: mean ``(z, y, x)`` sides of the organ's bounding box, in voxels.
        raw_max_range: smallest and largest of the cases' raw intensity maxima.
        inside_mean: mean over cases of the z-scored mean inside the organ.
        inside_sd: mean over cases of the z-scored sd inside the organ.
        outside_mean: mean over cases of the z-scored mean outside the organ.
        outside_sd: mean over cases of the z-scored sd outside the organ.
        contrast: mean over cases of :attr:`CaseStatistics.contrast`.
    """

    task_name: str
    n_cases: int
    shape: tuple[float, float, float]
    foreground_percent: float
    foreground_percent_range: tuple[float, float]
    organ_extent: tuple[float, float, float]
    raw_max_range: tuple[float, float]
    inside_mean: float
    inside_sd: float
    outside_mean: float
    outside_sd: float
    contrast: float

    @classmethod
    def of_cases(cls, task_name: str, cases: list[CaseStatistics]) -> TaskStatistics:
        """The statistics of a task from those of its cases (at least one)."""
        shares = [100.0 * c.foreground_share for c in cases]
        maxima = [c.raw_max for c in cases]

        def mean(name: str) -> float:
            return float(np.mean([getattr(c, name) for c in cases]))

        return cls(
            task_name=task_name,
            n_cases=len(cases),
            shape=tuple(float(v) for v in np.mean([c.shape for c in cases], axis=0)),  # type: ignore[arg-type]
            foreground_percent=float(np.mean(shares)),
            foreground_percent_range=(min(shares), max(shares)),
            organ_extent=tuple(float(v) for v in np.mean([c.organ_extent for c in cases], axis=0)),  # type: ignore[arg-type]
            raw_max_range=(min(maxima), max(maxima)),
            inside_mean=mean("inside_mean"),
            inside_sd=mean("inside_sd"),
            outside_mean=mean("outside_mean"),
            outside_sd=mean("outside_sd"),
            contrast=mean("contrast"),
        )


def task_statistics(task_dir: str | Path, max_cases: int | None = None, channel: int = 0) -> TaskStatistics:
    """The :class:`TaskStatistics` of an MSD-layout task folder's first ``max_cases`` cases
    (sorted ids; ``None``: all), the organ being every non-zero label.

    Raises:
        InputDataError: an unreadable task folder or case (named in the message).
        EmptyOrganError: a case without organ (its label file named).
    """
    task = read_task(task_dir)
    statistics = []
    for case in selected_cases(task, max_cases):
        image, label, _, _ = read_case(case, task, channel)
        mask = organ_mask(label)
        if not mask.any():
            raise EmptyOrganError(case.label_path, "the organ mask is empty")
        statistics.append(case_statistics(image, mask))
    return TaskStatistics.of_cases(task.name, statistics)
