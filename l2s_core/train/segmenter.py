"""A trained run's network as a :class:`~l2s_core.infer.Segmenter`: predicting through the
window the run trained with (its patch, sliding-window overlap, autocast and compile option),
for validation during training, evaluation, the explorer and timing.

Example:
    >>> segmenter = load_segmenter(finished_run, "cuda")  # doctest: +SKIP
"""

from __future__ import annotations

__all__ = ["load_segmenter", "run_segmenter"]

import torch

from l2s_core.checkpoint import load_model
from l2s_core.infer import Segmenter
from l2s_core.train.config import TrainConfig
from l2s_core.train.run_files import BEST_FILE, FinishedRun


def run_segmenter(model: torch.nn.Module, config: TrainConfig, sw_batch_size: int | None = None) -> Segmenter:
    """``model`` with the window of the run ``config`` trained it with: its patch, overlap,
    autocast and compile option; ``sw_batch_size`` windows per pass (default ``None``: as
    many as the GPU's memory holds)."""
    return Segmenter(
        model,
        config.patch_size,
        overlap=config.sw_overlap,
        sw_batch_size=sw_batch_size,
        amp=config.amp,
        compile=config.compile,
    )


def load_segmenter(run: FinishedRun, device: str) -> Segmenter:
    """A finished run's best network (``best.pt``) on ``device``, with the window it trained with.

    Raises:
        CheckpointError: an unreadable checkpoint.
    """
    model, _ = load_model(run.folder / BEST_FILE, device)
    return run_segmenter(model, run.summary.config)
