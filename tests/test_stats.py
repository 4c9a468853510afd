"""Tests of l2s_core.stats: t-tests equal SciPy's, degenerate samples, formatting, tables."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from l2s_core.errors import ConfigError, InputDataError
from l2s_core.stats import PAIRWISE_COLUMNS, compare_methods, format_mean_sd, mean_sd, pairwise_tests

BASELINE = [0.61, 0.70, 0.55, 0.74, 0.66, 0.58]
TWO_STAGE = [0.80, 0.83, 0.78, 0.86, 0.79]


@pytest.mark.parametrize("equal_var", [True, False])
def test_compare_methods_equals_scipy_exactly(equal_var):
    result = compare_methods(BASELINE, TWO_STAGE, equal_var=equal_var)
    expected = stats.ttest_ind(BASELINE, TWO_STAGE, equal_var=equal_var)
    assert result["t"] == float(expected.statistic)
    assert result["p"] == float(expected.pvalue)
    assert result["mean_a"] == pytest.approx(np.mean(BASELINE))
    assert result["sd_a"] == pytest.approx(np.std(BASELINE, ddof=1))
    assert result["mean_b"] == pytest.approx(np.mean(TWO_STAGE))
    assert result["sd_b"] == pytest.approx(np.std(TWO_STAGE, ddof=1))
    assert (result["n_a"], result["n_b"], result["note"]) == (6, 5, "")
    assert result["t"] < 0  # a is lower


def test_student_and_welch_differ_for_unequal_sizes_and_variances():
    student = compare_methods(BASELINE, TWO_STAGE, equal_var=True)
    welch = compare_methods(BASELINE, TWO_STAGE, equal_var=False)
    assert student["p"] != welch["p"]


@pytest.mark.parametrize("a, b", [([0.5], [0.6, 0.7]), ([0.5, 0.6], []), ([], [])])
def test_fewer_than_two_values_give_nan_with_a_note(a, b):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning either
        result = compare_methods(a, b)
    assert math.isnan(result["t"]) and math.isnan(result["p"])
    assert "fewer than 2 values" in result["note"]
    assert (result["n_a"], result["n_b"]) == (len(a), len(b))


def test_groups_without_spread_are_tested_with_a_note():
    different = compare_methods([0.5, 0.5, 0.5], [0.7, 0.7])
    assert different["t"] == -math.inf and different["p"] == 0.0
    assert "no spread" in different["note"]
    same = compare_methods([0.5, 0.5], [0.5, 0.5])
    assert math.isnan(same["t"]) and "no spread" in same["note"]


def test_non_finite_values_are_flagged():
    result = compare_methods([0.5, math.inf, 0.6], [0.7, 0.8])
    assert "non-finite" in result["note"]
    assert result["mean_a"] == math.inf and math.isnan(result["sd_a"])


def test_mean_sd_uses_the_sample_sd():
    assert mean_sd([1.0, 2.0, 3.0, 4.0]) == pytest.approx((2.5, np.std([1, 2, 3, 4], ddof=1)))
    mean, sd = mean_sd(np.array([0.3]))
    assert mean == pytest.approx(0.3) and math.isnan(sd)
    assert all(math.isnan(v) for v in mean_sd([]))


def test_format_mean_sd():
    assert format_mean_sd([0.55, 0.65, 0.75]) == "0.6500 ± 0.1000"
    assert format_mean_sd([0.55, 0.65, 0.75], digits=2) == "0.65 ± 0.10"
    assert format_mean_sd([0.64912]) == "0.6491 (n=1)"
    assert format_mean_sd([]) == "n=0"


def test_bad_samples_and_digits_raise():
    with pytest.raises(InputDataError, match="^values:"):
        format_mean_sd(0.65)
    with pytest.raises(InputDataError, match="^a:"):
        compare_methods([[0.1, 0.2]], [0.3, 0.4])
    with pytest.raises(ConfigError, match="^digits:"):
        format_mean_sd([0.5, 0.6], digits=-1)
    with pytest.raises(ConfigError, match="^digits:"):
        format_mean_sd([0.5, 0.6], digits=2.5)


def runs_table() -> pd.DataFrame:
    """Per-run values of two organs, one split, three methods (gt_localised missing for spleen)."""
    rows = []
    for organ, shift in (("heart", 0.0), ("spleen", 0.05)):
        for method, values in (("baseline", BASELINE), ("two_stage", TWO_STAGE), ("gt_localised", [0.9, 0.92, 0.88])):
            if organ == "spleen" and method == "gt_localised":
                continue
            rows += [{"organ": organ, "split": "val", "method": method, "pooled_dice": v + shift} for v in values]
    return pd.DataFrame(rows)


def test_pairwise_tests_one_row_per_group_and_pair_matching_scipy():
    table = pairwise_tests(runs_table(), value_col="pooled_dice", group_cols=["organ", "split"])
    assert list(table.columns) == ["organ", "split", *PAIRWISE_COLUMNS]
    assert list(zip(table["organ"], table["method_a"], table["method_b"])) == [
        ("heart", "baseline", "two_stage"), ("heart", "baseline", "gt_localised"),
        ("heart", "two_stage", "gt_localised"), ("spleen", "baseline", "two_stage"),
        ("spleen", "baseline", "gt_localised"), ("spleen", "two_stage", "gt_localised")]
    heart = table.iloc[0]
    assert heart["p_student"] == stats.ttest_ind(BASELINE, TWO_STAGE).pvalue
    assert heart["p_welch"] == stats.ttest_ind(BASELINE, TWO_STAGE, equal_var=False).pvalue
    assert heart["t_student"] == stats.ttest_ind(BASELINE, TWO_STAGE).statistic
    assert heart["t_welch"] == stats.ttest_ind(BASELINE, TWO_STAGE, equal_var=False).statistic
    assert (heart["n_a"], heart["n_b"]) == (6, 5)
    assert heart["mean_b"] == pytest.approx(np.mean(TWO_STAGE))
    spleen_vs_missing = table.iloc[4]
    assert spleen_vs_missing["n_b"] == 0 and math.isnan(spleen_vs_missing["p_student"])
    assert "fewer than 2" in spleen_vs_missing["note"]


def test_pairwise_tests_defaults_and_single_group():
    df = runs_table().rename(columns={"pooled_dice": "dice"})
    by_default = pairwise_tests(df)
    assert len(by_default) == 6
    whole = pairwise_tests(df[df["organ"] == "heart"], group_cols=(), pairs=[("baseline", "gt_localised")])
    assert list(whole.columns) == list(PAIRWISE_COLUMNS)
    assert whole["p_student"].iloc[0] == stats.ttest_ind(BASELINE, [0.9, 0.92, 0.88]).pvalue


def test_pairwise_tests_of_an_empty_table_and_a_missing_column():
    empty = pairwise_tests(pd.DataFrame(columns=["organ", "split", "method", "dice"]))
    assert empty.empty and list(empty.columns) == ["organ", "split", *PAIRWISE_COLUMNS]
    with pytest.raises(InputDataError, match="^value_col:"):
        pairwise_tests(runs_table())  # no "dice" column
