"""``l2s run PARAMS --dry-run --measure``: the study's wall time on this device before it runs.

For each organ and network one training step and one validation pass are measured on the
present device with the run's own settings (network, per-process batch, bfloat16 autocast,
compilation; random data of the patch, after untimed warm-up calls that include any
compilation), then scaled to an epoch: training steps = patches per epoch / global batch, each
at the measured step time scaled by the voxels of the network's input over the patch's;
validation = the validation cases' padded voxels over the measured
volume's, times its pass. A run is ``epochs_per_run`` epochs (the paper does not state its
epochs; runs stop ``patience`` epochs after their best, so at least ``patience + 1``), the
study ``runs`` runs of each network (all converging). Measurements of equal settings and shapes
are made once.

Example:
    >>> print(measured_projection(params, root, epochs_per_run=100))  # doctest: +SKIP
"""

from __future__ import annotations

__all__ = ["NetworkTiming", "StepTiming", "measure_network", "network_timing"]

import math
import statistics
import time
from dataclasses import dataclass

import numpy as np
import torch

from l2s_core import distributed
from l2s_core.compiling import compile_network, compile_wanted
from l2s_core.infer import predict_mask
from l2s_core.losses import DiceCELoss
from l2s_core.model import build_network
from l2s_core.train.config import TrainConfig
from l2s_core.train.segmenter import run_segmenter

Shape = tuple[int, int, int]

_WARMUP_CALLS = 2
_TIMED_STEPS = 3


@dataclass(frozen=True)
class StepTiming:
    """Measured seconds of one network's work on this device.

    Attributes:
        step_seconds: one training step of the per-process batch at the training input (median).
        validation_seconds: one validation pass over a volume of ``validation_shape``.
        train_input: ``(z, y, x)`` of the timed training input.
        validation_shape: ``(z, y, x)`` of the timed validation volume.
    """

    step_seconds: float
    validation_seconds: float
    train_input: Shape
    validation_shape: Shape


@dataclass(frozen=True)
class NetworkTiming:
    """One organ's network: seconds per epoch and the projected time of its runs.

    Attributes:
        organ: the organ.
        network: the network.
        measured: the measurement it is scaled from.
        steps_per_epoch: training steps of an epoch.
        train_seconds: training seconds of an epoch.
        validation_seconds: validation seconds of an epoch.
        epochs_per_run: epochs a run is assumed to take.
        runs: runs of the network.
    """

    organ: str
    network: str
    measured: StepTiming
    steps_per_epoch: int
    train_seconds: float
    validation_seconds: float
    epochs_per_run: int
    runs: int

    @property
    def epoch_seconds(self) -> float:
        """Training + validation seconds of one epoch."""
        return self.train_seconds + self.validation_seconds

    @property
    def run_seconds(self) -> float:
        """Seconds of one run of ``epochs_per_run`` epochs."""
        return self.epochs_per_run * self.epoch_seconds

    @property
    def total_seconds(self) -> float:
        """Seconds of all ``runs`` runs."""
        return self.runs * self.run_seconds


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_network(config: TrainConfig, train_input: Shape, batch: int, validation_shape: Shape) -> StepTiming:
    """Time one training step and one validation pass of ``config``'s network on its device.

    Args:
        config: the run's settings (architecture, width, depth, amp, compile, device).
        train_input: ``(z, y, x)`` of the training input (the patch, clipped and padded).
        batch: patches per process and step.
        validation_shape: ``(z, y, x)`` of the validation volume to segment.
    """
    device = distributed.resolve_device(config.device, 0)
    torch.manual_seed(0)
    model = build_network(config.architecture, base_channels=config.base_channels, depth=config.depth).to(device)
    if compile_wanted(config.compile, device):
        compile_network(model)
    context = distributed.ProcessContext(rank=0, world_size=1, device=device, distributed=False)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    loss_fn = DiceCELoss(config.dice_weight, config.ce_weight, dice_form=config.dice_form)
    generator = torch.Generator().manual_seed(0)
    images = torch.randn((batch, 1, *train_input), generator=generator).to(device)
    labels = (torch.rand((batch, *train_input), generator=generator) < 0.1).to(torch.uint8).to(device)
    amp = config.amp and device.type == "cuda"
    from l2s_core.train.loop import train_step  # imported here: the loop imports the study's neighbours

    seconds = []
    for index in range(_WARMUP_CALLS + _TIMED_STEPS):
        _synchronize(device)
        started = time.perf_counter()
        train_step(model, images, labels, optimizer, loss_fn, context, amp)
        _synchronize(device)
        if index >= _WARMUP_CALLS:
            seconds.append(time.perf_counter() - started)
    del images, labels, optimizer
    volume = torch.randn(validation_shape, generator=generator).to(device)
    segmenter = run_segmenter(model, config)
    for _ in range(_WARMUP_CALLS):
        predict_mask(segmenter, volume, device)
    _synchronize(device)
    started = time.perf_counter()
    predict_mask(segmenter, volume, device)
    _synchronize(device)
    validation = time.perf_counter() - started
    return StepTiming(statistics.median(seconds), validation, train_input, validation_shape)


def _padded_voxels(shape: Shape, multiple: int) -> int:
    return int(np.prod([-(-side // multiple) * multiple for side in shape]))


def network_timing(
    organ: str,
    network: str,
    config: TrainConfig,
    measured: StepTiming,
    train_input: Shape,
    train_cases: int,
    validation_shapes: list[Shape],
    epochs_per_run: int,
    runs: int,
) -> NetworkTiming:
    """Scale a measurement to one epoch and to the network's runs.

    Args:
        organ: the organ.
        network: the network.
        config: the run's settings (batch, patches per epoch, depth).
        measured: the measurement (:func:`measure_network`).
        train_input: ``(z, y, x)`` of the network's training input; the measured step is scaled
            by its voxels over the measured input's.
        train_cases: training cases (patches per epoch when ``samples_per_epoch`` is unset).
        validation_shapes: ``(z, y, x)`` of every validation image at the network's level
            (all processes together).
        epochs_per_run: epochs a run is assumed to take.
        runs: runs of the network.
    """
    patches = config.samples_per_epoch or train_cases
    steps = math.ceil(patches / config.batch_size)
    multiple = 2**config.depth
    step = (
        measured.step_seconds * _padded_voxels(train_input, multiple) / _padded_voxels(measured.train_input, multiple)
    )
    measured_voxels = _padded_voxels(measured.validation_shape, multiple)
    share = sum(_padded_voxels(shape, multiple) for shape in validation_shapes) / measured_voxels
    return NetworkTiming(
        organ,
        network,
        measured,
        steps,
        steps * step,
        share * measured.validation_seconds / config.world_size,
        epochs_per_run,
        runs,
    )
