"""The evaluation CSV files of an organ (``<organ>/evaluation/<split>_{cases,runs}.csv``); no torch.

``<split>_cases.csv`` holds one row per method, run and case (:data:`CASE_COLUMNS`);
``<split>_runs.csv`` one pooled row per method and run (:data:`RUN_COLUMNS`, made by
:func:`pooled_rows`). :mod:`l2s_core.evaluate` writes them, :mod:`l2s_core.results.analysis` reads them.
"""

from __future__ import annotations

__all__ = [
    "CASE_COLUMNS",
    "EVALUATION_DIR",
    "METRIC_COLUMNS",
    "NO_FALLBACK",
    "PREDICTIONS_DIR",
    "PREDICTION_SUFFIX",
    "RUN_COLUMNS",
    "case_table",
    "cases_file",
    "pooled_rows",
    "prediction_file",
    "prediction_folder",
    "runs_file",
    "write_csv",
]

import io
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from l2s_core.files import atomic_write_text
from l2s_core.metrics import pooled_dice

#: The evaluation folder inside an organ's study folder.
EVALUATION_DIR = "evaluation"


def cases_file(split: str) -> str:
    """``<split>_cases.csv``: one row per method, run and case."""
    return f"{split}_cases.csv"


def runs_file(split: str) -> str:
    """``<split>_runs.csv``: one pooled row per method and run."""
    return f"{split}_runs.csv"


#: The masks evaluation saves on request, inside the evaluation folder.
PREDICTIONS_DIR = "predictions"


#: The file name ending of a saved mask (``<case_id>.nii.gz``).
PREDICTION_SUFFIX = ".nii.gz"


def prediction_folder(split: str, method: str, run: int) -> str:
    """``predictions/<split>/<method>_<run>``: the saved masks of one method run, relative to the
    evaluation folder."""
    return f"{PREDICTIONS_DIR}/{split}/{method}_{run:02d}"


def prediction_file(split: str, method: str, run: int, case_id: str) -> str:
    """``predictions/<split>/<method>_<run>/<case_id>.nii.gz``: a saved mask, relative to the
    evaluation folder (on the source scan's grid)."""
    return f"{prediction_folder(split, method, run)}/{case_id}{PREDICTION_SUFFIX}"


#: Columns of a case row taken from :func:`l2s_core.metrics.case_metrics`.
METRIC_COLUMNS = ("tp", "fp", "fn", "dice", "hd95_mm", "surface_dice")
CASE_COLUMNS = (
    "organ",
    "split",
    "method",
    "run",
    "localiser_run",
    "organ_run",
    "case_id",
    *METRIC_COLUMNS,
    "seconds",
    "fallback",
    "box_grows",
    "box_share",
    "box_foreground_share",
)
RUN_COLUMNS = (
    "organ",
    "split",
    "method",
    "run",
    "localiser_run",
    "organ_run",
    "n_cases",
    "tp",
    "fp",
    "fn",
    "pooled_dice",
    "mean_case_dice",
    "mean_hd95_mm",
    "seconds_per_case",
    "cases_box_grown",
    "mean_box_share",
    "mean_box_foreground_share",
)
#: ``fallback`` column of a case where the localiser (or label) gave a box.
NO_FALLBACK = "none"


def pooled_rows(cases: pd.DataFrame) -> pd.DataFrame:
    """One pooled row per method and run of a table of case rows.

    Args:
        cases: rows with the columns :data:`CASE_COLUMNS`.

    Returns:
        Rows with the columns :data:`RUN_COLUMNS`: TP, FP and FN summed over the cases,
        ``pooled_dice`` from the sums, ``mean_case_dice``, ``mean_hd95_mm`` (mean over the
        cases with a finite HD95, NaN if none), ``seconds_per_case``, ``cases_box_grown``
        (cases where the second-stage guard grew the box; tables without ``box_grows`` count 0),
        and the means over the cases of the segmented box's share of the image and of the organ's
        share of the box (``mean_box_share``, ``mean_box_foreground_share``; NaN over cases that
        segmented nothing).
    """
    keys = ["organ", "split", "method", "run", "localiser_run", "organ_run"]
    rows = []
    for key, group in cases.groupby(keys, sort=False, dropna=False):
        hd95 = group["hd95_mm"].astype(float)
        finite_hd95 = hd95[np.isfinite(hd95)]
        rows.append(
            {
                **dict(zip(keys, key)),
                "n_cases": len(group),
                "tp": int(group["tp"].sum()),
                "fp": int(group["fp"].sum()),
                "fn": int(group["fn"].sum()),
                "pooled_dice": pooled_dice(group[["tp", "fp", "fn"]].to_dict("records")),
                "mean_case_dice": float(group["dice"].mean()),
                "mean_hd95_mm": float(finite_hd95.mean()) if len(finite_hd95) else np.nan,
                "seconds_per_case": float(group["seconds"].mean()),
                "cases_box_grown": int((pd.to_numeric(group["box_grows"]).fillna(0) > 0).sum()),
                "mean_box_share": float(group["box_share"].mean()),
                "mean_box_foreground_share": float(group["box_foreground_share"].mean()),
            }
        )
    return _table(rows, RUN_COLUMNS)


def _table(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> pd.DataFrame:
    """Rows as a DataFrame with ``columns``; run indices as nullable integers."""
    table = pd.DataFrame(rows, columns=list(columns))
    return table.astype({"run": "Int64", "localiser_run": "Int64", "organ_run": "Int64"})


def case_table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Case rows (dicts with :data:`CASE_COLUMNS`) as a table."""
    return _table(rows, CASE_COLUMNS)


def write_csv(path: Path, table: pd.DataFrame) -> None:
    """Write a table as CSV atomically."""
    buffer = io.StringIO()
    table.to_csv(buffer, index=False)
    atomic_write_text(path, buffer.getvalue())
