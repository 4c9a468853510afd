"""Tests of l2s_core.results.stats: t-tests and Wilcoxon equal SciPy's, Holm equals statsmodels', the
effect sizes equal their definitions, the bootstrap equals a plain loop; degenerate samples,
formatting, tables."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import special, stats
from statsmodels.stats.multitest import multipletests

from l2s_core.errors import ConfigError, InputDataError
from l2s_core.results.stats import (
    PAIRWISE_COLUMNS,
    BootstrapInterval,
    compare_methods,
    format_mean_sd,
    hierarchical_bootstrap,
    holm,
    mean_sd,
    paired_wilcoxon,
    pairwise_tests,
)

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
        ("heart", "baseline", "two_stage"),
        ("heart", "baseline", "gt_localised"),
        ("heart", "two_stage", "gt_localised"),
        ("spleen", "baseline", "two_stage"),
        ("spleen", "baseline", "gt_localised"),
        ("spleen", "two_stage", "gt_localised"),
    ]
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


def test_hedges_g_is_cohens_d_from_t_times_the_exact_correction():
    result = compare_methods(BASELINE, TWO_STAGE)
    n_a, n_b = len(BASELINE), len(TWO_STAGE)
    df = n_a + n_b - 2
    correction = special.gamma(df / 2) / (np.sqrt(df / 2) * special.gamma((df - 1) / 2))
    expected = stats.ttest_ind(BASELINE, TWO_STAGE).statistic * np.sqrt(1 / n_a + 1 / n_b) * correction
    assert result["hedges_g"] == pytest.approx(expected, rel=1e-12, abs=0)
    assert result["hedges_g"] < 0  # a is lower, as t
    assert math.isnan(compare_methods([0.5], [0.6, 0.7])["hedges_g"])
    table = pairwise_tests(runs_table(), value_col="pooled_dice")
    assert table["hedges_g"].iloc[0] == result["hedges_g"]


@pytest.mark.parametrize("seed", range(5))
def test_holm_equals_statsmodels(seed):
    rng = np.random.default_rng(seed)
    p = rng.uniform(0, 0.2, 12)
    p[3] = p[7]  # a tie
    p[0] = 0.9  # pushes a factor above 1
    assert np.allclose(holm(p), multipletests(p, method="holm")[1], rtol=1e-12, atol=0)


def test_holm_leaves_untested_nan_out_of_the_family():
    p = np.array([0.01, np.nan, 0.04, 0.03])
    adjusted = holm(p)
    assert math.isnan(adjusted[1])
    finite = [0, 2, 3]
    assert np.allclose(adjusted[finite], multipletests(p[finite], method="holm")[1], rtol=1e-12, atol=0)
    assert holm([]).size == 0 and math.isnan(holm([math.nan])[0])


CASES_A = [0.81, 0.62, 0.70, 0.55, 0.90, 0.66, 0.73, 0.70]
CASES_B = [0.78, 0.70, 0.75, 0.61, 0.84, 0.69, 0.80, 0.70]  # one zero difference, b mostly higher


def test_paired_wilcoxon_equals_scipy_and_rank_biserial_its_definition():
    result = paired_wilcoxon(CASES_A, CASES_B)
    expected = stats.wilcoxon(CASES_A, CASES_B)
    assert (result.statistic, result.p) == (float(expected.statistic), float(expected.pvalue))
    # R+ is SciPy's one-sided statistic; zero differences dropped: n = 7 ranks summing to 28
    r_plus = stats.wilcoxon(CASES_A, CASES_B, alternative="greater").statistic
    assert result.rank_biserial == pytest.approx(2 * r_plus / 28 - 1, rel=1e-12, abs=1e-12)
    assert -1 < result.rank_biserial < 0
    diff = np.subtract(CASES_A, CASES_B)
    assert result.mean_diff == pytest.approx(diff.mean(), abs=1e-12)
    assert (result.n, result.note) == (8, "")
    assert paired_wilcoxon([0.9, 0.8, 0.7], [0.5, 0.4, 0.3]).rank_biserial == 1.0


def test_paired_wilcoxon_degenerate_and_bad_input():
    one = paired_wilcoxon([0.5], [0.6])
    assert math.isnan(one.p) and "fewer than 2 pairs" in one.note and one.mean_diff == pytest.approx(-0.1)
    same = paired_wilcoxon([0.5, 0.6], [0.5, 0.6])
    assert math.isnan(same.p) and math.isnan(same.rank_biserial) and "no pair differs" in same.note
    assert paired_wilcoxon([], []).n == 0
    with pytest.raises(InputDataError, match="^b:"):
        paired_wilcoxon([0.5, 0.6], [0.5])
    with pytest.raises(InputDataError, match="finite"):
        paired_wilcoxon([0.5, math.nan], [0.5, 0.6])


def loop_bootstrap(a: np.ndarray, b: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """The replicates of :func:`hierarchical_bootstrap`, one at a time with explicit indices."""
    rng = np.random.default_rng(seed)
    cases = rng.integers(0, a.shape[1], size=(n_boot, a.shape[1]))
    runs_a = rng.integers(0, a.shape[0], size=(n_boot, a.shape[0]))
    runs_b = rng.integers(0, b.shape[0], size=(n_boot, b.shape[0]))
    return np.array(
        [a[np.ix_(runs_a[i], cases[i])].mean() - b[np.ix_(runs_b[i], cases[i])].mean() for i in range(n_boot)]
    )


def test_hierarchical_bootstrap_equals_a_loop_over_replicates():
    rng = np.random.default_rng(3)
    patients = rng.normal(0, 0.05, 11)
    a = 0.7 + patients + rng.normal(0, 0.02, (4, 11))
    b = 0.6 + patients + rng.normal(0, 0.02, (3, 11))
    interval = hierarchical_bootstrap(a, b, n_boot=500, seed=5)
    replicates = loop_bootstrap(a, b, 500, 5)
    expected = BootstrapInterval(a.mean() - b.mean(), *np.quantile(replicates, [0.025, 0.975]), 0.95, 500)
    for field in ("estimate", "low", "high"):  # equal up to the order of the sums
        assert getattr(interval, field) == pytest.approx(getattr(expected, field), rel=1e-12, abs=0), field
    assert (interval.level, interval.n_boot) == (0.95, 500)
    assert interval.low < 0.1 < interval.high
    assert hierarchical_bootstrap(a, b, n_boot=500, seed=5) == interval  # seeded
    assert hierarchical_bootstrap(a, b, n_boot=500, seed=6) != interval


def test_hierarchical_bootstrap_widens_with_run_variability():
    rng = np.random.default_rng(0)
    cases = rng.normal(0.7, 0.05, 20)
    steady = hierarchical_bootstrap(np.tile(cases + 0.05, (5, 1)), np.tile(cases, (5, 1)), seed=1)
    assert steady.low == pytest.approx(0.05) and steady.high == pytest.approx(0.05)  # paired: no variance
    noisy_runs = cases + 0.05 + rng.normal(0, 0.05, (5, 1))  # each run shifted as a whole
    noisy = hierarchical_bootstrap(noisy_runs, np.tile(cases, (5, 1)), seed=1)
    assert noisy.high - noisy.low > 0.02
    single = hierarchical_bootstrap(np.array([[0.8]]), np.array([[0.6]]), n_boot=10)
    assert single.low == single.high == single.estimate == pytest.approx(0.2)


def test_hierarchical_bootstrap_bad_input():
    good = np.full((2, 3), 0.5)
    with pytest.raises(InputDataError, match="^a:"):
        hierarchical_bootstrap(np.zeros(3), good)
    with pytest.raises(InputDataError, match="^b:"):
        hierarchical_bootstrap(good, np.full((2, 4), 0.5))
    with pytest.raises(InputDataError, match="finite"):
        hierarchical_bootstrap(good, np.array([[0.5, np.nan, 0.5]]))
    with pytest.raises(ConfigError, match="^n_boot:"):
        hierarchical_bootstrap(good, good, n_boot=0)
    with pytest.raises(ConfigError, match="^level:"):
        hierarchical_bootstrap(good, good, level=1.0)
