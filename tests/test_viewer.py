import dataclasses

import ipywidgets as widgets
import matplotlib

matplotlib.use("Agg")

from collections.abc import Iterator
from pathlib import Path

import nbformat
import numpy as np
import papermill
import pytest
import torch
from study_folder import run_summary
from torch import nn

from l2s_core.checkpoint import save_checkpoint
from l2s_core.data.cache import PreparedTask
from l2s_core.data.prepare import prepare_task
from l2s_core.data.prepared_layout import PrepareSettings
from l2s_core.errors import ConfigError, InputDataError
from l2s_core.infer import Localisation, Segmenter, TwoStageResult
from l2s_core.model import UNet3D
from l2s_core.train.config import TrainConfig
from l2s_core.viewer import (
    CT_SOFT_TISSUE,
    LegendEntry,
    Prediction,
    SliceViewer,
    StudyModels,
    as_prediction,
    auto_window,
    box_rectangle,
    ct_window,
    legend_html,
    load_study_models,
    pixel_aspect,
    raw_ct_window,
    saved_prediction_source,
    slice_along,
    window_to_unit,
)

NOTEBOOK = Path(__file__).resolve().parents[1] / "l2s_core" / "notebooks" / "explore.ipynb"
SHAPE = (12, 16, 16)
ORGAN = (3, 4, 4, 7, 10, 10)


def threshold_network(threshold: float = 0.5) -> nn.Module:
    """A 1×1×1 convolution whose organ logit beats the background logit where the image > threshold."""
    net = nn.Conv3d(1, 2, kernel_size=1)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([0.0, 1.0]).view(2, 1, 1, 1, 1))
        net.bias.copy_(torch.tensor([threshold, 0.0]))
    return net


@pytest.fixture
def task(prepared_task) -> PreparedTask:
    return prepared_task(shape=SHAPE, organ=ORGAN)


# ------------------------------------------------------------------ pure helpers
def test_slice_along_each_axis_is_a_view_of_the_memmap(tmp_path):
    volume = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    np.save(tmp_path / "v.npy", volume)
    mapped = np.load(tmp_path / "v.npy", mmap_mode="r")
    assert np.array_equal(slice_along(mapped, 0, 1), volume[1])
    assert np.array_equal(slice_along(mapped, 1, 2), volume[:, 2, :]) and slice_along(mapped, 1, 2).shape == (2, 4)
    assert np.array_equal(slice_along(mapped, 2, 3), volume[:, :, 3]) and slice_along(mapped, 2, 3).shape == (2, 3)
    assert isinstance(slice_along(mapped, 2, 0), np.memmap)
    with pytest.raises(IndexError):
        slice_along(mapped, 1, 3)
    with pytest.raises(IndexError):
        slice_along(mapped, 3, 0)


def test_pixel_aspect_follows_spacing():
    spacing = (2.0, 1.0, 0.5)
    assert pixel_aspect(spacing, 0) == pytest.approx(2.0)  # (y, x)
    assert pixel_aspect(spacing, 1) == pytest.approx(4.0)  # (z, x)
    assert pixel_aspect(spacing, 2) == pytest.approx(2.0)  # (z, y)


def test_window_to_unit_maps_and_clips():
    values = np.array([-1000.0, -160.0, 40.0, 240.0, 3000.0])
    assert np.allclose(window_to_unit(values, 400, 40), [0.0, 0.0, 0.5, 1.0, 1.0])
    assert window_to_unit(values, 400, 40).dtype == np.float32
    with pytest.raises(ValueError, match="window"):
        window_to_unit(values, 0, 40)


def test_auto_window_spans_percentiles_of_a_subsample():
    volume = np.arange(101, dtype=np.float32)[:, None, None] * np.ones((1, 4, 4), np.float32)
    window, level = auto_window(volume, percentiles=(10, 90))
    assert (window, level) == (pytest.approx(80.0), pytest.approx(50.0))
    window, level = auto_window(volume, percentiles=(0, 100), max_voxels=101 * 16 // 8)  # every 2nd voxel
    assert (window, level) == (pytest.approx(100.0), pytest.approx(50.0))
    assert auto_window(np.ones((3, 3, 3)))[0] > 0


def test_box_rectangle_on_each_axis():
    box = (2, 3, 4, 6, 9, 12)
    assert box_rectangle(box, 0, 1) is None and box_rectangle(box, 0, 6) is None
    assert box_rectangle(box, 0, 2) == (3.5, 2.5, 8.0, 6.0)  # columns x, rows y
    assert box_rectangle(box, 1, 8) == (3.5, 1.5, 8.0, 4.0)  # columns x, rows z
    assert box_rectangle(box, 2, 4) == (2.5, 1.5, 6.0, 4.0)  # columns y, rows z
    assert box_rectangle((-5, 0, 0, 1, 2, 2), 0, 0) == (-0.5, -0.5, 2.0, 2.0)


def test_as_prediction_accepts_masks_and_results():
    mask = np.ones((2, 2, 2), np.uint8)
    assert as_prediction(mask).mask is mask and as_prediction(mask).box is None
    result = TwoStageResult(mask, None, (0, 0, 0, 2, 2, 2), None, 0.1)
    assert as_prediction(result) == Prediction(mask, (0, 0, 0, 2, 2, 2))


def test_saved_prediction_source(task, tmp_path):
    case = task.case(task.split["train"][0])
    mask = np.zeros(SHAPE, np.uint8)
    mask[1, 2, 3] = 1
    np.save(tmp_path / f"{case.case_id}.npy", mask)
    loaded = saved_prediction_source(tmp_path)(case)
    assert isinstance(loaded, np.memmap) and np.array_equal(loaded, mask)
    with pytest.raises(InputDataError, match="no saved prediction"):
        saved_prediction_source(tmp_path / "nothing")(case)


def test_raw_ct_window_only_for_unnormalised_ct(make_task, tmp_path):
    folder = make_task(n_cases=3)
    prepare_task(folder, tmp_path / "raw", PrepareSettings(normalisation="none"), progress=False, workers=1)
    prepare_task(folder, tmp_path / "z", progress=False, workers=1)
    assert raw_ct_window(PreparedTask(tmp_path / "raw")) == CT_SOFT_TISSUE
    assert raw_ct_window(PreparedTask(tmp_path / "z")) is None


def test_ct_window_only_for_raw_ct():
    assert ct_window("none", "CT") == ct_window("none", " ct ") == CT_SOFT_TISSUE
    assert ct_window("zscore", "CT") is None and ct_window("none", "MRI") is None


def test_legend_html_swatches_and_escaping():
    html = legend_html(
        [
            LegendEntry("ground truth", "#2ca02c"),
            LegendEntry("two-stage box", "#1f77b4", "dashed"),
            LegendEntry("a<b", "#000000"),
        ]
    )
    assert html.startswith('<div class="l2s-legend"') and "flex-wrap:wrap" in html
    assert html.count('class="l2s-legend-item"') == 3
    assert "background:#2ca02c" in html and "border:2px dashed #1f77b4" in html
    assert "a&lt;b" in html and "a<b" not in html
    assert "nothing drawn" in legend_html([])


# ------------------------------------------------------------------ the viewer
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
        return TwoStageResult(mask, None, (3, 4, 5, 7, 10, 11), None, 0.0)

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
    two_stage = TwoStageResult(
        np.pad(np.ones((2, 4, 4), np.uint8), ((4, 6), (5, 7), (5, 7))), None, (3, 4, 5, 7, 10, 11), None, 0.0
    )
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


# ------------------------------------------------------------------ study networks and the notebook
def _save_run(network_dir, index, converged, network, config=None):
    run = network_dir / f"run_{index:02d}"
    save_checkpoint(run / "best.pt", network, {"network": network_dir.name})
    summary = run_summary(network_dir.name, index, converged)
    if config is not None:
        config.write(run / "config.json")
        summary = dataclasses.replace(summary, config=config)
    summary.write(run / "summary.json")
    return run / "best.pt"


def test_load_study_models_feeds_the_viewer(task, tmp_path):
    organ_dir = tmp_path / "study" / "cube"
    assert load_study_models(organ_dir) == StudyModels({}, None, {})
    torch.manual_seed(0)

    def config(network, depth=1):
        return TrainConfig(
            prepared_dir=str(task.folder),
            run_dir="run_00",
            network=network,
            depth=depth,
            base_channels=2,
            patch_size=(8, 8, 8),
        )

    _save_run(organ_dir / "baseline", 0, True, UNet3D(base_channels=2, depth=1, groups=1), config("baseline"))
    _save_run(organ_dir / "localiser", 0, False, UNet3D(base_channels=2, depth=1, groups=1))
    _save_run(organ_dir / "localiser", 1, True, UNet3D(base_channels=2, depth=1, groups=1), config("localiser"))
    _save_run(organ_dir / "organ", 0, False, UNet3D(base_channels=2, depth=1, groups=1))
    organ_path = _save_run(
        organ_dir / "organ", 1, True, UNet3D(base_channels=2, depth=2, groups=1), config("organ", depth=2)
    )
    models = load_study_models(organ_dir, localisation=Localisation.of_settings(task.preparation.settings))
    assert set(models.sources) == {"baseline", "two_stage", "gt_localised"}
    assert models.runs["organ"].folder == organ_path.parent and models.organ_network.multiple == 4
    case = task.case(task.split["val"][0])
    two_stage = models.sources["two_stage"](case)
    assert isinstance(two_stage, TwoStageResult) and two_stage.mask.shape == SHAPE
    assert models.sources["gt_localised"](case).box == case.crop_box
    narrow = (
        load_study_models(organ_dir, localisation=Localisation(2)).sources["gt_localised"](case).box
    )  # the margin reaches the pipeline
    assert narrow == tuple(v + (case.meta.crop_margin - 2) * (1 if i < 3 else -1) for i, v in enumerate(case.crop_box))
    assert models.sources["baseline"](case).shape == SHAPE
    viewer = SliceViewer(task, sources=models.sources, organ_network=models.organ_network, split="val")
    assert all(viewer.overlay_artists[name].get_visible() for name in ("ground_truth", *models.sources))
    viewer.widgets["segment"].click()
    assert viewer.overlay_artists["manual"].get_visible()


@pytest.mark.slow
def test_explore_notebook_runs_headless_without_networks(make_task, tmp_path, l2s_kernel):
    study_dir = tmp_path / "runs" / "tiny"
    prepare_task(
        make_task(n_cases=5, shape=SHAPE, organ=ORGAN), study_dir / "cube" / "prepared", progress=False, workers=1
    )
    source = NOTEBOOK.read_text()
    assert '"outputs": []' in source and '"execution_count": null' in source  # committed without outputs
    executed = tmp_path / "explore.ipynb"
    papermill.execute_notebook(
        NOTEBOOK,
        executed,
        parameters={"study_dir": str(study_dir), "organ": "cube"},
        kernel_name=l2s_kernel,
        cwd=str(tmp_path),
        progress_bar=False,
    )
    cells = nbformat.read(executed, as_version=4).cells
    printed = "".join(o.get("text", "") for cell in cells if cell.cell_type == "code" for o in cell.outputs)
    assert "no converged network yet, only the ground truth is shown" in printed
    widget_outputs = [o for o in cells[-1].outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert widget_outputs
