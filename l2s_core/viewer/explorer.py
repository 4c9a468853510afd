"""What ``notebooks/explore.ipynb`` calls: a :class:`~l2s_core.viewer.SliceViewer` on a study's
prepared cases with its converged networks, or on scans with a model folder's networks."""

from __future__ import annotations

__all__ = ["ScanPaths", "open_explorer", "scan_explorer", "study_explorer"]

from collections.abc import Sequence
from pathlib import Path

from l2s_core.data.cache import PreparedTask
from l2s_core.data.prepared_layout import PREPARED_DIR
from l2s_core.errors import ConfigError
from l2s_core.viewer.display import ct_window
from l2s_core.viewer.scans import ScanCase, load_folder_models, method_counts
from l2s_core.viewer.slice_viewer import SliceViewer
from l2s_core.viewer.sources import load_study_models

ScanPaths = str | Path | Sequence[str | Path]


def study_explorer(
    study_dir: str | Path, organ: str, split: str | None = "val", device: str = "cpu"
) -> tuple[SliceViewer, list[str]]:
    """The explorer of one organ of a study: its prepared cases with the first converged networks.

    Args:
        study_dir: ``runs/<study>``.
        organ: the organ (task) of the study.
        split: ``train``, ``val``, ``test`` or ``None`` for every case.
        device: torch device of the networks.

    Returns:
        The viewer and lines saying which runs it uses.

    Raises:
        InputDataError: the organ has no prepared cases.
        CheckpointError, ConfigError: see :func:`~l2s_core.viewer.sources.load_study_models`.
    """
    organ_dir = Path(study_dir) / organ
    models = load_study_models(organ_dir, device=device)
    notes = [f"{network}: first converged run {run.folder}" for network, run in models.runs.items()]
    if not models.runs:
        notes.append(f"{organ_dir}: no converged network yet, only the ground truth is shown")
    viewer = SliceViewer(
        PreparedTask(organ_dir / PREPARED_DIR),
        sources=models.sources,
        organ_network=models.organ_network,
        device=device,
        split=split,
    )
    return viewer, notes


def scan_explorer(
    model_dir: str | Path, scans: ScanPaths, runs: int | None = None, device: str = "cpu"
) -> tuple[SliceViewer, list[str]]:
    """The explorer of new scans with a model folder: ``l2s predict``'s preprocessing and predictions.

    Args:
        model_dir: folder written by ``l2s export``.
        scans: a NIfTI file or DICOM series folder, or several.
        runs: pair (and baseline) position, or ``None`` to average all.
        device: torch device of the networks.

    Returns:
        The viewer and lines describing the model.

    Raises:
        ModelFolderError, FormatVersionError, ConfigError: see
            :func:`~l2s_core.viewer.scans.load_folder_models`.
        InputDataError, DicomError: (when a scan is shown) see :func:`~l2s_core.deploy.scan_input.read_scan`.
    """
    models = load_folder_models(model_dir, runs, device)
    card = models.card
    paths = [scans] if isinstance(scans, (str, Path)) else list(scans)
    counts = ", ".join(
        f"{n} {m.replace('_', '-')}" + ("" if m in models.models else f" (no position {runs}: not shown)")
        for m, n in method_counts(card).items()
        if n
    )
    notes = [f"{model_dir}: {card.organ} on {card.modality} ({counts}; runs {'all' if runs is None else runs})"]
    if models.organ_network is None:
        notes.append("the model has no organ network: segment in box is disabled")
    viewer = SliceViewer(
        [ScanCase(Path(p), card) for p in paths],
        sources=models.sources,
        organ_network=models.organ_network,
        device=device,
        window_level=ct_window(card.normalisation, card.modality),
    )
    return viewer, notes


def open_explorer(
    study_dir: str | Path | None = None,
    organ: str | None = None,
    split: str | None = "val",
    device: str = "cpu",
    model_dir: str | Path | None = None,
    scan: ScanPaths | None = None,
    runs: int | None = None,
) -> tuple[SliceViewer, list[str]]:
    """The explorer of the notebook's parameters: :func:`scan_explorer` when ``model_dir`` and
    ``scan`` are given, else :func:`study_explorer`.

    Raises:
        ConfigError: only one of ``model_dir`` and ``scan``, or neither nor a study and organ.
    """
    if (model_dir is None) != (scan is None):
        raise ConfigError("model_dir, scan", "give both (a model folder and the scans it segments) or neither")
    if model_dir is not None:
        return scan_explorer(model_dir, scan, runs, device)  # type: ignore[arg-type]
    if study_dir is None or organ is None:
        raise ConfigError("study_dir, organ", "give a study folder and an organ, or model_dir and scan")
    return study_explorer(study_dir, organ, split, device)
