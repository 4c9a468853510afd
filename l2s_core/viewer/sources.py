"""What the slice explorer overlays: prediction sources of a study (its converged networks or
saved masks) and the :class:`Prediction` they return.

A prediction source is a callable ``case -> result``: a ``(z, y, x)`` mask, or an object with
``mask`` and ``box`` attributes such as :class:`l2s_core.infer.TwoStageResult`
(:func:`as_prediction` accepts both).
"""

from __future__ import annotations

__all__ = [
    "Prediction",
    "PredictionSource",
    "StudyModels",
    "as_prediction",
    "load_study_models",
    "raw_ct_window",
    "saved_prediction_source",
]

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from l2s_core.boxes import Box
from l2s_core.data.cache import PreparedCase, PreparedTask
from l2s_core.data.prepared_layout import PREPARED_DIR
from l2s_core.errors import InputDataError
from l2s_core.evaluate import converged_runs, load_segmenter
from l2s_core.infer import Localisation, Segmenter, gt_localised_predict, predict_volume, two_stage_predict
from l2s_core.train.run_files import FinishedRun
from l2s_core.viewer.display import TWO_STAGE, ct_window
from l2s_core.vocabulary import NETWORKS

PredictionSource = Callable[[Any], Any] | str | Path


@dataclass(frozen=True)
class Prediction:
    """A method's result on one case.

    Attributes:
        mask: ``(z, y, x)`` organ mask on the full-resolution grid of the case.
        box: the localisation box the method segmented in (two-stage), if any.
    """

    mask: np.ndarray
    box: Box | None = None


def as_prediction(result: Any) -> Prediction:
    """Normalise what a prediction source returns: a ``(z, y, x)`` mask, or an object with
    ``mask`` and optionally ``box`` attributes (e.g. :class:`l2s_core.infer.TwoStageResult`)."""
    if isinstance(result, np.ndarray):
        return Prediction(result)
    box = getattr(result, "box", None)
    box = tuple(int(v) for v in box) if box is not None else None
    return Prediction(np.asarray(result.mask), box)  # type: ignore[arg-type]


def saved_prediction_source(folder: str | Path) -> Callable[[PreparedCase], np.ndarray]:
    """A prediction source reading ``<folder>/<case_id>.npy`` (a ``(z, y, x)`` mask on the
    prepared full-resolution grid), memory-mapped.

    Raises:
        InputDataError: (when called) the case's file is missing.
    """
    folder = Path(folder)

    def load(case: PreparedCase) -> np.ndarray:
        path = folder / f"{case.case_id}.npy"
        if not path.is_file():
            raise InputDataError(path, f"no saved prediction for case {case.case_id}")
        return np.load(path, mmap_mode="r", allow_pickle=False)

    return load


def raw_ct_window(task: PreparedTask) -> tuple[float, float] | None:
    """:data:`~l2s_core.viewer.display.CT_SOFT_TISSUE` if the task holds raw CT intensities
    (normalisation ``none``), else ``None``."""
    preparation = task.preparation
    return ct_window(preparation.settings.normalisation, preparation.channel_modality)


@dataclass(frozen=True)
class StudyModels:
    """The networks of a study that the explorer uses.

    Attributes:
        sources: ``baseline``, ``two_stage`` and ``gt_localised`` prediction sources for
            :class:`~l2s_core.viewer.SliceViewer`, as far as their networks exist.
        organ_network: the organ network with its window (for the manual box), or ``None``.
        runs: network type → the converged run used.
    """

    sources: dict[str, Callable[[PreparedCase], Any]]
    organ_network: Segmenter | None
    runs: dict[str, FinishedRun]


def load_study_models(
    organ_dir: str | Path, device: str = "cpu", localisation: Localisation | None = None
) -> StudyModels:
    """Load the first converged baseline, localiser and organ networks of one organ of a study.

    Runs are found as the evaluation finds them (:func:`l2s_core.evaluate.converged_runs`).
    Every network predicts patch-wise with its run's patch and overlap, as in evaluation
    (:func:`l2s_core.evaluate.load_segmenter`); two-stage pairs the first converged localiser
    with the first converged organ network (the evaluation's run 0).

    Args:
        organ_dir: ``runs/<study>/<organ>`` (holding ``baseline/``, ``localiser/``, ``organ/``).
        device: torch device of the networks.
        localisation: margin, divisors and fallback of the two-stage and ground-truth-localised
            predictions; ``None``: those of ``<organ_dir>/prepared`` (as evaluation).

    Returns:
        The :class:`StudyModels`; empty when nothing has converged yet.

    Raises:
        CheckpointError: a converged run's checkpoint cannot be loaded.
        ConfigError: the baseline run's ``config.json`` is missing or invalid.
    """
    runs = {name: converged[0] for name in NETWORKS if (converged := converged_runs(Path(organ_dir), name))}
    if not runs:
        return StudyModels({}, None, {})
    if localisation is None:
        localisation = Localisation.of_settings(PreparedTask(Path(organ_dir) / PREPARED_DIR).preparation.settings)
    networks = {name: load_segmenter(run, device) for name, run in runs.items()}
    sources: dict[str, Callable[[PreparedCase], Any]] = {}
    baseline, localiser, organ = (networks.get(name) for name in NETWORKS)
    if baseline is not None:
        sources["baseline"] = lambda case: predict_volume(baseline, case.array("full", "image"), device)
    if organ is not None and localiser is not None:
        sources[TWO_STAGE] = lambda case: two_stage_predict(
            localiser, organ, case.array("full", "image"), localisation, device=device
        )
    if organ is not None:
        sources["gt_localised"] = lambda case: gt_localised_predict(
            organ, case.array("full", "image"), case.array("full", "label"), localisation, device=device
        )
    return StudyModels(sources, organ, runs)
