"""The analysis tables on a synthetic study folder whose files (prepared-task metadata, run
summaries and logs, evaluation CSVs) are written here with chosen numbers, and the analysis
notebook executed on it with papermill."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats
from statsmodels.stats.multitest import multipletests
from study_folder import DATASETS, DICE, LOCALISED_BOX_SHARE, RUNS, synthetic_study, write_study

from l2s_core.results import analysis, plots
from l2s_core.results.stats import DEFAULT_PAIRS
from l2s_core.results.study_results import StudyData, load_study
from l2s_core.study.params import AnalysisOptions, StudyParams

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "analysis.ipynb"

#: The tables of analysis.all_tables (the notebook writes them and the Findings tables).
TABLES = (
    "table1_split_sizes",
    "table2_training_minutes",
    "table3_val_dice",
    "table4_test_dice",
    "ttests",
    "case_mean_dice",
    "paired_tests",
    "convergence_rates",
    "dice_gain",
    "localisation_context",
)


@pytest.fixture
def study(tmp_path: Path) -> Path:
    return synthetic_study(tmp_path)


@pytest.fixture
def data(study: Path) -> StudyData:
    return load_study(study)


def test_table1_counts_the_split(data: StudyData) -> None:
    table = analysis.table1_split_sizes(data)
    assert table.loc["spleen"].tolist() == [6, 2, 2]
    assert table.loc["heart"].tolist() == [3, 1, 1]
    assert list(table.columns) == ["training", "validation", "test"]


def test_table2_is_the_mean_minutes_of_all_finished_runs(data: StudyData) -> None:
    table = analysis.table2_training_minutes(data)
    assert table.shape == (2, 3)
    assert table.loc["spleen", "baseline"] == pytest.approx((600 + 120 + 900 + 300) / 4 / 60)
    assert table.loc["spleen", "localiser"] == pytest.approx(2.0)
    assert table.loc["heart", "organ"] == pytest.approx(1.0)


def test_table2_over_converged_runs_as_the_released_code(data: StudyData) -> None:
    converged = analysis.table2_training_minutes(data, runs="converged")
    spleen_converged = [s for c, s in RUNS["spleen"]["baseline"] if c]
    assert converged.loc["spleen", "baseline"] == pytest.approx(sum(spleen_converged) / len(spleen_converged) / 60)
    released = dataclasses.replace(
        data, study_params=StudyParams(data="phantom", analysis=AnalysisOptions(training_time_runs="converged"))
    )
    assert analysis.table2_training_minutes(released).equals(converged)


def test_table_dice_mean_sd_and_significance_mark(data: StudyData) -> None:
    val = analysis.table_dice(data, "val")
    assert val.loc["spleen", "baseline_mean"] == pytest.approx(0.65)
    assert val.loc["spleen", "baseline_sd"] == pytest.approx(np.std([0.60, 0.65, 0.70], ddof=1))
    assert val.loc["spleen", "two_stage_runs"] == 3
    assert val.loc["spleen", "two_stage_above_baseline"]
    assert val.loc["spleen", "two_stage"].endswith(" *")
    assert val.loc["spleen", "baseline"].startswith("0.65")
    assert not val.loc["spleen", "baseline_above_baseline"]
    test = analysis.table_dice(data, "test")
    assert not test.loc["spleen", "two_stage_above_baseline"]  # 0.477 vs 0.45 with these spreads: p > 0.05
    assert not test.loc["spleen", "two_stage"].endswith("*")
    assert test.loc["heart", "gt_localised_mean"] == pytest.approx(0.715)


def test_ttests_equal_scipy_on_the_csv_values(data: StudyData, study: Path) -> None:
    tests = analysis.ttests(data)
    assert len(tests) == len(DICE) * 2 * len(DEFAULT_PAIRS)
    for row in tests.itertuples():
        runs = pd.read_csv(study / row.organ / "evaluation" / f"{row.split}_runs.csv")
        a = runs.loc[runs["method"] == row.method_a, "pooled_dice"].to_numpy()
        b = runs.loc[runs["method"] == row.method_b, "pooled_dice"].to_numpy()
        assert row.p_student == pytest.approx(scipy_stats.ttest_ind(a, b).pvalue, rel=1e-12)
        assert row.p_welch == pytest.approx(scipy_stats.ttest_ind(a, b, equal_var=False).pvalue, rel=1e-12)
    spleen_val = tests[
        (tests["organ"] == "spleen")
        & (tests["split"] == "val")
        & (tests["method_a"] == "baseline")
        & (tests["method_b"] == "two_stage")
    ]
    assert spleen_val["p_student"].iloc[0] < 0.01


def test_ttests_holm_columns_equal_statsmodels_within_each_split(data: StudyData) -> None:
    tests = analysis.ttests(data)
    for split in ("val", "test"):
        family = tests[tests["split"] == split]
        for column in ("p_student", "p_welch"):
            expected = multipletests(family[column].to_numpy(), method="holm")[1]
            np.testing.assert_allclose(family[f"{column}_holm"].to_numpy(), expected, rtol=1e-12, atol=0)
    assert tests["hedges_g"].iloc[0] < 0  # spleen val: baseline (a) lower than two stage


def random_cases(data: StudyData, n_cases: int = 9, runs: dict[str, int] | None = None) -> pd.DataFrame:
    """Case rows of the spleen's test split: ``runs[method]`` runs of each method on ``n_cases``
    cases, Dice drawn around a method-specific mean; the heart's rows are kept."""
    runs = runs or {"baseline": 3, "two_stage": 4, "gt_localised": 2}
    rng = np.random.default_rng(7)
    case_effect = rng.normal(0, 0.05, n_cases)
    rows = [
        {
            "organ": "spleen",
            "split": "test",
            "method": method,
            "run": run,
            "case_id": f"c{case:02d}",
            "dice": float(np.clip(mean + case_effect[case] + rng.normal(0, 0.03), 0, 1)),
        }
        for method, mean in (("baseline", 0.6), ("two_stage", 0.7), ("gt_localised", 0.8))
        for run in range(runs[method])
        for case in range(n_cases)
    ]
    return pd.concat([data.cases[data.cases["organ"] == "heart"], pd.DataFrame(rows)], ignore_index=True)


def test_paired_tests_compare_case_means_with_scipy_wilcoxon(data: StudyData) -> None:
    cases = random_cases(data)
    paired = analysis.paired_tests(dataclasses.replace(data, cases=cases))
    assert list(paired.columns) == list(analysis.PAIRED_COLUMNS)
    assert (
        list(zip(paired["organ"], paired["split"]))
        == [("spleen", "test")] * 3 + [("heart", "val")] * 3 + [("heart", "test")] * 3
    )  # the spleen has test rows only here: no val group
    paired = paired[paired["organ"] == "spleen"]
    means = analysis.case_mean_dice(dataclasses.replace(data, cases=cases))
    for row in paired.itertuples():
        a = means[(means["organ"] == "spleen") & (means["method"] == row.method_a)].sort_values("case_id")
        b = means[(means["organ"] == "spleen") & (means["method"] == row.method_b)].sort_values("case_id")
        expected = scipy_stats.wilcoxon(a["mean_dice"].to_numpy(), b["mean_dice"].to_numpy())
        assert row.p_wilcoxon == float(expected.pvalue)
        assert row.wilcoxon_w == float(expected.statistic)
        assert row.mean_diff == pytest.approx(a["mean_dice"].mean() - b["mean_dice"].mean(), abs=1e-12)
        assert row.ci_low < row.mean_diff < row.ci_high
        assert (row.n_cases, row.note) == (9, "")
    first = paired.iloc[0]
    assert (first["method_a"], first["method_b"], first["n_runs_a"], first["n_runs_b"]) == (
        "baseline",
        "two_stage",
        3,
        4,
    )
    assert first["mean_diff"] < 0 and first["ci_high"] < 0 and first["rank_biserial"] < 0  # two stage is higher
    whole = analysis.paired_tests(dataclasses.replace(data, cases=cases))
    test_family = whole[whole["split"] == "test"]  # Holm over the spleen's and the heart's test rows
    expected_holm = multipletests(test_family["p_wilcoxon"].to_numpy(), method="holm")[1]
    np.testing.assert_allclose(test_family["p_wilcoxon_holm"].to_numpy(), expected_holm, rtol=1e-12, atol=0)
    assert set(means.columns) == set(analysis.CASE_MEAN_COLUMNS)
    assert means.loc[(means["organ"] == "spleen") & (means["method"] == "two_stage"), "runs"].eq(4).all()


def test_paired_tests_use_only_cases_every_run_evaluated_and_say_why_a_test_is_missing(
    data: StudyData,
) -> None:
    cases = random_cases(data, n_cases=4)
    cases = cases[
        (cases["organ"] == "spleen")
        & ~((cases["method"] == "baseline") & (cases["run"] == 1) & (cases["case_id"] == "c03"))
    ]
    one_case = random_cases(data, n_cases=1, runs={"baseline": 1, "two_stage": 1, "gt_localised": 1})
    paired = analysis.paired_tests(dataclasses.replace(data, cases=cases)).set_index(["method_a", "method_b"])
    assert paired.loc[("baseline", "two_stage"), "n_cases"] == 3  # c03 lacks a baseline run
    assert paired.loc[("two_stage", "gt_localised"), "n_cases"] == 4
    single = analysis.paired_tests(dataclasses.replace(data, cases=one_case[one_case["organ"] == "spleen"]))
    assert single["p_wilcoxon"].isna().all() and single["note"].str.contains("fewer than 2 pairs").all()
    assert (single["ci_low"] == single["mean_diff"]).all()  # one run, one case: nothing to resample
    no_gt = cases[cases["method"] != "gt_localised"]
    row = analysis.paired_tests(dataclasses.replace(data, cases=no_gt)).iloc[1]
    assert row["method_b"] == "gt_localised" and "no case evaluated" in row["note"] and np.isnan(row["p_wilcoxon"])


def test_convergence_rates(data: StudyData) -> None:
    rates = analysis.convergence_rates(data).set_index(["organ", "network"])
    assert rates.loc[("spleen", "baseline"), "convergence_rate"] == pytest.approx(0.75)
    assert rates.loc[("heart", "baseline"), ["trained", "converged"]].tolist() == [3, 2]
    assert rates.loc[("heart", "organ"), "convergence_rate"] == 1.0
    assert rates.loc[("spleen", "organ"), "n_cases"] == 10
    assert rates.loc[("heart", "localiser"), "foreground_percent"] == pytest.approx(0.4)
    assert list(rates.index.get_level_values("organ")[:3]) == ["spleen"] * 3


def test_dice_gain(data: StudyData) -> None:
    gain = analysis.dice_gain(data).set_index(["organ", "split", "method"])
    assert len(gain) == 2 * 2 * 2
    assert gain.loc[("spleen", "val", "two_stage"), "gain"] == pytest.approx(0.81 - 0.65)
    assert gain.loc[("heart", "test", "gt_localised"), "gain"] == pytest.approx(0.715 - 0.51)
    assert gain.loc[("spleen", "test", "gt_localised"), "foreground_percent"] == pytest.approx(0.5)


def test_localisation_context_sets_the_box_and_foreground_shares_beside_the_dice_gain(data: StudyData) -> None:
    context = analysis.localisation_context(data).set_index(["organ", "split", "method"])
    assert list(context.reset_index().columns) == list(analysis.LOCALISATION_CONTEXT_COLUMNS)
    assert len(context) == 2 * 2 * 3
    baseline = context.loc[("spleen", "test", "baseline")]
    assert (baseline["box_percent"], baseline["foreground_ratio"], baseline["dice_gain"]) == (100.0, 1.0, 0.0)
    assert baseline["foreground_percent"] == pytest.approx(0.5)
    two_stage = context.loc[("heart", "val", "two_stage")]
    assert two_stage["box_percent"] == pytest.approx(100 * LOCALISED_BOX_SHARE)
    assert two_stage["foreground_ratio"] == pytest.approx(1 / LOCALISED_BOX_SHARE)
    assert two_stage["dice_gain"] == pytest.approx(0.61 - 0.52)


def test_training_curves_keep_only_converged_runs(data: StudyData) -> None:
    curves = analysis.training_curves(data)
    spleen_baseline = curves[(curves["organ"] == "spleen") & (curves["network"] == "baseline")]
    assert sorted(spleen_baseline["run"].unique()) == [0, 2, 3]
    assert len(spleen_baseline) == 2 + 4 + 5  # run i has i + 2 epochs


def test_write_csv_tables_writes_every_table(study: Path, tmp_path: Path) -> None:
    paths = analysis.write_csv_tables(analysis.all_tables(load_study(study)), tmp_path / "tables")
    assert set(paths) == set(TABLES)
    table1 = pd.read_csv(paths["table1_split_sizes"], index_col="organ")
    assert table1.loc["spleen", "validation"] == 2
    assert len(pd.read_csv(paths["ttests"])) == 12
    assert len(pd.read_csv(paths["paired_tests"])) == 12


def test_data_description_names_the_data_source(data: StudyData) -> None:
    text = analysis.data_description(data)
    assert "phantom" in text and "Task_spleen" in text
    assert set(analysis.software_versions()["package"]) >= {"python", "torch", "monai", "numpy", "l2s"}


def test_data_description_calls_real_data_msd_layout_task_folders_named_by_their_dataset_json(
    tmp_path: Path,
) -> None:
    study = write_study(tmp_path / "runs" / "own", {"kidney": ((3, 1, 1), 0.01)}, {}, {}, data="msd")
    text = analysis.data_description(load_study(study))
    assert "MSD-layout task folders" in text and "Decathlon" not in text
    assert "kidney: Task_kidney (named so by its dataset.json" in text


def test_a_study_without_evaluation_or_runs_gives_empty_tables_and_figures(study: Path, tmp_path: Path) -> None:
    for organ in DATASETS:
        shutil.rmtree(study / organ / "evaluation")
    shutil.rmtree(study / "heart" / "baseline")
    data = load_study(study)
    tables = analysis.all_tables(data)
    assert tables["table3_val_dice"].loc["spleen", "baseline"] == "n=0"
    assert tables["ttests"].empty and tables["dice_gain"].empty and tables["paired_tests"].empty
    assert list(tables["paired_tests"].columns) == list(analysis.PAIRED_COLUMNS)
    assert len(tables["convergence_rates"]) == 5
    assert np.isnan(tables["table2_training_minutes"].loc["heart", "baseline"])
    figures = [
        plots.figure2_training_curves(analysis.training_curves(data), data.organs),
        plots.figure3_convergence(tables["convergence_rates"]),
        plots.figure4_dice_gain(tables["dice_gain"]),
    ]
    for i, figure in enumerate(figures):
        assert plots.save_figure(figure, tmp_path / f"{i}.png").stat().st_size > 0


def test_notebook_is_committed_without_outputs_and_has_a_parameters_cell() -> None:
    import nbformat

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(not cell.outputs and cell.execution_count is None for cell in code)
    assert "parameters" in code[0].metadata.get("tags", [])
    assert "study_dir" in code[0].source and "out_dir" in code[0].source


@pytest.mark.slow
def test_notebook_writes_every_table_and_figure(study: Path, tmp_path: Path, l2s_kernel: str) -> None:
    import papermill

    out_dir = tmp_path / "analysis"
    papermill.execute_notebook(
        str(NOTEBOOK),
        str(tmp_path / "executed.ipynb"),
        kernel_name=l2s_kernel,
        parameters={"study_dir": str(study), "out_dir": str(out_dir)},
        progress_bar=False,
    )
    for name in (*TABLES, "findings_table3_val", "findings_table4_test", "findings_scorecard"):
        assert (out_dir / f"{name}.csv").stat().st_size > 0
    for name in ("figure2_training_curves", "figure3_convergence", "figure4_dice_gain"):
        assert (out_dir / f"{name}.png").read_bytes().startswith(b"\x89PNG")
    executed = (tmp_path / "executed.ipynb").read_text()
    assert "image/png" in executed and "phantom" in executed
    for text in (
        "## Findings",
        "Scorecard of the paper",
        "not in the study",
        "Per-case paired tests",
        "p_wilcoxon_holm",
        "p_student_holm",
        "hedges_g",
        "rank_biserial",
        "ci_low",
        "training-seed variability",
    ):
        assert text in executed, text
    assert executed.index("## Findings") < executed.index("## Data and software")


def test_names_from_dataset_json_reach_the_report_escaped(data: StudyData) -> None:
    """A task's ``dataset.json`` "name" reached report.html with an ``onerror`` handler intact."""
    import dataclasses

    from nbconvert.filters.markdown import markdown2html

    hostile = '<img src=x onerror="alert(1)">'
    data = dataclasses.replace(
        data,
        datasets=data.datasets.assign(task_name=hostile, task_dir="/data/`<b>x</b>`"),
        study_params=StudyParams(data="msd", data_root=Path("/d/<script>alert(1)</script>")),
    )
    rendered = markdown2html(analysis.data_description(data))
    assert "<img" not in rendered and "<script" not in rendered and "<b>" not in rendered
    assert "&lt;img src=x onerror=" in rendered
