"""The slice explorer's drawing: :func:`draw` sets a matplotlib figure from a
:class:`~l2s_core.viewer.view_state.ViewState` and gives the frame's status line, legend and PNG.

Pure functions of the state (no widgets): the same state draws the same figure whoever asks, a
test as well as the :class:`~l2s_core.viewer.slice_viewer.SliceViewer` that wires the controls
to it. Display conventions (orientation, aspect, windowing) are those of
:mod:`~l2s_core.viewer.display`.

Example:
    >>> artists = new_figure(["ground_truth", "manual"])  # doctest: +SKIP
    >>> frame = draw(state, artists)  # doctest: +SKIP
"""

from __future__ import annotations

__all__ = ["FigureArtists", "Frame", "draw", "figure_png", "legend_entries", "new_figure", "status_html"]

import base64
import html
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from matplotlib.patches import Rectangle

from l2s_core.viewer.display import (
    BOX_STYLES,
    VIEWS,
    LegendEntry,
    box_rectangle,
    legend_html,
    pixel_aspect,
    slice_along,
    window_to_unit,
)
from l2s_core.viewer.view_state import ViewState


@dataclass(frozen=True)
class FigureArtists:
    """The figure :func:`draw` sets.

    Attributes:
        figure: the matplotlib figure.
        image: the image of the slice.
        overlays: overlay name → its image (hidden until a state draws it).
        boxes: box outline name (:data:`~l2s_core.viewer.display.BOX_STYLES`) → its rectangle.
    """

    figure: Figure
    image: AxesImage
    overlays: Mapping[str, AxesImage]
    boxes: Mapping[str, Rectangle]


@dataclass(frozen=True)
class Frame:
    """What a drawn frame shows besides the figure's artists.

    Attributes:
        status: HTML line of the case's facts and boxes (:func:`status_html`).
        legend: HTML legend of everything drawn (:func:`legend_entries`).
        png: the figure as a base64 PNG.
    """

    status: str
    legend: str
    png: str


def new_figure(overlay_names: Sequence[str]) -> FigureArtists:
    """A blank figure with one (hidden) overlay image per name and one rectangle per box style.

    Args:
        overlay_names: the overlays the states drawn on it have, in drawing order.
    """
    figure = Figure(figsize=(6, 6), dpi=90)
    axes = figure.add_axes((0.02, 0.02, 0.96, 0.9))
    axes.set_axis_off()
    image = axes.imshow(
        np.zeros((1, 1), np.float32), cmap="gray", vmin=0.0, vmax=1.0, origin="lower", interpolation="nearest"
    )
    overlays = {
        name: axes.imshow(
            np.ma.masked_all((1, 1)), vmin=0.0, vmax=1.0, origin="lower", interpolation="nearest", visible=False
        )
        for name in overlay_names
    }
    boxes = {
        name: Rectangle((0, 0), 0, 0, fill=False, edgecolor=colour, linestyle=style, linewidth=1.5, visible=False)
        for name, (_, colour, style) in BOX_STYLES.items()
    }
    for rectangle in boxes.values():
        axes.add_patch(rectangle)
    return FigureArtists(figure, image, overlays, boxes)


def draw(state: ViewState, artists: FigureArtists) -> Frame:
    """Set the figure's artists to show ``state``: the windowed slice with the voxel spacing's
    aspect, each layer with a mask as a coloured overlay, each outline with a box crossing the
    slice as a rectangle, and a title naming the case, view and slice.

    Args:
        state: the frame to draw.
        artists: a figure from :func:`new_figure` with an overlay for each of the state's layers.

    Returns:
        The frame's status line, legend and PNG.

    Raises:
        KeyError: a layer the figure has no overlay for.
        IndexError: the slice is outside the image.
    """
    axis, index, image = state.axis, state.index, state.image
    pixels = slice_along(image, axis, index)
    height, width = pixels.shape
    extent = (-0.5, width - 0.5, -0.5, height - 0.5)
    artists.image.set_data(window_to_unit(pixels, state.window, state.level))
    artists.image.set_extent(extent)
    axes = artists.image.axes
    axes.set_xlim(width - 0.5, -0.5)
    axes.set_ylim(-0.5, height - 0.5)
    axes.set_aspect(pixel_aspect(state.spacing, axis))
    view = next(name for name, a in VIEWS.items() if a == axis)
    axes.set_title(f"{state.case_id}  {view} slice {index} / {image.shape[axis] - 1}", fontsize=10)
    for layer in state.layers:
        artist = artists.overlays[layer.name]
        artist.set_visible(layer.mask is not None)
        if layer.mask is not None:
            plane = np.asarray(slice_along(layer.mask, axis, index)) > 0
            artist.set_data(np.ma.masked_array(plane.astype(np.float32), mask=~plane))
            artist.set_cmap(ListedColormap([layer.colour]))
            artist.set_extent(extent)
            artist.set_alpha(state.opacity)
    for outline in state.outlines:
        rectangle = box_rectangle(outline.box, axis, index) if outline.box is not None else None
        artists.boxes[outline.name].set_visible(rectangle is not None)
        if rectangle is not None:
            artists.boxes[outline.name].set_bounds(*rectangle)
    return Frame(status_html(state), legend_html(legend_entries(state)), figure_png(artists.figure))


def legend_entries(state: ViewState) -> list[LegendEntry]:
    """What :func:`draw` draws for ``state``, in drawing order: the layers with a mask and the
    outlines with a box (whether or not it crosses the slice)."""
    overlays = [LegendEntry(layer.label, layer.colour) for layer in state.layers if layer.mask is not None]
    return overlays + [LegendEntry(*BOX_STYLES[outline.name]) for outline in state.outlines if outline.box is not None]


def status_html(state: ViewState) -> str:
    """The case's facts as one HTML line: its name, ``(z, y, x)`` shape and spacing, then each of
    the state's :attr:`~l2s_core.viewer.view_state.ViewState.box_notes` (names HTML-escaped: a
    scan's file name may hold ``&`` or ``<``)."""
    spacing = ", ".join(f"{s:g}" for s in state.spacing)
    facts = [f"<b>{html.escape(state.case_id)}</b>: (z, y, x) {state.image.shape}, spacing ({spacing}) mm"]
    facts += [f"{html.escape(label)} box {box}" for label, box in state.box_notes]
    return "; ".join(facts)


def figure_png(figure: Figure) -> str:
    """The figure as a base64 PNG (works with the Agg backend, no ipympl)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return base64.b64encode(buffer.getvalue()).decode("ascii")
