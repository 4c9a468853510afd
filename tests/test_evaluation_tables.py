"""The evaluation tables (``l2s_core.evaluation_tables``): pooled rows per method and run, case
tables with nullable run indices, and the atomic CSV write."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from l2s_core.evaluation_tables import CASE_COLUMNS, RUN_COLUMNS, case_table, pooled_rows, write_csv


def _case_row(case_id: str, **values: Any) -> dict[str, Any]:
    """A case row of the baseline's run 0 on ``cube``'s validation split, with ``values`` replaced."""
    row = {
        "organ": "cube",
        "split": "val",
        "method": "baseline",
        "run": 0,
        "localiser_run": None,
        "organ_run": None,
        "case_id": case_id,
        "tp": 1,
        "fp": 0,
        "fn": 0,
        "dice": 1.0,
        "hd95_mm": 0.0,
        "surface_dice": 1.0,
        "seconds": 1.0,
        "fallback": "none",
        "box_share": 1.0,
        "box_foreground_share": 0.01,
    }
    return {**row, **values}


def test_pooled_hd95_is_the_mean_over_cases_with_a_finite_distance() -> None:
    rows = [
        _case_row(f"c{i}", tp=tp, fp=1, fn=1, dice=0.5, hd95_mm=hd95, surface_dice=0.5)
        for i, (tp, hd95) in enumerate([(3, 2.0), (0, np.inf), (5, 4.0)])
    ]
    (pooled,) = pooled_rows(pd.DataFrame(rows, columns=list(CASE_COLUMNS))).itertuples()
    assert pooled.mean_hd95_mm == pytest.approx(3.0)
    assert pooled.pooled_dice == pytest.approx(2 * 8 / (2 * 8 + 3 + 3))


def test_pooled_box_shares_are_means_over_the_cases_that_segmented_something() -> None:
    rows = [
        _case_row("a", method="two_stage", box_share=0.2, box_foreground_share=0.1),
        _case_row("b", method="two_stage", box_share=0.4, box_foreground_share=0.3),
        _case_row("c", method="two_stage", box_share=0.0, box_foreground_share=np.nan, fallback="empty"),
    ]
    (pooled,) = pooled_rows(pd.DataFrame(rows, columns=list(CASE_COLUMNS))).itertuples()
    assert pooled.mean_box_share == pytest.approx(0.2)
    assert pooled.mean_box_foreground_share == pytest.approx(0.2)


def test_pooled_rows_of_an_empty_table_has_the_columns() -> None:
    assert list(pooled_rows(pd.DataFrame(columns=list(CASE_COLUMNS))).columns) == list(RUN_COLUMNS)


def test_pooled_rows_keep_each_method_and_run_apart_in_order_of_appearance() -> None:
    two_stage = {"method": "two_stage", "run": 1, "localiser_run": 1, "organ_run": 2}
    cases = case_table(
        [
            _case_row("a", **two_stage, tp=4, fp=2, fn=0, dice=0.8, hd95_mm=np.inf, seconds=2.0),
            _case_row("a", tp=1, fp=1, fn=1, dice=0.5, seconds=4.0),
            _case_row("b", **two_stage, tp=6, fp=0, fn=2, dice=0.6, hd95_mm=np.inf, seconds=4.0),
        ]
    )
    pooled = pooled_rows(cases)
    assert list(pooled.columns) == list(RUN_COLUMNS)
    assert list(pooled["method"]) == ["two_stage", "baseline"]
    first, second = pooled.to_dict("records")
    assert (first["run"], first["localiser_run"], first["organ_run"]) == (1, 1, 2)
    assert (first["n_cases"], first["tp"], first["fp"], first["fn"]) == (2, 10, 2, 2)
    assert first["pooled_dice"] == pytest.approx(2 * 10 / (2 * 10 + 2 + 2))
    assert first["mean_case_dice"] == pytest.approx(0.7) and first["seconds_per_case"] == pytest.approx(3.0)
    assert np.isnan(first["mean_hd95_mm"])  # no case with a finite distance
    assert pooled.loc[1, ["localiser_run", "organ_run"]].isna().all()  # a baseline has no pair
    assert all(str(pooled[c].dtype) == "Int64" for c in ("run", "localiser_run", "organ_run"))
    assert (second["n_cases"], second["pooled_dice"], second["mean_hd95_mm"]) == (1, pytest.approx(0.5), 0.0)


def test_case_table_has_the_columns_and_nullable_run_indices() -> None:
    table = case_table([_case_row("a"), _case_row("b", method="two_stage", run=None, localiser_run=0, organ_run=3)])
    assert list(table.columns) == list(CASE_COLUMNS)
    assert all(str(table[c].dtype) == "Int64" for c in ("run", "localiser_run", "organ_run"))
    assert list(table["localiser_run"].astype(object)) == [pd.NA, 0]
    assert table["run"].isna().tolist() == [False, True]
    empty = case_table([])
    assert list(empty.columns) == list(CASE_COLUMNS) and empty.empty


def test_write_csv_writes_the_table_and_no_temporary_file(tmp_path: Path) -> None:
    table = case_table([_case_row("a"), _case_row("b", tp=3, hd95_mm=np.inf)])
    path = tmp_path / "val_cases.csv"
    write_csv(path, table)
    assert [p.name for p in tmp_path.iterdir()] == ["val_cases.csv"]
    back = pd.read_csv(path, dtype={"case_id": str})
    assert list(back.columns) == list(CASE_COLUMNS)
    assert back["tp"].tolist() == [1, 3] and back["hd95_mm"].tolist() == [0.0, np.inf]
    assert back["localiser_run"].isna().all()
    assert path.read_text().splitlines()[0] == ",".join(CASE_COLUMNS)
