"""The paper's training protocol for one network (baseline, localiser or organ network).

Adam (learning rate 1e-4) on the soft Dice + cross-entropy loss; after every epoch the
validation Dice (pooled over the validation cases) decides whether the weights are the best
so far, which alone are kept (``best.pt``); training stops after ``patience`` epochs without
improvement. What each network sees:

* baseline: ``samples_per_epoch`` random full-resolution patches per epoch, 80 % holding
  organ; validated by a sliding window of the patch size over the ``full`` images.
* localiser: each ``lowres`` training image once per epoch; validated on the whole
  ``lowres`` images.
* organ network: each ``crop`` training image once per epoch; validated on the whole
  ``crop`` images.

A run folder holds ``config.json`` (written at the start), ``log.csv`` (one row per completed
epoch, counting from 1: epoch, wall_seconds of the epoch's training and validation, train_loss
(mean over the epoch's items), train_dice (hard Dice pooled over the epoch's items, from the
logits of the training steps), val_dice), ``best.pt``, ``resume.pt`` while the run is
unfinished and ``summary.json`` at the end. Every file is
written atomically. A run started again on its folder continues after its last completed
epoch and ends with the weights of an uninterrupted run (bitwise on the CPU); a finished run
is not trained again.

The same code runs in one process (CPU or one GPU) or in several data-parallel processes
(:mod:`l2s_core.distributed`): ``torchrun --nproc-per-node 2 -m l2s_core.train CONFIG.json``,
or :func:`train_run_parallel` from Python.

Example:
    >>> config = TrainConfig(prepared_dir="prepared/spleen", run_dir="runs/spleen/organ/run_00",
    ...                      network="organ", seed=0)  # doctest: +SKIP
    >>> summary = train_run(config)  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import io
import json
import math
import os
import sys
import time
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm.auto import tqdm

from l2s_core import distributed
from l2s_core.checkpoint import (ResumeState, capture_rng_states, load_resume_state, read_checkpoint_metadata,
                                 restore_rng_states, save_checkpoint, save_resume_state)
from l2s_core.data.cache import PreparedTask
from l2s_core.distributed import ProcessContext
from l2s_core.errors import ConfigError, FormatVersionError, InputDataError, L2SError
from l2s_core.files import FORMAT_VERSION, atomic_write_json, atomic_write_text, read_json
from l2s_core.infer import predict_sliding_window, predict_whole
from l2s_core.losses import DiceCELoss, hard_dice_counts
from l2s_core.metrics import confusion_counts, dice_from_counts
from l2s_core.model import UNet3D
from l2s_core.sampling import BaselinePatchDataset, WholeImageDataset, pad_collate

NETWORKS = ("baseline", "localiser", "organ")
CONVERGENCE_RULES = ("best_over_run", "after_patience_epochs")
#: Cache level each network trains and is validated on.
LEVEL_OF_NETWORK = {"baseline": "full", "localiser": "lowres", "organ": "crop"}
LOG_COLUMNS = ("epoch", "wall_seconds", "train_loss", "train_dice", "val_dice")

CONFIG_FILE = "config.json"
LOG_FILE = "log.csv"
BEST_FILE = "best.pt"
NEXT_BEST_FILE = "best.next.pt"
RESUME_FILE = "resume.pt"
SUMMARY_FILE = "summary.json"

#: Settings that may change when a run is resumed elsewhere (they do not define the run).
_LOCATION_FIELDS = ("prepared_dir", "run_dir", "num_workers", "device", "world_size")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run; saved as the run's ``config.json``.

    Attributes:
        prepared_dir: prepared task folder (:mod:`l2s_core.data.prepare`).
        run_dir: folder of this run (created).
        network: ``"baseline"``, ``"localiser"`` or ``"organ"``.
        seed: seed of the weight initialisation and of the training items.
        base_channels: U-Net channels at full resolution.
        depth: U-Net poolings; image sides are padded to multiples of ``2**depth``.
        patch_size: ``(z, y, x)`` patch of the baseline (training and sliding window).
        batch_size: global batch, split evenly across the processes.
        samples_per_epoch: baseline patches per epoch (the paper does not state it); the
            localiser and organ network see each training image once per epoch.
        foreground_probability: share of baseline patches that must contain organ.
        lr: Adam learning rate.
        patience: stop after this many epochs without a higher validation Dice.
        max_epochs: stop after this many epochs at the latest.
        convergence_threshold: validation Dice a converged run must reach.
        convergence_rule: ``"best_over_run"`` (the paper's code: best validation Dice ≥
            threshold) or ``"after_patience_epochs"`` (the paper's text: validation Dice ≥
            threshold at some epoch ≥ ``convergence_epoch``).
        convergence_epoch: first epoch (counting from 1) that counts for
            ``"after_patience_epochs"``.
        dice_weight: weight of the soft Dice term of the loss.
        ce_weight: weight of the cross-entropy term of the loss.
        sw_overlap: overlap of the baseline's sliding windows at validation.
        num_workers: DataLoader worker processes per training process.
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        amp: bfloat16 autocast (CUDA only; no effect on the CPU).
        world_size: data-parallel processes :func:`train_run` starts (``torchrun`` sets its own).
        deterministic: on the CPU, deterministic algorithms (bitwise reproducible runs); on
            GPUs, cuDNN's deterministic convolutions without autotuning (closer, not bitwise,
            reproducibility, at some speed cost; ``False`` lets cuDNN pick the fastest).
    """

    prepared_dir: str
    run_dir: str
    network: str
    seed: int = 0
    base_channels: int = 8
    depth: int = 3
    patch_size: tuple[int, int, int] = (64, 256, 256)
    batch_size: int = 2
    samples_per_epoch: int = 250
    foreground_probability: float = 0.8
    lr: float = 1e-4
    patience: int = 20
    max_epochs: int = 1000
    convergence_threshold: float = 0.1
    convergence_rule: str = "best_over_run"
    convergence_epoch: int = 20
    dice_weight: float = 1.0
    ce_weight: float = 1.0
    sw_overlap: float = 0.25
    num_workers: int = 0
    device: str = "auto"
    amp: bool = False
    world_size: int = 1
    deterministic: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "patch_size", tuple(self.patch_size))
        checks = [
            ("network", self.network in NETWORKS, f"must be one of {', '.join(NETWORKS)}"),
            ("convergence_rule", self.convergence_rule in CONVERGENCE_RULES, f"must be one of {', '.join(CONVERGENCE_RULES)}"),
            ("patch_size", self.network != "baseline" or (
                len(self.patch_size) == 3 and all(s >= 1 and s % 2**self.depth == 0 for s in self.patch_size)),
             f"needs three sides (z, y, x), each a positive multiple of 2**depth = {2**self.depth}"),
            ("world_size", self.world_size >= 1, "must be at least 1"),
            ("batch_size", self.batch_size >= 1 and self.batch_size % self.world_size == 0,
             f"must be a positive multiple of world_size ({self.world_size}), the global batch is split across processes"),
            ("lr", self.lr > 0, "must be positive"),
            ("sw_overlap", 0 <= self.sw_overlap < 1, "must lie in [0, 1)"),
            ("foreground_probability", 0 <= self.foreground_probability <= 1, "must lie in [0, 1]"),
        ]
        checks += [(name, getattr(self, name) >= 1, "must be at least 1")
                   for name in ("base_channels", "depth", "samples_per_epoch", "patience", "max_epochs", "convergence_epoch")]
        checks += [("num_workers", self.num_workers >= 0, "must not be negative")]
        for name, valid, problem in checks:
            if not valid:
                raise ConfigError(f"train config {name}", f"{problem}, got {getattr(self, name)!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (``patch_size`` as a list)."""
        return {**dataclasses.asdict(self), "patch_size": list(self.patch_size)}

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "train config") -> TrainConfig:
        """Build a config from a dict such as :meth:`to_dict` gives (``format_version`` allowed).

        Args:
            values: field name → value.
            source: named in error messages (e.g. the config file).

        Raises:
            ConfigError: an unknown or missing key, a value of the wrong type or out of range.
            FormatVersionError: a ``format_version`` this l2s does not read.
        """
        values = dict(values)
        version = values.pop("format_version", FORMAT_VERSION)
        if version != FORMAT_VERSION:
            raise FormatVersionError(source, f"format_version {version!r}, this l2s reads version {FORMAT_VERSION}")
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for key in values:
            if key not in fields:
                raise ConfigError(f"{source} {key}", f"unknown key; known keys: {', '.join(fields)}")
        missing = [name for name, f in fields.items() if f.default is dataclasses.MISSING and name not in values]
        if missing:
            raise ConfigError(f"{source} {missing[0]}", "required key missing")
        return cls(**{key: _typed_value(f"{source} {key}", hints[key], value) for key, value in values.items()})

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        """Read a config from a JSON file (``format_version`` optional).

        Raises:
            ConfigError: unreadable JSON or an invalid config (the message names the file and key).
        """
        path = Path(path)
        try:
            values = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(path, f"cannot read the training config ({exc})") from None
        if not isinstance(values, dict):
            raise ConfigError(path, "expected a JSON object")
        return cls.from_dict(values, source=str(path))


def _typed_value(where: str, hint: Any, value: Any) -> Any:
    """``value`` checked against a field's type (ints are accepted for floats, lists for tuples)."""
    if hint is bool or hint is str:
        valid = isinstance(value, hint)
    elif hint is int:
        valid = isinstance(value, int) and not isinstance(value, bool)
    elif hint is float:
        valid = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if valid else value
    else:  # tuple[int, int, int]
        valid = isinstance(value, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        value = tuple(value) if valid else value
    if not valid:
        raise ConfigError(where, f"expected {getattr(hint, '__name__', hint)}, got {value!r}")
    return value


def is_converged(val_dices: list[float], threshold: float, rule: str, convergence_epoch: int = 20) -> bool:
    """Whether a run with these per-epoch validation Dice values has converged.

    Args:
        val_dices: validation Dice of epochs 1, 2, ...
        threshold: Dice to reach (0.1 in the paper).
        rule: ``"best_over_run"``: the best Dice of the run reaches ``threshold`` (the paper's
            code); ``"after_patience_epochs"``: the Dice reaches ``threshold`` at some epoch
            ``>= convergence_epoch`` (the paper's text, "at least 0.1 dice on the validation
            set after 20 epochs").
        convergence_epoch: first epoch counted by ``"after_patience_epochs"``.

    Returns:
        The verdict.

    Raises:
        ConfigError: an unknown rule.
    """
    if rule == "best_over_run":
        return any(d >= threshold for d in val_dices)
    if rule == "after_patience_epochs":
        return any(d >= threshold for d in val_dices[convergence_epoch - 1:])
    raise ConfigError("convergence_rule", f"must be one of {', '.join(CONVERGENCE_RULES)}, got {rule!r}")


def check_patch_fits(patch_size: tuple[int, int, int], shapes: list[list[int]], where: Path) -> None:
    """Refuse a baseline patch larger than every training image along some axis.

    Images smaller than the patch are zero-padded (as the paper's sampler did), but a patch
    that no image fills on an axis is a configuration mistake (e.g. ``(x, y, z)`` order).

    Raises:
        ConfigError: naming the axis, the patch and the largest image side.
    """
    for axis, name in enumerate("zyx"):
        largest = max(int(s[axis]) for s in shapes)
        if patch_size[axis] > largest:
            raise ConfigError("train config patch_size", f"{tuple(patch_size)} (z, y, x) is larger than every training "
                              f"image of {where} along {name} (largest {largest}); patches are (z, y, x)")


def training_dataset(config: TrainConfig, task: PreparedTask) -> BaselinePatchDataset | WholeImageDataset:
    """The training items of ``config.network`` over the task's training cases."""
    train_ids = task.split["train"]
    if not train_ids:
        raise InputDataError(task.folder / "split.json", "no training cases (all excluded, or too few cases)")
    if config.network == "baseline":
        check_patch_fits(config.patch_size, [task.case(c).meta["original_shape"] for c in train_ids], task.folder)
        return BaselinePatchDataset(task, train_ids, config.patch_size, config.samples_per_epoch,
                                    foreground_probability=config.foreground_probability, seed=config.seed)
    return WholeImageDataset(task, train_ids, LEVEL_OF_NETWORK[config.network], 2**config.depth,
                             seed=config.seed, shuffle=True)


def validation_dice(model: torch.nn.Module, task: PreparedTask, config: TrainConfig, device: torch.device,
                    sw_batch_size: int = 1) -> float:
    """Dice pooled over the validation cases (TP, FP, FN summed over cases).

    The baseline segments the ``full`` image with a sliding window of ``config.patch_size``;
    the localiser and organ network segment their whole ``lowres`` or ``crop`` image.

    Args:
        model: the network (not wrapped in ``DistributedDataParallel``).
        task: the prepared task.
        config: the run's settings.
        device: where the network runs.
        sw_batch_size: windows per forward pass of the baseline's sliding window.

    Returns:
        The pooled validation Dice.
    """
    level = LEVEL_OF_NETWORK[config.network]
    amp = config.amp and device.type == "cuda"
    totals = np.zeros(3, dtype=np.int64)
    for case in task.cases("val"):
        image = np.array(case.array(level, "image"))  # a writable copy of the memory map, for torch
        if config.network == "baseline":
            prediction = predict_sliding_window(model, image, config.patch_size, config.sw_overlap, sw_batch_size, device, amp)
        else:
            prediction = predict_whole(model, image, 2**config.depth, device, amp)
        totals += np.asarray(confusion_counts(prediction, np.asarray(case.array(level, "label"))), dtype=np.int64)
    return float(dice_from_counts(*(int(t) for t in totals)))


@contextlib.contextmanager
def _determinism(enabled: bool, device: torch.device) -> Iterator[None]:
    """Deterministic algorithms (CPU) or cuDNN settings (GPU) for the run; restored afterwards."""
    previous = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
                torch.backends.cudnn.benchmark)
    torch.use_deterministic_algorithms(enabled and device.type == "cpu")
    torch.backends.cudnn.deterministic = enabled
    torch.backends.cudnn.benchmark = not enabled
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = previous[1], previous[2]


@dataclasses.dataclass
class _EpochTotals:
    """Sums over an epoch's training batches (all processes)."""

    loss_sum: float
    samples: int
    tp: int
    fp: int
    fn: int
    diverged: bool

    @property
    def loss(self) -> float:
        return self.loss_sum / max(self.samples, 1)

    @property
    def dice(self) -> float:
        return float(dice_from_counts(self.tp, self.fp, self.fn))


def train_step(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, optimizer: torch.optim.Optimizer,
               loss_fn: DiceCELoss, context: ProcessContext, amp: bool) -> tuple[bool, torch.Tensor, torch.Tensor]:
    """One optimisation step on this process's share of a global batch.

    The step is skipped on every process when the loss or the gradient norm is not finite
    on any process.

    Args:
        model: the network, possibly wrapped in ``DistributedDataParallel``.
        images: ``(N, 1, z, y, x)`` on the process's device.
        labels: ``(N, z, y, x)`` int64 on the same device.
        optimizer: the optimizer of the network's parameters.
        loss_fn: the loss.
        context: the process's place among the data-parallel processes.
        amp: run the forward pass under bfloat16 autocast.

    Returns:
        ``(finite, loss, logits)``: whether the step was taken, the detached loss and the
        detached ``(N, 2, z, y, x)`` logits.
    """
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(context.device.type, dtype=torch.bfloat16, enabled=amp):
        logits = model(images)
    loss = loss_fn(logits, labels)
    loss.backward()
    grad_norm = torch.nn.utils.get_total_norm([p.grad for p in model.parameters() if p.grad is not None])
    finite = (torch.isfinite(loss.detach()) & torch.isfinite(grad_norm)).to(torch.float32).reshape(1)
    all_finite = distributed.all_reduce(finite, context, distributed.dist.ReduceOp.MIN).item() == 1
    if all_finite:
        optimizer.step()
    return all_finite, loss.detach(), logits.detach()


def _train_epoch(model: torch.nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer, loss_fn: DiceCELoss,
                 context: ProcessContext, amp: bool) -> _EpochTotals:
    """One pass over the loader; stops at the first non-finite loss or gradient (``diverged``)."""
    model.train()
    device = context.device
    totals = torch.zeros(5, dtype=torch.float64, device=device)  # loss_sum, samples, tp, fp, fn
    for batch in loader:
        images = batch["image"].to(device, non_blocking=True)
        labels = batch["label"].to(device, non_blocking=True)
        finite, loss, logits = train_step(model, images, labels, optimizer, loss_fn, context, amp)
        if not finite:
            return _EpochTotals(0.0, 0, 0, 0, 0, diverged=True)
        tp, fp, fn = hard_dice_counts(logits, labels)
        samples = torch.tensor(float(len(images)), dtype=torch.float64, device=device)
        totals += torch.stack([loss.double() * samples, samples, tp.double(), fp.double(), fn.double()])
    loss_sum, samples, tp, fp, fn = distributed.all_reduce(totals, context).tolist()
    return _EpochTotals(loss_sum, int(samples), int(tp), int(fp), int(fn), diverged=False)


def _write_log(run_dir: Path, rows: list[dict[str, float]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=LOG_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(run_dir / LOG_FILE, buffer.getvalue())


def read_log(run_dir: str | Path) -> list[dict[str, float]]:
    """The rows of a run's ``log.csv`` (epoch as int, the other columns as float)."""
    with open(Path(run_dir) / LOG_FILE, newline="", encoding="utf-8") as handle:
        return [{k: int(v) if k == "epoch" else float(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def _commit_epoch(run_dir: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: ResumeState,
                  improved: bool, config: TrainConfig) -> None:
    """Record a completed epoch on disk (rank 0).

    Order: the new best weights go to ``best.next.pt``; then ``resume.pt`` (the commit
    point); then ``best.next.pt`` is renamed to ``best.pt`` and ``log.csv`` rewritten from
    the resume state's rows. :func:`_settle_files` completes or undoes an interrupted commit.
    """
    if improved:
        save_checkpoint(run_dir / NEXT_BEST_FILE, model, {
            "network": config.network, "epoch": state.best_epoch, "val_dice": state.best_val_dice, "seed": config.seed})
    state.model_state = distributed.unwrap(model).state_dict()
    state.optimizer_state = optimizer.state_dict()
    state.rng = capture_rng_states()
    save_resume_state(run_dir / RESUME_FILE, state)
    if improved:
        os.replace(run_dir / NEXT_BEST_FILE, run_dir / BEST_FILE)
    _write_log(run_dir, state.log_rows)


def _settle_files(run_dir: Path, state: ResumeState | None) -> None:
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
        if state is not None and read_checkpoint_metadata(next_best).get("epoch") == state.best_epoch:
            os.replace(next_best, run_dir / BEST_FILE)
        else:
            next_best.unlink()
    if state is None:
        for name in (BEST_FILE, LOG_FILE):
            (run_dir / name).unlink(missing_ok=True)
    else:
        _write_log(run_dir, state.log_rows)


def _check_run_dir(config: TrainConfig) -> None:
    """Create the run folder; refuse one whose ``config.json`` defines a different run with progress."""
    run_dir = Path(config.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    has_progress = (run_dir / RESUME_FILE).exists() or (run_dir / SUMMARY_FILE).exists()
    if not (has_progress and (run_dir / CONFIG_FILE).exists()):
        return
    saved = TrainConfig.from_dict(read_json(run_dir / CONFIG_FILE), source=str(run_dir / CONFIG_FILE)).to_dict()
    current = config.to_dict()
    differing = [k for k in current if k not in _LOCATION_FIELDS and saved[k] != current[k]]
    if differing:
        details = ", ".join(f"{k}={saved[k]!r} there, {current[k]!r} now" for k in differing)
        raise ConfigError(run_dir / CONFIG_FILE, f"this run folder holds a different run ({details}); "
                          "use another run_dir or delete this one")


def finished_summary(run_dir: str | Path) -> dict[str, Any] | None:
    """The ``summary.json`` of a finished run, or ``None`` while it is unfinished."""
    path = Path(run_dir) / SUMMARY_FILE
    return read_json(path) if path.exists() else None


def _summary(config: TrainConfig, state: ResumeState, diverged: bool, stop_reason: str) -> dict[str, Any]:
    val_dices = [row["val_dice"] for row in state.log_rows]
    converged = not diverged and is_converged(val_dices, config.convergence_threshold, config.convergence_rule,
                                              config.convergence_epoch)
    return {
        "converged": converged,
        "diverged": diverged,
        "best_epoch": state.best_epoch if state.log_rows else None,
        "best_val_dice": state.best_val_dice if state.log_rows else None,
        "total_seconds": float(sum(row["wall_seconds"] for row in state.log_rows)),
        "epochs": state.epochs_done,
        "stop_reason": stop_reason,
        "network": config.network,
        "seed": config.seed,
        "config": config.to_dict(),
    }


def _fresh_state() -> ResumeState:
    return ResumeState(model_state={}, optimizer_state={}, epochs_done=0, best_val_dice=-math.inf, best_epoch=0,
                       epochs_since_improvement=0)


def _train_in_context(config: TrainConfig, context: ProcessContext, progress: bool) -> dict[str, Any]:
    """The protocol in one process of ``context``; returns the summary (read back from disk)."""
    run_dir = Path(config.run_dir)
    if context.is_main:
        _check_run_dir(config)
    distributed.barrier(context)
    finished = finished_summary(run_dir)
    if finished is not None:
        if context.is_main:
            (run_dir / RESUME_FILE).unlink(missing_ok=True)  # left by an interruption after the summary
        return finished
    task = PreparedTask(config.prepared_dir)
    if not task.split["val"]:
        raise ConfigError(Path(config.prepared_dir) / "split.json", "no validation cases; training needs some")
    device = context.device
    with _determinism(config.deterministic, device):
        torch.manual_seed(config.seed)
        model = UNet3D(base_channels=config.base_channels, depth=config.depth).to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
        resume_path = run_dir / RESUME_FILE
        state = load_resume_state(resume_path) if resume_path.exists() else None
        if context.is_main:
            _settle_files(run_dir, state)
            atomic_write_json(run_dir / CONFIG_FILE, config.to_dict())
        if state is None:
            state = _fresh_state()
        else:
            model.load_state_dict(state.model_state)
            optimizer.load_state_dict(state.optimizer_state)
            restore_rng_states(state.rng)
        diverged, stop_reason = _run_epochs(config, context, task, model, optimizer, state, progress)
        if context.is_main:
            atomic_write_json(run_dir / SUMMARY_FILE, _summary(config, state, diverged, stop_reason))
            resume_path.unlink(missing_ok=True)
    distributed.barrier(context)
    return read_json(run_dir / SUMMARY_FILE)


def _run_epochs(config: TrainConfig, context: ProcessContext, task: PreparedTask, model: UNet3D,
                optimizer: torch.optim.Optimizer, state: ResumeState, progress: bool) -> tuple[bool, str]:
    """Train epochs after ``state.epochs_done`` until patience, ``max_epochs`` or divergence.

    Updates ``state`` and, on rank 0, commits every completed epoch to the run folder.

    Returns:
        ``(diverged, stop_reason)`` with ``stop_reason`` ``"patience"``, ``"max_epochs"`` or
        ``"diverged"``.
    """
    run_dir = Path(config.run_dir)
    per_process_batch = config.batch_size // context.world_size
    dataset: Dataset = training_dataset(config, task)
    sampler = DistributedSampler(dataset, num_replicas=context.world_size, rank=context.rank, shuffle=False) \
        if context.distributed else None
    loader = distributed.ErrorPassingDataLoader(dataset, batch_size=per_process_batch, sampler=sampler, shuffle=False,
                                                collate_fn=pad_collate, num_workers=config.num_workers,
                                                pin_memory=context.device.type == "cuda")
    parallel_model = distributed.wrap(model, context)
    loss_fn = DiceCELoss(dice_weight=config.dice_weight, ce_weight=config.ce_weight)
    amp = config.amp and context.device.type == "cuda"
    bar = tqdm(total=config.max_epochs, initial=state.epochs_done, unit="epoch",
               desc=f"{config.network} seed {config.seed}", disable=not (progress and context.is_main))
    try:
        while state.epochs_since_improvement < config.patience and state.epochs_done < config.max_epochs:
            epoch = state.epochs_done + 1
            started = time.perf_counter()
            dataset.set_epoch(epoch)
            totals = _train_epoch(parallel_model, loader, optimizer, loss_fn, context, amp)
            if totals.diverged:
                return True, "diverged"
            val_dice = validation_dice(model, task, config, context.device, per_process_batch) if context.is_main else 0.0
            val_dice = distributed.broadcast_from_main(val_dice, context)
            improved = val_dice > state.best_val_dice
            state.epochs_done = epoch
            state.epochs_since_improvement = 0 if improved else state.epochs_since_improvement + 1
            if improved:
                state.best_val_dice, state.best_epoch = val_dice, epoch
            state.log_rows.append({"epoch": epoch, "wall_seconds": time.perf_counter() - started,
                                   "train_loss": totals.loss, "train_dice": totals.dice, "val_dice": val_dice})
            if context.is_main:
                _commit_epoch(run_dir, model, optimizer, state, improved, config)
            bar.update()
            bar.set_postfix(loss=f"{totals.loss:.3f}", val_dice=f"{val_dice:.3f}", best=f"{state.best_val_dice:.3f}")
    finally:
        bar.close()
    return False, "patience" if state.epochs_since_improvement >= config.patience else "max_epochs"


def _spawned_worker(rank: int, world_size: int, init_method: str, config: TrainConfig, progress: bool) -> None:
    context = distributed.join_process_group(config.device, rank, world_size, local_rank=rank, init_method=init_method)
    try:
        _train_in_context(config, context, progress)
    finally:
        distributed.leave_process_group(context)


def train_run_parallel(config: TrainConfig, world_size: int | None = None, progress: bool = True) -> dict[str, Any]:
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
        raise ConfigError("world_size", f"{world_size} processes need as many GPUs, {torch.cuda.device_count()} visible")
    config = dataclasses.replace(config, world_size=world_size)
    _check_run_dir(config)
    finished = finished_summary(config.run_dir)
    if finished is not None:
        return finished
    distributed.spawn(_spawned_worker, world_size, config, progress)
    return read_json(Path(config.run_dir) / SUMMARY_FILE)


def train_run(config: TrainConfig, progress: bool = True) -> dict[str, Any]:
    """Train one network by the paper's protocol, or continue or return an existing run.

    In a process started by ``torchrun`` this process joins the launch's process group;
    otherwise ``config.world_size > 1`` spawns that many processes
    (:func:`train_run_parallel`) and 1 trains here.

    Args:
        config: the run's settings.
        progress: show a progress bar over epochs.

    Returns:
        The content of ``summary.json``: ``converged``, ``diverged`` (a non-finite loss or
        gradient stopped the run), ``best_epoch``, ``best_val_dice`` (``None`` when no epoch
        completed), ``total_seconds`` (sum of the epochs' wall-clock seconds, across
        interruptions), ``epochs``, ``stop_reason``, ``network``, ``seed``, ``config``.

    Raises:
        ConfigError: the run folder holds a run with different settings, or the task has no
            validation cases.
        CheckpointError: the resume state is unreadable.
    """
    if distributed.launched_by_torchrun():
        config = dataclasses.replace(config, world_size=int(os.environ["WORLD_SIZE"]))
        context = distributed.context_from_env(config.device)
        try:
            return _train_in_context(config, context, progress)
        finally:
            distributed.leave_process_group(context)
    if config.world_size > 1:
        return train_run_parallel(config, config.world_size, progress)
    return _train_in_context(config, distributed.single_process(config.device), progress)


def train_until_converged(make_config: Callable[[int], TrainConfig], n: int = 10, max_runs: int = 30,
                          progress: bool = True) -> list[dict[str, Any]]:
    """Train runs 0, 1, ... until ``n`` have converged or ``max_runs`` were made (the paper: 10).

    Runs already finished on disk are not trained again (their summaries are read), and an
    interrupted run is continued, so calling this again after an interruption goes on where
    it stopped.

    Args:
        make_config: run index → the run's config (with its own ``run_dir``, e.g. ``.../run_03``).
        n: converged runs wanted.
        max_runs: the most runs to make, converged or not.
        progress: show progress bars.

    Returns:
        The summaries of the runs in order of run index.
    """
    summaries: list[dict[str, Any]] = []
    for run_index in range(max_runs):
        if sum(bool(s["converged"]) for s in summaries) >= n:
            break
        summaries.append(train_run(make_config(run_index), progress))
    return summaries


def main(argv: list[str] | None = None) -> int:
    """``python -m l2s_core.train CONFIG.json`` (also under ``torchrun``): train one run.

    Prints the summary as one JSON line (rank 0) and returns 0, or prints the error and
    returns 2.
    """
    parser = argparse.ArgumentParser(prog="python -m l2s_core.train", description="Train one l2s network run.")
    parser.add_argument("config", type=Path, help="training config JSON (fields of TrainConfig)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        summary = train_run(TrainConfig.load(args.config), progress=not args.no_progress)
    except L2SError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
