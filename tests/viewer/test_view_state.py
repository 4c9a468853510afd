"""The frozen frame record (``l2s_core.viewer.view_state``) as the :class:`SliceViewer` builds it
from its controls, and the viewer's figure being the pure drawing of that state."""

import dataclasses

import numpy as np
import pytest

from l2s_core.viewer.drawing import draw, new_figure
from l2s_core.viewer.slice_viewer import SliceViewer


def test_state_holds_what_the_controls_say(task):
    calls = []

    def baseline(case):
        calls.append(case.case_id)
        return np.zeros(case.array("full", "image").shape, np.uint8)

    viewer = SliceViewer(task, sources={"baseline": baseline}, window_level=(3.0, 0.5))
    w = viewer.widgets
    w["view"].value, w["slice"].value, w["opacity"].value = 1, 6, 0.25
    state = viewer.view_state()
    assert (state.case_id, state.axis, state.index) == (viewer.case.case_id, 1, 6)
    assert (state.window, state.level, state.opacity) == (3.0, 0.5, 0.25)
    assert state.spacing == viewer.case.spacing and np.array_equal(state.image, viewer.case.array("full", "image"))
    assert [(layer.name, layer.label) for layer in state.layers] == [
        ("ground_truth", "ground truth"),
        ("baseline", "baseline"),
        ("manual", "segmented in box"),
    ]
    truth, source, manual = (layer.mask for layer in state.layers)
    assert np.array_equal(truth, viewer.case.array("full", "label")) and source is not None and manual is None
    assert [(o.name, o.box) for o in state.outlines] == [
        ("crop", viewer.case.crop_box),
        ("two_stage", None),
        ("manual", None),
    ]
    assert state.box_notes == (("label", viewer.case.crop_box),)
    with pytest.raises(dataclasses.FrozenInstanceError):
        state.index = 0  # type: ignore[misc]

    w["show_baseline"].value, w["show_boxes"].value = False, False
    w["case"].value = 1
    state = viewer.view_state()
    assert state.layers[1].mask is None and len(calls) == 1  # a hidden overlay is not computed
    assert all(o.box is None for o in state.outlines) and state.box_notes == (("label", viewer.case.crop_box),)


def test_the_viewer_shows_the_pure_drawing_of_its_state(task):
    viewer = SliceViewer(task)
    w = viewer.widgets
    w["view"].value, w["slice"].value = 2, 7
    frame = draw(viewer.view_state(), new_figure(viewer.overlay_names))
    assert (w["status"].value, w["legend"].value) == (frame.status, frame.legend)
    assert w["display"].outputs[0]["data"]["image/png"] == frame.png
