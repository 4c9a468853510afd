"""Training configs small enough for the CPU, shared by the tests that train."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from l2s_core.data.cache import PreparedTask
from l2s_core.train.config import TrainConfig

#: A tiny U-Net on the CPU: 4 base channels, depth 2, 16³ patches, batch 2, lr 3e-3.
CPU_SETTINGS: dict[str, Any] = {
    "seed": 0,
    "base_channels": 4,
    "depth": 2,
    "patch_size": (16, 16, 16),
    "batch_size": 2,
    "lr": 3e-3,
    "device": "cpu",
}


def cpu_config(
    prepared_dir: str | Path, run_dir: str | Path, network: str = "baseline", **overrides: Any
) -> TrainConfig:
    """A :class:`TrainConfig` of :data:`CPU_SETTINGS`, with ``overrides`` replacing any field."""
    return TrainConfig(
        prepared_dir=str(prepared_dir), run_dir=str(run_dir), network=network, **{**CPU_SETTINGS, **overrides}
    )


def tiny_config(task: PreparedTask, run_dir: Path, **overrides: Any) -> TrainConfig:
    """A run small enough for the CPU: baseline patches of 16³, 8 per epoch, lr 3e-3."""
    return cpu_config(task.folder, run_dir, **{"samples_per_epoch": 8, "patience": 20, "max_epochs": 3, **overrides})
