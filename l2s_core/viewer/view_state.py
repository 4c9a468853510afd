"""What one frame of the slice explorer shows: :class:`ViewState`, a frozen record built from the
controls' values by :meth:`~l2s_core.viewer.slice_viewer.SliceViewer.view_state` and drawn by
:func:`~l2s_core.viewer.drawing.draw`. Everything a frame depends on is in it, so that two
states with the same values draw the same figure."""

from __future__ import annotations

__all__ = ["Layer", "Outline", "ViewState"]

from dataclasses import dataclass

import numpy as np

from l2s_core.boxes import Box


@dataclass(frozen=True, eq=False)
class Layer:
    """One coloured overlay of the figure.

    Attributes:
        name: the overlay's name (``ground_truth``, a prediction source, ``manual``).
        label: its name in the legend (``ground truth``, ``two-stage``, ...).
        colour: its colour (``#rrggbb``).
        mask: ``(z, y, x)`` mask on the image's grid, or ``None`` when it is not drawn (switched
            off, or nothing to draw: the manual result before "segment in box").
    """

    name: str
    label: str
    colour: str
    mask: np.ndarray | None


@dataclass(frozen=True)
class Outline:
    """One box outline of the figure.

    Attributes:
        name: its style in :data:`~l2s_core.viewer.display.BOX_STYLES` (``crop``, ``two_stage``,
            ``manual``).
        box: half-open ``(z0, y0, x0, z1, y1, x1)``, or ``None`` when it is not drawn.
    """

    name: str
    box: Box | None


@dataclass(frozen=True, eq=False)
class ViewState:
    """One frame of the slice explorer.

    Attributes:
        case_id: the case shown.
        image: its ``(z, y, x)`` image.
        spacing: its voxel size in mm, ``(z, y, x)``.
        axis: the slicing axis (0 axial, 1 coronal, 2 sagittal).
        index: the slice index along ``axis``.
        window: width of the intensity range shown (> 0).
        level: centre of that range.
        opacity: alpha of the overlays, in ``[0, 1]``.
        layers: the overlays in drawing order (one per overlay of the viewer, drawn or not).
        outlines: the box outlines in drawing order (one per style of
            :data:`~l2s_core.viewer.display.BOX_STYLES`, drawn or not).
        box_notes: ``(label, box)`` of the boxes the status line names (``label`` box, the
            predictions' boxes computed so far), drawn or not.
    """

    case_id: str
    image: np.ndarray
    spacing: tuple[float, float, float]
    axis: int
    index: int
    window: float
    level: float
    opacity: float
    layers: tuple[Layer, ...]
    outlines: tuple[Outline, ...]
    box_notes: tuple[tuple[str, Box], ...]
