"""The paper's Figures 2–4 from the tables of :mod:`l2s_core.results.analysis`.

Each function takes DataFrames and returns a matplotlib Figure (it does not show it);
:func:`save_figure` writes a figure as PNG atomically. Nothing here needs LaTeX, and the
functions work with any matplotlib backend (the tests use Agg).

Example:
    >>> data = study_results.load_study("runs/quick")  # doctest: +SKIP
    >>> save_figure(figure3_convergence(analysis.convergence_rates(data)), "figure3.png")  # doctest: +SKIP
"""

from __future__ import annotations

__all__ = [
    "CURVE_COLOURS",
    "METHOD_MARKERS",
    "NETWORK_COLOURS",
    "NETWORK_MARKER_SIZES",
    "figure2_training_curves",
    "figure3_convergence",
    "figure4_dice_gain",
    "save_figure",
]

import io
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from l2s_core.files import atomic_write_bytes
from l2s_core.vocabulary import METHOD_LABELS, NETWORK_LABELS, NETWORKS, SPLIT_LABELS

#: One colour per network, shared by the panels of Figure 3.
NETWORK_COLOURS = dict(zip(NETWORKS, sns.color_palette("colorblind", len(NETWORKS))))
#: Marker sizes of Figure 3b/c, decreasing so that networks at the same point stay visible.
NETWORK_MARKER_SIZES = dict(zip(NETWORKS, (110, 60, 22)))
#: Markers of Figure 4, as in the paper: o predicted localisation, x ground-truth localisation.
METHOD_MARKERS = {"two_stage": "o", "gt_localised": "x"}
CURVE_COLOURS = {"train_dice": "tab:blue", "val_dice": "tab:orange"}


def _note_no_data(ax: Axes, what: str) -> None:
    ax.text(0.5, 0.5, f"no {what}", ha="center", va="center", transform=ax.transAxes, color="grey")


def figure2_training_curves(curves: pd.DataFrame, organs: Sequence[str]) -> Figure:
    """Figure 2: training and validation Dice per epoch of every converged run.

    Args:
        curves: :func:`l2s_core.results.analysis.training_curves` (columns ``organ``, ``network``,
            ``run``, ``epoch``, ``train_dice``, ``val_dice``).
        organs: the rows of the grid, in order.

    Returns:
        A grid with one row per organ and one column per network; one thin line per run for
        the training Dice and one for the validation Dice.
    """
    n_rows = max(len(organs), 1)
    fig = Figure(figsize=(3.2 * len(NETWORKS), 2.3 * n_rows), layout="constrained")
    axes = fig.subplots(n_rows, len(NETWORKS), sharex=False, sharey=True, squeeze=False)
    for i, organ in enumerate(organs):
        for j, network in enumerate(NETWORKS):
            ax = axes[i, j]
            runs = curves[(curves["organ"] == organ) & (curves["network"] == network)]
            for _, run in runs.groupby("run"):
                for column, colour in CURVE_COLOURS.items():
                    ax.plot(run["epoch"], run[column], color=colour, linewidth=0.8, alpha=0.6)
            if runs.empty:
                _note_no_data(ax, "converged run")
            ax.set_ylim(0, 1)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_title(f"{organ}, {NETWORK_LABELS[network]} ({runs['run'].nunique()} runs)", fontsize=9)
            if i == n_rows - 1:
                ax.set_xlabel("epoch")
            if j == 0:
                ax.set_ylabel("Dice")
    handles = [
        Line2D([], [], color=c, label=name.replace("_dice", "").replace("val", "validation"))
        for name, c in CURVE_COLOURS.items()
    ]
    fig.legend(handles=handles, loc="outside lower center", ncols=2)
    return fig


def figure3_convergence(rates: pd.DataFrame) -> Figure:
    """Figure 3: convergence rate (a) per network and organ, (b) against the dataset size and
    (c) against the mean foreground percentage.

    Args:
        rates: :func:`l2s_core.results.analysis.convergence_rates`.

    Returns:
        A figure with the three panels side by side.
    """
    fig = Figure(figsize=(14, 4), layout="constrained")
    ax_a, ax_b, ax_c = fig.subplots(1, 3)
    rates = rates.assign(rate_percent=100.0 * rates["convergence_rate"])
    networks = [n for n in NETWORKS if n in set(rates["network"])]
    if rates.empty:
        for ax in (ax_a, ax_b, ax_c):
            _note_no_data(ax, "finished run")
    else:
        sns.barplot(
            data=rates,
            x="organ",
            y="rate_percent",
            hue="network",
            hue_order=networks,
            palette=NETWORK_COLOURS,
            ax=ax_a,
            legend=False,
        )
        panels = ((ax_b, "n_cases", "dataset size (cases)"), (ax_c, "foreground_percent", "mean foreground (%)"))
        for ax, x, label in panels:
            for network in networks:
                part = rates[rates["network"] == network]
                ax.scatter(
                    part[x],
                    part["rate_percent"],
                    color=NETWORK_COLOURS[network],
                    s=NETWORK_MARKER_SIZES[network],
                    label=NETWORK_LABELS[network],
                )
            for organ, part in rates.groupby("organ", sort=False):
                ax.annotate(
                    organ,
                    (part[x].iloc[0], part["rate_percent"].max()),
                    textcoords="offset points",
                    xytext=(4, 4),
                    fontsize=8,
                )
            ax.set_xlabel(label)
            ax.margins(x=0.15)
        fig.legend(
            handles=ax_b.collections,
            labels=[NETWORK_LABELS[n] for n in networks],
            loc="outside lower center",
            ncols=len(networks),
            title="network",
        )
    for ax, letter in ((ax_a, "a"), (ax_b, "b"), (ax_c, "c")):
        ax.set_ylim(0, 110)
        ax.set_ylabel("convergence rate (%)")
        ax.set_title(f"({letter})", loc="left")
    return fig


def figure4_dice_gain(gain: pd.DataFrame) -> Figure:
    """Figure 4: mean Dice gain over the baseline against the organ's foreground percentage,
    for predicted (o, two stage) and ground-truth (x) localisation; one panel per split.

    Args:
        gain: :func:`l2s_core.results.analysis.dice_gain`.

    Returns:
        The figure.
    """
    splits = [s for s in ("val", "test") if s in set(gain["split"])] or ["test"]
    fig = Figure(figsize=(5.5 * len(splits), 4), layout="constrained")
    axes = fig.subplots(1, len(splits), sharey=True, squeeze=False)[0]
    for ax, split in zip(axes, splits):
        part = gain[gain["split"] == split]
        for method, marker in METHOD_MARKERS.items():
            points = part[part["method"] == method]
            ax.scatter(points["foreground_percent"], points["gain"], marker=marker, s=50, label=METHOD_LABELS[method])
        for organ, points in part.groupby("organ", sort=False):
            ax.annotate(
                organ,
                (points["foreground_percent"].iloc[0], points["gain"].max()),
                textcoords="offset points",
                xytext=(5, 3),
                fontsize=8,
            )
        if part.empty:
            _note_no_data(ax, "method evaluated beside the baseline")
        else:
            ax.legend(fontsize=8)
        ax.axhline(0.0, color="grey", linewidth=0.8)
        ax.margins(x=0.15)
        ax.set_xlabel("foreground (%)")
        ax.set_ylabel("mean Dice gain over baseline")
        ax.set_title(f"{SPLIT_LABELS[split]} set")
    return fig


def save_figure(fig: Figure, path: str | Path, dpi: int = 150) -> Path:
    """Write ``fig`` as a PNG file atomically (the folder is created).

    Returns:
        ``path`` as a Path.
    """
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)
