"""Evaluation of an organ folder end to end: a tiny prepared task, runs trained for one epoch
by :func:`l2s_core.train.launch.train_run`, and the evaluation CSVs checked against predictions
made directly with :mod:`l2s_core.infer`."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from config_builder import cpu_config
from msd_builder import write_cuboid_task

from l2s_core.checkpoint import load_model
from l2s_core.data.cache import PreparedTask
from l2s_core.data.prepare import prepare_task
from l2s_core.errors import ConfigError
from l2s_core.evaluate import converged_runs, evaluate_organ
from l2s_core.evaluation_tables import CASE_COLUMNS, RUN_COLUMNS
from l2s_core.infer import Segmenter, predict_volume, two_stage_predict
from l2s_core.metrics import case_metrics
from l2s_core.prediction import Localisation
from l2s_core.train.launch import train_run

SHAPE = (12, 16, 16)
#: One cuboid organ per case, in (z, y, x) voxel indices.
ORGANS = [(3 + i % 3, 4 + i % 4, 4, 7 + i % 3, 10 + i % 4, 10) for i in range(10)]
#: network → convergence threshold of each run; 1.1 cannot be reached, so that run does not converge.
THRESHOLDS = {"baseline": [0.0, 0.0], "localiser": [1.1, 0.0, 0.0], "organ": [0.0, 0.0]}


def write_cube_task(root: Path) -> Path:
    """An MSD task of 10 bright cuboids on noise (6 train, 2 val, 2 test after preparation)."""
    return write_cuboid_task(root, SHAPE, ORGANS, "cube", 1.0, 0.2, (1.0, 1.0, 2.0), "organ")


@pytest.fixture(scope="module")
def organ_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``runs/cube/prepared`` and 1-epoch runs per THRESHOLDS: localiser run_00 does not
    converge, every other run does."""
    root = tmp_path_factory.mktemp("evaluate")
    organ = root / "runs" / "cube"
    prepare_task(write_cube_task(root / "Task00_Cube"), organ / "prepared", progress=False, workers=1)
    for network, thresholds in THRESHOLDS.items():
        for index, threshold in enumerate(thresholds):
            config = cpu_config(
                organ / "prepared",
                organ / network / f"run_{index:02d}",
                network,
                seed=index,
                depth=1,
                patch_size=(8, 8, 8),
                samples_per_epoch=4,
                max_epochs=1,
                convergence_threshold=threshold,
            )
            train_run(config, progress=False)
    return organ


@pytest.fixture(scope="module")
def evaluated(organ_dir: Path) -> dict[str, Path]:
    return evaluate_organ(organ_dir, "val", progress=False)


def read_cases(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"case_id": str})


def test_converged_runs_in_run_order(organ_dir: Path) -> None:
    assert [r.index for r in converged_runs(organ_dir, "localiser")] == [1, 2]
    assert [r.index for r in converged_runs(organ_dir, "baseline")] == [0, 1]


def test_csv_columns_and_rows_per_method(evaluated: dict[str, Path]) -> None:
    cases = read_cases(evaluated["cases"])
    runs = pd.read_csv(evaluated["runs"])
    assert list(cases.columns) == list(CASE_COLUMNS)
    assert list(runs.columns) == list(RUN_COLUMNS)
    n_val = 2
    assert cases.groupby("method").size().to_dict() == {
        "baseline": 2 * n_val,
        "two_stage": 2 * n_val,
        "gt_localised": 2 * n_val,
    }
    assert runs.groupby("method").size().to_dict() == {"baseline": 2, "two_stage": 2, "gt_localised": 2}
    assert set(cases["split"]) == {"val"} and set(cases["organ"]) == {"cube"}
    assert (cases["seconds"] > 0).all()
    assert set(cases["fallback"]) <= {"none", "whole_image"}


def test_i_th_localiser_pairs_with_i_th_organ_network(evaluated: dict[str, Path]) -> None:
    runs = pd.read_csv(evaluated["runs"])
    two_stage = runs[runs["method"] == "two_stage"][["run", "localiser_run", "organ_run"]]
    assert two_stage.to_numpy().tolist() == [[0, 1, 0], [1, 2, 1]]
    gt = runs[runs["method"] == "gt_localised"]
    assert gt["organ_run"].tolist() == [0, 1] and gt["localiser_run"].isna().all()


def test_pooled_rows_match_the_case_rows(evaluated: dict[str, Path]) -> None:
    cases = read_cases(evaluated["cases"])
    runs = pd.read_csv(evaluated["runs"])
    for row in runs.itertuples():
        own = cases[(cases["method"] == row.method) & (cases["run"] == row.run)]
        tp, fp, fn = own["tp"].sum(), own["fp"].sum(), own["fn"].sum()
        assert (row.n_cases, row.tp, row.fp, row.fn) == (len(own), tp, fp, fn)
        assert row.pooled_dice == pytest.approx(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0)
        assert row.mean_case_dice == pytest.approx(own["dice"].mean())
        assert row.seconds_per_case == pytest.approx(own["seconds"].mean())


def test_case_rows_equal_direct_predictions(organ_dir: Path, evaluated: dict[str, Path]) -> None:
    cases = read_cases(evaluated["cases"]).set_index(["method", "run", "case_id"])
    task = PreparedTask(organ_dir / "prepared")
    baseline, _ = load_model(organ_dir / "baseline" / "run_01" / "best.pt")
    localiser, _ = load_model(organ_dir / "localiser" / "run_02" / "best.pt")
    organ_net, _ = load_model(organ_dir / "organ" / "run_01" / "best.pt")
    for case in task.cases("val"):
        image, label = np.array(case.array("full", "image")), np.array(case.array("full", "label"))
        expected = {
            ("baseline", 1): predict_volume(Segmenter(baseline, (8, 8, 8), 0.25, 2), image),
            ("two_stage", 1): two_stage_predict(
                Segmenter(localiser, (8, 8, 8), 0.25, 2),
                Segmenter(organ_net, (8, 8, 8), 0.25, 2),
                image,
                Localisation.of_settings(task.preparation.settings),
            ).mask,
        }
        for (method, run), mask in expected.items():
            metrics = case_metrics(mask, label, case.spacing, 2.0)
            row = cases.loc[(method, run, case.case_id)]
            assert (row["tp"], row["fp"], row["fn"]) == (metrics["tp"], metrics["fp"], metrics["fn"])
            assert row["surface_dice"] == pytest.approx(metrics["surface_dice"])


def test_case_rows_record_the_segmented_box_and_the_organ_share_inside_it(
    organ_dir: Path, evaluated: dict[str, Path]
) -> None:
    cases = read_cases(evaluated["cases"]).set_index(["method", "run", "case_id"])
    task = PreparedTask(organ_dir / "prepared")
    margin = task.preparation.settings.crop_margin
    for case in task.cases("val"):
        label = np.array(case.array("full", "label"))
        baseline = cases.loc[("baseline", 0, case.case_id)]
        assert baseline["box_share"] == 1.0
        assert baseline["box_foreground_share"] == pytest.approx(label.mean())
        z0, y0, x0, z1, y1, x1 = case.meta.organ_box
        box_voxels = (z1 - z0 + 2 * margin) * (y1 - y0 + 2 * margin) * (x1 - x0 + 2 * margin)
        gt = cases.loc[("gt_localised", 0, case.case_id)]
        assert gt["box_foreground_share"] == pytest.approx(label.sum() / box_voxels)  # padding beyond counted
        assert 0 < gt["box_share"] <= 1.0
    runs = pd.read_csv(evaluated["runs"])
    assert (runs.loc[runs["method"] == "baseline", "mean_box_share"] == 1.0).all()


def test_missing_methods_are_skipped_with_a_note(
    organ_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    only_baseline = tmp_path / "cube"
    shutil.copytree(organ_dir / "baseline", only_baseline / "baseline")
    with caplog.at_level(logging.WARNING, logger="l2s_core.evaluate"):
        paths = evaluate_organ(only_baseline, "test", prepared_dir=organ_dir / "prepared", progress=False)
    assert "two_stage is not evaluated" in caplog.text and "gt_localised is not evaluated" in caplog.text
    assert set(pd.read_csv(paths["runs"])["method"]) == {"baseline"}
    assert paths["cases"] == only_baseline / "evaluation" / "test_cases.csv"


def test_no_converged_run_gives_csvs_with_header_only(organ_dir: Path, tmp_path: Path) -> None:
    paths = evaluate_organ(tmp_path / "empty", "val", prepared_dir=organ_dir / "prepared", progress=False)
    assert list(read_cases(paths["cases"]).columns) == list(CASE_COLUMNS)
    assert pd.read_csv(paths["runs"]).empty


def test_predictions_are_written_on_the_source_grid(organ_dir: Path, tmp_path: Path) -> None:
    organ = tmp_path / "cube"
    shutil.copytree(organ_dir / "organ", organ / "organ")
    paths = evaluate_organ(organ, "test", prepared_dir=organ_dir / "prepared", save_predictions=True, progress=False)
    task = PreparedTask(organ_dir / "prepared")
    files = sorted(paths["predictions"].glob("*/*.nii.gz"))
    assert [f.parent.name for f in files] == ["gt_localised_00"] * 2 + ["gt_localised_01"] * 2
    case = task.cases("test")[0]
    written = nib.load(paths["predictions"] / "gt_localised_00" / f"{case.case_id}.nii.gz")
    assert written.shape == tuple(case.meta.source.source_shape)


@pytest.mark.parametrize("split, fallback", [("train", "whole_image"), ("val", "nearest_organ")])
def test_bad_split_or_fallback(organ_dir: Path, split: str, fallback: str) -> None:
    with pytest.raises(ConfigError):
        evaluate_organ(organ_dir, split, Localisation(15, fallback=fallback), progress=False)  # type: ignore[arg-type]


def test_the_guard_adds_a_fourth_method_and_leaves_the_papers_unchanged(
    organ_dir: Path, evaluated: dict[str, Path], tmp_path: Path
) -> None:
    copy = tmp_path / "cube"
    shutil.copytree(organ_dir, copy)
    settings = PreparedTask(copy / "prepared").preparation.settings
    paths = evaluate_organ(copy, "val", Localisation.of_settings(settings, guard_grows=3), progress=False)
    cases, paper = read_cases(paths["cases"]), read_cases(evaluated["cases"])
    assert cases.groupby("method").size().to_dict() == {
        "baseline": 4,
        "two_stage": 4,
        "gt_localised": 4,
        "two_stage_guarded": 4,
    }
    papers_methods = cases[cases["method"] != "two_stage_guarded"].reset_index(drop=True)
    pd.testing.assert_frame_equal(
        papers_methods.drop(columns="seconds"), paper.drop(columns="seconds"), check_dtype=False
    )
    assert (papers_methods["box_grows"] == 0).all()
    guarded = cases[cases["method"] == "two_stage_guarded"]
    assert guarded["box_grows"].between(0, 3).all()
    runs = pd.read_csv(paths["runs"])
    is_guarded = runs["method"] == "two_stage_guarded"
    expected = guarded.groupby("run")["box_grows"].apply(lambda g: int((g > 0).sum())).tolist()
    assert runs.loc[is_guarded, "cases_box_grown"].tolist() == expected
    assert (runs.loc[~is_guarded, "cases_box_grown"] == 0).all()
