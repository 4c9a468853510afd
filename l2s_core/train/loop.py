"""The paper's training protocol for one network (baseline, localiser or organ network).

Adam (learning rate 1e-4) on the soft Dice + cross-entropy loss; after every epoch the
validation Dice (pooled over the validation cases) decides whether the weights are the best
so far, which alone are kept (``best.pt``); training stops after ``patience`` epochs without
improvement. What each network sees:

* baseline: random patches of the ``full`` images, 80 % holding organ;
* localiser: random patches of the ``lowres`` images;
* organ network: random patches of the ``crop`` images;

each network ``samples_per_epoch`` patches per epoch, or (``null``) one patch per training
image, the images in a new permutation every epoch (:class:`l2s_core.sampling.PatchDataset`),
and each validated patch-wise, by windows of the patch size, on the whole validation images of
its level.

A run folder holds ``config.json`` (written at the start), ``log.csv`` (one row per completed
epoch, counting from 1: epoch, wall_seconds of the epoch's training and validation, train_loss
(mean over the epoch's items), train_dice (hard Dice pooled over the epoch's items, from the
logits of the training steps), val_dice), ``best.pt``, ``resume.pt`` while the run is
unfinished and ``summary.json`` at the end (:mod:`l2s_core.train.run_files`). The loop hands
every completed epoch to :mod:`l2s_core.train.commit`, which writes it atomically and settles
the folder after an interruption: a run started again on its folder continues after its last
completed epoch and ends with the weights of an uninterrupted run (bitwise on the CPU); a
finished run is not trained again.

:func:`train_in_context` runs the protocol in one process: alone, or as one of several
data-parallel processes (:mod:`l2s_core.distributed`), which :mod:`l2s_core.train.launch` starts.
"""

from __future__ import annotations

__all__ = [
    "train_in_context",
    "train_step",
    "training_dataset",
    "validation_dice",
    "validation_volumes",
]

import contextlib
import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from torch.utils.data import DataLoader, DistributedSampler
from tqdm.auto import tqdm

from l2s_core import distributed
from l2s_core.checkpoint import ResumeState, restore_rng_states
from l2s_core.compiling import compile_network, compile_wanted
from l2s_core.data.cache import PreparedTask
from l2s_core.distributed import ProcessContext
from l2s_core.errors import ConfigError, InputDataError
from l2s_core.infer import predict_mask
from l2s_core.losses import DiceCELoss, hard_dice_counts
from l2s_core.metrics import dice_from_counts
from l2s_core.model import build_network
from l2s_core.sampling import PatchDataset, pad_collate
from l2s_core.train.commit import (
    check_run_dir,
    commit_epoch,
    committed_state,
    finish_run,
    fresh_state,
    settle_files,
    settle_finished,
)
from l2s_core.train.config import TrainConfig
from l2s_core.train.run_files import CONFIG_FILE, SUMMARY_FILE, RunSummary, finished_summary
from l2s_core.train.segmenter import run_segmenter
from l2s_core.train.validation_volumes import ValidationVolumes, device_budget, mask_counts
from l2s_core.vocabulary import LEVEL_OF_NETWORK


def training_dataset(config: TrainConfig, task: PreparedTask) -> PatchDataset:
    """The training patches of ``config.network`` over the task's training cases.

    Every network trains on patches of its own level (baseline: full resolution, 80 % holding
    organ; localiser: low resolution; organ network: crops, both plain random), clipped where
    an image is smaller than the patch.
    """
    train_ids = task.split["train"]
    if not train_ids:
        raise InputDataError(task.folder / "split.json", "no training cases (all excluded, or too few cases)")
    foreground = config.foreground_probability if config.network == "baseline" else 0.0
    return PatchDataset(
        task,
        train_ids,
        LEVEL_OF_NETWORK[config.network],
        config.patch_size,
        config.samples_per_epoch,
        foreground_probability=foreground,
        seed=config.seed,
        multiple=2**config.depth,
    )


def validation_volumes(
    task: PreparedTask, config: TrainConfig, context: ProcessContext, batch_per_process: int = 1
) -> ValidationVolumes:
    """This process's validation cases (every ``world_size``-th) at the network's level, kept on its
    GPU between epochs where they fit beside training (:mod:`l2s_core.train.validation_volumes`)."""
    cases = task.cases("val")[context.rank :: context.world_size]
    budget = device_budget(config, context.device, batch_per_process)
    return ValidationVolumes(cases, LEVEL_OF_NETWORK[config.network], context.device, budget)


def validation_dice(
    model: torch.nn.Module,
    task: PreparedTask,
    config: TrainConfig,
    context: ProcessContext,
    volumes: ValidationVolumes | None = None,
) -> float:
    """Dice pooled over the validation cases (TP, FP, FN summed over cases).

    Each network segments its own level of the validation images (baseline: ``full``,
    localiser: ``lowres``, organ network: ``crop``) patch-wise with ``config.patch_size``
    (:func:`l2s_core.infer.predict_mask`, as many windows per pass as the GPU's memory holds),
    and the counts are taken on the device. With several processes each segments every
    ``world_size``-th case and the counts are summed over the processes (exact: integers), so
    no GPU waits while another validates.

    Args:
        model: the network (not wrapped in ``DistributedDataParallel``).
        task: the prepared task.
        config: the run's settings.
        context: this process (its device, rank and the number of processes).
        volumes: the process's validation volumes (:func:`validation_volumes`; made here when
            ``None``).

    Returns:
        The pooled validation Dice.
    """
    volumes = volumes if volumes is not None else validation_volumes(task, config, context)
    segmenter = run_segmenter(model, config)
    totals = torch.zeros(3, dtype=torch.int64, device=context.device)
    for image, label in volumes:
        totals += mask_counts(predict_mask(segmenter, image, context.device), label)
    summed = distributed.all_reduce(totals, context)
    return float(dice_from_counts(*(int(t) for t in summed.tolist())))


@contextlib.contextmanager
def _determinism(enabled: bool, device: torch.device) -> Iterator[None]:
    """Deterministic algorithms (CPU) or cuDNN settings (GPU) for the run; restored afterwards."""
    previous = (
        torch.are_deterministic_algorithms_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
    )
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


def train_step(
    model: torch.nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    loss_fn: DiceCELoss,
    context: ProcessContext,
    amp: bool,
) -> tuple[bool, torch.Tensor, torch.Tensor]:
    """One optimisation step on this process's share of a global batch.

    The step is skipped on every process when the loss or the gradient norm is not finite
    on any process.

    Args:
        model: the network, possibly wrapped in ``DistributedDataParallel``.
        images: ``(N, 1, z, y, x)`` on the process's device.
        labels: ``(N, z, y, x)`` integer labels (uint8 from the loader) on the same device.
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


def _train_epoch(
    model: torch.nn.Module,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    loss_fn: DiceCELoss,
    context: ProcessContext,
    amp: bool,
) -> _EpochTotals:
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


def train_in_context(config: TrainConfig, context: ProcessContext, progress: bool) -> RunSummary:
    """The protocol in one process of ``context`` (every process of a launch runs it); returns the
    summary read back from disk (see :func:`l2s_core.train.launch.train_run`)."""
    run_dir = Path(config.run_dir)
    if context.is_main:
        check_run_dir(config)
    distributed.barrier(context)
    finished = finished_summary(run_dir)
    if finished is not None:
        if context.is_main:
            settle_finished(run_dir)
        return finished
    task = PreparedTask(config.prepared_dir)
    if not task.split["val"]:
        raise ConfigError(Path(config.prepared_dir) / "split.json", "no validation cases; training needs some")
    device = context.device
    with _determinism(config.deterministic, device):
        torch.manual_seed(config.seed)
        groups = {} if config.norm_groups is None else {"groups": config.norm_groups}
        model = build_network(config.architecture, base_channels=config.base_channels, depth=config.depth, **groups)
        model = model.to(device)
        if compile_wanted(config.compile, device):
            compile_network(model)  # in place: the training step, validation and checkpoints share it
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
        state = committed_state(run_dir)
        if context.is_main:
            settle_files(run_dir, state)
            config.write(run_dir / CONFIG_FILE)
        if state is None:
            state = fresh_state()
        else:
            model.load_state_dict(state.model_state)
            optimizer.load_state_dict(state.optimizer_state)
            restore_rng_states(state.rng)
            state.model_state, state.optimizer_state = {}, {}  # loaded: no second copy for the whole run
        diverged, stop_reason = _run_epochs(config, context, task, model, optimizer, state, progress)
        if context.is_main:
            finish_run(config, state, diverged, stop_reason)
    distributed.barrier(context)
    return RunSummary.read(run_dir / SUMMARY_FILE)


def _run_epochs(
    config: TrainConfig,
    context: ProcessContext,
    task: PreparedTask,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    state: ResumeState,
    progress: bool,
) -> tuple[bool, str]:
    """Train epochs after ``state.epochs_done`` until patience, ``max_epochs`` or divergence.

    Updates ``state`` and, on rank 0, commits every completed epoch to the run folder.

    Returns:
        ``(diverged, stop_reason)`` with ``stop_reason`` ``"patience"``, ``"max_epochs"`` or
        ``"diverged"``.
    """
    run_dir = Path(config.run_dir)
    per_process_batch = config.batch_size // context.world_size
    dataset = training_dataset(config, task)
    sampler: DistributedSampler | None = (
        DistributedSampler(dataset, num_replicas=context.world_size, rank=context.rank, shuffle=False)
        if context.distributed
        else None
    )
    loader = distributed.ErrorPassingDataLoader(
        dataset,
        batch_size=per_process_batch,
        sampler=sampler,
        shuffle=False,
        collate_fn=pad_collate,
        num_workers=config.num_workers,
        pin_memory=context.device.type == "cuda",
    )
    parallel_model = distributed.wrap(model, context)
    volumes = validation_volumes(task, config, context, per_process_batch)
    loss_fn = DiceCELoss(
        dice_weight=config.dice_weight,
        ce_weight=config.ce_weight,
        dice_form=config.dice_form,
        across_processes=context.distributed,
    )
    amp = config.amp and context.device.type == "cuda"
    bar = tqdm(
        total=config.max_epochs,
        initial=state.epochs_done,
        unit="epoch",
        desc=f"{config.network} seed {config.seed}",
        disable=not (progress and context.is_main),
    )
    try:
        while state.epochs_since_improvement < config.patience and state.epochs_done < config.max_epochs:
            epoch = state.epochs_done + 1
            started = time.perf_counter()
            dataset.set_epoch(epoch)
            totals = _train_epoch(parallel_model, loader, optimizer, loss_fn, context, amp)
            if totals.diverged:
                return True, "diverged"
            val_dice = validation_dice(model, task, config, context, volumes)
            improved = val_dice > state.best_val_dice
            state.epochs_done = epoch
            state.epochs_since_improvement = 0 if improved else state.epochs_since_improvement + 1
            if improved:
                state.best_val_dice, state.best_epoch = val_dice, epoch
            state.log_rows.append(
                {
                    "epoch": epoch,
                    "wall_seconds": time.perf_counter() - started,
                    "train_loss": totals.loss,
                    "train_dice": totals.dice,
                    "val_dice": val_dice,
                }
            )
            if context.is_main:
                commit_epoch(run_dir, model, optimizer, state, improved, config)
            bar.update()
            bar.set_postfix(loss=f"{totals.loss:.3f}", val_dice=f"{val_dice:.3f}", best=f"{state.best_val_dice:.3f}")
    finally:
        bar.close()
    return False, "patience" if state.epochs_since_improvement >= config.patience else "max_epochs"
