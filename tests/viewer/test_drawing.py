"""The explorer's drawing as a pure function of a view state, without widgets
(``l2s_core.viewer.drawing``): image, extent, aspect and title, overlays, box rectangles, legend,
status line, and the same state drawing the same figure whatever was drawn before."""

import ast
import dataclasses
import inspect
from types import ModuleType

import numpy as np
import pytest
from matplotlib.colors import to_rgba
from matplotlib.image import AxesImage

from l2s_core.viewer import drawing, view_state
from l2s_core.viewer.display import LegendEntry, window_to_unit
from l2s_core.viewer.drawing import FigureArtists, draw, legend_entries, new_figure, status_html
from l2s_core.viewer.view_state import Layer, Outline, ViewState

SHAPE = (6, 8, 10)  # (z, y, x)


def _image() -> np.ndarray:
    return np.arange(np.prod(SHAPE), dtype=np.float32).reshape(SHAPE)


def _organ() -> np.ndarray:
    mask = np.zeros(SHAPE, np.uint8)
    mask[2:4, 3:6, 4:8] = 1
    return mask


def _state(axis: int = 0, index: int = 3, organ_shown: bool = True, boxes_shown: bool = True) -> ViewState:
    return ViewState(
        case_id="cube_1",
        image=_image(),
        spacing=(2.0, 1.0, 0.5),
        axis=axis,
        index=index,
        window=200.0,
        level=240.0,
        opacity=0.6,
        layers=(
            Layer("ground_truth", "ground truth", "#2ca02c", _organ() if organ_shown else None),
            Layer("mine", "mine", "#9467bd", None),
        ),
        outlines=(
            Outline("crop", (1, 2, 3, 5, 7, 9) if boxes_shown else None),
            Outline("two_stage", None),
            Outline("manual", (0, 0, 0, 2, 8, 10) if boxes_shown else None),
        ),
        box_notes=(("label", (1, 2, 3, 5, 7, 9)), ("two-stage", (2, 2, 2, 4, 4, 4))),
    )


def _figure() -> FigureArtists:
    return new_figure(["ground_truth", "mine"])


def _overlay(artist: AxesImage) -> tuple[object, ...] | None:
    """Alpha, colour and drawn pixels of an overlay, ``None`` when it is hidden."""
    array = artist.get_array()
    if not artist.get_visible() or array is None:
        return None
    return artist.get_alpha(), artist.cmap(1.0), (~np.ma.getmaskarray(array)).tolist()


def _drawn(artists: FigureArtists) -> dict[str, object]:
    """Everything the artists show, as plain values (``None`` for a hidden overlay or box)."""
    axes = artists.image.axes
    return {
        "image": np.asarray(artists.image.get_array()).tolist(),
        "extent": tuple(artists.image.get_extent()),
        "limits": (axes.get_xlim(), axes.get_ylim()),
        "aspect": axes.get_aspect(),
        "title": axes.get_title(),
        **{f"overlay {name}": _overlay(a) for name, a in artists.overlays.items()},
        **{f"box {name}": r.get_bbox().bounds if r.get_visible() else None for name, r in artists.boxes.items()},
    }


def test_an_axial_and_a_sagittal_state_draw_their_slice_overlay_and_boxes():
    artists = _figure()
    draw(_state(axis=0, index=3), artists)
    image, truth, boxes = artists.image, artists.overlays["ground_truth"], artists.boxes
    assert np.allclose(image.get_array(), window_to_unit(_image()[3], 200.0, 240.0))
    assert tuple(image.get_extent()) == (-0.5, 9.5, -0.5, 7.5)  # (y, x) = (8, 10) pixels
    assert image.axes.get_xlim() == (9.5, -0.5)  # x increases to the left (radiological)
    assert image.axes.get_aspect() == pytest.approx(2.0)  # 1 mm rows over 0.5 mm columns
    assert image.axes.get_title() == "cube_1  axial slice 3 / 5"
    assert truth.get_visible() and truth.get_alpha() == pytest.approx(0.6)
    assert np.array_equal(~np.ma.getmaskarray(truth.get_array()), _organ()[3] > 0)
    assert truth.cmap(1.0) == pytest.approx(to_rgba("#2ca02c"))
    assert not artists.overlays["mine"].get_visible()  # a layer without a mask is not drawn
    assert boxes["crop"].get_visible() and boxes["crop"].get_bbox().bounds == (2.5, 1.5, 6.0, 5.0)
    assert not boxes["manual"].get_visible()  # slice 3 is outside the manual box's z range 0..1
    assert not boxes["two_stage"].get_visible()

    draw(_state(axis=2, index=5), artists)  # sagittal: (z, y) slice x = 5
    assert np.allclose(image.get_array(), window_to_unit(_image()[:, :, 5], 200.0, 240.0))
    assert tuple(image.get_extent()) == (-0.5, 7.5, -0.5, 5.5)
    assert image.axes.get_aspect() == pytest.approx(2.0)  # 2 mm rows over 1 mm columns
    assert image.axes.get_title() == "cube_1  sagittal slice 5 / 9"
    assert np.array_equal(~np.ma.getmaskarray(truth.get_array()), _organ()[:, :, 5] > 0)
    assert boxes["crop"].get_bbox().bounds == (1.5, 0.5, 5.0, 4.0)
    assert boxes["manual"].get_visible() and boxes["manual"].get_bbox().bounds == (-0.5, -0.5, 8.0, 2.0)


def test_the_same_state_draws_the_same_figure_whatever_was_drawn_before():
    a, b = _state(), _state(axis=1, index=5, organ_shown=False, boxes_shown=False)
    fresh_a, fresh_b, reused = _figure(), _figure(), _figure()
    frame_a, frame_b = draw(a, fresh_a), draw(b, fresh_b)
    assert _drawn(fresh_a) != _drawn(fresh_b) and frame_a != frame_b
    assert draw(a, fresh_a) == frame_a  # drawn twice: the same status, legend and PNG
    for state, frame, fresh in ((a, frame_a, fresh_a), (b, frame_b, fresh_b), (a, frame_a, fresh_a)):
        assert draw(state, reused) == frame and _drawn(reused) == _drawn(fresh)


def test_legend_lists_the_layers_and_outlines_drawn_in_drawing_order():
    assert legend_entries(_state()) == [
        LegendEntry("ground truth", "#2ca02c"),
        LegendEntry("label box", "#2ca02c", "dashed"),
        LegendEntry("manual box", "#e377c2", "solid"),  # named although slice 3 does not cross it
    ]
    assert legend_entries(_state(organ_shown=False, boxes_shown=False)) == []
    frame = draw(_state(organ_shown=False, boxes_shown=False), _figure())
    assert "nothing drawn" in frame.legend and frame.png


def test_status_line_names_the_case_and_its_boxes():
    assert status_html(_state()) == (
        "<b>cube_1</b>: (z, y, x) (6, 8, 10), spacing (2, 1, 0.5) mm; "
        "label box (1, 2, 3, 5, 7, 9); two-stage box (2, 2, 2, 4, 4, 4)"
    )


def test_a_layer_the_figure_has_no_overlay_for_is_refused():
    with pytest.raises(KeyError, match="mine"):
        draw(_state(), new_figure(["ground_truth"]))


def _imports(module: ModuleType) -> set[str]:
    tree = ast.parse(inspect.getsource(module))
    names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    return names | {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}


@pytest.mark.parametrize("module", [drawing, view_state])
def test_the_drawing_imports_no_widgets_and_no_viewer(module):
    imported = _imports(module)
    assert "numpy" in imported  # the check reads the module's imports
    assert not {name for name in imported if name.split(".")[0] == "ipywidgets" or name.endswith("slice_viewer")}


def test_status_line_escapes_a_scan_name_holding_html():
    line = status_html(dataclasses.replace(_state(), case_id="a&b<script>"))
    assert "<b>a&amp;b&lt;script&gt;</b>" in line and "<script>" not in line
