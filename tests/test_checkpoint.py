"""Checkpoints and resume states: round trips, atomic writes, clear errors for bad files."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from l2s_core import checkpoint
from l2s_core.checkpoint import (
    ResumeState,
    capture_rng_states,
    load_model,
    load_resume_state,
    read_checkpoint_metadata,
    restore_rng_states,
    save_checkpoint,
    save_resume_state,
)
from l2s_core.errors import CheckpointError, FormatVersionError
from l2s_core.files import FORMAT_VERSION
from l2s_core.model import UNet3D


def small_net(**hparams) -> UNet3D:
    torch.manual_seed(0)
    return UNet3D(**{"base_channels": 4, "depth": 2, **hparams})


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def test_checkpoint_round_trip_keeps_weights_and_metadata(tmp_path: Path) -> None:
    net = small_net()
    path = tmp_path / "best.pt"
    save_checkpoint(path, net, network="organ", epoch=7, val_dice=0.75)
    loaded, metadata = load_model(path, expected_hparams={"base_channels": 4, "depth": 2})
    assert_same_weights(net, loaded)
    assert not loaded.training
    assert metadata.hparams == net.hparams
    assert metadata.network == "organ" and metadata.epoch == 7 and metadata.val_dice == 0.75
    assert metadata.network_class == "UNet3D"
    assert torch.load(path, weights_only=True)["metadata"]["format_version"] == FORMAT_VERSION
    assert read_checkpoint_metadata(path) == metadata
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt"]  # no temporary file left
    torch.load(path, weights_only=True)  # plain content only


def test_expected_hparams_that_differ_are_named(tmp_path: Path) -> None:
    path = tmp_path / "best.pt"
    save_checkpoint(path, small_net(), epoch=1)
    with pytest.raises(CheckpointError, match=r"best\.pt.*base_channels=4 \(expected 8\)"):
        load_model(path, expected_hparams={"base_channels": 8, "depth": 2})


def test_weights_of_another_architecture_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "mixed.pt"
    metadata = {"hparams": small_net().hparams, "network_class": "UNet3D", "format_version": FORMAT_VERSION}
    torch.save({"state_dict": small_net(base_channels=8).state_dict(), "metadata": metadata}, path)
    with pytest.raises(CheckpointError, match=r"mixed\.pt.*weights do not fit.*shape"):
        load_model(path)
    deeper = {"hparams": small_net().hparams, "network_class": "UNet3D", "format_version": FORMAT_VERSION}
    torch.save({"state_dict": small_net(depth=3).state_dict(), "metadata": deeper}, path)
    with pytest.raises(CheckpointError, match="unexpected keys"):
        load_model(path)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "missing"])
def test_damaged_or_missing_file_raises_checkpoint_error(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "best.pt"
    save_checkpoint(path, small_net(), epoch=1)
    data = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"not a checkpoint at all" * 10)
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        path.unlink()
    with pytest.raises(CheckpointError, match=r"best\.pt: "):
        load_model(path)


def test_other_format_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "old.pt"
    net = small_net()
    torch.save(
        {
            "state_dict": net.state_dict(),
            "metadata": {"hparams": net.hparams, "network_class": "UNet3D", "format_version": FORMAT_VERSION + 1},
        },
        path,
    )
    with pytest.raises(FormatVersionError, match="format_version"):
        load_model(path)


def test_metadata_must_be_plain_json(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="metadata must be plain JSON"):
        save_checkpoint(tmp_path / "best.pt", small_net(), epoch=object())  # type: ignore[arg-type]
    assert not any(tmp_path.iterdir())


def test_failed_write_leaves_previous_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "best.pt"
    save_checkpoint(path, small_net(), epoch=1)
    before = path.read_bytes()

    def failing_save(obj, handle) -> None:
        handle.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint.torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, small_net(base_channels=8), {"epoch": 2})
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt"]


def test_resume_state_round_trip_restores_optimizer_and_random_generators(tmp_path: Path) -> None:
    net = small_net()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    net(torch.randn(1, 1, 8, 8, 8)).sum().backward()
    optimizer.step()
    torch.manual_seed(5)
    np.random.seed(6)
    random.seed(7)
    state = ResumeState(
        model_state=net.state_dict(),
        optimizer_state=optimizer.state_dict(),
        epochs_done=3,
        best_val_dice=0.5,
        best_epoch=2,
        epochs_since_improvement=1,
        log_rows=[{"epoch": 1, "val_dice": 0.1}],
        rng=capture_rng_states(),
    )
    expected_draws = (torch.rand(3), np.random.rand(3), random.random())
    path = tmp_path / "resume.pt"
    save_resume_state(path, state)
    torch.load(path, weights_only=True)  # plain content only

    loaded = load_resume_state(path)
    restore_rng_states(loaded.rng)
    assert torch.equal(torch.rand(3), expected_draws[0])
    assert np.array_equal(np.random.rand(3), expected_draws[1])
    assert random.random() == expected_draws[2]
    assert (loaded.epochs_done, loaded.best_val_dice, loaded.best_epoch, loaded.epochs_since_improvement) == (
        3,
        0.5,
        2,
        1,
    )
    assert loaded.log_rows == [{"epoch": 1, "val_dice": 0.1}]
    fresh = small_net(base_channels=4)
    fresh_optimizer = torch.optim.Adam(fresh.parameters(), lr=1e-3)
    fresh.load_state_dict(loaded.model_state)
    fresh_optimizer.load_state_dict(loaded.optimizer_state)
    assert_same_weights(net, fresh)
    assert torch.equal(
        fresh_optimizer.state_dict()["state"][0]["exp_avg"], optimizer.state_dict()["state"][0]["exp_avg"]
    )


def test_truncated_resume_state_raises_checkpoint_error(tmp_path: Path) -> None:
    path = tmp_path / "resume.pt"
    path.write_bytes(b"PK\x03\x04 broken zip")
    with pytest.raises(CheckpointError, match=r"resume\.pt: cannot be read"):
        load_resume_state(path)


def test_metadata_of_a_wrong_type_is_one_checkpoint_error_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "best.pt"
    net = small_net()
    metadata = {"hparams": net.hparams, "network_class": "UNet3D", "epoch": "seven", "format_version": FORMAT_VERSION}
    torch.save({"state_dict": net.state_dict(), "metadata": metadata}, path)
    with pytest.raises(CheckpointError, match=r"best\.pt: metadata\.epoch: expected int") as caught:
        read_checkpoint_metadata(path)
    assert "\n" not in str(caught.value)
