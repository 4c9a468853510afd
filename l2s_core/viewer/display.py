"""Display maths of the slice explorer: slicing, pixel aspect, windowing, box outlines, colours
and the legend. Pure functions of arrays and values, no widgets.

Display conventions: rows of a slice are its first remaining array axis, columns its second
(axial ``z`` → ``(y, x)``, coronal ``y`` → ``(z, x)``, sagittal ``x`` → ``(z, y)``), drawn with
the first axis increasing upwards (anterior up in axial views, superior up otherwise) and the
second increasing to the left, which on the RAS arrays of :mod:`l2s_core.data.io` gives the
radiological convention (patient's right on the viewer's left; anterior on the left in sagittal
views). Pixels are drawn with the aspect of the voxel spacing.
"""

from __future__ import annotations

__all__ = [
    "BOX_STYLES",
    "CT_SOFT_TISSUE",
    "GROUND_TRUTH",
    "LABEL_BOX",
    "LegendEntry",
    "MANUAL",
    "OVERLAY_STYLES",
    "SPARE_COLOURS",
    "TWO_STAGE",
    "VIEWS",
    "auto_window",
    "box_rectangle",
    "ct_window",
    "legend_html",
    "overlay_styles",
    "percentile_window",
    "pixel_aspect",
    "slice_along",
    "window_sample",
    "window_to_unit",
]

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from l2s_core.boxes import Box

#: Display name and array axis of each view.
VIEWS = {"axial": 0, "coronal": 1, "sagittal": 2}
#: Soft-tissue CT window ``(width, level)`` in HU, the default for raw (``none``-normalised) CT.
CT_SOFT_TISSUE = (400.0, 40.0)
GROUND_TRUTH = "ground_truth"
MANUAL = "manual"
TWO_STAGE = "two_stage"
#: The label box outline (the prepared case's organ box, margin included).
LABEL_BOX = "crop"
#: Label and colour of the known overlays; other prediction sources take their name and a spare colour.
OVERLAY_STYLES = {
    GROUND_TRUTH: ("ground truth", "#2ca02c"),
    "baseline": ("baseline", "#d62728"),
    TWO_STAGE: ("two-stage", "#1f77b4"),
    "gt_localised": ("GT-localised", "#ff7f0e"),
    MANUAL: ("segmented in box", "#e377c2"),
}
SPARE_COLOURS = ("#9467bd", "#8c564b", "#17becf", "#bcbd22")
#: Label, colour and line style of the box outlines.
BOX_STYLES = {
    LABEL_BOX: ("label box", OVERLAY_STYLES[GROUND_TRUTH][1], "dashed"),
    TWO_STAGE: ("two-stage box", OVERLAY_STYLES[TWO_STAGE][1], "dashed"),
    MANUAL: ("manual box", OVERLAY_STYLES[MANUAL][1], "solid"),
}


def overlay_styles(names: Sequence[str]) -> dict[str, tuple[str, str]]:
    """Label and colour of each overlay: those of :data:`OVERLAY_STYLES` for the known names, the
    name and the next of :data:`SPARE_COLOURS` (cycling) for the others, in the order given."""
    spare = [name for name in names if name not in OVERLAY_STYLES]
    return {
        name: OVERLAY_STYLES.get(name) or (name, SPARE_COLOURS[spare.index(name) % len(SPARE_COLOURS)])
        for name in names
    }


def slice_along(volume: np.ndarray, axis: int, index: int) -> np.ndarray:
    """One slice of a ``(z, y, x)`` volume, as a view (a memmap stays on disk).

    Args:
        volume: array of shape ``(z, y, x)``.
        axis: 0 (axial, returns ``(y, x)``), 1 (coronal, ``(z, x)``) or 2 (sagittal, ``(z, y)``).
        index: slice index along ``axis``.

    Returns:
        The 2-D slice, rows along the first remaining axis and columns along the second.

    Raises:
        IndexError: ``axis`` or ``index`` out of range.
    """
    if axis not in (0, 1, 2):
        raise IndexError(f"axis must be 0, 1 or 2, got {axis}")
    if not 0 <= index < volume.shape[axis]:
        raise IndexError(f"slice {index} outside 0..{volume.shape[axis] - 1} along axis {axis}")
    return volume[(slice(None),) * axis + (index,)]


def pixel_aspect(spacing: Sequence[float], axis: int) -> float:
    """Height / width of a displayed pixel of a slice along ``axis`` (see :func:`slice_along`).

    Args:
        spacing: voxel size in mm, ``(z, y, x)``.
        axis: the slicing axis.
    """
    rows, cols = (a for a in range(3) if a != axis)
    return float(spacing[rows]) / float(spacing[cols])


def window_to_unit(image: np.ndarray, window: float, level: float) -> np.ndarray:
    """Map intensities to ``[0, 1]``: ``level - window / 2`` → 0, ``level + window / 2`` → 1, clipped.

    Args:
        image: array of any shape.
        window: width of the intensity range shown (> 0).
        level: centre of that range.

    Returns:
        float32 array of the same shape.

    Raises:
        ValueError: ``window`` is not positive.
    """
    if not window > 0:
        raise ValueError(f"window must be positive, got {window}")
    low = level - window / 2.0
    return np.clip((np.asarray(image, dtype=np.float32) - low) / window, 0.0, 1.0)


def window_sample(volume: np.ndarray, max_voxels: int = 2**20) -> np.ndarray:
    """A regular sub-sample of a ``(z, y, x)`` volume of at most about ``max_voxels`` voxels
    (float64), so that a memory-mapped volume is only partly read: the voxels
    :func:`auto_window` takes its percentiles of."""
    step = max(1, math.ceil((volume.size / max_voxels) ** (1 / 3)))
    return np.asarray(volume[::step, ::step, ::step], dtype=np.float64)


def percentile_window(sample: np.ndarray, percentiles: tuple[float, float] = (1.0, 99.0)) -> tuple[float, float]:
    """Window and level spanning two intensity percentiles of a sample (:func:`window_sample`),
    so that one sample gives several windows; the window is at least 1e-6 for a constant image."""
    low, high = np.percentile(sample, percentiles)
    return max(float(high - low), 1e-6), float(low + high) / 2.0


def auto_window(
    volume: np.ndarray, percentiles: tuple[float, float] = (1.0, 99.0), max_voxels: int = 2**20
) -> tuple[float, float]:
    """Window and level spanning two intensity percentiles of a volume.

    The percentiles are taken on a regular sub-sample of at most about ``max_voxels`` voxels
    (:func:`window_sample`), so a memory-mapped volume is only partly read.

    Args:
        volume: ``(z, y, x)`` image.
        percentiles: lower and upper percentile.
        max_voxels: sub-sample size bound.

    Returns:
        ``(window, level)``; the window is at least 1e-6 for a constant image.
    """
    return percentile_window(window_sample(volume, max_voxels), percentiles)


def ct_window(normalisation: str, modality: str) -> tuple[float, float] | None:
    """:data:`CT_SOFT_TISSUE` for raw CT intensities (normalisation ``none`` of a CT), else ``None``.

    Args:
        normalisation: ``zscore``, ``ct`` or ``none``.
        modality: modality name of the channel shown (``dataset.json``), e.g. ``CT``.
    """
    return CT_SOFT_TISSUE if normalisation == "none" and modality.strip().upper() == "CT" else None


def box_rectangle(box: Box, axis: int, index: int) -> tuple[float, float, float, float] | None:
    """Outline of a box on one slice, in the slice's pixel coordinates (pixel centres at integers).

    Args:
        box: half-open ``(z0, y0, x0, z1, y1, x1)`` (may reach beyond the array).
        axis: the slicing axis.
        index: the slice index along ``axis``.

    Returns:
        ``(column, row, width, height)`` of the lower-left corner and size, or ``None`` when
        the slice does not cross the box.
    """
    if not box[axis] <= index < box[axis + 3]:
        return None
    rows, cols = (a for a in range(3) if a != axis)
    return (box[cols] - 0.5, box[rows] - 0.5, float(box[cols + 3] - box[cols]), float(box[rows + 3] - box[rows]))


@dataclass(frozen=True)
class LegendEntry:
    """One line of the legend.

    Attributes:
        label: what is drawn (``ground truth``, ``two-stage box``, ...).
        colour: its colour (``#rrggbb``).
        outline: ``None`` for a filled overlay, else the line style of a box (``dashed``, ``solid``).
    """

    label: str
    colour: str
    outline: str | None = None


def legend_html(entries: Sequence[LegendEntry]) -> str:
    """The legend as HTML: a swatch (filled for an overlay, an outline for a box) and the label of
    each entry, wrapping onto further lines when the row is full.

    Args:
        entries: what is drawn, in drawing order.

    Returns:
        A ``<div class="l2s-legend">`` with one ``<span class="l2s-legend-item">`` per entry.
    """
    items = []
    for entry in entries:
        swatch = (
            f"background:{entry.colour}"
            if entry.outline is None
            else f"border:2px {entry.outline} {entry.colour};box-sizing:border-box"
        )
        items.append(
            f'<span class="l2s-legend-item" style="margin-right:1.2em;white-space:nowrap">'
            f'<span style="display:inline-block;width:1.1em;height:1.1em;vertical-align:middle;{swatch}">'
            f"</span>&nbsp;{html.escape(entry.label)}</span>"
        )
    body = "".join(items) or "<i>nothing drawn</i>"
    return f'<div class="l2s-legend" style="display:flex;flex-wrap:wrap;row-gap:0.2em">{body}</div>'
