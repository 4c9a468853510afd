"""Volume shapes and voxel spacings of phantom cases: one fixed shape, or MSD-shaped (``--profile msd``).

:func:`case_geometries` lists the ``(shape, spacing)`` of every case of a phantom task under one
of the :data:`~l2s_core.vocabulary.PHANTOM_PROFILES`: ``fixed`` gives every case the same
``(z, y, x)`` shape (the spacing then follows from the anatomy's field of view); ``msd`` draws
each case's geometry with :func:`case_geometry` from the case's own geometry stream
``np.random.default_rng([seed, organ index, case index, 1])``.

The ``msd`` profile gives each phantom task the case count of its Medical Segmentation
Decathlon task and, per case, a volume shape and voxel spacing drawn from the ranges of the real
training images, so that the pipeline meets what it meets on the real data: 512×512 CT with a
varying number of slices and slice thickness, thin anisotropic two-channel prostate MRI, the
cardiac MRI volumes. Shapes are generally not divisible by the low-resolution factors.

Sources of the ranges (training images of each task):

* case counts, modalities and image sizes: Simpson et al., "A large annotated medical image
  dataset for the development and evaluation of segmentation algorithms", arXiv:1902.09063
  (2019), Table 1 and the task descriptions; Antonelli et al., "The Medical Segmentation
  Decathlon", Nature Communications 13:4128 (2022);
* voxel spacings and numbers of slices: the dataset fingerprints of nnU-Net (Isensee et al.,
  Nature Methods 18:203-211 (2021), supplementary note 1 and its per-task dataset properties:
  median spacing spleen 5.0×0.79×0.79 mm, pancreas 2.5×0.80×0.80, liver 1.0×0.77×0.77, prostate
  3.6×0.62×0.62, heart 1.37×1.25×1.25; median shapes 90×512×512, 93×512×512, 432×512×512,
  20×320×319 and 115×320×232 after nnU-Net's crop to the non-zero region of the 320×320 heart
  images).

A case's z extent in millimetres is drawn first and its slice thickness second; the number of
slices follows and is clipped to the task's range, so thick-slice scans have few slices as in
the real data. The z extent ranges are calibrated, not looked up: they are chosen so that the
mean organ share of the phantom volumes matches the foreground percentages the paper's released
code reports for the real tasks (spleen 0.44 %, pancreas 0.22 %, prostate 2.71 %, liver 2.3 %,
heart 0.40 %; Figures 3c and 4), which ``tests/data/phantom/test_geometry.py`` checks.

``scale`` shrinks every axis and enlarges the spacing in proportion, so that the field of view,
and hence the anatomy, stays the same: the in-plane sides become ``round(side * scale)``; the
slices thicken by ``1 / scale`` too but never beyond the scaled in-plane voxel (nor below their
own thickness), so that a thick-slice CT keeps several slices through each organ on a laptop.
Every side is at least :data:`MIN_SIDE`.

Example:
    >>> import numpy as np
    >>> shape, spacing = case_geometry("prostate", np.random.default_rng(0), scale=0.5)
    >>> len(shape) == len(spacing) == 3
    True
"""

from __future__ import annotations

__all__ = ["DEFAULT_CASES", "MIN_SIDE", "MSD_GEOMETRY", "TaskGeometry", "case_geometries", "case_geometry"]

from dataclasses import dataclass

import numpy as np

from l2s_core.data.phantom.anatomy import ORGANS
from l2s_core.errors import ConfigError

#: Smallest side of a scaled volume (the low-resolution copy divides z by 3).
MIN_SIDE = 6
#: Number of cases of the ``fixed`` profile when none is given.
DEFAULT_CASES = 10
#: Last element of the seed of a case's geometry stream (its image stream has three elements).
_GEOMETRY_STREAM = 1


@dataclass(frozen=True)
class TaskGeometry:
    """Case count and per-case geometry ranges of one MSD task's training images.

    Attributes:
        cases: training cases of the task.
        inplane_voxels: in-plane sizes (y = x) that occur, drawn uniformly.
        inplane_mm: range of the in-plane voxel size.
        slice_mm: range of the slice thickness (z spacing).
        slices: range of the number of slices.
        extent_mm: range of the z field of view.
    """

    cases: int
    inplane_voxels: tuple[int, ...]
    inplane_mm: tuple[float, float]
    slice_mm: tuple[float, float]
    slices: tuple[int, int]
    extent_mm: tuple[float, float]


MSD_GEOMETRY: dict[str, TaskGeometry] = {
    # Task09_Spleen: 41 portal-venous CT, 512×512, 31-168 slices of 1.5-8 mm.
    "spleen": TaskGeometry(41, (512,), (0.61, 0.98), (1.5, 8.0), (31, 168), (180.0, 330.0)),
    # Task07_Pancreas: 281 portal-venous CT, 512×512, 37-751 slices of 0.7-7.5 mm.
    "pancreas": TaskGeometry(281, (512,), (0.61, 0.98), (0.7, 7.5), (37, 751), (100.0, 260.0)),
    # Task05_Prostate: 32 two-channel (T2, ADC) MRI, 320×320 (a few 256×256), 11-24 slices of 3-4 mm.
    "prostate": TaskGeometry(32, (320, 320, 320, 256), (0.60, 0.75), (3.0, 4.0), (11, 24), (36.0, 72.0)),
    # Task03_Liver: 131 portal-venous CT, 512×512, 74-987 slices of 0.7-5 mm.
    "liver": TaskGeometry(131, (512,), (0.56, 1.0), (0.7, 5.0), (74, 987), (380.0, 800.0)),
    # Task02_Heart: 20 mono-modal MRI, 320×320, 90-130 slices, 1.25×1.25×1.37 mm.
    "heart": TaskGeometry(20, (320,), (1.25, 1.25), (1.37, 1.37), (90, 130), (123.0, 178.0)),
}


def case_geometry(
    organ: str, rng: np.random.Generator, scale: float = 1.0
) -> tuple[tuple[int, int, int], tuple[float, float, float]]:
    """Draw one case's volume shape and voxel spacing.

    Args:
        organ: a key of :data:`MSD_GEOMETRY`.
        rng: the case's random stream for its geometry.
        scale: factor on every side (``0 < scale <= 1``); the spacing grows in proportion.

    Returns:
        ``(shape, spacing)``: ``(z, y, x)`` voxels and ``(z, y, x)`` millimetres.

    Raises:
        ConfigError: an unknown organ or a scale outside ``(0, 1]``.
    """
    if organ not in MSD_GEOMETRY:
        raise ConfigError("organ", f"no MSD geometry for {organ!r}; known: {', '.join(MSD_GEOMETRY)}")
    if not 0 < scale <= 1:
        raise ConfigError("scale", f"must lie in (0, 1], got {scale}")
    geometry = MSD_GEOMETRY[organ]
    inplane = int(rng.choice(geometry.inplane_voxels))
    inplane_mm = float(rng.uniform(*geometry.inplane_mm))
    slice_mm = float(rng.uniform(*geometry.slice_mm))
    slices = int(np.clip(round(rng.uniform(*geometry.extent_mm) / slice_mm), *geometry.slices))
    side = max(MIN_SIDE, round(inplane * scale))
    side_mm = inplane_mm * (inplane / side)
    # Thick slices are not thickened further than the scaled in-plane voxel (a 5 mm CT slice
    # scaled by 0.1 would be 50 mm and hold an organ in one slice), nor made thinner than they are.
    slice_scaled_mm = max(slice_mm, min(slice_mm / scale, side_mm))
    depth = max(MIN_SIDE, round(slices * slice_mm / slice_scaled_mm))
    return (depth, side, side), (slice_mm * (slices / depth), side_mm, side_mm)


def case_geometries(
    organ: str, n_cases: int | None, shape: tuple[int, int, int], seed: int, profile: str, scale: float
) -> list[tuple[tuple[int, int, int], tuple[float, float, float] | None]]:
    """``(shape, spacing)`` of every case of a phantom task, in case order.

    Args:
        organ: one of :data:`~l2s_core.data.phantom.anatomy.ORGANS` (``msd``: a key of :data:`MSD_GEOMETRY`).
        n_cases: number of cases; ``None``: :data:`DEFAULT_CASES` (``fixed``) or the MSD task's
            count (``msd``, where a number caps it).
        shape: ``(z, y, x)`` of every case of the ``fixed`` profile.
        seed: seed of the geometry streams (``msd``).
        profile: one of :data:`~l2s_core.vocabulary.PHANTOM_PROFILES`.
        scale: ``msd`` only: factor on every side (see :func:`case_geometry`).

    Returns:
        Per case, ``(z, y, x)`` voxels and ``(z, y, x)`` spacing in mm; the spacing is ``None``
        for ``fixed`` (the anatomy's field of view divided by the shape).
    """
    if profile == "fixed":
        return [(shape, None)] * (n_cases or DEFAULT_CASES)
    count = MSD_GEOMETRY[organ].cases if n_cases is None else min(n_cases, MSD_GEOMETRY[organ].cases)
    organ_index = ORGANS.index(organ)
    return [
        case_geometry(organ, np.random.default_rng([seed, organ_index, i, _GEOMETRY_STREAM]), scale)
        for i in range(count)
    ]
