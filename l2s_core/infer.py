"""Segmenting a normalised ``(z, y, x)`` image with trained networks: whole-image and
sliding-window prediction, the paper's two-stage pipeline (localise at low resolution, segment
the organ box at full resolution) and its ground-truth-localised variant.

Functions take and return numpy arrays; networks map ``(N, 1, z, y, x)`` images to
``(N, 2, z, y, x)`` logits and are run in eval mode under ``torch.inference_mode`` (their
previous train/eval mode is restored afterwards).

Example:
    >>> result = two_stage_predict(localiser, organ_net, image, multiple=8)  # doctest: +SKIP
    >>> save_prediction(result.mask, task.case("spleen_2"), "spleen_2.nii.gz")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from l2s_core.boxes import Box, bounding_box, crop, expand_box, largest_component, organ_box, paste, scale_box
from l2s_core.data.cache import PreparedCase
from l2s_core.data.io import write_mask
from l2s_core.data.prepare import CROP_MARGIN, downsample_image
from l2s_core.errors import ConfigError
from l2s_core.sampling import pad_to_multiple

#: What to do when no organ box is found: segment the whole image, or return an empty mask.
FALLBACKS = ("whole_image", "empty")


@dataclass(frozen=True)
class TwoStageResult:
    """Outcome of a localised prediction.

    Attributes:
        mask: full-resolution organ mask, uint8 ``(z, y, x)`` of the image's shape.
        lowres_mask: the localiser's uint8 ``(z, y, x)`` low-resolution mask (``None`` when the
            box came from the ground truth).
        box: full-resolution half-open box ``(z0, y0, x0, z1, y1, x1)`` the organ network
            segmented, margin included (it may reach beyond the image); ``None`` when nothing
            was localised.
        fallback_used: ``None``, or the fallback (``"whole_image"`` or ``"empty"``) applied
            because nothing was localised.
        seconds: wall-clock time of the whole prediction.
    """

    mask: np.ndarray
    lowres_mask: np.ndarray | None
    box: Box | None
    fallback_used: str | None
    seconds: float


@contextlib.contextmanager
def _evaluating(model: torch.nn.Module, device: str | torch.device, amp: bool) -> Iterator[torch.nn.Module]:
    """Run ``model`` in eval mode under inference mode and optional bf16 autocast, on ``device``."""
    was_training = model.training
    model.eval()
    device_type = torch.device(device).type
    try:
        with torch.inference_mode(), torch.autocast(device_type, dtype=torch.bfloat16, enabled=amp):
            yield model.to(device)
    finally:
        model.train(was_training)


def _as_batch(image: np.ndarray, device: str | torch.device) -> torch.Tensor:
    """A ``(z, y, x)`` array (possibly a read-only memory map) as a float32 ``(1, 1, z, y, x)``
    tensor on ``device``."""
    return torch.from_numpy(np.array(image, dtype=np.float32))[None, None].to(device)


def _argmax_mask(logits: torch.Tensor) -> np.ndarray:
    """Class index per voxel of ``(1, C, z, y, x)`` logits as a uint8 ``(z, y, x)`` array."""
    return logits[0].argmax(dim=0).to(torch.uint8).cpu().numpy()


def predict_whole(model: torch.nn.Module, image: np.ndarray, multiple: int, device: str | torch.device = "cpu",
                  amp: bool = False) -> np.ndarray:
    """Segment a whole image in one forward pass.

    Args:
        model: network mapping ``(1, 1, z, y, x)`` to ``(1, 2, z, y, x)`` logits.
        image: normalised ``(z, y, x)`` image.
        multiple: the image is zero-padded at the end to a multiple of this per axis
            (``2 ** depth`` of the U-Net) and the prediction cropped back.
        device: where the network runs.
        amp: run under bfloat16 autocast.

    Returns:
        uint8 ``(z, y, x)`` mask (argmax over the classes) of the image's shape.
    """
    padded = pad_to_multiple(np.asarray(image), multiple)
    with _evaluating(model, device, amp) as net:
        mask = _argmax_mask(net(_as_batch(padded, device)))
    z, y, x = image.shape
    return np.ascontiguousarray(mask[:z, :y, :x])


def predict_sliding_window(model: torch.nn.Module, image: np.ndarray, patch_size: tuple[int, int, int],
                           overlap: float = 0.25, sw_batch_size: int = 1, device: str | torch.device = "cpu",
                           amp: bool = False) -> np.ndarray:
    """Segment an image patch by patch with MONAI's ``sliding_window_inference`` (the baseline).

    Overlapping windows are averaged with equal weights; an image smaller than the patch on
    some axis is zero-padded for the pass and the prediction cropped back.

    Args:
        model: network mapping ``(N, 1, *patch_size)`` to ``(N, 2, *patch_size)`` logits.
        image: normalised ``(z, y, x)`` image.
        patch_size: ``(z, y, x)`` window, the training patch size.
        overlap: fraction of overlap between neighbouring windows per axis.
        sw_batch_size: windows per forward pass.
        device: where the network runs and the logits are accumulated.
        amp: run under bfloat16 autocast.

    Returns:
        uint8 ``(z, y, x)`` mask of the image's shape.
    """
    from monai.inferers import sliding_window_inference  # imported here: MONAI's import costs ~3 s

    with _evaluating(model, device, amp) as net:
        logits = sliding_window_inference(_as_batch(image, device), roi_size=tuple(patch_size),
                                          sw_batch_size=sw_batch_size, predictor=net, overlap=overlap,
                                          sw_device=device, device=device)
        return _argmax_mask(logits)


def _check_fallback(fallback: str) -> None:
    if fallback not in FALLBACKS:
        raise ConfigError("fallback", f"must be one of {', '.join(FALLBACKS)}, got {fallback!r}")


def _segment_box(organ_net: torch.nn.Module, image: np.ndarray, box: Box | None, fallback: str, multiple: int,
                 device: str | torch.device, amp: bool) -> tuple[np.ndarray, str | None]:
    """The organ network's full-size mask for ``box``, or the fallback's when ``box`` is None."""
    if box is None:
        if fallback == "empty":
            return np.zeros(image.shape, dtype=np.uint8), fallback
        return predict_whole(organ_net, image, multiple, device, amp), fallback
    organ_mask = predict_whole(organ_net, crop(image, box), multiple, device, amp)
    return paste(organ_mask, box, image.shape), None


def two_stage_predict(localiser: torch.nn.Module, organ_net: torch.nn.Module, image: np.ndarray, multiple: int,
                      margin: int = CROP_MARGIN, fallback: str = "whole_image", device: str | torch.device = "cpu",
                      amp: bool = False) -> TwoStageResult:
    """The paper's two-stage pipeline.

    The image is resized to low resolution as in preparation (:func:`downsample_image`); the
    localiser segments it; the bounding box of the largest connected component is mapped to
    full resolution (:func:`scale_box`) and grown by ``margin`` voxels; the organ network
    segments that box of the image (zero-filled where it reaches beyond the image); its mask
    is pasted into an empty full-size mask.

    Args:
        localiser: network trained on low-resolution images.
        organ_net: network trained on organ crops.
        image: normalised full-resolution ``(z, y, x)`` image.
        multiple: network inputs are zero-padded to a multiple of this (``2 ** depth``).
        margin: voxels added on each side of the box (15 in the paper).
        fallback: when the localiser finds nothing: ``"whole_image"`` segments the whole
            image with the organ network, ``"empty"`` returns an empty mask.
        device: where the networks run.
        amp: run under bfloat16 autocast.

    Returns:
        The :class:`TwoStageResult`.

    Raises:
        ConfigError: an unknown ``fallback``.
    """
    _check_fallback(fallback)
    started = time.perf_counter()
    image = np.asarray(image, dtype=np.float32)
    lowres = downsample_image(image)
    lowres_mask = predict_whole(localiser, lowres, multiple, device, amp)
    lowres_box = bounding_box(largest_component(lowres_mask))
    box = None if lowres_box is None else expand_box(scale_box(lowres_box, lowres.shape, image.shape), margin)
    mask, fallback_used = _segment_box(organ_net, image, box, fallback, multiple, device, amp)
    return TwoStageResult(mask, lowres_mask, box, fallback_used, time.perf_counter() - started)


def gt_localised_predict(organ_net: torch.nn.Module, image: np.ndarray, label: np.ndarray, multiple: int,
                         margin: int = CROP_MARGIN, fallback: str = "whole_image",
                         device: str | torch.device = "cpu", amp: bool = False) -> TwoStageResult:
    """The organ network on the ground-truth box: the label's largest component + ``margin``.

    Args:
        organ_net: network trained on organ crops.
        image: normalised full-resolution ``(z, y, x)`` image.
        label: organ mask ``(z, y, x)`` of the same shape.
        multiple: network inputs are zero-padded to a multiple of this (``2 ** depth``).
        margin: voxels added on each side of the box.
        fallback: for an empty label, as in :func:`two_stage_predict`.
        device: where the network runs.
        amp: run under bfloat16 autocast.

    Returns:
        The :class:`TwoStageResult` (``lowres_mask`` is ``None``).

    Raises:
        ConfigError: an unknown ``fallback``.
        ValueError: image and label differ in shape.
    """
    _check_fallback(fallback)
    if image.shape != label.shape:
        raise ValueError(f"image {image.shape} and label {label.shape} (z, y, x) differ in shape")
    started = time.perf_counter()
    image = np.asarray(image, dtype=np.float32)
    box = organ_box(np.asarray(label), margin)
    mask, fallback_used = _segment_box(organ_net, image, box, fallback, multiple, device, amp)
    return TwoStageResult(mask, None, box, fallback_used, time.perf_counter() - started)


def save_prediction(mask: np.ndarray, case: PreparedCase, path: str | Path) -> None:
    """Write a ``(z, y, x)`` mask of a prepared case as NIfTI on its source scan's voxel grid.

    Args:
        mask: full-resolution mask ``(z, y, x)`` of the case's prepared shape.
        case: the prepared case the mask belongs to.
        path: output ``.nii.gz`` (or ``.nii``) file, written atomically.

    Raises:
        ValueError: the mask's shape does not match the case.
    """
    write_mask(mask, case.volume_meta, path)
