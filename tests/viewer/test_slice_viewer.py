"""The :class:`SliceViewer` widget on prepared cases: starting slice, redraws, overlays, boxes,
legend, layout, manual box and window (``l2s_core.viewer.slice_viewer``)."""

from collections.abc import Iterator

import ipywidgets as widgets
import numpy as np
import pytest
import torch
from msd_builder import CUBE_ORGAN as ORGAN
from msd_builder import CUBE_SHAPE as SHAPE
from torch import nn

from l2s_core.errors import ConfigError, InputDataError
from l2s_core.infer import Segmenter
from l2s_core.prediction import Prediction
from l2s_core.viewer import slice_viewer
from l2s_core.viewer.display import auto_window, window_to_unit
from l2s_core.viewer.slice_viewer import SliceViewer


def threshold_network(threshold: float = 0.5) -> nn.Module:
    """A 1×1×1 convolution whose organ logit beats the background logit where the image > threshold."""
    net = nn.Conv3d(1, 2, kernel_size=1)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([0.0, 1.0]).view(2, 1, 1, 1, 1))
        net.bias.copy_(torch.tensor([threshold, 0.0]))
    return net


def test_viewer_starts_on_the_organ_with_all_cases(task):
    viewer = SliceViewer(task)
    w = viewer.widgets
    assert len(w["case"].options) == 5 and [c.case_id for c in viewer.cases] == [
        c for name in ("train", "val", "test") for c in task.split[name]
    ]
    assert w["slice"].max == SHAPE[0] - 1 and ORGAN[0] <= w["slice"].value < ORGAN[3]
    assert viewer.image_artist.get_array().shape == SHAPE[1:]
    assert w["auto_window"].value  # z-scored images: percentile window
    assert (w["window"].value, w["level"].value) == pytest.approx(auto_window(viewer.case.array("full", "image")))
    assert set(viewer.overlay_artists) == {"ground_truth", "manual"} and w["segment"].disabled
    assert w["display"].outputs[0]["data"]["image/png"]  # the figure is shown as PNG
    assert len(SliceViewer(task, split="val").cases) == len(task.split["val"])


def test_slice_view_and_window_widgets_redraw(task):
    viewer = SliceViewer(task)
    w, image = viewer.widgets, viewer.case.array("full", "image")
    w["slice"].value = 0
    first = np.array(viewer.image_artist.get_array())
    w["slice"].value = 5
    assert not np.array_equal(first, viewer.image_artist.get_array())
    assert np.allclose(viewer.image_artist.get_array(), window_to_unit(image[5], w["window"].value, w["level"].value))
    w["window"].value = w["window"].value / 2
    assert np.allclose(viewer.image_artist.get_array(), window_to_unit(image[5], w["window"].value, w["level"].value))
    w["view"].value = 2  # sagittal: (z, y) with the z spacing 2 mm against 1 mm
    assert viewer.image_artist.get_array().shape == (SHAPE[0], SHAPE[1])
    assert w["slice"].max == SHAPE[2] - 1
    assert viewer.image_artist.axes.get_aspect() == pytest.approx(2.0)


def test_overlay_toggle_and_opacity(task):
    viewer = SliceViewer(task)
    w, truth = viewer.widgets, viewer.overlay_artists["ground_truth"]
    w["slice"].value = 4
    assert truth.get_visible()
    shown = truth.get_array()
    assert np.array_equal(~np.ma.getmaskarray(shown), viewer.case.array("full", "label")[4] > 0)
    w["opacity"].value = 0.8
    assert truth.get_alpha() == pytest.approx(0.8)
    w["show_ground_truth"].value = False
    assert not truth.get_visible()


def test_sources_are_computed_once_per_case_and_boxes_drawn(task):
    calls = []

    def two_stage(case):
        calls.append(case.case_id)
        mask = np.zeros(SHAPE, np.uint8)
        mask[4:6, 5:9, 5:9] = 1
        return Prediction(mask, (3, 4, 5, 7, 10, 11))

    viewer = SliceViewer(task, sources={"two_stage": two_stage})
    w, box = viewer.widgets, viewer.box_artists["two_stage"]
    w["slice"].value = 2
    assert not box.get_visible() and viewer.box_artists["crop"].get_visible()
    w["slice"].value = 4
    assert box.get_visible() and box.get_bbox().bounds == (4.5, 3.5, 6.0, 6.0)
    assert viewer.overlay_artists["two_stage"].get_visible()
    w["show_boxes"].value = False
    assert not box.get_visible() and not viewer.box_artists["crop"].get_visible()
    assert calls == [viewer.case.case_id]
    assert "two-stage box (3, 4, 5, 7, 10, 11)" in w["status"].value
    w["case"].value = 1
    assert calls == [viewer.cases[0].case_id, viewer.cases[1].case_id]
    w["show_two_stage"].value = False
    w["case"].value = 2
    assert len(calls) == 2  # hidden overlays are not computed


def _labels(viewer: SliceViewer) -> list[str]:
    return [entry.label for entry in viewer.legend_entries()]


def test_legend_names_each_colour_drawn(task):
    two_stage = Prediction(np.pad(np.ones((2, 4, 4), np.uint8), ((4, 6), (5, 7), (5, 7))), (3, 4, 5, 7, 10, 11))
    viewer = SliceViewer(
        task,
        sources={"two_stage": lambda case: two_stage, "extra": lambda case: two_stage.mask},
        organ_network=Segmenter(threshold_network(0.5), (8, 8, 8), multiple=4),
    )
    w = viewer.widgets
    assert _labels(viewer) == ["ground truth", "two-stage", "extra", "label box", "two-stage box", "manual box"]
    colours = {e.label: (e.colour, e.outline) for e in viewer.legend_entries()}
    assert colours["ground truth"] == ("#2ca02c", None) and colours["two-stage box"] == ("#1f77b4", "dashed")
    assert colours["manual box"] == ("#e377c2", "solid") and colours["extra"][0] == "#9467bd"  # a spare colour
    for label in ("ground truth", "two-stage", "extra", "label box", "manual box"):
        assert label in w["legend"].value
    w["segment"].click()
    assert _labels(viewer)[3] == "segmented in box" and "segmented in box" in w["legend"].value
    w["show_ground_truth"].value = False
    w["show_boxes"].value = False
    assert _labels(viewer) == ["two-stage", "extra", "segmented in box"]
    assert "ground truth" not in w["legend"].value and "label box" not in w["legend"].value
    w["case"].value = 1
    assert "segmented in box" not in _labels(viewer)  # the manual result belongs to the previous case


def _boxes(widget: widgets.Widget) -> Iterator[widgets.Box]:
    if isinstance(widget, widgets.Box):
        yield widget
        for child in widget.children:
            yield from _boxes(child)


def test_control_rows_wrap_and_legend_sits_above_the_figure(task):
    viewer = SliceViewer(task)
    layout = viewer.widget
    rows = [box for box in _boxes(layout) if isinstance(box, widgets.HBox)]
    assert len(rows) == 5 and all(row.layout.flex_flow == "row wrap" for row in rows)
    assert viewer.widgets["opacity"] in rows[3].children  # the control the issue saw cut off
    assert layout.children[-2:] == (viewer.widgets["legend"], viewer.widgets["display"])


def test_source_with_wrong_shape_is_refused(task):
    with pytest.raises(InputDataError, match="mask shape"):
        SliceViewer(task, sources={"baseline": lambda case: np.zeros((2, 2, 2), np.uint8)})


def test_segment_button_adds_manual_overlay(task):
    viewer = SliceViewer(task, organ_network=Segmenter(threshold_network(0.5), (8, 8, 8), multiple=4))
    w, manual = viewer.widgets, viewer.overlay_artists["manual"]
    assert not w["segment"].disabled and not manual.get_visible()
    w["box_z"].value, w["box_y"].value, w["box_x"].value = (2, 8), (3, 6), (3, 12)
    assert viewer.manual_box == (2, 3, 3, 9, 7, 13)
    w["slice"].value = 4
    w["segment"].click()
    assert manual.get_visible() and viewer.box_artists["manual"].get_visible()
    image = viewer.case.array("full", "image")
    inside = np.zeros(SHAPE, bool)
    inside[2:9, 3:7, 3:13] = True
    expected = (image > 0.5) & inside
    assert np.array_equal(~np.ma.getmaskarray(manual.get_array()), expected[4])
    w["case"].value = 1
    assert not manual.get_visible()  # the manual result belongs to the previous case


def test_given_window_is_kept_until_auto_is_chosen(task):
    viewer = SliceViewer(task, window_level=(3.0, 0.5))
    w = viewer.widgets
    assert not w["auto_window"].value and (w["window"].value, w["level"].value) == (3.0, 0.5)
    w["case"].value = 1
    assert (w["window"].value, w["level"].value) == (3.0, 0.5)
    w["auto_window"].value = True
    assert (w["window"].value, w["level"].value) == pytest.approx(auto_window(viewer.case.array("full", "image")))


def test_cases_as_a_list_and_empty_list(task):
    cases = task.cases("train")
    assert [c.case_id for c in SliceViewer(cases).cases] == task.split["train"]
    with pytest.raises(InputDataError, match="no prepared cases"):
        SliceViewer([])
    with pytest.raises(ConfigError, match="split"):
        SliceViewer(task, split="validation")


def test_a_case_is_sampled_once_for_both_windows(task, monkeypatch):
    """Opening a case reads one sub-sample of the (memory-mapped) image for its full range and its auto window."""
    sampled = []
    window_sample = slice_viewer.window_sample
    monkeypatch.setattr(slice_viewer, "window_sample", lambda volume: sampled.append(volume) or window_sample(volume))
    viewer = SliceViewer(task)
    assert len(sampled) == 1
    w = viewer.widgets
    assert (w["window"].value, w["level"].value) == pytest.approx(auto_window(viewer.case.array("full", "image")))
    w["case"].value = 1
    assert len(sampled) == 2


def test_every_slider_redraws_on_release(task):
    """Dragging a slider redraws once, when it is released, not on every step."""
    sliders = [
        w
        for w in SliceViewer(task).widgets.values()
        if isinstance(w, (widgets.IntSlider, widgets.FloatSlider, widgets.IntRangeSlider))
    ]
    assert {"opacity", "slice", "window", "level"} <= {w.description for w in sliders}
    assert all(not w.continuous_update for w in sliders)
