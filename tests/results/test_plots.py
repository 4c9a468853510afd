"""Figures 2–4 from small hand-made tables: the expected panels and lines, and PNG files."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from l2s_core.results.plots import (
    figure2_training_curves,
    figure3_convergence,
    figure4_dice_gain,  # noqa: E402
    save_figure,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def curves_table() -> pd.DataFrame:
    """Two converged spleen baseline runs of 3 and 4 epochs and one heart organ run of 2 epochs."""
    rows = []
    runs = (("spleen", "baseline", 0, 3), ("spleen", "baseline", 2, 4), ("heart", "organ", 1, 2))
    for organ, network, run, epochs in runs:
        for epoch in range(1, epochs + 1):
            rows.append(
                {
                    "organ": organ,
                    "network": network,
                    "run": run,
                    "epoch": epoch,
                    "wall_seconds": 1.0,
                    "train_loss": 1.0 / epoch,
                    "train_dice": 0.2 * epoch,
                    "val_dice": 0.15 * epoch,
                }
            )
    return pd.DataFrame(rows)


def rates_table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "organ": ["spleen", "spleen", "spleen", "heart", "heart", "heart"],
            "network": ["baseline", "localiser", "organ"] * 2,
            "trained": [4, 3, 3, 5, 4, 3],
            "converged": [3, 3, 3, 2, 3, 3],
            "convergence_rate": [0.75, 1.0, 1.0, 0.4, 0.75, 1.0],
            "n_cases": [41, 41, 41, 20, 20, 20],
            "n_train": [25, 25, 25, 12, 12, 12],
            "foreground_percent": [0.5, 0.5, 0.5, 0.4, 0.4, 0.4],
        }
    )


def gain_table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "organ": ["spleen", "spleen", "heart", "heart"],
            "split": ["test"] * 4,
            "method": ["two_stage", "gt_localised"] * 2,
            "baseline_dice": [0.5, 0.5, 0.6, 0.6],
            "method_dice": [0.7, 0.8, 0.65, 0.75],
            "gain": [0.2, 0.3, 0.05, 0.15],
            "foreground_percent": [0.5, 0.5, 0.4, 0.4],
        }
    )


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    assert len(data) > 5000


def test_figure2_has_one_panel_per_organ_and_network_and_two_lines_per_run(tmp_path: Path) -> None:
    fig = figure2_training_curves(curves_table(), ["spleen", "heart"])
    axes = np.array(fig.axes).reshape(2, 3)
    assert len(axes[0, 0].lines) == 4  # two runs × (train, val)
    assert len(axes[1, 2].lines) == 2
    assert len(axes[0, 1].lines) == 0
    np.testing.assert_allclose(axes[0, 0].lines[0].get_ydata(), [0.2, 0.4, 0.6])
    assert "2 runs" in axes[0, 0].get_title()
    assert_png(save_figure(fig, tmp_path / "figures" / "figure2.png"))


def test_figure3_bars_and_scatter_positions(tmp_path: Path) -> None:
    fig = figure3_convergence(rates_table())
    ax_a, ax_b, ax_c = fig.axes[:3]
    heights = sorted(round(p.get_height(), 6) for p in ax_a.patches if p.get_height() > 0)
    assert heights == sorted([75.0, 100.0, 100.0, 40.0, 75.0, 100.0])
    baseline_b = ax_b.collections[0].get_offsets()
    np.testing.assert_allclose(np.asarray(baseline_b), [[41, 75.0], [20, 40.0]])
    baseline_c = ax_c.collections[0].get_offsets()
    np.testing.assert_allclose(np.asarray(baseline_c), [[0.5, 75.0], [0.4, 40.0]])
    assert_png(save_figure(fig, tmp_path / "figure3.png"))


def test_figure4_points_per_method(tmp_path: Path) -> None:
    fig = figure4_dice_gain(gain_table())
    (ax,) = fig.axes
    two_stage, gt = ax.collections[:2]
    np.testing.assert_allclose(np.asarray(two_stage.get_offsets()), [[0.5, 0.2], [0.4, 0.05]])
    np.testing.assert_allclose(np.asarray(gt.get_offsets()), [[0.5, 0.3], [0.4, 0.15]])
    assert_png(save_figure(fig, tmp_path / "figure4.png"))


@pytest.mark.parametrize(
    "make",
    [
        lambda: figure2_training_curves(curves_table().iloc[:0], ["spleen"]),
        lambda: figure3_convergence(rates_table().iloc[:0]),
        lambda: figure4_dice_gain(gain_table().iloc[:0]),
    ],
)
def test_figures_without_data_still_render(make, tmp_path: Path) -> None:
    assert save_figure(make(), tmp_path / "empty.png").read_bytes().startswith(PNG_SIGNATURE)
