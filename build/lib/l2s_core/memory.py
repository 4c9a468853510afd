"""How much memory a network needs to train on one input size, estimated without running it.

The network is built on PyTorch's ``meta`` device (shapes, no data) and its forward pass is
traced with :func:`torch.autograd.graph.saved_tensors_hooks`, which sees every tensor autograd
keeps for the backward pass: the activations that dominate training memory. Parameters,
their gradients and Adam's two moments add 16 bytes per parameter; the backward pass holds the
gradient of the largest activation and its input at once on top (two more of the largest
saved tensor). ``benchmarks/bench_scale.py`` sets this estimate beside the measured peak.

Example:
    >>> estimate = estimate_training_memory({"base_channels": 32, "depth": 4}, (64, 256, 256))  # doctest: +SKIP
    >>> round(estimate.peak_bytes / 2**30, 1)  # doctest: +SKIP
    8.2
"""

from __future__ import annotations

__all__ = ["TrainingMemory", "estimate_training_memory", "largest_forward_input"]

from dataclasses import dataclass
from typing import Any

import torch

from l2s_core.model import build_network

#: Bytes per parameter while training with Adam in float32: weight, gradient, two moments.
_BYTES_PER_PARAMETER = 16


@dataclass(frozen=True)
class TrainingMemory:
    """Estimated memory of one training step of one process.

    Attributes:
        parameters: number of parameters of the network.
        input_shape: ``(z, y, x)`` of the input.
        batch: inputs per process and step.
        activation_bytes: tensors saved by the forward pass for the backward pass.
        parameter_bytes: weights, gradients and Adam moments.
        peak_bytes: the estimated peak: activations + parameters + the backward pass's two
            largest transient tensors.
    """

    parameters: int
    input_shape: tuple[int, int, int]
    batch: int
    activation_bytes: int
    parameter_bytes: int
    peak_bytes: int


def estimate_training_memory(
    hparams: dict[str, Any], input_shape: tuple[int, int, int], batch: int = 1, architecture: str = "unet"
) -> TrainingMemory:
    """Estimate the float32 memory of one training step of a study network.

    Args:
        hparams: constructor arguments of the network (e.g. ``UNet3D.PAPER_CONFIG``).
        input_shape: ``(z, y, x)`` of the input, each side a multiple of ``2 ** depth``.
        batch: inputs per process and step (the global batch divided by the processes).
        architecture: ``unet`` or ``released_code`` (:func:`l2s_core.model.build_network`).

    Returns:
        The :class:`TrainingMemory`; nothing is allocated (the trace runs on the meta device).
    """
    with torch.device("meta"):
        model = build_network(architecture, **hparams)
        images = torch.empty((batch, 1, *input_shape))
    weights = {id(p) for p in model.parameters()}  # counted with the parameters, not as activations
    saved: dict[int, torch.Tensor] = {}

    def keep(tensor: torch.Tensor) -> torch.Tensor:
        if id(tensor) not in weights:
            saved[id(tensor)] = tensor  # a tensor saved by two operations is counted once
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(keep, lambda tensor: tensor):
        model(images)
    sizes = sorted((t.numel() * t.element_size() for t in saved.values()), reverse=True)
    parameters = sum(p.numel() for p in model.parameters())
    activation_bytes = sum(sizes)
    parameter_bytes = _BYTES_PER_PARAMETER * parameters
    return TrainingMemory(
        parameters,
        (int(input_shape[0]), int(input_shape[1]), int(input_shape[2])),
        batch,
        activation_bytes,  # type: ignore[arg-type]
        parameter_bytes,
        activation_bytes + parameter_bytes + 2 * (sizes[0] if sizes else 0),
    )


def largest_forward_input(
    patch_size: tuple[int, int, int], extent: tuple[int, int, int], multiple: int
) -> tuple[int, int, int]:
    """The largest ``(z, y, x)`` input a network gets over images up to ``extent``: its patch,
    clipped per axis to the largest image side padded to ``multiple`` (as training and
    :func:`l2s_core.infer.predict_volume` clip and pad)."""
    return tuple(min(p, -(-e // multiple) * multiple) for p, e in zip(patch_size, extent))  # type: ignore[return-value]
