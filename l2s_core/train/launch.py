"""Starting a training run in one process or in several data-parallel processes.

:func:`train_run` trains here, joins the process group of a ``torchrun`` launch
(``torchrun --nproc-per-node 2 -m l2s_core.train CONFIG.json``), or spawns ``world_size``
processes (:func:`train_run_parallel`, also usable from a notebook); every process runs
:func:`l2s_core.train.loop.train_in_context`.

Example:
    >>> config = TrainConfig(prepared_dir="prepared/spleen", run_dir="runs/spleen/organ/run_00",
    ...                      network="organ", seed=0)  # doctest: +SKIP
    >>> summary = train_run(config)  # doctest: +SKIP
"""

from __future__ import annotations

__all__ = ["train_run", "train_run_parallel"]

import dataclasses
import os
from pathlib import Path

import torch

from l2s_core import distributed
from l2s_core.errors import ConfigError
from l2s_core.train.commit import check_run_dir
from l2s_core.train.config import TrainConfig
from l2s_core.train.loop import train_in_context
from l2s_core.train.run_files import SUMMARY_FILE, RunSummary, finished_summary


def _spawned_worker(rank: int, world_size: int, init_method: str, config: TrainConfig, progress: bool) -> None:
    context = distributed.join_process_group(config.device, rank, world_size, local_rank=rank, init_method=init_method)
    try:
        train_in_context(config, context, progress)
    finally:
        distributed.leave_process_group(context)


def train_run_parallel(config: TrainConfig, world_size: int | None = None, progress: bool = True) -> RunSummary:
    """Train one run in ``world_size`` data-parallel processes spawned from this one.

    Usable from a notebook: the processes meet on a free localhost port and this process
    waits for them. With GPUs each process uses one (NCCL); on the CPU the processes use gloo.

    Args:
        config: the run's settings (its ``world_size`` is replaced by the one used).
        world_size: processes; default ``min(2, visible GPUs)`` on GPUs (the paper's two),
            ``config.world_size`` on the CPU.
        progress: show a progress bar over epochs.

    Returns:
        The run's summary (see :func:`train_run`).

    Raises:
        ConfigError: more processes than visible GPUs, or as :func:`train_run`.
    """
    on_gpus = distributed.resolve_device(config.device).type == "cuda"
    if world_size is None:
        world_size = distributed.default_world_size(config.device) if on_gpus else config.world_size
    if on_gpus and world_size > torch.cuda.device_count():
        raise ConfigError(
            "world_size", f"{world_size} processes need as many GPUs, {torch.cuda.device_count()} visible"
        )
    config = dataclasses.replace(config, world_size=world_size)
    check_run_dir(config)
    finished = finished_summary(config.run_dir)
    if finished is not None:
        return finished
    distributed.spawn(_spawned_worker, world_size, config, progress)
    return RunSummary.read(Path(config.run_dir) / SUMMARY_FILE)


def train_run(config: TrainConfig, progress: bool = True) -> RunSummary:
    """Train one network by the paper's protocol, or continue or return an existing run.

    In a process started by ``torchrun`` this process joins the launch's process group;
    otherwise ``config.world_size > 1`` spawns that many processes
    (:func:`train_run_parallel`) and 1 trains here.

    Args:
        config: the run's settings.
        progress: show a progress bar over epochs.

    Returns:
        The run's :class:`~l2s_core.train.run_files.RunSummary` (its ``summary.json``).

    Raises:
        ConfigError: the run folder holds a run with different settings, or the task has no
            validation cases.
        CheckpointError: the resume state is unreadable.
    """
    if distributed.launched_by_torchrun():
        config = dataclasses.replace(config, world_size=int(os.environ["WORLD_SIZE"]))
        context = distributed.context_from_env(config.device)
        try:
            return train_in_context(config, context, progress)
        finally:
            distributed.leave_process_group(context)
    if config.world_size > 1:
        return train_run_parallel(config, config.world_size, progress)
    return train_in_context(config, distributed.single_process(config.device), progress)
