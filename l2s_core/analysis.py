"""The study's results as tables: the paper's Tables 1–4, the run-level t-tests, the per-case
paired tests and the data behind Figures 2–4, computed from the files a study leaves in
``runs/<study>`` (see the study layout: prepared tasks, run folders with ``summary.json`` and
``log.csv``, and the evaluation CSVs of :mod:`l2s_core.evaluation_tables`).

:func:`load_study` reads a study folder once into a :class:`StudyData`; every other function
is a pure function of it returning a pandas DataFrame. :func:`write_tables` writes them all as
CSV files.

Two kinds of test compare methods (see :mod:`l2s_core.stats`): :func:`ttests`, the paper's,
over runs (variance: training-seed variability on the fixed cases of a split), and
:func:`paired_tests`, over cases (variance: variability over patients, with the runs'
variability inside the bootstrap interval). Holm–Bonferroni adjusts the p-values of each
table's family: the tests of one split (Table 3's or Table 4's).

Example:
    >>> data = load_study("runs/quick")  # doctest: +SKIP
    >>> table_dice(data, "test")  # doctest: +SKIP
"""

from __future__ import annotations

import importlib.metadata
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from l2s_core.data.cache import PreparedTask
from l2s_core.data.prepared_layout import PREP_FILE, PREPARED_DIR
from l2s_core.errors import InputDataError
from l2s_core.evaluation_tables import CASE_COLUMNS, EVALUATION_DIR, RUN_COLUMNS, cases_file, runs_file
from l2s_core.files import atomic_write_text, read_json
from l2s_core.stats import (
    DEFAULT_PAIRS,
    format_mean_sd,
    hierarchical_bootstrap,
    holm,
    mean_sd,
    paired_wilcoxon,
    pairwise_tests,
)
from l2s_core.train.run_files import LOG_COLUMNS, LOG_FILE, finished_runs
from l2s_core.vocabulary import METHODS, NETWORKS, PAPER_ORGANS, SPLITS

__all__ = [
    "ALPHA",
    "BOOTSTRAP_REPLICATES",
    "BOOTSTRAP_SEED",
    "CASE_MEAN_COLUMNS",
    "DATASET_COLUMNS",
    "FAILURE_COLUMNS",
    "METHOD_LABELS",
    "NETWORK_LABELS",
    "PAIRED_COLUMNS",
    "SPLIT_LABELS",
    "SUMMARY_COLUMNS",
    "StudyData",
    "all_tables",
    "case_mean_dice",
    "convergence_rates",
    "data_description",
    "dice_gain",
    "load_study",
    "paired_tests",
    "software_versions",
    "table1_split_sizes",
    "table2_training_minutes",
    "table_dice",
    "training_curves",
    "ttests",
    "write_csv_tables",
    "write_tables",
]

#: Significance level marking a Dice significantly above the baseline in Tables 3 and 4.
ALPHA = 0.05
NETWORK_LABELS = {"baseline": "baseline", "localiser": "low res (localiser)", "organ": "organ"}
METHOD_LABELS = {"baseline": "baseline", "two_stage": "two stage", "gt_localised": "ground truth localised"}
SPLIT_LABELS = {"train": "training", "val": "validation", "test": "test"}
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
CASE_MEAN_COLUMNS = ("organ", "split", "method", "case_id", "runs", "mean_dice")
PAIRED_COLUMNS = (
    "organ",
    "split",
    "method_a",
    "method_b",
    "n_cases",
    "n_runs_a",
    "n_runs_b",
    "mean_a",
    "mean_b",
    "mean_diff",
    "ci_low",
    "ci_high",
    "wilcoxon_w",
    "p_wilcoxon",
    "p_wilcoxon_holm",
    "rank_biserial",
    "note",
)
#: Replicates and seed of the hierarchical bootstrap of :func:`paired_tests`.
BOOTSTRAP_REPLICATES = 10_000
BOOTSTRAP_SEED = 0


@dataclass(frozen=True)
class StudyData:
    """Everything the analysis reads from a study folder.

    Attributes:
        study_dir: the study folder ``runs/<study>``.
        organs: organs found, in the study's (else the paper's) order.
        study_params: content of ``study_params.json``, or ``None`` where it is absent.
        datasets: one row per organ: columns :data:`DATASET_COLUMNS` (split sizes of the
            prepared task; ``foreground_percent`` = mean over its cases of the organ's share
            of the image voxels, in %).
        summaries: one row per finished training run: columns :data:`SUMMARY_COLUMNS`.
        logs: per-epoch rows of the finished runs: ``organ, network, run`` and the columns of
            ``log.csv`` (epoch, wall_seconds, train_loss, train_dice, val_dice).
        cases: the rows of every ``<organ>/evaluation/<split>_cases.csv``.
        runs: the rows of every ``<organ>/evaluation/<split>_runs.csv``.
        failures: the study's steps that failed or were blocked by a failure, as the last
            ``l2s run`` left them in ``status.json`` (columns :data:`FAILURE_COLUMNS`).
    """

    study_dir: Path
    organs: tuple[str, ...]
    study_params: dict[str, Any] | None
    datasets: pd.DataFrame
    summaries: pd.DataFrame
    logs: pd.DataFrame
    cases: pd.DataFrame
    runs: pd.DataFrame
    failures: pd.DataFrame


def _organ_order(names: list[str], study_params: dict[str, Any] | None) -> tuple[str, ...]:
    """``names`` in the study's organ order (else the paper's), unknown names last alphabetically."""
    preferred = list(study_params.get("organs") or []) if study_params else []
    preferred += [o for o in PAPER_ORGANS if o not in preferred]
    rank = {name: i for i, name in enumerate(preferred)}
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
    units = read_json(status_path).get("units", {}) if status_path.is_file() else {}
    rows = [
        {"unit": unit_id, "state": entry["state"], "error": entry.get("error", "")}
        for unit_id, entry in units.items()
        if entry.get("state") in ("failed", "blocked")
    ]
    return pd.DataFrame(rows, columns=list(FAILURE_COLUMNS))


def _read_csvs(paths: list[Path], columns: tuple[str, ...]) -> pd.DataFrame:
    frames = [pd.read_csv(p, dtype={"case_id": str}) for p in paths if p.is_file()]
    frames = [f for f in frames if not f.empty]
    if not frames:
        return pd.DataFrame(columns=list(columns))
    return pd.concat(frames, ignore_index=True)


def load_study(study_dir: str | Path) -> StudyData:
    """Read a study folder.

    An organ is a sub-folder holding ``prepared/prep.json``. Training runs without a
    ``summary.json`` (unfinished) are left out; missing evaluation CSVs give no rows.

    Args:
        study_dir: the folder ``runs/<study>``.

    Returns:
        The :class:`StudyData`.

    Raises:
        InputDataError: the folder does not exist or holds no prepared organ.
        FormatVersionError: a metadata file written by an incompatible l2s version.
    """
    study_dir = Path(study_dir)
    if not study_dir.is_dir():
        raise InputDataError(study_dir, "study folder not found")
    params_path = study_dir / "study_params.json"
    study_params = read_json(params_path) if params_path.is_file() else None
    organ_dirs = {d.name: d for d in study_dir.iterdir() if (d / PREPARED_DIR / PREP_FILE).is_file()}
    if not organ_dirs:
        raise InputDataError(study_dir, "no prepared organ found (expected <organ>/prepared/prep.json)")
    organs = _organ_order(list(organ_dirs), study_params)
    summaries, logs = [], []
    for organ in organs:
        for run in (run for network in NETWORKS for run in finished_runs(organ_dirs[organ], network)):
            summaries.append(
                {
                    "organ": organ,
                    "network": run.network,
                    "run": run.index,
                    **{k: getattr(run.summary, k) for k in SUMMARY_COLUMNS[3:]},
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
        failures=_read_failures(study_dir / "status.json"),
    )


def _phantom_settings(phantom: dict[str, Any]) -> str:
    """The generator settings of a phantom study, as a short phrase."""
    if phantom.get("profile") == "msd":
        per_organ = "; ".join(
            f"{organ}: {', '.join(f'{k} {v}' for k, v in values.items())}"
            for organ, values in (phantom.get("per_organ") or {}).items()
        )
        return (
            f"profile msd: the MSD tasks' shapes and spacings scaled by {phantom.get('scale')}, "
            f"seed {phantom.get('seed')}" + (f"; per organ {per_organ}" if per_organ else "")
        )
    return f"n_cases={phantom.get('n_cases')}, shape={phantom.get('shape')}, seed={phantom.get('seed')}"


def data_description(data: StudyData) -> str:
    """One paragraph (Markdown) saying which data the study ran on: phantom or real MSD tasks.

    Read from ``study_params.json`` where present, else from the prepared tasks' names.
    """
    tasks = ", ".join(f"{row.organ}: {row.task_name} ({row.task_dir})" for row in data.datasets.itertuples())
    study_params = data.study_params or {}
    source = study_params.get("data")
    if source == "phantom":
        phantom = study_params.get("phantom", {})
        kind = (
            "**phantom data**: synthetic volumes generated by `l2s phantom` "
            f"({_phantom_settings(phantom)}), "
            "not patient scans; the numbers test the pipeline, they do not reproduce the paper's values"
        )
    elif source == "msd":
        kind = f"**real data**: Medical Segmentation Decathlon tasks from `{study_params.get('data_root')}`"
    else:
        kind = "data named by the prepared tasks (no `study_params.json` in the study folder)"
    return f"Study folder `{data.study_dir}` ran on {kind}. Prepared tasks: {tasks}."


def software_versions() -> pd.DataFrame:
    """Versions of Python and of the packages the results depend on (``package``, ``version``)."""
    packages = ("l2s", "torch", "monai", "numpy", "scipy", "pandas", "scikit-image", "nibabel")
    rows = [("python", platform.python_version())]
    for name in packages:
        try:
            rows.append((name, importlib.metadata.version(name)))
        except importlib.metadata.PackageNotFoundError:
            rows.append((name, "not installed"))
    return pd.DataFrame(rows, columns=["package", "version"])


def table1_split_sizes(data: StudyData) -> pd.DataFrame:
    """Table 1: number of images in the training, validation and test sets of each organ.

    Returns:
        Index ``organ``; columns ``training``, ``validation``, ``test``.
    """
    table = data.datasets.set_index("organ")[["n_train", "n_val", "n_test"]]
    return table.rename(columns={"n_train": "training", "n_val": "validation", "n_test": "test"}).astype(int)


def training_time_runs(data: StudyData) -> str:
    """The runs Table 2 averages: the study's ``analysis.training_time_runs`` (default ``all``)."""
    return str(((data.study_params or {}).get("analysis") or {}).get("training_time_runs", "all"))


def table2_training_minutes(data: StudyData, runs: str | None = None) -> pd.DataFrame:
    """Table 2: mean training time in minutes (``total_seconds`` of the summary / 60) per organ
    and network.

    Args:
        data: the study.
        runs: ``all`` finished runs, converged or not, or only the ``converged`` ones (the
            released code); default :func:`training_time_runs`.

    Returns:
        Index ``organ``; one column per network (``baseline``, ``localiser``, ``organ``), NaN
        where an organ has no such run of a network.
    """
    runs = runs or training_time_runs(data)
    summaries = data.summaries if runs == "all" else data.summaries[data.summaries["converged"]]
    minutes = summaries.assign(minutes=summaries["total_seconds"].astype(float) / 60.0)
    table = minutes.pivot_table(index="organ", columns="network", values="minutes", aggfunc="mean")
    return table.reindex(index=list(data.organs), columns=list(NETWORKS)).rename_axis(columns=None)


def ttests(data: StudyData) -> pd.DataFrame:
    """Two-sided t-tests of the per-run pooled Dice between methods, for every organ and split.

    Each run of a method is one sample (its Dice pooled over the split's cases). The pairs of
    :data:`l2s_core.stats.DEFAULT_PAIRS` (baseline vs two_stage, baseline vs gt_localised,
    two_stage vs gt_localised, as in the paper's Results section) are compared with Student's
    t-test (equal variances, as ``scipy.stats.ttest_ind`` by default, the paper's test) and
    with Welch's. The variance these tests see is training-seed variability on the split's fixed
    cases: they say whether another training run would likely rank the methods the same way.

    Returns:
        One row per organ, split and pair with the columns of
        :func:`l2s_core.stats.pairwise_tests` (``organ``, ``split``, ``method_a``,
        ``method_b``, the runs, means and sds of both, ``p_student``, ``p_welch``,
        ``hedges_g``: Hedges' g of ``method_a`` minus ``method_b``), then ``p_student_holm``
        and ``p_welch_holm``: Holm–Bonferroni adjusted over the tests of the same split.
    """
    runs = data.runs[["organ", "split", "method", "pooled_dice"]].astype({"pooled_dice": float})
    tests = pairwise_tests(
        runs, value_col="pooled_dice", method_col="method", group_cols=["organ", "split"], pairs=DEFAULT_PAIRS
    )
    return tests.assign(
        p_student_holm=_holm_by_split(tests, "p_student"), p_welch_holm=_holm_by_split(tests, "p_welch")
    )


def _holm_by_split(tests: pd.DataFrame, p_col: str) -> pd.Series:
    """Column ``p_col`` Holm-adjusted within each split (the family of one table)."""
    if tests.empty:
        return pd.Series(dtype=float, index=tests.index)
    return tests.groupby("split", sort=False)[p_col].transform(lambda p: holm(p.to_numpy(dtype=float)))


def case_mean_dice(data: StudyData) -> pd.DataFrame:
    """Per case, the mean Dice over a method's runs: the values the paired tests compare.

    Returns:
        One row per organ, split, method and case: columns :data:`CASE_MEAN_COLUMNS`
        (``runs``: the number of the method's runs that evaluated the case).
    """
    cases = data.cases.astype({"dice": float})
    means = (
        cases.groupby(["organ", "split", "method", "case_id"], sort=False)["dice"]
        .agg(runs="size", mean_dice="mean")
        .reset_index()
    )
    return means[list(CASE_MEAN_COLUMNS)]


def _case_matrix(cases: pd.DataFrame, method: str) -> pd.DataFrame:
    """Dice of one method's rows of ``cases`` (one organ and split) as runs × cases."""
    rows = cases[cases["method"] == method]
    return rows.pivot_table(index="run", columns="case_id", values="dice", aggfunc="first")


def _paired_row(cases: pd.DataFrame, method_a: str, method_b: str) -> dict[str, Any]:
    """The paired test and bootstrap interval of two methods on one organ's split (see :func:`paired_tests`)."""
    matrix_a, matrix_b = _case_matrix(cases, method_a), _case_matrix(cases, method_b)
    common = sorted(set(matrix_a.dropna(axis=1).columns) & set(matrix_b.dropna(axis=1).columns))
    row: dict[str, Any] = {
        "method_a": method_a,
        "method_b": method_b,
        "n_cases": len(common),
        "n_runs_a": len(matrix_a),
        "n_runs_b": len(matrix_b),
        "mean_a": np.nan,
        "mean_b": np.nan,
        "mean_diff": np.nan,
        "ci_low": np.nan,
        "ci_high": np.nan,
        "wilcoxon_w": np.nan,
        "p_wilcoxon": np.nan,
        "rank_biserial": np.nan,
    }
    if not common or matrix_a.empty or matrix_b.empty:
        return {**row, "note": "no case evaluated by every run of both methods: no test"}
    a, b = matrix_a[common].to_numpy(), matrix_b[common].to_numpy()
    test = paired_wilcoxon(a.mean(axis=0), b.mean(axis=0))
    interval = hierarchical_bootstrap(a, b, n_boot=BOOTSTRAP_REPLICATES, seed=BOOTSTRAP_SEED)
    return {
        **row,
        "mean_a": test.mean_a,
        "mean_b": test.mean_b,
        "mean_diff": test.mean_diff,
        "ci_low": interval.low,
        "ci_high": interval.high,
        "wilcoxon_w": test.statistic,
        "p_wilcoxon": test.p,
        "rank_biserial": test.rank_biserial,
        "note": test.note,
    }


def paired_tests(data: StudyData) -> pd.DataFrame:
    """Per-case paired comparisons of the methods, for every organ and split: will a method
    segment the next patient better?

    For each pair of :data:`l2s_core.stats.DEFAULT_PAIRS`, the cases evaluated by every run of
    both methods are compared by their mean Dice over each method's runs
    (:func:`case_mean_dice`) with the two-sided Wilcoxon signed-rank test and the matched-pairs
    rank-biserial correlation (:func:`l2s_core.stats.paired_wilcoxon`): the variance is
    variability over patients. The 95 % interval of the mean Dice difference comes from the
    hierarchical bootstrap over cases and then runs (:func:`l2s_core.stats.hierarchical_bootstrap`,
    :data:`BOOTSTRAP_REPLICATES` replicates, seed :data:`BOOTSTRAP_SEED`): it holds both the
    patients' and the training seeds' variability.

    Returns:
        One row per organ, split and pair (organs in study order, splits as
        :data:`~l2s_core.vocabulary.SPLITS`, where the split has case rows): columns
        :data:`PAIRED_COLUMNS`. ``mean_a``, ``mean_b``: means over the cases of the per-case
        means; ``mean_diff``, ``ci_low``, ``ci_high``, ``rank_biserial``: ``method_a`` minus
        ``method_b`` (positive: ``method_a`` higher); ``p_wilcoxon_holm``: Holm–Bonferroni
        adjusted over the tests of the same split; ``note``: why a test is missing.
    """
    cases = data.cases[["organ", "split", "method", "run", "case_id", "dice"]].astype({"dice": float})
    rows = []
    for organ in data.organs:
        for split in SPLITS:
            group = cases[(cases["organ"] == organ) & (cases["split"] == split)]
            if not group.empty:
                rows += [{"organ": organ, "split": split, **_paired_row(group, a, b)} for a, b in DEFAULT_PAIRS]
    table = pd.DataFrame(rows, columns=list(PAIRED_COLUMNS))
    return table.assign(p_wilcoxon_holm=_holm_by_split(table, "p_wilcoxon"))


def table_dice(data: StudyData, split: str) -> pd.DataFrame:
    """Tables 3 (``split="val"``) and 4 (``split="test"``): mean ± sd over runs of the pooled Dice.

    Args:
        data: the study.
        split: ``"val"`` or ``"test"``.

    Returns:
        Index ``organ``; per method ``m`` of :data:`METHODS` the columns ``m_runs`` (number
        of runs), ``m_mean``, ``m_sd`` (sample sd), ``m_above_baseline`` (True where the
        method's Dice is higher than the baseline's with Student p < :data:`ALPHA`; always
        False for the baseline) and ``m`` (:func:`l2s_core.stats.format_mean_sd`, e.g.
        ``"0.8142 ± 0.0221"``, with ``" *"`` appended where ``m_above_baseline``).
    """
    runs = data.runs[data.runs["split"] == split]
    tests = ttests(data)
    tests = tests[(tests["split"] == split) & (tests["method_a"] == "baseline")]
    rows = []
    for organ in data.organs:
        row: dict[str, Any] = {"organ": organ}
        for method in METHODS:
            values = runs.loc[(runs["organ"] == organ) & (runs["method"] == method), "pooled_dice"].astype(float)
            mean, sd = mean_sd(values.to_numpy())
            test = tests[(tests["organ"] == organ) & (tests["method_b"] == method)]
            above = bool(len(test) == 1 and test["p_student"].iloc[0] < ALPHA and mean > test["mean_a"].iloc[0])
            row.update(
                {
                    f"{method}_runs": len(values),
                    f"{method}_mean": mean,
                    f"{method}_sd": sd,
                    f"{method}_above_baseline": above,
                    method: format_mean_sd(values.to_numpy()) + (" *" if above else ""),
                }
            )
        rows.append(row)
    return pd.DataFrame(rows).set_index("organ")


def convergence_rates(data: StudyData) -> pd.DataFrame:
    """Figure 3's data: share of finished runs that converged, per organ and network.

    Returns:
        One row per organ and network with a finished run: ``organ``, ``network``,
        ``trained`` (finished runs), ``converged``, ``convergence_rate`` (converged / trained),
        ``n_cases`` (dataset size: prepared cases of all splits), ``n_train``,
        ``foreground_percent``.
    """
    counts = (
        data.summaries.groupby(["organ", "network"], sort=False)["converged"]
        .agg(trained="size", converged="sum")
        .reset_index()
    )
    counts["converged"] = counts["converged"].astype(int)
    counts["convergence_rate"] = counts["converged"] / counts["trained"]
    table = counts.merge(data.datasets[["organ", "n_cases", "n_train", "foreground_percent"]], on="organ", how="left")
    rank = {"organ": {o: i for i, o in enumerate(data.organs)}, "network": {n: i for i, n in enumerate(NETWORKS)}}
    table = table.sort_values(by=["organ", "network"], key=lambda column: column.map(rank[column.name]))
    return table.reset_index(drop=True)


def dice_gain(data: StudyData) -> pd.DataFrame:
    """Figure 4's data: mean Dice of a localised method minus the mean Dice of the baseline.

    Returns:
        One row per organ, split and localised method (``two_stage``, ``gt_localised``) where
        both it and the baseline have runs: ``organ``, ``split``, ``method``,
        ``baseline_dice``, ``method_dice`` (means over runs of the pooled Dice), ``gain``,
        ``foreground_percent``.
    """
    means = data.runs.astype({"pooled_dice": float}).groupby(["organ", "split", "method"])["pooled_dice"].mean()
    rows = []
    for organ in data.organs:
        for split in SPLITS:
            baseline = means.get((organ, split, "baseline"), np.nan)
            for method in METHODS[1:]:
                method_dice = means.get((organ, split, method), np.nan)
                if np.isfinite(baseline) and np.isfinite(method_dice):
                    rows.append(
                        {
                            "organ": organ,
                            "split": split,
                            "method": method,
                            "baseline_dice": baseline,
                            "method_dice": method_dice,
                            "gain": method_dice - baseline,
                        }
                    )
    gains = pd.DataFrame(rows, columns=["organ", "split", "method", "baseline_dice", "method_dice", "gain"])
    return gains.merge(data.datasets[["organ", "foreground_percent"]], on="organ", how="left")


def training_curves(data: StudyData) -> pd.DataFrame:
    """Figure 2's data: the per-epoch log rows of the converged runs only.

    Returns:
        Columns ``organ``, ``network``, ``run`` and those of ``log.csv``.
    """
    converged = data.summaries.loc[data.summaries["converged"], ["organ", "network", "run"]]
    return data.logs.merge(converged, on=["organ", "network", "run"], how="inner")


def all_tables(data: StudyData) -> dict[str, pd.DataFrame]:
    """Every table of the analysis, by file stem (``table1_split_sizes``, ...)."""
    return {
        "table1_split_sizes": table1_split_sizes(data),
        "table2_training_minutes": table2_training_minutes(data),
        "table3_val_dice": table_dice(data, "val"),
        "table4_test_dice": table_dice(data, "test"),
        "ttests": ttests(data),
        "case_mean_dice": case_mean_dice(data),
        "paired_tests": paired_tests(data),
        "convergence_rates": convergence_rates(data),
        "dice_gain": dice_gain(data),
    }


def write_tables(study_dir: str | Path, out_dir: str | Path) -> dict[str, Path]:
    """Write every table of :func:`all_tables` as ``<out_dir>/<name>.csv``, atomically.

    Args:
        study_dir: the study folder ``runs/<study>``.
        out_dir: destination folder (created).

    Returns:
        Table name → CSV path.
    """
    return write_csv_tables(all_tables(load_study(study_dir)), out_dir)


def write_csv_tables(tables: dict[str, pd.DataFrame], out_dir: str | Path) -> dict[str, Path]:
    """Write tables as ``<out_dir>/<name>.csv``, atomically; a named index is kept as a column.

    Args:
        tables: file stem → table.
        out_dir: destination folder (created).

    Returns:
        Table name → CSV path.
    """
    paths = {}
    for name, table in tables.items():
        paths[name] = Path(out_dir) / f"{name}.csv"
        atomic_write_text(paths[name], table.to_csv(index=table.index.name is not None))
    return paths
