"""What a training run leaves in its run folder after every epoch, and how a restart picks it up.

The files are those of :mod:`l2s_core.train.run_files`; rank 0 alone writes them. Guarantees:

* **Atomic epochs.** An epoch is committed by :func:`commit_epoch` in this order: new best
  weights to ``best.next.pt``; ``resume.pt`` (the commit point: the weights, the optimizer, the
  random states and the log rows of every completed epoch); ``best.next.pt`` renamed to
  ``best.pt``; ``log.csv`` rewritten from the resume state's rows. Every file is written
  atomically, so a kill at any moment leaves either the previous epoch committed or this one.
* **Settling after a crash.** :func:`settle_files` makes the folder agree with the last commit
  before a restart trains on: without a ``resume.pt`` nothing was committed and the leftovers of
  the earlier attempt go; with one, a ``best.next.pt`` of the committed best epoch is moved into
  place, any other removed, and ``log.csv`` rewritten from the committed rows. No epoch is lost
  or counted twice.
* **Resume.** :func:`committed_state` is the resume state a restart continues from (``None``:
  start with :func:`fresh_state`); a run resumed from it ends with the weights of an
  uninterrupted run (bitwise on the CPU).
* **Finish.** :func:`finish_run` writes ``summary.json`` (which marks the run finished) and only
  then removes ``resume.pt``; :func:`settle_finished` removes a ``resume.pt`` that a kill between
  the two left.
* **One run per folder.** :func:`check_run_dir` refuses a folder whose ``config.json`` defines a
  different run that has progress.
"""

from __future__ import annotations

__all__ = [
    "check_run_dir",
    "commit_epoch",
    "committed_state",
    "finish_run",
    "fresh_state",
    "settle_files",
    "settle_finished",
]

import math
import os
from pathlib import Path

import torch

from l2s_core import distributed
from l2s_core.checkpoint import (
    ResumeState,
    capture_rng_states,
    load_resume_state,
    read_checkpoint_metadata,
    save_checkpoint,
    save_resume_state,
)
from l2s_core.errors import ConfigError
from l2s_core.train.config import TrainConfig, is_converged
from l2s_core.train.run_files import (
    BEST_FILE,
    CONFIG_FILE,
    LOG_FILE,
    NEXT_BEST_FILE,
    RESUME_FILE,
    SUMMARY_FILE,
    RunSummary,
    write_log,
)

#: Settings that may change when a run is resumed elsewhere (they do not define the run).
_LOCATION_FIELDS = ("prepared_dir", "run_dir", "num_workers", "device", "world_size", "compile")


def check_run_dir(config: TrainConfig) -> None:
    """Create the run folder; refuse one whose ``config.json`` defines a different run with progress."""
    run_dir = Path(config.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    has_progress = (run_dir / RESUME_FILE).exists() or (run_dir / SUMMARY_FILE).exists()
    if not (has_progress and (run_dir / CONFIG_FILE).exists()):
        return
    saved = TrainConfig.read(run_dir / CONFIG_FILE).to_dict()
    current = config.to_dict()
    differing = [k for k in current if k not in _LOCATION_FIELDS and saved[k] != current[k]]
    if differing:
        details = ", ".join(f"{k}={saved[k]!r} there, {current[k]!r} now" for k in differing)
        raise ConfigError(
            run_dir / CONFIG_FILE,
            f"this run folder holds a different run ({details}); use another run_dir or delete this one",
        )


def fresh_state() -> ResumeState:
    """The state of a run before its first epoch."""
    return ResumeState(
        model_state={},
        optimizer_state={},
        epochs_done=0,
        best_val_dice=-math.inf,
        best_epoch=0,
        epochs_since_improvement=0,
    )


def committed_state(run_dir: Path) -> ResumeState | None:
    """The resume state of the last committed epoch, or ``None`` when no epoch was committed."""
    resume_path = run_dir / RESUME_FILE
    return load_resume_state(resume_path) if resume_path.exists() else None


def commit_epoch(
    run_dir: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    state: ResumeState,
    improved: bool,
    config: TrainConfig,
) -> None:
    """Record a completed epoch on disk (rank 0).

    Order: the new best weights go to ``best.next.pt``; then ``resume.pt`` (the commit
    point); then ``best.next.pt`` is renamed to ``best.pt`` and ``log.csv`` rewritten from
    the resume state's rows. :func:`settle_files` completes or undoes an interrupted commit.
    """
    if improved:
        save_checkpoint(
            run_dir / NEXT_BEST_FILE, model, config.network, state.best_epoch, state.best_val_dice, config.seed
        )
    state.model_state = distributed.unwrap(model).state_dict()
    state.optimizer_state = optimizer.state_dict()
    state.rng = capture_rng_states()
    save_resume_state(run_dir / RESUME_FILE, state)
    if improved:
        os.replace(run_dir / NEXT_BEST_FILE, run_dir / BEST_FILE)
    write_log(run_dir, state.log_rows)


def settle_files(run_dir: Path, state: ResumeState | None) -> None:
    """Make the run folder agree with the resume state after an interruption (rank 0).

    Without a resume state nothing was committed: leftovers of an earlier attempt are
    removed. With one, a ``best.next.pt`` of the committed best epoch is moved into place
    (the commit was interrupted after ``resume.pt``), any other is removed, and ``log.csv``
    is rewritten from the committed rows, so no epoch is lost or counted twice. Temporary
    files of writes that a kill interrupted are removed.
    """
    for leftover in run_dir.glob(".*.tmp"):
        leftover.unlink()
    next_best = run_dir / NEXT_BEST_FILE
    if next_best.exists():
        if state is not None and read_checkpoint_metadata(next_best).epoch == state.best_epoch:
            os.replace(next_best, run_dir / BEST_FILE)
        else:
            next_best.unlink()
    if state is None:
        for name in (BEST_FILE, LOG_FILE):
            (run_dir / name).unlink(missing_ok=True)
    else:
        write_log(run_dir, state.log_rows)


def _summary(config: TrainConfig, state: ResumeState, diverged: bool, stop_reason: str) -> RunSummary:
    val_dices = [row["val_dice"] for row in state.log_rows]
    converged = not diverged and is_converged(
        val_dices, config.convergence_threshold, config.convergence_rule, config.convergence_epoch
    )
    return RunSummary(
        converged=converged,
        diverged=diverged,
        best_epoch=state.best_epoch if state.log_rows else None,
        best_val_dice=state.best_val_dice if state.log_rows else None,
        total_seconds=float(sum(row["wall_seconds"] for row in state.log_rows)),
        epochs=state.epochs_done,
        stop_reason=stop_reason,
        network=config.network,
        seed=config.seed,
        config=config,
    )


def finish_run(config: TrainConfig, state: ResumeState, diverged: bool, stop_reason: str) -> None:
    """Write the run's ``summary.json`` from its committed epochs, then remove ``resume.pt`` (rank 0)."""
    run_dir = Path(config.run_dir)
    _summary(config, state, diverged, stop_reason).write(run_dir / SUMMARY_FILE)
    (run_dir / RESUME_FILE).unlink(missing_ok=True)


def settle_finished(run_dir: Path) -> None:
    """Remove the ``resume.pt`` of a finished run, left by an interruption after the summary (rank 0)."""
    (run_dir / RESUME_FILE).unlink(missing_ok=True)
