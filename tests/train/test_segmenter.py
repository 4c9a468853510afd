"""A run's network predicts through the window it trained with."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from config_builder import cpu_config

from l2s_core.errors import CheckpointError
from l2s_core.evaluate import converged_runs
from l2s_core.model import UNet3D
from l2s_core.train.segmenter import load_segmenter, run_segmenter


def test_run_segmenter_takes_the_runs_patch_overlap_autocast_and_compile(tmp_path: Path) -> None:
    config = cpu_config(tmp_path, tmp_path, patch_size=(8, 24, 16), sw_overlap=0.5, amp=True, compile=False)
    segmenter = run_segmenter(UNet3D(depth=1, base_channels=4), config, sw_batch_size=3)
    assert (segmenter.patch_size, segmenter.overlap, segmenter.sw_batch_size) == ((8, 24, 16), 0.5, 3)
    assert segmenter.amp and segmenter.compile is False and segmenter.multiple == 2


def test_load_segmenter_loads_the_best_network_of_a_finished_run(study_dir: Path) -> None:
    run = converged_runs(study_dir / "spleen", "organ")[0]
    segmenter = load_segmenter(run, "cpu")
    assert segmenter.patch_size == run.summary.config.patch_size
    best = torch.load(run.folder / "best.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(best[k], v) for k, v in segmenter.model.state_dict().items())


def test_an_unreadable_best_checkpoint_is_a_checkpoint_error(study_dir: Path, tmp_path: Path) -> None:
    organ = tmp_path / "spleen"
    shutil.copytree(study_dir / "spleen" / "organ", organ / "organ")
    run = converged_runs(organ, "organ")[0]
    (run.folder / "best.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        load_segmenter(run, "cpu")
