"""The run folder's side of training (:mod:`l2s_core.train.commit`): what an epoch's commit
leaves on disk, settling the folder after an interrupted commit, finishing a run, resuming after
a kill and refusing a folder of another run.

The unit tests build the files directly with a tiny U-Net; the others train tiny volumes
(16, 32, 32) with U-Nets of 4 base channels and depth 2, seconds on the CPU.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from config_builder import cpu_config, tiny_config

from l2s_core.checkpoint import ResumeState, read_checkpoint_metadata, save_checkpoint
from l2s_core.data.cache import PreparedTask
from l2s_core.errors import ConfigError
from l2s_core.files import atomic_write_json
from l2s_core.model import UNet3D
from l2s_core.train.commit import (
    commit_epoch,
    committed_state,
    finish_run,
    fresh_state,
    settle_files,
    settle_finished,
)
from l2s_core.train.launch import train_run
from l2s_core.train.run_files import RunSummary, read_log, write_log


def state_dict_of(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["state_dict"]


def assert_same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def log_without_times(run_dir: Path) -> list[dict[str, float]]:
    return [{k: v for k, v in row.items() if k != "wall_seconds"} for row in read_log(run_dir)]


def row(epoch: int, val_dice: float) -> dict[str, float]:
    return {"epoch": epoch, "wall_seconds": 1.0, "train_loss": 0.5, "train_dice": 0.5, "val_dice": val_dice}


def tiny_network() -> UNet3D:
    return UNet3D(base_channels=2, depth=1)


def committed(best_epoch: int, rows: list[dict[str, float]]) -> ResumeState:
    """A resume state after ``rows``, its best epoch ``best_epoch``."""
    state = fresh_state()
    state.epochs_done, state.best_epoch, state.log_rows = len(rows), best_epoch, rows
    state.best_val_dice = rows[best_epoch - 1]["val_dice"]
    return state


def save_weights_of_epoch(path: Path, epoch: int) -> None:
    save_checkpoint(path, tiny_network(), "baseline", epoch, 0.5, 0)


# --- committing an epoch and finishing ----------------------------------------------------------


def test_an_epoch_commit_leaves_best_weights_resume_state_and_log(tmp_path: Path) -> None:
    config = cpu_config(tmp_path, tmp_path / "run", max_epochs=2)
    run_dir = Path(config.run_dir)
    run_dir.mkdir()
    model = tiny_network()
    optimizer = torch.optim.Adam(model.parameters())
    state = fresh_state()
    assert committed_state(run_dir) is None
    assert (state.epochs_done, state.best_epoch, state.best_val_dice) == (0, 0, -math.inf)

    state.epochs_done, state.best_epoch, state.best_val_dice = 1, 1, 0.25
    state.log_rows.append(row(1, 0.25))
    commit_epoch(run_dir, model, optimizer, state, improved=True, config=config)
    assert sorted(p.name for p in run_dir.iterdir()) == ["best.pt", "log.csv", "resume.pt"]
    assert read_checkpoint_metadata(run_dir / "best.pt").epoch == 1
    state.epochs_done = 2
    state.log_rows.append(row(2, 0.125))
    commit_epoch(run_dir, model, optimizer, state, improved=False, config=config)
    assert read_checkpoint_metadata(run_dir / "best.pt").epoch == 1  # not improved: the best stays
    assert read_log(run_dir) == [row(1, 0.25), row(2, 0.125)]
    resumed = committed_state(run_dir)
    assert resumed is not None and (resumed.epochs_done, resumed.best_epoch) == (2, 1)
    assert resumed.log_rows == state.log_rows
    assert_same_state(resumed.model_state, model.state_dict())

    finish_run(config, state, diverged=False, stop_reason="max_epochs")
    assert sorted(p.name for p in run_dir.iterdir()) == ["best.pt", "log.csv", "summary.json"]
    summary = RunSummary.read(run_dir / "summary.json")
    assert (summary.epochs, summary.best_epoch, summary.best_val_dice) == (2, 1, 0.25)
    assert summary.total_seconds == 2.0 and summary.stop_reason == "max_epochs" and summary.config == config


def test_a_finished_run_settles_a_resume_state_left_after_its_summary(tmp_path: Path) -> None:
    (tmp_path / "resume.pt").write_bytes(b"left by a kill after summary.json")
    settle_finished(tmp_path)
    assert not (tmp_path / "resume.pt").exists()


# --- settling after an interruption ---------------------------------------------------------------


def test_settling_without_a_commit_removes_the_earlier_attempts_files(tmp_path: Path) -> None:
    save_weights_of_epoch(tmp_path / "best.pt", 1)
    save_weights_of_epoch(tmp_path / "best.next.pt", 2)
    write_log(tmp_path, [row(1, 0.5)])
    (tmp_path / ".resume.pt.tmp").write_bytes(b"half written")
    (tmp_path / "config.json").write_text("{}")
    settle_files(tmp_path, None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]


def test_settling_completes_a_commit_interrupted_after_the_resume_state(tmp_path: Path) -> None:
    save_weights_of_epoch(tmp_path / "best.pt", 1)
    save_weights_of_epoch(tmp_path / "best.next.pt", 2)  # epoch 2's best, committed in resume.pt, not renamed
    write_log(tmp_path, [row(1, 0.5)])
    settle_files(tmp_path, committed(2, [row(1, 0.5), row(2, 0.75)]))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "log.csv"]
    assert read_checkpoint_metadata(tmp_path / "best.pt").epoch == 2
    assert read_log(tmp_path) == [row(1, 0.5), row(2, 0.75)]


def test_settling_undoes_best_weights_of_an_uncommitted_epoch(tmp_path: Path) -> None:
    save_weights_of_epoch(tmp_path / "best.pt", 1)
    save_weights_of_epoch(tmp_path / "best.next.pt", 3)  # epoch 3 was killed before its resume.pt
    write_log(tmp_path, [row(1, 0.5), row(2, 0.25), row(3, 0.75)])
    (tmp_path / ".log.csv.tmp").write_text("half written")
    settle_files(tmp_path, committed(1, [row(1, 0.5), row(2, 0.25)]))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "log.csv"]
    assert read_checkpoint_metadata(tmp_path / "best.pt").epoch == 1
    assert [r["epoch"] for r in read_log(tmp_path)] == [1, 2]


# --- a folder of another run --------------------------------------------------------------------


def test_run_folder_of_another_run_is_refused(phantom: PreparedTask, tmp_path: Path) -> None:
    run_dir = tmp_path / "run_00"
    train_run(tiny_config(phantom, run_dir, network="localiser", max_epochs=1), progress=False)
    with pytest.raises(
        ConfigError, match=r"config\.json: this run folder holds a different run \(seed=0 there, 1 now\)"
    ):
        train_run(tiny_config(phantom, run_dir, network="localiser", max_epochs=1, seed=1), progress=False)


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
