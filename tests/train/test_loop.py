"""The training protocol (:mod:`l2s_core.train.loop`): learning a phantom, the run folder,
resuming after a kill, divergence handling, patches clipped to small images and the released
code's network.

Tiny volumes (16, 32, 32) and U-Nets of 4 base channels and depth 2 keep every run to seconds on
the CPU; step budgets are fixed (patches per epoch, epochs), never timed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from config_builder import cpu_config

from l2s_core.checkpoint import load_model, read_checkpoint_metadata
from l2s_core.data.cache import PreparedTask
from l2s_core.errors import ConfigError
from l2s_core.files import atomic_write_json
from l2s_core.losses import DiceCELoss
from l2s_core.model import UNet3D
from l2s_core.train import loop as train_loop
from l2s_core.train.config import TrainConfig
from l2s_core.train.launch import train_run
from l2s_core.train.run_files import read_log

SHAPE = (16, 32, 32)
#: One cuboid organ per case (z0, y0, x0, z1, y1, x1), placed differently in each case.
ORGANS = [(3 + i % 3, 6 + 2 * i, 8, 11 + i % 3, 18 + 2 * i, 20) for i in range(5)]


@pytest.fixture
def phantom(prepared_task: Callable[..., PreparedTask]) -> PreparedTask:
    """Five bright cuboids on noise, prepared (3 training, 1 validation, 1 test case)."""
    return prepared_task(n_cases=5, shape=SHAPE, organ=ORGANS, noise=0.3)


def tiny_config(task: PreparedTask, run_dir: Path, **overrides) -> TrainConfig:
    """A run small enough for the CPU: baseline patches of 16³, 8 per epoch, lr 3e-3."""
    return cpu_config(task.folder, run_dir, **{"samples_per_epoch": 8, "patience": 20, "max_epochs": 3, **overrides})


def state_dict_of(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["state_dict"]


def assert_same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def log_without_times(run_dir: Path) -> list[dict[str, float]]:
    return [{k: v for k, v in row.items() if k != "wall_seconds"} for row in read_log(run_dir)]


# --- learning and the run folder ---------------------------------------------------------------


def test_baseline_learns_the_phantom_and_a_finished_run_is_not_trained_again(
    phantom: PreparedTask, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run_00"
    config = tiny_config(phantom, run_dir, max_epochs=8)
    summary = train_run(config, progress=False)

    assert summary.best_val_dice > 0.8
    assert summary.converged and not summary.diverged
    assert summary.epochs == 8 and summary.stop_reason == "max_epochs"
    assert summary.config == config and summary.network == "baseline" and summary.seed == 0
    rows = read_log(run_dir)
    assert [r["epoch"] for r in rows] == list(range(1, 9))
    assert max(r["val_dice"] for r in rows) == summary.best_val_dice
    assert rows[-1]["train_dice"] > 0.8
    assert summary.total_seconds == pytest.approx(sum(r["wall_seconds"] for r in rows))
    assert sorted(p.name for p in run_dir.iterdir()) == ["best.pt", "config.json", "log.csv", "summary.json"]
    model, metadata = load_model(run_dir / "best.pt", expected_hparams={"base_channels": 4, "depth": 2})
    assert metadata["epoch"] == summary.best_epoch and metadata["val_dice"] == summary.best_val_dice
    assert metadata["network"] == "baseline"

    before = {p.name: p.stat().st_mtime_ns for p in run_dir.iterdir()}
    assert train_run(config, progress=False) == summary
    assert {p.name: p.stat().st_mtime_ns for p in run_dir.iterdir()} == before


def test_run_folder_of_another_run_is_refused(phantom: PreparedTask, tmp_path: Path) -> None:
    run_dir = tmp_path / "run_00"
    train_run(tiny_config(phantom, run_dir, network="localiser", max_epochs=1), progress=False)
    with pytest.raises(
        ConfigError, match=r"config\.json: this run folder holds a different run \(seed=0 there, 1 now\)"
    ):
        train_run(tiny_config(phantom, run_dir, network="localiser", max_epochs=1, seed=1), progress=False)


def test_patience_stops_the_run(phantom: PreparedTask, tmp_path: Path) -> None:
    summary = train_run(
        tiny_config(phantom, tmp_path / "run", network="localiser", lr=1e-12, patience=2, max_epochs=50), progress=False
    )
    # lr 1e-12 leaves the weights as initialised: epoch 1 is the best, then 2 epochs without improvement
    assert (summary.best_epoch, summary.epochs, summary.stop_reason) == (1, 3, "patience")


# --- resuming ---------------------------------------------------------------------------------


def start_training(config_path: Path) -> subprocess.Popen:
    """``python -m l2s_core.train CONFIG`` with one thread, so that two such runs compute alike."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "l2s_core.train", str(config_path), "--no-progress"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def completed_epochs(run_dir: Path) -> int:
    try:
        return len(read_log(run_dir))
    except (FileNotFoundError, KeyError, ValueError):
        return 0


def test_killed_training_process_resumes_to_the_weights_of_an_uninterrupted_run(
    phantom: PreparedTask, tmp_path: Path
) -> None:
    config_path = tmp_path / "killed.json"
    atomic_write_json(config_path, tiny_config(phantom, tmp_path / "killed", max_epochs=5).to_dict())
    killed = start_training(config_path)
    deadline = time.monotonic() + 120
    while completed_epochs(tmp_path / "killed") < 2 and killed.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait()
    assert killed.returncode == -signal.SIGKILL, killed.stderr.read()
    assert not (tmp_path / "killed" / "summary.json").exists()  # the kill interrupted the run
    assert (tmp_path / "killed" / "resume.pt").exists()

    resumed = start_training(config_path)
    # meanwhile, the uninterrupted run in this process (one thread, as in the subprocesses)
    train_run(tiny_config(phantom, tmp_path / "reference", max_epochs=5), progress=False)
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert json.loads(out.strip().splitlines()[-1])["epochs"] == 5

    assert_same_state(state_dict_of(tmp_path / "killed" / "best.pt"), state_dict_of(tmp_path / "reference" / "best.pt"))
    assert log_without_times(tmp_path / "killed") == log_without_times(tmp_path / "reference")
    assert [r["epoch"] for r in read_log(tmp_path / "killed")] == [1, 2, 3, 4, 5]
    assert sorted(p.name for p in (tmp_path / "killed").iterdir()) == [
        "best.pt",
        "config.json",
        "log.csv",
        "summary.json",
    ]


# --- divergence -----------------------------------------------------------------------------


def test_nan_in_the_images_marks_the_run_diverged(phantom: PreparedTask, tmp_path: Path) -> None:
    for case in phantom.cases("train"):
        image = np.load(case.folder / "lowres_image.npy", mmap_mode="r+")
        image[0, 0, 0] = np.nan
        image.flush()
    run_dir = tmp_path / "run"
    summary = train_run(tiny_config(phantom, run_dir, network="localiser"), progress=False)
    assert summary.diverged and not summary.converged
    assert (summary.epochs, summary.best_epoch, summary.best_val_dice) == (0, None, None)
    assert summary.stop_reason == "diverged"
    assert not (run_dir / "resume.pt").exists() and not (run_dir / "best.pt").exists()


def test_nan_loss_in_a_later_epoch_keeps_the_best_checkpoint(
    phantom: PreparedTask, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class LossTurningNaN(DiceCELoss):
        """The real loss for the first two steps (epoch 1: 3 images, batch 2), then NaN."""

        calls = 0

        def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            LossTurningNaN.calls += 1
            loss = super().forward(logits, target)
            return loss if LossTurningNaN.calls <= 2 else loss * float("nan")

    monkeypatch.setattr(train_loop, "DiceCELoss", LossTurningNaN)
    run_dir = tmp_path / "run"
    summary = train_run(
        tiny_config(phantom, run_dir, network="localiser", convergence_threshold=0.0, samples_per_epoch=None),
        progress=False,
    )
    assert summary.diverged and not summary.converged
    assert summary.epochs == 1 and summary.best_epoch == 1
    assert [r["epoch"] for r in read_log(run_dir)] == [1]
    assert read_checkpoint_metadata(run_dir / "best.pt")["epoch"] == 1
    assert not (run_dir / "resume.pt").exists()


# --- patches and networks ----------------------------------------------------------------------


@pytest.mark.parametrize("network", ["baseline", "localiser", "organ"])
def test_images_thinner_than_the_patch_train_on_clipped_patches(
    phantom: PreparedTask, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, network: str
) -> None:
    seen: list[tuple[int, ...]] = []
    forward = UNet3D.forward

    def recording_forward(self: UNet3D, images: torch.Tensor) -> torch.Tensor:
        seen.append(tuple(images.shape[2:]))
        return forward(self, images)

    monkeypatch.setattr(UNet3D, "forward", recording_forward)
    patch = (64, 16, 16)  # deeper than every image (16 slices, 5 at low resolution), narrower in y and x
    summary = train_run(
        tiny_config(phantom, tmp_path / "run", network=network, patch_size=patch, max_epochs=1), progress=False
    )
    assert summary.epochs == 1
    assert seen and all(all(side <= p for side, p in zip(shape, patch)) for shape in seen)
    assert all(shape[0] < 64 for shape in seen)  # clipped to the image, padded only to the size multiple


def test_released_code_network_and_loss_train_and_are_checkpointed(phantom: PreparedTask, tmp_path: Path) -> None:
    config = tiny_config(
        phantom,
        tmp_path / "run",
        network="organ",
        architecture="released_code",
        base_channels=4,
        norm_groups=2,
        dice_form="batch_if_foreground",
        ce_weight=0.3,
        max_epochs=2,
        convergence_threshold=0.0,
    )
    summary = train_run(config, progress=False)
    assert summary.epochs == 2 and summary.config.architecture == "released_code"
    network, metadata = load_model(tmp_path / "run" / "best.pt")
    assert type(network).__name__ == "ReleasedCodeUNet3D" and metadata["network"] == "organ"
    assert network.hparams["groups"] == 2  # train.norm_groups reaches the network
    with pytest.raises(ConfigError, match="architecture"):
        tiny_config(phantom, tmp_path / "other", architecture="vnet")
