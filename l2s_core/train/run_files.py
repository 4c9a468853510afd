"""The files of one training run folder (``<organ>/<network>/run_<ii>/``); no torch.

=================  =========================================================================
file               content
=================  =========================================================================
``config.json``    the run's :class:`~l2s_core.train.config.TrainConfig`, written at the start
``log.csv``        one row per completed epoch (:data:`LOG_COLUMNS`)
``best.pt``        the best weights so far (state dict and plain metadata)
``best.next.pt``   new best weights while an epoch is being committed
``resume.pt``      the resume state while the run is unfinished
``summary.json``   the :class:`RunSummary`, written once at the end; it marks the run finished
=================  =========================================================================

Reading these needs no torch, so tables, plots and the study plan can read runs cheaply.
"""

from __future__ import annotations

__all__ = [
    "BEST_FILE",
    "CONFIG_FILE",
    "LOG_COLUMNS",
    "LOG_FILE",
    "NEXT_BEST_FILE",
    "RESUME_FILE",
    "SUMMARY_FILE",
    "FinishedRun",
    "RunSummary",
    "finished_runs",
    "finished_summary",
    "read_log",
    "write_log",
]

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from l2s_core.files import atomic_write_text
from l2s_core.records import Record
from l2s_core.train.config import TrainConfig

CONFIG_FILE = "config.json"
LOG_FILE = "log.csv"
BEST_FILE = "best.pt"
NEXT_BEST_FILE = "best.next.pt"
RESUME_FILE = "resume.pt"
SUMMARY_FILE = "summary.json"
#: Columns of ``log.csv``: epoch (from 1), wall seconds of its training and validation, mean
#: training loss, hard training Dice pooled over the epoch's items, validation Dice.
LOG_COLUMNS = ("epoch", "wall_seconds", "train_loss", "train_dice", "val_dice")


def write_log(run_dir: Path, rows: list[dict[str, float]]) -> None:
    """Write ``log.csv`` atomically from the rows of the completed epochs."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=LOG_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(run_dir / LOG_FILE, buffer.getvalue())


def read_log(run_dir: str | Path) -> list[dict[str, float]]:
    """The rows of a run's ``log.csv`` (epoch as int, the other columns as float)."""
    with open(Path(run_dir) / LOG_FILE, newline="", encoding="utf-8") as handle:
        return [{k: int(v) if k == "epoch" else float(v) for k, v in row.items()} for row in csv.DictReader(handle)]


@dataclass(frozen=True)
class RunSummary(Record):
    """Content of a finished run's ``summary.json``.

    Attributes:
        converged: the run reached the convergence threshold by its rule (and did not diverge).
        diverged: a non-finite loss or gradient stopped the run.
        best_epoch: the epoch of the best validation Dice (``None`` when no epoch completed).
        best_val_dice: the best validation Dice (``None`` when no epoch completed).
        total_seconds: the epochs' wall-clock seconds, summed across interruptions.
        epochs: epochs completed.
        stop_reason: ``patience``, ``max_epochs`` or ``diverged``.
        network: ``baseline``, ``localiser`` or ``organ``.
        seed: the run's seed (its index in a study).
        config: the run's settings.
    """

    converged: bool
    diverged: bool
    best_epoch: int | None
    best_val_dice: float | None
    total_seconds: float
    epochs: int
    stop_reason: str
    network: str
    seed: int
    config: TrainConfig


def finished_summary(run_dir: str | Path) -> RunSummary | None:
    """The summary of a finished run, or ``None`` while it is unfinished.

    Raises:
        InputDataError: an unreadable ``summary.json``.
    """
    path = Path(run_dir) / SUMMARY_FILE
    return RunSummary.read(path) if path.exists() else None


@dataclass(frozen=True)
class FinishedRun:
    """A finished training run: its network, run index, folder and ``summary.json``.

    Attributes:
        network: ``baseline``, ``localiser`` or ``organ``.
        index: the run index ``ii`` of its folder ``run_ii``.
        folder: the run folder.
        summary: its summary.
    """

    network: str
    index: int
    folder: Path
    summary: RunSummary

    @property
    def converged(self) -> bool:
        """Whether the run converged and left its best weights."""
        return self.summary.converged and (self.folder / BEST_FILE).is_file()


def finished_runs(organ_dir: str | Path, network: str) -> list[FinishedRun]:
    """The finished runs (folders ``<organ_dir>/<network>/run_<ii>`` with a ``summary.json``) of one
    network of an organ, in order of run index; the one place that finds runs on disk."""
    runs = []
    for folder in (Path(organ_dir) / network).glob("run_*"):
        number = folder.name.removeprefix("run_")
        if number.isdigit() and (folder / SUMMARY_FILE).is_file():
            runs.append(FinishedRun(network, int(number), folder, RunSummary.read(folder / SUMMARY_FILE)))
    return sorted(runs, key=lambda run: run.index)
