"""Summary statistics and two-sided t-tests between the runs of two methods.

The paper compares methods with the two-sided t-test of SciPy (``scipy.stats.ttest_ind``,
Student's test with equal variances by default); Welch's test (unequal variances) is offered
beside it. Each sample is one value per training run, e.g. a run's pooled Dice. Standard
deviations are sample standard deviations (``ddof=1``).

Degenerate samples never raise: a group with fewer than two values gives NaN ``t`` and ``p``
and a ``note`` saying why; two groups with no spread at all are passed to SciPy (``t`` is
infinite or NaN) with a note too.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from l2s_core.errors import ConfigError, InputDataError

#: Method pairs compared by default: each localised method against the baseline, and the two
#: localised methods against each other.
DEFAULT_PAIRS = (("baseline", "two_stage"), ("baseline", "gt_localised"), ("two_stage", "gt_localised"))
#: Columns of :func:`pairwise_tests` after the group columns.
PAIRWISE_COLUMNS = ("method_a", "method_b", "n_a", "n_b", "mean_a", "sd_a", "mean_b", "sd_b",
                    "t_student", "p_student", "t_welch", "p_welch", "note")


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


def compare_methods(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray,
                    equal_var: bool = True) -> dict[str, Any]:
    """Two-sided independent two-sample t-test of ``a`` against ``b``, with summaries.

    Args:
        a: one value per run of the first method.
        b: one value per run of the second method.
        equal_var: True for Student's test (SciPy's default, the paper's), False for Welch's.

    Returns:
        ``mean_a``, ``sd_a``, ``mean_b``, ``sd_b`` (sample sds), ``n_a``, ``n_b``, ``t`` and
        ``p`` (from ``scipy.stats.ttest_ind(a, b, equal_var=equal_var)``; positive ``t`` means
        ``a`` is higher) and ``note``: empty, or why ``t`` and ``p`` are NaN or infinite (a
        group with fewer than two values: no test is run; both groups without spread;
        non-finite values, which SciPy propagates).

    Raises:
        InputDataError: if ``a`` or ``b`` is not one-dimensional.
    """
    sample_a, sample_b = _sample(a, "a"), _sample(b, "b")
    (mean_a, sd_a), (mean_b, sd_b) = _mean_sd(sample_a), _mean_sd(sample_b)
    result = {"mean_a": mean_a, "sd_a": sd_a, "mean_b": mean_b, "sd_b": sd_b,
              "n_a": int(sample_a.size), "n_b": int(sample_b.size), "t": math.nan, "p": math.nan, "note": ""}
    if min(sample_a.size, sample_b.size) < 2:
        result["note"] = (f"fewer than 2 values in a group (n_a={sample_a.size}, n_b={sample_b.size}): "
                          "no t-test")
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
    return result


def pairwise_tests(df: pd.DataFrame, value_col: str = "dice", method_col: str = "method",
                   group_cols: Sequence[str] = ("organ", "split"),
                   pairs: Sequence[tuple[str, str]] = DEFAULT_PAIRS) -> pd.DataFrame:
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
        ``sd_b``, ``t_student``, ``p_student``, ``t_welch``, ``p_welch`` and ``note``, as in
        :func:`compare_methods`). A method without rows in a group has ``n`` 0 and NaN tests.

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
            rows.append({**labels, "method_a": method_a, "method_b": method_b,
                         **{k: student[k] for k in ("n_a", "n_b", "mean_a", "sd_a", "mean_b", "sd_b")},
                         "t_student": student["t"], "p_student": student["p"],
                         "t_welch": welch["t"], "p_welch": welch["p"], "note": student["note"]})
    return pd.DataFrame(rows, columns=[*group_cols, *PAIRWISE_COLUMNS])
