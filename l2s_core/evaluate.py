"""Evaluation of an organ's trained runs on its validation or test images (full resolution).

Three methods, as in the paper, and a fourth of l2s's when the study asks for it:

=================  ========================================================================
method             prediction of one case
=================  ========================================================================
baseline           the ``full`` image, window by window with the run's training patch
two_stage          the i-th converged localiser with the i-th converged organ network (runs
                   in order of run index): localise at low resolution, segment the organ box
gt_localised       a converged organ network on the box of the label (+ the crop margin)
two_stage_guarded  (only with ``evaluate.guard_grows`` > 0, an l2s addition) two_stage with
                   the second-stage box guard (:mod:`l2s_core.box_guard`), beside the
                   paper's two_stage so that the tables show what the guard changes
=================  ========================================================================

Every method's prediction of a case is a :class:`~l2s_core.prediction.Prediction`, localised
as the :class:`~l2s_core.prediction.Localisation` given (a study's own:
:func:`l2s_core.study.localisation.evaluation_localisation`). Only converged runs
(``summary.json``: ``converged`` true) are evaluated. Each case row also
records the share of the image the segmented box covered and the organ's foreground share inside
it (:class:`~l2s_core.boxes.BoxContext`: 1.0 and the image's share for the baseline). For each organ and
split two CSV files are written atomically into ``<organ>/evaluation/``:
``<split>_cases.csv`` (:data:`CASE_COLUMNS`, one row per method, run and case) and
``<split>_runs.csv`` (:data:`RUN_COLUMNS`, one pooled row per method and run). Optionally the
masks are written as NIfTI on the source scan's grid under
``<organ>/evaluation/predictions/<split>/<method>_<run>/<case>.nii.gz``.

Example:
    >>> paths = evaluate_organ(Path("runs/quick/spleen"), "test", device="cuda")  # doctest: +SKIP
"""

from __future__ import annotations

__all__ = [
    "GUARDED_METHOD",
    "MethodRun",
    "Predictor",
    "converged_runs",
    "evaluate_organ",
    "method_runs",
]

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from l2s_core.boxes import box_context
from l2s_core.data.cache import PreparedTask
from l2s_core.data.prepared_layout import PREPARED_DIR
from l2s_core.errors import check_choice
from l2s_core.evaluation_tables import (
    EVALUATION_DIR,
    METRIC_COLUMNS,
    NO_FALLBACK,
    PREDICTIONS_DIR,
    case_table,
    cases_file,
    pooled_rows,
    prediction_file,
    runs_file,
    write_csv,
)
from l2s_core.infer import (
    Segmenter,
    gt_localised_predict,
    predict_volume,
    save_prediction,
    two_stage_predict,
)
from l2s_core.metrics import case_metrics
from l2s_core.prediction import Localisation, Prediction
from l2s_core.train.run_files import FinishedRun, finished_runs
from l2s_core.train.segmenter import load_segmenter
from l2s_core.vocabulary import SPLITS

logger = logging.getLogger(__name__)

#: The fourth method: two_stage with the second-stage box guard (an l2s addition).
GUARDED_METHOD = "two_stage_guarded"


#: A method's prediction of one case from its ``(z, y, x)`` image and label (only
#: ``gt_localised`` reads the label).
Predictor = Callable[[np.ndarray, np.ndarray], Prediction]


@dataclass(frozen=True)
class MethodRun:
    """One run of a method: which trained runs it uses and how it predicts a case.

    Attributes:
        method: ``baseline``, ``two_stage`` or ``gt_localised``.
        run: run number of the method (baseline: the baseline run's index; two_stage: the
            pair's position i; gt_localised: the organ run's index).
        localiser_run: index of the localiser run (two_stage), else ``None``.
        organ_run: index of the organ network run (two_stage, gt_localised), else ``None``.
        organ_network: that organ network (two_stage, gt_localised), else ``None``.
        predict: the :data:`Predictor`.
    """

    method: str
    run: int
    localiser_run: int | None
    organ_run: int | None
    organ_network: Segmenter | None
    predict: Predictor


def converged_runs(organ_dir: Path, network: str) -> list[FinishedRun]:
    """Converged runs of one network of an organ, in order of run index.

    A run counts when its folder ``<organ_dir>/<network>/run_<ii>`` holds a ``summary.json``
    with ``converged`` true and a ``best.pt`` (:func:`l2s_core.train.run_files.finished_runs`).
    """
    return [run for run in finished_runs(organ_dir, network) if run.converged]


def _baseline(run: FinishedRun, baseline: Segmenter, device: str) -> MethodRun:
    def predict(image: np.ndarray, label: np.ndarray) -> Prediction:
        return Prediction(predict_volume(baseline, image, device))

    return MethodRun("baseline", run.index, None, None, None, predict)


def _two_stage(
    position: int,
    localiser_run: FinishedRun,
    organ_run: FinishedRun,
    localiser: Segmenter,
    organ: Segmenter,
    localisation: Localisation,
    device: str,
    method: str = "two_stage",
) -> MethodRun:
    def predict(image: np.ndarray, label: np.ndarray) -> Prediction:
        return two_stage_predict(localiser, organ, image, localisation, device)

    return MethodRun(method, position, localiser_run.index, organ_run.index, organ, predict)


def _gt_localised(organ_run: FinishedRun, organ: Segmenter, localisation: Localisation, device: str) -> MethodRun:
    def predict(image: np.ndarray, label: np.ndarray) -> Prediction:
        return gt_localised_predict(organ, image, label, localisation, device)

    return MethodRun("gt_localised", organ_run.index, None, organ_run.index, organ, predict)


def method_runs(
    organ_dir: Path, localisation: Localisation, device: str, runs_per_network: int | None = None
) -> list[MethodRun]:
    """Every run of every method that the organ's converged runs allow, each network loaded once on
    ``device``; the one place that builds the three methods' predictors (evaluation and the
    explorer use it).

    A method without runs (e.g. no converged localiser) is left out with a logged warning;
    localisers and organ networks are paired in order of run index up to the shorter list.

    Args:
        organ_dir: the organ folder (``<organ>/{baseline,localiser,organ}/run_<ii>``).
        localisation: the prepared task's margin and divisors, the fallback when nothing is
            localised and the box mapping (:class:`l2s_core.prediction.Localisation`); with
            ``guard_grows`` > 0 the fourth method :data:`GUARDED_METHOD` uses its guard, the
            paper's methods never do.
        device: where the networks run.
        runs_per_network: use only the first n converged runs of each network (``None``: all).

    Returns:
        The method runs, baseline first, then two_stage, then gt_localised, then (with the
        guard) two_stage_guarded.
    """
    baselines = converged_runs(organ_dir, "baseline")[:runs_per_network]
    localisers = converged_runs(organ_dir, "localiser")[:runs_per_network]
    organ_nets = converged_runs(organ_dir, "organ")[:runs_per_network]
    if not baselines:
        logger.warning("%s: no converged baseline run; the baseline is not evaluated", organ_dir)
    if not (localisers and organ_nets):
        logger.warning(
            "%s: no converged %s run; two_stage is not evaluated", organ_dir, "localiser" if not localisers else "organ"
        )
    elif len(localisers) != len(organ_nets):
        logger.warning(
            "%s: %d converged localiser and %d organ runs; two_stage pairs the first %d of each",
            organ_dir,
            len(localisers),
            len(organ_nets),
            min(len(localisers), len(organ_nets)),
        )
    if not organ_nets:
        logger.warning("%s: no converged organ run; gt_localised is not evaluated", organ_dir)
    loaded = {run.folder: load_segmenter(run, device) for run in (*baselines, *localisers, *organ_nets)}
    pairs = list(enumerate(zip(localisers, organ_nets)))
    paper = dataclasses.replace(localisation, guard_grows=0)
    guarded = [
        _two_stage(i, loc, org, loaded[loc.folder], loaded[org.folder], localisation, device, GUARDED_METHOD)
        for i, (loc, org) in pairs
        if localisation.guard_grows
    ]
    return (
        [_baseline(r, loaded[r.folder], device) for r in baselines]
        + [_two_stage(i, loc, org, loaded[loc.folder], loaded[org.folder], paper, device) for i, (loc, org) in pairs]
        + [_gt_localised(r, loaded[r.folder], paper, device) for r in organ_nets]
        + guarded
    )


def evaluate_organ(
    organ_dir: Path,
    split: str,
    localisation: Localisation | None = None,
    prepared_dir: Path | None = None,
    tolerance_mm: float = 2.0,
    device: str = "cpu",
    save_predictions: bool = False,
    progress: bool = True,
) -> dict[str, Path]:
    """Evaluate every method run of one organ on one split and write the evaluation CSVs.

    Args:
        organ_dir: the organ folder of a study (``runs/<study>/<organ>``).
        split: ``"val"`` or ``"test"``.
        localisation: the prepared task's margin and divisors, the fallback when the localiser
            (or label) gives no box, the box mapping and the guard
            (:class:`~l2s_core.prediction.Localisation`); ``guard_grows`` > 0 adds the fourth
            method :data:`GUARDED_METHOD`, two_stage with the second-stage guard (an l2s
            addition), and the case rows count its growths (``box_grows``). ``None``: the
            prepared task's margin and divisors with the defaults (the paper's methods).
        prepared_dir: the prepared task (default ``<organ_dir>/prepared``).
        tolerance_mm: tolerance of the surface Dice.
        device: where the networks run (``"cpu"``, ``"cuda"``, ...).
        save_predictions: also write every mask as NIfTI on the source scan's grid.
        progress: show a progress bar over the cases.

    Returns:
        ``{"cases": <split>_cases.csv, "runs": <split>_runs.csv}`` and, with
        ``save_predictions``, ``"predictions"``: the folder of the masks. Methods without
        converged runs give no rows (the CSVs are still written, with their header).

    Raises:
        ConfigError: an unknown split.
        InputDataError, CheckpointError: an unreadable prepared task or checkpoint.
    """
    check_choice("split", split, SPLITS)
    organ_dir = Path(organ_dir)
    task = PreparedTask(prepared_dir if prepared_dir is not None else organ_dir / PREPARED_DIR)
    if localisation is None:
        localisation = Localisation.of_settings(task.preparation.settings)
    out_dir = organ_dir / EVALUATION_DIR
    runs = method_runs(organ_dir, localisation, device)
    rows = []
    for case in tqdm(task.cases(split), desc=f"evaluate {organ_dir.name} {split}", unit="case", disable=not progress):
        image = np.array(case.array("full", "image"))
        label = np.array(case.array("full", "label"))
        for method_run in runs:
            started = time.perf_counter()
            prediction = method_run.predict(image, label)
            seconds = time.perf_counter() - started
            metrics = case_metrics(prediction.mask, label, case.spacing, tolerance_mm)
            context = box_context(prediction.segmented_box(label.shape), label)
            rows.append(
                {
                    "organ": organ_dir.name,
                    "split": split,
                    "method": method_run.method,
                    "run": method_run.run,
                    "localiser_run": method_run.localiser_run,
                    "organ_run": method_run.organ_run,
                    "case_id": case.case_id,
                    **{k: metrics[k] for k in METRIC_COLUMNS},
                    "seconds": seconds,
                    "fallback": prediction.fallback_used or NO_FALLBACK,
                    "box_grows": prediction.box_grows,
                    "box_share": context.box_share,
                    "box_foreground_share": context.foreground_share,
                }
            )
            if save_predictions:
                file = prediction_file(split, method_run.method, method_run.run, case.case_id)
                save_prediction(prediction.mask, case, out_dir / file)
    cases = case_table(rows)
    paths = {"cases": out_dir / cases_file(split), "runs": out_dir / runs_file(split)}
    write_csv(paths["cases"], cases)
    write_csv(paths["runs"], pooled_rows(cases))
    if save_predictions:
        paths["predictions"] = out_dir / PREDICTIONS_DIR / split
    return paths
