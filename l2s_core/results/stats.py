"""Summary statistics and tests between two methods: run-level t-tests and per-case paired tests.

Two questions, two kinds of sample:

- **Run-level** (the paper's): each sample is one value per training run, e.g. a run's Dice
  pooled over the split's cases. The variance is training-seed variability on a fixed set of
  cases. The paper compares methods with the two-sided t-test of SciPy
  (``scipy.stats.ttest_ind``, Student's test with equal variances by default); Welch's test
  (unequal variances) is offered beside it, with Hedges' g as effect size
  (:func:`compare_methods`).
- **Per-case** (the clinician's: will this method segment my next patient better?): each
  sample is one value per case, the mean Dice over a method's runs, paired between methods.
  The variance is variability over patients. :func:`paired_wilcoxon` gives the Wilcoxon
  signed-rank test and the matched-pairs rank-biserial correlation;
  :func:`hierarchical_bootstrap` a percentile interval for the mean Dice difference that
  resamples cases and, within each method, runs (both sources of variance).

:func:`holm` adjusts a family of p-values (Holm–Bonferroni). Differences and effect sizes are
always ``a`` minus ``b`` (positive: ``a`` is higher), as the sign of ``t``. Standard
deviations are sample standard deviations (``ddof=1``).

Degenerate samples never raise: a group with fewer than two values gives NaN ``t`` and ``p``
and a ``note`` saying why; two groups with no spread at all are passed to SciPy (``t`` is
infinite or NaN) with a note too.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from l2s_core.errors import ConfigError, InputDataError

__all__ = [
    "DEFAULT_PAIRS",
    "PAIRWISE_COLUMNS",
    "BootstrapInterval",
    "PairedTest",
    "compare_methods",
    "format_mean_sd",
    "hierarchical_bootstrap",
    "holm",
    "mean_sd",
    "paired_wilcoxon",
    "pairwise_tests",
]

#: Method pairs compared by default: each localised method against the baseline, and the two
#: localised methods against each other.
DEFAULT_PAIRS = (("baseline", "two_stage"), ("baseline", "gt_localised"), ("two_stage", "gt_localised"))
#: Columns of :func:`pairwise_tests` after the group columns.
PAIRWISE_COLUMNS = (
    "method_a",
    "method_b",
    "n_a",
    "n_b",
    "mean_a",
    "sd_a",
    "mean_b",
    "sd_b",
    "t_student",
    "p_student",
    "t_welch",
    "p_welch",
    "hedges_g",
    "note",
)


def _sample(values: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    """A sample as a 1D float array.

    Raises:
        InputDataError: if ``values`` is not one-dimensional.
    """
    array = np.asarray(values, dtype=float)
    if array.ndim != 1:
        raise InputDataError(name, f"must be a one-dimensional sequence of numbers, got shape {array.shape}")
    return array


def _mean_sd(sample: np.ndarray) -> tuple[float, float]:
    """Mean and sample sd of a 1D array; NaN where undefined (no values, or one for the sd).

    Non-finite values propagate (an infinite value gives an infinite mean and a NaN sd).
    """
    with np.errstate(invalid="ignore"):
        mean = float(sample.mean()) if sample.size else math.nan
        sd = float(sample.std(ddof=1)) if sample.size >= 2 else math.nan
    return mean, sd


def mean_sd(values: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """Mean and sample standard deviation (``ddof=1``).

    Args:
        values: a one-dimensional sample.

    Returns:
        ``(mean, sd)``; the mean is NaN for no values, the sd NaN for fewer than two;
        non-finite values propagate.

    Raises:
        InputDataError: if ``values`` is not one-dimensional.
    """
    return _mean_sd(_sample(values, "values"))


def format_mean_sd(values: Sequence[float] | np.ndarray, digits: int = 4) -> str:
    """Mean ± sample sd as text, e.g. ``"0.6491 ± 0.0997"``.

    Args:
        values: a one-dimensional sample.
        digits: decimals shown.

    Returns:
        ``"mean ± sd"``; ``"mean (n=1)"`` for one value (no sd); ``"n=0"`` for none.

    Raises:
        InputDataError: if ``values`` is not one-dimensional.
        ConfigError: if ``digits`` is not an integer >= 0.
    """
    if isinstance(digits, bool) or not isinstance(digits, (int, np.integer)) or digits < 0:
        raise ConfigError("digits", f"must be an integer >= 0, got {digits!r}")
    sample = _sample(values, "values")
    mean, sd = _mean_sd(sample)
    if sample.size == 0:
        return "n=0"
    if sample.size == 1:
        return f"{mean:.{digits}f} (n=1)"
    return f"{mean:.{digits}f} ± {sd:.{digits}f}"


def compare_methods(
    a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, equal_var: bool = True
) -> dict[str, Any]:
    """Two-sided independent two-sample t-test of ``a`` against ``b``, with summaries.

    Args:
        a: one value per run of the first method.
        b: one value per run of the second method.
        equal_var: True for Student's test (SciPy's default, the paper's), False for Welch's.

    Returns:
        ``mean_a``, ``sd_a``, ``mean_b``, ``sd_b`` (sample sds), ``n_a``, ``n_b``, ``t`` and
        ``p`` (from ``scipy.stats.ttest_ind(a, b, equal_var=equal_var)``; positive ``t`` means
        ``a`` is higher), ``hedges_g`` (:func:`_hedges_g`, the same for both tests) and
        ``note``: empty, or why ``t`` and ``p`` are NaN or infinite (a group with fewer than
        two values: no test is run; both groups without spread; non-finite values, which
        SciPy propagates).

    Raises:
        InputDataError: if ``a`` or ``b`` is not one-dimensional.
    """
    sample_a, sample_b = _sample(a, "a"), _sample(b, "b")
    (mean_a, sd_a), (mean_b, sd_b) = _mean_sd(sample_a), _mean_sd(sample_b)
    result = {
        "mean_a": mean_a,
        "sd_a": sd_a,
        "mean_b": mean_b,
        "sd_b": sd_b,
        "n_a": int(sample_a.size),
        "n_b": int(sample_b.size),
        "t": math.nan,
        "p": math.nan,
        "hedges_g": math.nan,
        "note": "",
    }
    if min(sample_a.size, sample_b.size) < 2:
        result["note"] = f"fewer than 2 values in a group (n_a={sample_a.size}, n_b={sample_b.size}): no t-test"
        return result
    if not (np.isfinite(sample_a).all() and np.isfinite(sample_b).all()):
        result["note"] = "non-finite values (NaN or inf) in a group: t and p are not meaningful"
    elif sd_a == 0 and sd_b == 0:
        result["note"] = "no spread in either group: t is infinite (different means) or NaN (equal means)"
    with warnings.catch_warnings():
        if result["note"]:  # SciPy warns of what the note already says
            warnings.simplefilter("ignore", RuntimeWarning)
        test = stats.ttest_ind(sample_a, sample_b, equal_var=equal_var)
    result["t"], result["p"] = float(test.statistic), float(test.pvalue)
    result["hedges_g"] = _hedges_g(sample_a, sample_b)
    return result


def _hedges_g(a: np.ndarray, b: np.ndarray) -> float:
    """Hedges' g of two samples of at least two values each: ``(mean_a - mean_b) / s_pooled``
    (Cohen's d with the pooled sample sd of Student's test) times the exact small-sample
    correction ``J = Γ(df/2) / (sqrt(df/2) Γ((df-1)/2))``, ``df = n_a + n_b - 2``.

    Infinite or NaN where neither sample has spread, as Student's ``t``.
    """
    df = a.size + b.size - 2
    correction = math.exp(math.lgamma(df / 2) - math.lgamma((df - 1) / 2)) / math.sqrt(df / 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        pooled_variance = ((a.size - 1) * a.var(ddof=1) + (b.size - 1) * b.var(ddof=1)) / df
        return float(np.float64(a.mean() - b.mean()) / np.sqrt(pooled_variance) * correction)


def pairwise_tests(
    df: pd.DataFrame,
    value_col: str = "dice",
    method_col: str = "method",
    group_cols: Sequence[str] = ("organ", "split"),
    pairs: Sequence[tuple[str, str]] = DEFAULT_PAIRS,
) -> pd.DataFrame:
    """Student's and Welch's t-tests between pairs of methods within every group.

    Args:
        df: one row per sample (e.g. per run), with the columns named below.
        value_col: column of the compared values.
        method_col: column naming each row's method.
        group_cols: columns whose combinations form the groups tested separately (in order of
            first appearance); none: the whole table is one group.
        pairs: ``(method_a, method_b)`` pairs compared in every group.

    Returns:
        One row per group and pair: the group columns, then :data:`PAIRWISE_COLUMNS`
        (``method_a``, ``method_b``, ``n_a``, ``n_b``, ``mean_a``, ``sd_a``, ``mean_b``,
        ``sd_b``, ``t_student``, ``p_student``, ``t_welch``, ``p_welch``, ``hedges_g`` and
        ``note``, as in :func:`compare_methods`). A method without rows in a group has ``n`` 0
        and NaN tests.

    Raises:
        InputDataError: if a named column is not in ``df``.
    """
    group_cols = list(group_cols)
    for parameter, columns in (("value_col", [value_col]), ("method_col", [method_col]), ("group_cols", group_cols)):
        missing = [c for c in columns if c not in df.columns]
        if missing:
            raise InputDataError(parameter, f"column(s) {missing} not in the table (columns: {list(df.columns)})")
    groups = df.groupby(group_cols, sort=False, dropna=False) if group_cols else [((), df)]
    rows = []
    for key, group in groups:
        labels = dict(zip(group_cols, key if isinstance(key, tuple) else (key,)))
        for method_a, method_b in pairs:
            a = group.loc[group[method_col] == method_a, value_col].to_numpy(dtype=float)
            b = group.loc[group[method_col] == method_b, value_col].to_numpy(dtype=float)
            student, welch = compare_methods(a, b, equal_var=True), compare_methods(a, b, equal_var=False)
            rows.append(
                {
                    **labels,
                    "method_a": method_a,
                    "method_b": method_b,
                    **{k: student[k] for k in ("n_a", "n_b", "mean_a", "sd_a", "mean_b", "sd_b")},
                    "t_student": student["t"],
                    "p_student": student["p"],
                    "t_welch": welch["t"],
                    "p_welch": welch["p"],
                    "hedges_g": student["hedges_g"],
                    "note": student["note"],
                }
            )
    return pd.DataFrame(rows, columns=[*group_cols, *PAIRWISE_COLUMNS])


def holm(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values of one family of tests.

    The ``i``-th smallest of ``m`` p-values becomes ``max over j <= i of min(1, (m - j + 1) p_(j))``
    (step-down, as ``statsmodels.stats.multitest.multipletests(method="holm")``). NaN p-values
    (tests not run) are not part of the family: they stay NaN and do not count in ``m``.

    Args:
        p_values: one p-value per test of the family.

    Returns:
        The adjusted p-values, in the input's order.

    Raises:
        InputDataError: if ``p_values`` is not one-dimensional.
    """
    p = _sample(p_values, "p_values")
    adjusted = np.full(p.shape, math.nan)
    tested = np.flatnonzero(~np.isnan(p))
    order = tested[np.argsort(p[tested], kind="stable")]
    factors = len(order) - np.arange(len(order))
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate(factors * p[order]))
    return adjusted


@dataclass(frozen=True)
class PairedTest:
    """A Wilcoxon signed-rank test of paired values (one pair per case).

    Attributes:
        n: number of pairs.
        mean_a: mean of ``a`` over the pairs.
        mean_b: mean of ``b`` over the pairs.
        mean_diff: mean of ``a - b``.
        statistic: SciPy's two-sided statistic (the smaller of the signed-rank sums).
        p: two-sided p-value of ``scipy.stats.wilcoxon(a, b)``.
        rank_biserial: matched-pairs rank-biserial correlation ``(R+ - R-) / (R+ + R-)``, in
            [-1, 1]; ``R+`` (``R-``) sums the ranks of ``|a - b|`` over the pairs where ``a``
            (``b``) is higher, zero differences left out as SciPy's default does; positive:
            ``a`` is higher.
        note: empty, or why ``statistic``, ``p`` and ``rank_biserial`` are NaN.
    """

    n: int
    mean_a: float
    mean_b: float
    mean_diff: float
    statistic: float
    p: float
    rank_biserial: float
    note: str


def paired_wilcoxon(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> PairedTest:
    """Two-sided Wilcoxon signed-rank test of paired ``a`` and ``b``, with the rank-biserial correlation.

    Args:
        a: one value per case of the first method (e.g. its mean Dice over runs).
        b: the values of the second method for the same cases, in the same order.

    Returns:
        The :class:`PairedTest`. Fewer than two pairs, or no pair with a difference: no test
        (NaN with a note). Non-finite values are not allowed.

    Raises:
        InputDataError: if ``a`` or ``b`` is not one-dimensional, their lengths differ, or a
            value is not finite.
    """
    sample_a, sample_b = _sample(a, "a"), _sample(b, "b")
    if sample_a.size != sample_b.size:
        raise InputDataError("b", f"must pair with a: {sample_b.size} values for {sample_a.size}")
    if not (np.isfinite(sample_a).all() and np.isfinite(sample_b).all()):
        raise InputDataError("a, b", "paired values must be finite")
    diff = sample_a - sample_b
    n = int(diff.size)
    means = (float(sample_a.mean()), float(sample_b.mean()), float(diff.mean())) if n else (math.nan,) * 3
    if n < 2:
        return PairedTest(n, *means, math.nan, math.nan, math.nan, f"fewer than 2 pairs (n={n}): no test")
    nonzero = diff[diff != 0]
    if nonzero.size == 0:
        return PairedTest(n, *means, math.nan, math.nan, math.nan, "no pair differs: no test")
    test = stats.wilcoxon(sample_a, sample_b)
    ranks = stats.rankdata(np.abs(nonzero))
    rank_biserial = float((ranks[nonzero > 0].sum() - ranks[nonzero < 0].sum()) / ranks.sum())
    return PairedTest(n, *means, float(test.statistic), float(test.pvalue), rank_biserial, "")


@dataclass(frozen=True)
class BootstrapInterval:
    """A percentile bootstrap interval of a mean difference.

    Attributes:
        estimate: the difference on the data as observed.
        low: lower bound (the ``(1 - level) / 2`` quantile of the replicates).
        high: upper bound (the ``(1 + level) / 2`` quantile).
        level: coverage, e.g. 0.95.
        n_boot: number of replicates.
    """

    estimate: float
    low: float
    high: float
    level: float
    n_boot: int


def _resample_counts(rng: np.random.Generator, n_boot: int, n: int) -> np.ndarray:
    """How often each of ``n`` items is drawn in each of ``n_boot`` resamples with replacement
    of ``n`` items (shape ``(n_boot, n)``), from ``rng.integers(0, n, (n_boot, n))``."""
    counts = np.zeros((n_boot, n))
    np.add.at(counts, (np.arange(n_boot)[:, None], rng.integers(0, n, size=(n_boot, n))), 1.0)
    return counts


def hierarchical_bootstrap(
    a: np.ndarray, b: np.ndarray, n_boot: int = 10_000, level: float = 0.95, seed: int = 0
) -> BootstrapInterval:
    """Percentile interval of ``mean(a) - mean(b)`` resampling cases, then runs within each method.

    ``a`` and ``b`` hold one value per run (rows) and case (columns), the same cases in the
    same column order (a method's runs are its own: the numbers of rows may differ). Each
    replicate draws the cases with replacement (the same draw for both methods: the cases are
    paired), then each method's runs with replacement, and takes the difference of the two
    means over the drawn runs and cases. The draws are, in order, the case indices
    ``(n_boot, n_cases)``, ``a``'s run indices ``(n_boot, n_runs_a)`` and ``b``'s
    ``(n_boot, n_runs_b)`` from ``numpy.random.default_rng(seed)``. With the draws counted per
    item (weights ``w``), each replicate's mean is ``w_runs · x · w_cases / (n_runs n_cases)``:
    two matrix products for all replicates at once.

    Args:
        a: runs × cases values of the first method.
        b: runs × cases values of the second method.
        n_boot: number of replicates.
        level: coverage of the interval, in (0, 1).
        seed: seed of the random generator.

    Returns:
        The :class:`BootstrapInterval`.

    Raises:
        InputDataError: ``a`` or ``b`` is not a 2D array with a row and a column, their numbers
            of cases differ, or a value is not finite.
        ConfigError: ``n_boot`` < 1 or ``level`` outside (0, 1).
    """
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ConfigError("n_boot", f"must be an integer >= 1, got {n_boot!r}")
    if not 0 < level < 1:
        raise ConfigError("level", f"must be in (0, 1), got {level!r}")
    values = {}
    for name, array in (("a", a), ("b", b)):
        values[name] = np.asarray(array, dtype=float)
        if values[name].ndim != 2 or 0 in values[name].shape:
            raise InputDataError(
                name, f"must be a runs × cases array with a run and a case, got shape {values[name].shape}"
            )
        if not np.isfinite(values[name]).all():
            raise InputDataError(name, "values must be finite")
    n_cases = values["a"].shape[1]
    if values["b"].shape[1] != n_cases:
        raise InputDataError("b", f"must have the cases of a: {values['b'].shape[1]} cases for {n_cases}")
    rng = np.random.default_rng(seed)
    case_counts = _resample_counts(rng, n_boot, n_cases)
    means = {}
    for name, x in values.items():
        run_counts = _resample_counts(rng, n_boot, x.shape[0])
        means[name] = ((run_counts @ x) * case_counts).sum(axis=1) / (x.shape[0] * n_cases)
    replicates = means["a"] - means["b"]
    low, high = np.quantile(replicates, [(1 - level) / 2, (1 + level) / 2])
    return BootstrapInterval(float(values["a"].mean() - values["b"].mean()), float(low), float(high), level, n_boot)
