"""The work of the study notebooks, as functions (the notebooks only call these and plot).

``notebooks/prepare.ipynb`` calls :func:`prepare_step`, ``notebooks/train.ipynb``
:func:`train_step` and ``notebooks/evaluate.ipynb`` :func:`evaluate_step`, each with the
study parameters (:func:`~l2s_core.study.params.load_study_params` of the snapshot the runner
wrote), the study root and the step's organ, network, run or split. Each step is resumable on
its own: preparation skips prepared cases, training continues an interrupted run and returns
a finished one, evaluation rewrites its CSV files atomically.

Example:
    >>> params = load_study_params("runs/quick/study_params.json")  # doctest: +SKIP
    >>> summary = train_step(params, ".", "spleen", "organ", run=0)  # doctest: +SKIP
"""

from __future__ import annotations

__all__ = ["evaluate_step", "method_summary", "prepare_step", "prepared_cases", "run_log", "train_step", "use_gpus"]

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from l2s_core.data.cache import PreparedTask
from l2s_core.errors import ConfigError
from l2s_core.study.layout import StudyPaths
from l2s_core.study.params import StudyParams

if TYPE_CHECKING:  # preparation loads scikit-image and nibabel: only the steps that prepare need it
    from l2s_core.data.prepare import CaseStatus
    from l2s_core.train.run_files import RunSummary


def use_gpus(gpus: str | None) -> None:
    """Restrict this process (and the processes it starts) to a slot's GPUs.

    Sets ``CUDA_VISIBLE_DEVICES``, which CUDA reads when it starts in the process.

    Args:
        gpus: comma-separated GPU ids (``"0,1"``), or ``None`` to leave the setting alone.

    Raises:
        ConfigError: CUDA already started in this process with other GPUs.
    """
    if gpus is None:
        return
    import torch

    if torch.cuda.is_initialized() and os.environ.get("CUDA_VISIBLE_DEVICES") != gpus:
        raise ConfigError("gpus", f"CUDA already started in this process; cannot switch to GPUs {gpus}")
    os.environ["CUDA_VISIBLE_DEVICES"] = gpus


def prepare_step(params: StudyParams, root: str | Path, organ: str) -> dict[str, CaseStatus]:
    """Prepare an organ's task into ``runs/<study>/<organ>/prepared``.

    With ``data: phantom`` the organ's phantom task is generated first into
    ``runs/<study>/phantom``; with ``data: msd`` the task folder under ``data_root`` is used.

    Args:
        params: the study parameters.
        root: the study root.
        organ: the organ.

    Returns:
        case id → its :class:`~l2s_core.data.prepare.CaseStatus`.

    Raises:
        ConfigError: a missing MSD task folder, or a prepared folder made with other settings.
        InputDataError: an unusable image or label (named in the message).
    """
    from l2s_core.data.prepare import prepare_task

    paths = StudyPaths(Path(root), params.study)
    if params.data == "phantom":
        task_dir = params.write_phantom_task(organ, paths.phantom_dir)
    else:
        task_dir = params.task_dir(organ)
    options = params.prepare.for_organ(organ)
    return prepare_task(
        task_dir,
        paths.prepared_dir(organ),
        params.prepare.settings(organ),
        skip_empty=options.skip_empty,
        workers=options.workers,
        progress=False,
    )


def prepared_cases(params: StudyParams, root: str | Path, organ: str) -> pd.DataFrame:
    """One row per prepared case of an organ: split, shapes ``(z, y, x)``, organ size.

    Columns: ``case_id``, ``split``, ``full_shape``, ``lowres_shape``, ``crop_shape``,
    ``organ_voxels``, ``foreground_percent``.
    """
    task = PreparedTask(StudyPaths(Path(root), params.study).prepared_dir(organ))
    rows = []
    for split, case_ids in task.split.items():
        for case_id in case_ids:
            meta = task.case(case_id).meta
            rows.append(
                {
                    "case_id": case_id,
                    "split": split,
                    "full_shape": meta.original_shape,
                    "lowres_shape": meta.lowres_shape,
                    "crop_shape": meta.crop_shape,
                    "organ_voxels": meta.organ_voxels,
                    "foreground_percent": 100 * meta.foreground_share,
                }
            )
    return pd.DataFrame(rows)


def _world_size(params: StudyParams, organ: str, network: str) -> int:
    """Data-parallel processes of a run: ``gpus_per_run`` on GPUs, one on the CPU.

    Raises:
        ConfigError: fewer visible GPUs than ``gpus_per_run``.
    """
    import torch

    from l2s_core.distributed import resolve_device

    device = resolve_device(params.train.for_run(organ, network).device)
    if device.type != "cuda":
        return 1
    if torch.cuda.device_count() < params.gpus_per_run:
        raise ConfigError(
            f"{params.source}: gpus_per_run",
            f"{params.gpus_per_run} GPUs per run, but "
            f"{torch.cuda.device_count()} visible; lower it with --gpus-per-run",
        )
    return params.gpus_per_run


def train_step(
    params: StudyParams, root: str | Path, organ: str, network: str, run: int, gpus: str | None = None
) -> RunSummary:
    """Train (or continue, or return) one run of a network on an organ.

    The run's :class:`~l2s_core.train.config.TrainConfig` comes from the parameters' ``train``
    options (with the network's overrides), seed = ``run``, world size ``gpus_per_run`` on
    GPUs; the run folder is ``runs/<study>/<organ>/<network>/run_<run>``.

    Args:
        params: the study parameters.
        root: the study root.
        organ: the organ.
        network: ``baseline``, ``localiser`` or ``organ``.
        run: the run index.
        gpus: the slot's GPU ids (see :func:`use_gpus`).

    Returns:
        The run's summary (see :func:`l2s_core.train.launch.train_run`).
    """
    from l2s_core.train.launch import train_run

    use_gpus(gpus)
    paths = StudyPaths(Path(root), params.study)
    config = params.train_config(
        organ,
        network,
        run,
        paths.prepared_dir(organ),
        paths.run_dir(organ, network, run),
        world_size=_world_size(params, organ, network),
    )
    return train_run(config, progress=False)


def run_log(params: StudyParams, root: str | Path, organ: str, network: str, run: int) -> pd.DataFrame:
    """The per-epoch log of a run (``epoch``, ``wall_seconds``, ``train_loss``, ``train_dice``, ``val_dice``)."""
    from l2s_core.train.run_files import read_log

    return pd.DataFrame(read_log(StudyPaths(Path(root), params.study).run_dir(organ, network, run)))


def evaluate_step(
    params: StudyParams, root: str | Path, organ: str, split: str, gpus: str | None = None
) -> dict[str, Path]:
    """Evaluate every method run of an organ on one split (``runs/<study>/<organ>/evaluation``).

    Args:
        params: the study parameters.
        root: the study root.
        organ: the organ.
        split: ``val`` or ``test``.
        gpus: the slot's GPU ids (see :func:`use_gpus`).

    Returns:
        ``{"cases": <split>_cases.csv, "runs": <split>_runs.csv}`` (and ``"predictions"``
        with ``evaluate.save_predictions``).
    """
    from l2s_core.distributed import resolve_device
    from l2s_core.evaluate import evaluate_organ
    from l2s_core.study.localisation import organ_localisation

    use_gpus(gpus)
    options = params.evaluate
    paths = StudyPaths(Path(root), params.study)
    return evaluate_organ(
        paths.organ_dir(organ),
        split,
        organ_localisation(paths.organ_dir(organ), options),
        tolerance_mm=options.surface_tolerance_mm,
        device=str(resolve_device(options.device)),
        save_predictions=options.save_predictions,
        progress=False,
    )


def method_summary(runs: pd.DataFrame) -> pd.DataFrame:
    """Per method: number of runs and mean, standard deviation, min and max of the pooled Dice.

    Args:
        runs: the rows of a ``<split>_runs.csv`` (columns ``method``, ``pooled_dice``).

    Returns:
        One row per method, indexed by method.
    """
    return (
        runs.groupby("method", sort=False)["pooled_dice"]
        .agg(["count", "mean", "std", "min", "max"])
        .rename(columns={"count": "runs"})
    )
