"""Launching a run: two gloo processes on the CPU, spawned or started by ``torchrun``, train to
the weights of one process with the same global batch."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from config_builder import cpu_config

from l2s_core.data.cache import PreparedTask
from l2s_core.files import atomic_write_json
from l2s_core.model import UNet3D
from l2s_core.train.config import TrainConfig
from l2s_core.train.launch import train_run
from l2s_core.train.run_files import RunSummary, read_log

#: Two processes sum their gradients in another order than one process does, so the weights
#: agree to rounding only. With the paper's lr 1e-4, 3 Adam steps move weights by up to ~3e-4
#: and the two runs differ by ~3e-7 (Adam divides by the gradient's size, which amplifies
#: rounding in near-zero gradients; a larger lr makes the difference proportionally larger).
WEIGHT_ATOL = 1e-5


def ddp_config(task: PreparedTask, run_dir: Path, world_size: int) -> TrainConfig:
    """Baseline, global batch 2, 6 patches: 3 optimisation steps (lr 1e-4) in the single epoch."""
    return cpu_config(task.folder, run_dir, seed=3, samples_per_epoch=6, lr=1e-4, max_epochs=1, world_size=world_size)


def run_with_torchrun(config: TrainConfig, tmp_path: Path) -> None:
    config_path = tmp_path / "torchrun_config.json"
    atomic_write_json(config_path, config.to_dict())
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "2",
            "-m",
            "l2s_core.train",
            str(config_path),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=os.environ.copy(),
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("launcher", ["spawn", "torchrun"])
def test_two_gloo_processes_reach_the_weights_of_one_process(
    prepared_task: Callable[..., PreparedTask], tmp_path: Path, launcher: str
) -> None:
    task = prepared_task(n_cases=5, shape=(16, 32, 32), organ=(4, 8, 8, 12, 20, 20), noise=0.3)
    one = train_run(ddp_config(task, tmp_path / "one", world_size=1), progress=False)
    two_config = ddp_config(task, tmp_path / "two", world_size=2)
    if launcher == "spawn":
        two = train_run(two_config, progress=False)  # world_size 2 spawns two processes
    else:
        run_with_torchrun(two_config, tmp_path)
        two = RunSummary.read(tmp_path / "two" / "summary.json")

    assert two.config.world_size == 2 and one.config.world_size == 1
    weights_one = torch.load(tmp_path / "one" / "best.pt", weights_only=True)["state_dict"]
    weights_two = torch.load(tmp_path / "two" / "best.pt", weights_only=True)["state_dict"]
    initial = ddp_initial_weights()
    for key, value in weights_one.items():
        torch.testing.assert_close(weights_two[key], value, rtol=0, atol=WEIGHT_ATOL, msg=key)
    largest_change = max((weights_one[k] - initial[k]).abs().max().item() for k in initial)
    assert largest_change > 10 * WEIGHT_ATOL  # the tolerance is small against what the steps changed
    log_one, log_two = read_log(tmp_path / "one")[0], read_log(tmp_path / "two")[0]
    assert log_two["train_loss"] == pytest.approx(log_one["train_loss"], rel=1e-5)
    assert log_two["train_dice"] == pytest.approx(log_one["train_dice"], abs=1e-3)
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["best.pt", "config.json", "log.csv", "summary.json"]


def ddp_initial_weights() -> dict[str, torch.Tensor]:
    """The weights the runs of :func:`ddp_config` start from (seed 3)."""
    torch.manual_seed(3)
    return UNet3D(base_channels=4, depth=2).state_dict()
