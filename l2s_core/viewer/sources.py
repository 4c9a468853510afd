"""What the slice explorer overlays: prediction sources of a study (its converged networks or
saved masks).

A prediction source is a callable ``case -> result``: a ``(z, y, x)`` mask or a
:class:`l2s_core.prediction.Prediction` (:func:`as_prediction` accepts both).
"""

from __future__ import annotations

__all__ = [
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

from l2s_core.data.cache import PreparedCase, PreparedTask
from l2s_core.data.io import read_label
from l2s_core.errors import InputDataError
from l2s_core.evaluate import MethodRun, converged_runs, method_runs
from l2s_core.evaluation_tables import EVALUATION_DIR, PREDICTION_SUFFIX, prediction_folder
from l2s_core.infer import Segmenter
from l2s_core.prediction import Localisation, Prediction
from l2s_core.study.localisation import evaluation_localisation
from l2s_core.train.run_files import FinishedRun
from l2s_core.viewer.display import ct_window
from l2s_core.vocabulary import NETWORKS, SPLITS

PredictionSource = Callable[[Any], Prediction | np.ndarray] | str | Path


def as_prediction(result: Prediction | np.ndarray) -> Prediction:
    """What a prediction source returned, as a :class:`~l2s_core.prediction.Prediction`: a
    ``(z, y, x)`` mask becomes a prediction without a box."""
    return result if isinstance(result, Prediction) else Prediction(np.asarray(result))


def saved_prediction_source(folder: str | Path) -> Callable[[PreparedCase], np.ndarray]:
    """A prediction source reading ``<folder>/<case_id>.nii.gz``: the masks evaluation saves
    (``evaluate_organ(..., save_predictions=True)``, folder
    ``<organ>/evaluation/predictions/<split>/<method>_<run>``), on the source scan's grid, read
    back onto the case's prepared ``(z, y, x)`` grid.

    Raises:
        InputDataError: (when called) the case's file is missing or unreadable.
    """
    folder = Path(folder)

    def load(case: PreparedCase) -> np.ndarray:
        path = folder / f"{case.case_id}{PREDICTION_SUFFIX}"
        if not path.is_file():
            raise InputDataError(path, f"no saved prediction for case {case.case_id}")
        return read_label(path)[0]

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

    sources: dict[str, Callable[[PreparedCase], Prediction]]
    organ_network: Segmenter | None
    runs: dict[str, FinishedRun]


def load_study_models(
    organ_dir: str | Path, device: str = "cpu", localisation: Localisation | None = None
) -> StudyModels:
    """The three methods of one organ of a study, as the explorer shows them: run 0 of each.

    The predictors are evaluation's own (:func:`l2s_core.evaluate.method_runs`, first converged
    run of each network: the baseline's run 0, two-stage pair 0, ground-truth-localised run 0).
    For a case whose mask evaluation saved (``evaluate_organ(..., save_predictions=True)``) the
    saved mask is shown instead of predicting again (without the localisation box).

    Args:
        organ_dir: ``runs/<study>/<organ>`` (holding ``baseline/``, ``localiser/``, ``organ/``).
        device: torch device of the networks.
        localisation: margin, divisors, fallback and box mapping of the two-stage and
            ground-truth-localised predictions; ``None``: as evaluation has them (margin and
            divisors of ``<organ_dir>/prepared``, fallback and box mapping of the study's
            ``evaluate`` options in its parameter snapshot, where there is one).

    Returns:
        The :class:`StudyModels`; empty when nothing has converged yet.

    Raises:
        CheckpointError: a converged run's checkpoint cannot be loaded.
        InputDataError: an unreadable run summary or prepared task.
    """
    organ_dir = Path(organ_dir)
    runs: dict[str, FinishedRun] = {
        name: converged[0] for name in NETWORKS if (converged := converged_runs(organ_dir, name))
    }
    if not runs:
        return StudyModels({}, None, {})
    if localisation is None:
        localisation = evaluation_localisation(organ_dir)
    chosen = method_runs(organ_dir, localisation, device, runs_per_network=1)
    sources = {method_run.method: _saved_or_predicted(organ_dir, method_run) for method_run in chosen}
    organ_network = next((m.organ_network for m in chosen if m.organ_network is not None), None)
    return StudyModels(sources, organ_network, runs)


def _saved_or_predicted(organ_dir: Path, method_run: MethodRun) -> Callable[[PreparedCase], Prediction]:
    """The source of one method run: the mask evaluation saved for the case where it exists
    (no box then), else the method's prediction."""

    folders = [organ_dir / EVALUATION_DIR / prediction_folder(s, method_run.method, method_run.run) for s in SPLITS]

    def source(case: PreparedCase) -> Prediction:
        for folder in folders:
            if (folder / f"{case.case_id}{PREDICTION_SUFFIX}").is_file():
                return Prediction(saved_prediction_source(folder)(case))
        return method_run.predict(case.array("full", "image"), case.array("full", "label"))

    return source
