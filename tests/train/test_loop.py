"""The training protocol (:mod:`l2s_core.train.loop`): learning a phantom, divergence handling,
patches clipped to small images and the released code's network (the run folder's commits,
resuming and a folder of another run: ``test_commit.py``).

Tiny volumes (16, 32, 32) and U-Nets of 4 base channels and depth 2 keep every run to seconds on
the CPU; step budgets are fixed (patches per epoch, epochs), never timed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from config_builder import tiny_config

from l2s_core.checkpoint import load_model, read_checkpoint_metadata
from l2s_core.data.cache import PreparedTask
from l2s_core.errors import ConfigError
from l2s_core.losses import DiceCELoss
from l2s_core.model import UNet3D
from l2s_core.train import loop as train_loop
from l2s_core.train.launch import train_run
from l2s_core.train.run_files import read_log

# --- learning and the finished run ----------------------------------------------------------------


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
    assert metadata.epoch == summary.best_epoch and metadata.val_dice == summary.best_val_dice
    assert metadata.network == "baseline"

    before = {p.name: p.stat().st_mtime_ns for p in run_dir.iterdir()}
    assert train_run(config, progress=False) == summary
    assert {p.name: p.stat().st_mtime_ns for p in run_dir.iterdir()} == before


def test_patience_stops_the_run(phantom: PreparedTask, tmp_path: Path) -> None:
    summary = train_run(
        tiny_config(phantom, tmp_path / "run", network="localiser", lr=1e-12, patience=2, max_epochs=50), progress=False
    )
    # lr 1e-12 leaves the weights as initialised: epoch 1 is the best, then 2 epochs without improvement
    assert (summary.best_epoch, summary.epochs, summary.stop_reason) == (1, 3, "patience")


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
    assert read_checkpoint_metadata(run_dir / "best.pt").epoch == 1
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
    assert type(network).__name__ == "ReleasedCodeUNet3D" and metadata.network == "organ"
    assert network.hparams["groups"] == 2  # train.norm_groups reaches the network
    with pytest.raises(ConfigError, match="architecture"):
        tiny_config(phantom, tmp_path / "other", architecture="vnet")
