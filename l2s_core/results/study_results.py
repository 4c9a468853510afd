"""Reading a study folder (``runs/<study>``) once into data frames: :class:`StudyData`.

:func:`load_study` gathers what the analysis needs from the files a study leaves (see
:mod:`l2s_core.study.layout`): the prepared tasks' split sizes and foreground shares, the
finished runs' summaries and logs, the evaluation CSVs and the failed steps of the last
``l2s run``. The tables (:mod:`l2s_core.results.analysis`), findings and figures are pure functions of it.
No torch is loaded.

Example:
    >>> data = load_study("runs/quick")  # doctest: +SKIP
    >>> data.summaries.groupby("network")["converged"].mean()  # doctest: +SKIP
"""

from __future__ import annotations

__all__ = ["DATASET_COLUMNS", "FAILURE_COLUMNS", "SUMMARY_COLUMNS", "StudyData", "load_study"]

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from l2s_core.data.cache import PreparedTask
from l2s_core.data.prepared_layout import PREP_FILE, PREPARED_DIR
from l2s_core.errors import InputDataError
from l2s_core.evaluation_tables import CASE_COLUMNS, EVALUATION_DIR, RUN_COLUMNS, cases_file, runs_file
from l2s_core.study.layout import PARAMS_SNAPSHOT_FILE, STATUS_FILE
from l2s_core.study.params import StudyParams, load_study_params
from l2s_core.study.status import StudyStatus
from l2s_core.train.run_files import LOG_COLUMNS, LOG_FILE, finished_runs
from l2s_core.vocabulary import NETWORKS, PAPER_ORGANS, SPLITS

#: Columns of :attr:`StudyData.summaries`: the run and its :class:`~l2s_core.train.run_files.RunSummary` fields.
SUMMARY_COLUMNS = (
    "organ",
    "network",
    "run",
    "converged",
    "diverged",
    "best_epoch",
    "best_val_dice",
    "total_seconds",
    "epochs",
    "seed",
)
FAILURE_COLUMNS = ("unit", "state", "error")
DATASET_COLUMNS = ("organ", "task_name", "task_dir", "n_train", "n_val", "n_test", "n_cases", "foreground_percent")


@dataclass(frozen=True)
class StudyData:
    """Everything the analysis reads from a study folder.

    Attributes:
        study_dir: the study folder ``runs/<study>``.
        organs: the study file's organs that are prepared, in its order (without
            ``study_params.json``: every prepared organ, the paper's first).
        study_params: the study's parameters as the runner kept them (``study_params.json``), or
            ``None`` where that file is absent.
        datasets: one row per organ: columns :data:`DATASET_COLUMNS` (split sizes of the
            prepared task; ``foreground_percent`` = mean over its cases of the organ's share
            of the image voxels, in %).
        summaries: one row per finished training run: columns :data:`SUMMARY_COLUMNS`
            (``converged``: :attr:`FinishedRun.converged <l2s_core.train.run_files.FinishedRun.converged>`,
            the runs evaluation counts).
        logs: per-epoch rows of the finished runs: ``organ, network, run`` and the columns of
            ``log.csv`` (epoch, wall_seconds, train_loss, train_dice, val_dice).
        cases: the rows of every ``<organ>/evaluation/<split>_cases.csv``.
        runs: the rows of every ``<organ>/evaluation/<split>_runs.csv``.
        failures: the study's steps that failed or were blocked by a failure, as the last
            ``l2s run`` left them in ``status.json`` (columns :data:`FAILURE_COLUMNS`).
    """

    study_dir: Path
    organs: tuple[str, ...]
    study_params: StudyParams | None
    datasets: pd.DataFrame
    summaries: pd.DataFrame
    logs: pd.DataFrame
    cases: pd.DataFrame
    runs: pd.DataFrame
    failures: pd.DataFrame


def _study_organs(names: list[str], study_params: StudyParams | None) -> tuple[str, ...]:
    """The organs the analysis covers: those of the study file (its snapshot's ``organs``) that
    ``names`` holds, in its order; an organ prepared once and since dropped from the file is left
    out. Without a snapshot, every name: the paper's organs in its order, others alphabetically."""
    if study_params is not None:
        return tuple(o for o in study_params.organs if o in names)
    rank = {name: i for i, name in enumerate(PAPER_ORGANS)}
    return tuple(sorted(names, key=lambda n: (rank.get(n, len(rank)), n)))


def _read_dataset(organ: str, prepared_dir: Path) -> dict[str, Any]:
    task = PreparedTask(prepared_dir)
    split = task.split
    case_ids = [c for name in ("train", "val", "test") for c in split[name]]
    shares = [task.case(c).meta.foreground_share for c in case_ids]
    return {
        "organ": organ,
        "task_name": task.preparation.task_name,
        "task_dir": task.preparation.task_dir,
        "n_train": len(split["train"]),
        "n_val": len(split["val"]),
        "n_test": len(split["test"]),
        "n_cases": len(case_ids),
        "foreground_percent": 100.0 * float(np.mean(shares)) if shares else np.nan,
    }


def _read_failures(status_path: Path) -> pd.DataFrame:
    """Units of ``status.json`` that failed or are blocked, with the error of the failed ones."""
    status = StudyStatus.read(status_path) if status_path.is_file() else StudyStatus()
    rows = [
        {"unit": unit_id, "state": unit.state, "error": unit.error or ""} for unit_id, unit in status.failures().items()
    ]
    return pd.DataFrame(rows, columns=list(FAILURE_COLUMNS))


def _read_csvs(paths: list[Path], columns: tuple[str, ...]) -> pd.DataFrame:
    """The rows of the CSV files that exist, with ``columns``: a column that an older l2s did not
    write (e.g. ``box_share``) is NaN."""
    frames = [pd.read_csv(p, dtype={"case_id": str}) for p in paths if p.is_file()]
    frames = [f for f in frames if not f.empty]
    if not frames:
        return pd.DataFrame(columns=list(columns))
    return pd.concat(frames, ignore_index=True).reindex(columns=list(columns))


def load_study(study_dir: str | Path) -> StudyData:
    """Read a study folder.

    An organ is a sub-folder holding ``prepared/prep.json`` and named in the study's
    ``study_params.json`` (where there is one): the report covers the organs of the study file,
    not every folder a former version of it left. Training runs without a
    ``summary.json`` (unfinished) are left out; missing evaluation CSVs give no rows.

    Args:
        study_dir: the folder ``runs/<study>``.

    Returns:
        The :class:`StudyData`.

    Raises:
        InputDataError: the folder does not exist or holds no prepared organ of the study.
        InputDataError: an unreadable or invalid ``status.json`` (the message names it).
        ConfigError: an invalid ``study_params.json`` (the message names it and the key).
        FormatVersionError: a metadata file written by an incompatible l2s version.
    """
    study_dir = Path(study_dir)
    if not study_dir.is_dir():
        raise InputDataError(study_dir, "study folder not found")
    params_path = study_dir / PARAMS_SNAPSHOT_FILE
    study_params = load_study_params(params_path) if params_path.is_file() else None
    organ_dirs = {d.name: d for d in study_dir.iterdir() if (d / PREPARED_DIR / PREP_FILE).is_file()}
    if not organ_dirs:
        raise InputDataError(study_dir, "no prepared organ found (expected <organ>/prepared/prep.json)")
    organs = _study_organs(list(organ_dirs), study_params)
    if not organs:
        raise InputDataError(
            study_dir, f"none of the study's organs is prepared (found: {', '.join(sorted(organ_dirs))})"
        )
    summaries, logs = [], []
    for organ in organs:
        for run in (run for network in NETWORKS for run in finished_runs(organ_dirs[organ], network)):
            summaries.append(
                {
                    "organ": organ,
                    "network": run.network,
                    "run": run.index,
                    **{k: getattr(run.summary, k) for k in SUMMARY_COLUMNS[3:]},
                    "converged": run.converged,  # as evaluation counts it: the summary says so and best.pt exists
                }
            )
            if (run.folder / LOG_FILE).is_file():
                log = pd.read_csv(run.folder / LOG_FILE)
                logs.append(log.assign(organ=organ, network=run.network, run=run.index))
    evaluation = [organ_dirs[o] / EVALUATION_DIR for o in organs]
    return StudyData(
        study_dir=study_dir,
        organs=organs,
        study_params=study_params,
        datasets=pd.DataFrame(
            [_read_dataset(o, organ_dirs[o] / PREPARED_DIR) for o in organs], columns=list(DATASET_COLUMNS)
        ),
        summaries=pd.DataFrame(summaries, columns=list(SUMMARY_COLUMNS)).astype({"converged": bool, "diverged": bool}),
        logs=pd.concat(logs, ignore_index=True)[["organ", "network", "run", *LOG_COLUMNS]]
        if logs
        else pd.DataFrame(columns=["organ", "network", "run", *LOG_COLUMNS]),
        cases=_read_csvs([d / cases_file(s) for d in evaluation for s in SPLITS], CASE_COLUMNS),
        runs=_read_csvs([d / runs_file(s) for d in evaluation for s in SPLITS], RUN_COLUMNS),
        failures=_read_failures(study_dir / STATUS_FILE),
    )
