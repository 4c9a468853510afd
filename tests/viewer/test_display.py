"""Slicing, aspect, windowing, box outlines, overlay colours and the legend (``l2s_core.viewer.display``)."""

import numpy as np
import pytest

from l2s_core.viewer.display import (
    CT_SOFT_TISSUE,
    LegendEntry,
    auto_window,
    box_rectangle,
    ct_window,
    legend_html,
    overlay_styles,
    percentile_window,
    pixel_aspect,
    slice_along,
    window_sample,
    window_to_unit,
)


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


def test_one_sample_gives_the_auto_windows_of_several_percentiles():
    volume = np.random.default_rng(0).normal(size=(40, 50, 60)).astype(np.float32)
    sample = window_sample(volume, max_voxels=4096)
    assert sample.shape == (10, 13, 15) and sample.dtype == np.float64  # every 4th voxel
    for percentiles in ((1.0, 99.0), (0.0, 100.0)):
        assert percentile_window(sample, percentiles) == auto_window(volume, percentiles, max_voxels=4096)


def test_box_rectangle_on_each_axis():
    box = (2, 3, 4, 6, 9, 12)
    assert box_rectangle(box, 0, 1) is None and box_rectangle(box, 0, 6) is None
    assert box_rectangle(box, 0, 2) == (3.5, 2.5, 8.0, 6.0)  # columns x, rows y
    assert box_rectangle(box, 1, 8) == (3.5, 1.5, 8.0, 4.0)  # columns x, rows z
    assert box_rectangle(box, 2, 4) == (2.5, 1.5, 6.0, 4.0)  # columns y, rows z
    assert box_rectangle((-5, 0, 0, 1, 2, 2), 0, 0) == (-0.5, -0.5, 2.0, 2.0)


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


def test_overlay_styles_give_known_names_their_colour_and_others_spare_ones():
    styles = overlay_styles(["ground_truth", "mine", "two_stage", "other", *(f"s{i}" for i in range(3)), "manual"])
    assert styles["ground_truth"] == ("ground truth", "#2ca02c") and styles["two_stage"] == ("two-stage", "#1f77b4")
    assert styles["manual"] == ("segmented in box", "#e377c2")
    assert styles["mine"] == ("mine", "#9467bd") and styles["other"] == ("other", "#8c564b")
    assert styles["s2"] == ("s2", "#9467bd")  # the fifth unknown name cycles back to the first spare colour
    assert list(styles) == ["ground_truth", "mine", "two_stage", "other", "s0", "s1", "s2", "manual"]
