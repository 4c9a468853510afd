"""The validation images and labels of one training process, kept on its GPU between epochs
where they fit beside training, and the organ's TP/FP/FN counted on the device.

Each epoch's validation segments the same volumes; reading them from the cache and copying
them to the GPU every epoch costs more than their forward pass. On a GPU, cases are kept there
(float32 image, uint8 label) in order until their bytes would exceed half of what the device
holds beyond the estimated peak of a training step (:mod:`l2s_core.memory`, with half again as
slack); the others are read every epoch. On the CPU nothing is kept (the cache's memory maps are
read through the page cache).
"""

from __future__ import annotations

__all__ = ["ValidationVolumes", "mask_counts"]

from collections.abc import Iterator, Sequence

import numpy as np
import torch

from l2s_core.data.cache import PreparedCase
from l2s_core.memory import estimate_training_memory
from l2s_core.train.config import TrainConfig

#: Slack on the estimated peak memory of a training step (workspace, allocator fragmentation).
_TRAINING_SLACK = 1.5


def mask_counts(prediction: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """int64 ``(tp, fp, fn)`` of a boolean ``(z, y, x)`` prediction against a label (organ where
    non-zero), on their device: no copy to the host."""
    truth = label != 0
    tp = (prediction & truth).sum()
    return torch.stack([tp, prediction.sum() - tp, truth.sum() - tp])


def _volume_bytes(case: PreparedCase, level: str) -> int:
    """Bytes of a case's float32 image and uint8 label at ``level`` on a device."""
    return 5 * int(np.prod(case.array(level, "label").shape))


def device_budget(config: TrainConfig, device: torch.device, batch_per_process: int) -> int:
    """Bytes of validation volumes a process may keep on ``device`` beside training (0 on the CPU)."""
    if device.type != "cuda":
        return 0
    training = estimate_training_memory(
        {"base_channels": config.base_channels, "depth": config.depth},
        config.patch_size,
        batch_per_process,
        config.architecture,
    )
    total = torch.cuda.get_device_properties(device).total_memory
    return max(0, int((total - _TRAINING_SLACK * training.peak_bytes) // 2))


class ValidationVolumes:
    """The ``(image, label)`` of a process's validation cases at one level, kept on the device
    within a byte budget.

    Args:
        cases: the process's validation cases.
        level: the cache level the network segments.
        device: the process's device.
        budget: bytes that may be kept on ``device`` (:func:`device_budget`).

    Iterating yields float32 images and uint8 labels ``(z, y, x)``: tensors on ``device`` for
    kept cases, the cache's memory maps for the others.
    """

    def __init__(self, cases: Sequence[PreparedCase], level: str, device: torch.device, budget: int) -> None:
        self.cases = list(cases)
        self.level = level
        self.device = device
        self._kept: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        spent = 0
        for index, case in enumerate(self.cases):
            size = _volume_bytes(case, level)
            if spent + size > budget:
                break
            self._kept[index] = (
                torch.from_numpy(np.array(case.array(level, "image"), dtype=np.float32)).to(device),
                torch.from_numpy(np.array(case.array(level, "label"), dtype=np.uint8)).to(device),
            )
            spent += size
        self.kept_bytes = spent

    def __len__(self) -> int:
        return len(self.cases)

    @property
    def kept(self) -> int:
        """How many cases are held on the device."""
        return len(self._kept)

    def __iter__(self) -> Iterator[tuple[torch.Tensor | np.ndarray, torch.Tensor]]:
        for index, case in enumerate(self.cases):
            if index in self._kept:
                yield self._kept[index]
            else:
                label = torch.from_numpy(np.array(case.array(self.level, "label"), dtype=np.uint8))
                yield case.array(self.level, "image"), label.to(self.device)
