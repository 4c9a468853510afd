"""Overlap and surface-distance metrics of one predicted organ mask against its ground truth.

Masks are ``(z, y, x)`` arrays of any integer or boolean dtype; a nonzero voxel belongs to the
organ. ``spacing`` is the voxel size ``(z, y, x)`` in millimetres. Every function returns plain
Python numbers.

Conventions for empty masks (every function states its own; none returns NaN):

* Dice and surface Dice: both masks empty → 1.0 (the prediction is right that there is no
  organ); exactly one empty → 0.0.
* HD95: both empty → 0.0; exactly one empty → ``math.inf``. A missed (or hallucinated) organ
  has no finite surface distance; it is reported as infinite rather than dropped, so that
  callers can count such cases in pooled summaries (see :func:`case_metrics`'s
  ``pred_empty`` and ``truth_empty``).

Surfaces and distances: the surface of a mask is the mask XOR its binary erosion
(:func:`scipy.ndimage.binary_erosion`) by the 3D 6-connectivity structuring element; voxels
outside the volume count as background, so organ voxels on the volume's faces are surface.
The distance from a surface voxel of one mask to the other mask is the exact Euclidean
distance in mm between its centre and the nearest surface voxel centre of the other mask.
Both steps run on the bounding box of the two masks: no organ voxel lies outside it, so this
changes nothing but the cost.

HD95 is ``max(P95(pred → truth), P95(truth → pred))``: the larger of the two directed 95th
percentiles (linear interpolation), each over the surface voxels of one mask. This is the
definition of MONAI's ``compute_hausdorff_distance(..., percentile=95)`` and of DeepMind's
``surface-distance`` package; MedPy's ``hd95`` instead takes the 95th percentile of the two
directed sets pooled, which can differ. The normalised surface Dice at tolerance ``τ``
(Nikolov et al., 2021) is the share of the surface voxels of both masks that lie within ``τ``
mm of the other mask's surface, each voxel weighing the same (MONAI's ``compute_surface_dice``
with ``use_subvoxels=False``; Nikolov et al. weigh surface elements by their area instead).

Implementation choice: the distances could be read from
``distance_transform_edt(~surface, sampling=spacing)`` (kept as the test oracle in
``tests/test_metrics.py``) or found with a KD-tree over the surface voxel coordinates scaled
by the spacing (used here). Both give the same distances (to 1e-13 mm), but the distance
transform costs time in proportion to the bounding box and the KD-tree in proportion to the
surface, which matters when small false positives far from the organ (a typical baseline
error) make the bounding box the whole volume. MONAI's CPU path works the same way
(6-connectivity erosion, KD-tree) and agrees with this module to float32 precision (tested),
but computes the surfaces once per metric and returns NaN for empty masks, where this module
extracts them once for both metrics and applies the conventions above. So this module uses its
own scipy code, and MONAI is a test oracle.
"""

from __future__ import annotations

__all__ = ["case_metrics", "confusion_counts", "dice", "dice_from_counts", "hd95", "pooled_dice", "surface_dice"]

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy import ndimage
from scipy.spatial import KDTree

from l2s_core.errors import ConfigError, InputDataError

_SIX_CONNECTED = ndimage.generate_binary_structure(3, 1)


def _organ_masks(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boolean organ masks of a prediction and its ground truth, checked to be alike.

    Args:
        pred: predicted mask, ``(z, y, x)``, nonzero = organ.
        truth: ground-truth mask, ``(z, y, x)``, nonzero = organ.

    Returns:
        ``(pred != 0, truth != 0)``, both boolean ``(z, y, x)``.

    Raises:
        InputDataError: if a mask is not 3D or the two shapes differ.
    """
    masks = []
    for name, array in (("pred", pred), ("truth", truth)):
        array = np.asarray(array)
        if array.ndim != 3:
            raise InputDataError(name, f"mask must be a (z, y, x) array, got shape {array.shape}")
        masks.append(array if array.dtype == bool else array != 0)
    if masks[0].shape != masks[1].shape:
        raise InputDataError("pred", f"mask shape {masks[0].shape} differs from the truth's {masks[1].shape}")
    return masks[0], masks[1]


def _checked_spacing(spacing: Sequence[float]) -> tuple[float, float, float]:
    """Voxel size as three positive finite floats.

    Args:
        spacing: ``(z, y, x)`` voxel size in mm.

    Returns:
        The spacing as a tuple of floats.

    Raises:
        InputDataError: if it is not three positive finite numbers.
    """
    values = tuple(float(s) for s in np.ravel(np.asarray(spacing, dtype=float)))
    if len(values) != 3 or not all(math.isfinite(s) and s > 0 for s in values):
        raise InputDataError("spacing", f"must be three positive (z, y, x) sizes in mm, got {spacing!r}")
    return values  # type: ignore[return-value]


def confusion_counts(pred: np.ndarray, truth: np.ndarray) -> tuple[int, int, int]:
    """Voxel counts of true positives, false positives and false negatives.

    Args:
        pred: predicted mask, ``(z, y, x)``, nonzero = organ.
        truth: ground-truth mask, ``(z, y, x)``, nonzero = organ.

    Returns:
        ``(tp, fp, fn)``.

    Raises:
        InputDataError: if a mask is not 3D or the shapes differ.
    """
    pred_mask, truth_mask = _organ_masks(pred, truth)
    tp = int(np.count_nonzero(pred_mask & truth_mask))
    return tp, int(np.count_nonzero(pred_mask)) - tp, int(np.count_nonzero(truth_mask)) - tp


def dice_from_counts(tp: int, fp: int, fn: int) -> float:
    """Dice ``2 TP / (2 TP + FP + FN)`` from voxel counts.

    Args:
        tp: true positives.
        fp: false positives.
        fn: false negatives.

    Returns:
        The Dice in [0, 1]; 1.0 when all three counts are 0 (both masks empty).

    Raises:
        InputDataError: if a count is negative.
    """
    if min(tp, fp, fn) < 0:
        raise InputDataError("dice_from_counts", f"counts must be >= 0, got tp={tp}, fp={fp}, fn={fn}")
    denominator = 2 * tp + fp + fn
    return 1.0 if denominator == 0 else float(2 * tp / denominator)


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice overlap of a predicted mask with the ground truth.

    Args:
        pred: predicted mask, ``(z, y, x)``, nonzero = organ.
        truth: ground-truth mask, ``(z, y, x)``, nonzero = organ.

    Returns:
        The Dice in [0, 1]; 1.0 if both masks are empty, 0.0 if exactly one is.

    Raises:
        InputDataError: if a mask is not 3D or the shapes differ.
    """
    return dice_from_counts(*confusion_counts(pred, truth))


def _surface(mask: np.ndarray) -> np.ndarray:
    """Surface voxels of a boolean ``(z, y, x)`` mask: the mask XOR its 6-connected erosion."""
    return mask ^ ndimage.binary_erosion(mask, structure=_SIX_CONNECTED)


def _directed_surface_distances(
    pred_mask: np.ndarray, truth_mask: np.ndarray, spacing: tuple[float, float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Distances in mm from each surface voxel of one mask to the other mask's surface.

    Args:
        pred_mask: boolean ``(z, y, x)`` prediction, not empty.
        truth_mask: boolean ``(z, y, x)`` ground truth, not empty.
        spacing: ``(z, y, x)`` voxel size in mm.

    Returns:
        ``(pred_to_truth, truth_to_pred)``: 1D float arrays, one distance per surface voxel of
        the prediction and of the ground truth respectively.
    """
    box = ndimage.find_objects((pred_mask | truth_mask).astype(np.uint8))[0]  # nothing outside is organ
    scale = np.asarray(spacing)
    pred_points = np.argwhere(_surface(pred_mask[box])) * scale
    truth_points = np.argwhere(_surface(truth_mask[box])) * scale
    return KDTree(truth_points).query(pred_points)[0], KDTree(pred_points).query(truth_points)[0]


def _surface_scores(
    pred_mask: np.ndarray, truth_mask: np.ndarray, spacing: tuple[float, float, float], tolerance_mm: float
) -> tuple[float, float]:
    """HD95 and surface Dice of two boolean masks, with the module's empty-mask conventions.

    Args:
        pred_mask: boolean ``(z, y, x)`` prediction.
        truth_mask: boolean ``(z, y, x)`` ground truth.
        spacing: ``(z, y, x)`` voxel size in mm.
        tolerance_mm: surface Dice tolerance in mm.

    Returns:
        ``(hd95_mm, surface_dice)``.
    """
    pred_empty, truth_empty = not pred_mask.any(), not truth_mask.any()
    if pred_empty and truth_empty:
        return 0.0, 1.0
    if pred_empty or truth_empty:
        return math.inf, 0.0
    pred_to_truth, truth_to_pred = _directed_surface_distances(pred_mask, truth_mask, spacing)
    hd95_mm = max(float(np.percentile(pred_to_truth, 95)), float(np.percentile(truth_to_pred, 95)))
    within = np.count_nonzero(pred_to_truth <= tolerance_mm) + np.count_nonzero(truth_to_pred <= tolerance_mm)
    return hd95_mm, float(within / (pred_to_truth.size + truth_to_pred.size))


def _checked_tolerance(tolerance_mm: float) -> float:
    """The surface Dice tolerance as a finite float >= 0.

    Raises:
        ConfigError: if it is negative or not finite.
    """
    tolerance = float(tolerance_mm)
    if not (math.isfinite(tolerance) and tolerance >= 0):
        raise ConfigError("tolerance_mm", f"must be a finite distance >= 0 in mm, got {tolerance_mm!r}")
    return tolerance


def hd95(pred: np.ndarray, truth: np.ndarray, spacing: Sequence[float]) -> float:
    """95th percentile symmetric Hausdorff distance between the two masks' surfaces.

    Args:
        pred: predicted mask, ``(z, y, x)``, nonzero = organ.
        truth: ground-truth mask, ``(z, y, x)``, nonzero = organ.
        spacing: ``(z, y, x)`` voxel size in mm.

    Returns:
        ``max(P95(pred → truth), P95(truth → pred))`` in mm (see the module docstring); 0.0 if
        both masks are empty; ``math.inf`` if exactly one is.

    Raises:
        InputDataError: if a mask is not 3D, the shapes differ or the spacing is invalid.
    """
    pred_mask, truth_mask = _organ_masks(pred, truth)
    return _surface_scores(pred_mask, truth_mask, _checked_spacing(spacing), 0.0)[0]


def surface_dice(pred: np.ndarray, truth: np.ndarray, spacing: Sequence[float], tolerance_mm: float) -> float:
    """Normalised surface Dice at a tolerance (Nikolov et al.), counting surface voxels.

    Args:
        pred: predicted mask, ``(z, y, x)``, nonzero = organ.
        truth: ground-truth mask, ``(z, y, x)``, nonzero = organ.
        spacing: ``(z, y, x)`` voxel size in mm.
        tolerance_mm: a surface voxel within this distance (mm, inclusive) of the other
            mask's surface counts as correct.

    Returns:
        The share, in [0, 1], of the surface voxels of both masks within ``tolerance_mm`` of
        the other surface; 1.0 if both masks are empty, 0.0 if exactly one is.

    Raises:
        InputDataError: if a mask is not 3D, the shapes differ or the spacing is invalid.
        ConfigError: if ``tolerance_mm`` is negative or not finite.
    """
    pred_mask, truth_mask = _organ_masks(pred, truth)
    return _surface_scores(pred_mask, truth_mask, _checked_spacing(spacing), _checked_tolerance(tolerance_mm))[1]


def case_metrics(
    pred: np.ndarray, truth: np.ndarray, spacing: Sequence[float], tolerance_mm: float = 2.0
) -> dict[str, Any]:
    """All metrics of one case, with the surface distances computed once.

    Args:
        pred: predicted mask, ``(z, y, x)``, nonzero = organ.
        truth: ground-truth mask, ``(z, y, x)``, nonzero = organ.
        spacing: ``(z, y, x)`` voxel size in mm.
        tolerance_mm: surface Dice tolerance in mm.

    Returns:
        ``tp``, ``fp``, ``fn`` (int voxel counts), ``dice``, ``hd95_mm`` (``math.inf`` when
        exactly one mask is empty), ``surface_dice`` (floats), ``pred_empty`` and
        ``truth_empty`` (bools), with the conventions of :func:`dice`, :func:`hd95` and
        :func:`surface_dice`.

    Raises:
        InputDataError: if a mask is not 3D, the shapes differ or the spacing is invalid.
        ConfigError: if ``tolerance_mm`` is negative or not finite.
    """
    pred_mask, truth_mask = _organ_masks(pred, truth)
    tp, fp, fn = confusion_counts(pred_mask, truth_mask)
    hd95_mm, surface = _surface_scores(
        pred_mask, truth_mask, _checked_spacing(spacing), _checked_tolerance(tolerance_mm)
    )
    return {
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "dice": dice_from_counts(tp, fp, fn),
        "hd95_mm": hd95_mm,
        "surface_dice": surface,
        "pred_empty": tp + fp == 0,
        "truth_empty": tp + fn == 0,
    }


def _count(row: Mapping[str, Any] | object, name: str) -> int:
    """Count ``name`` (``tp``, ``fp`` or ``fn``) of a dict-like or attribute-bearing row.

    Raises:
        InputDataError: if the row has no such count.
    """
    if isinstance(row, Mapping):
        if name not in row:
            raise InputDataError("pooled_dice", f"a row has no {name!r}: {row!r}")
        return int(row[name])
    if not hasattr(row, name):
        raise InputDataError("pooled_dice", f"a row has no {name!r}: {row!r}")
    return int(getattr(row, name))


def pooled_dice(rows: Iterable[Mapping[str, Any] | object]) -> float:
    """Dice pooled over cases: ``2 ΣTP / (2 ΣTP + ΣFP + ΣFN)`` (the paper's per-run figure).

    Args:
        rows: one per case, dicts with keys or objects with attributes ``tp``, ``fp``, ``fn``.

    Returns:
        The pooled Dice; 1.0 if every mask of every case is empty.

    Raises:
        InputDataError: if there are no rows or a row lacks a count.
    """
    totals = [0, 0, 0]
    n_rows = 0
    for row in rows:
        for i, name in enumerate(("tp", "fp", "fn")):
            totals[i] += _count(row, name)
        n_rows += 1
    if n_rows == 0:
        raise InputDataError("pooled_dice", "no cases to pool")
    return dice_from_counts(*totals)
