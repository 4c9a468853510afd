"""Segmenting a normalised ``(z, y, x)`` image with trained networks: patch-wise prediction
(one pass where the image fits the network's patch, a sliding window of the patch otherwise),
the paper's two-stage pipeline (localise at low resolution, segment the organ box at full
resolution) and its ground-truth-localised variant.

No network ever receives an input larger than its training patch: a 512×512×900 CT, a large
liver crop or the whole-image fallback are all segmented window by window, so the memory of a
prediction is bounded by the patch, as in training.

Functions take and return numpy arrays, and the localised predictions a
:class:`~l2s_core.prediction.Localisation` and a :class:`~l2s_core.prediction.Prediction`
(torch-free records, :mod:`l2s_core.prediction`); networks map ``(N, 1, z, y, x)`` images to
``(N, 2, z, y, x)`` logits and are run in eval mode under ``torch.inference_mode`` (their
previous train/eval mode is restored afterwards).

Example:
    >>> localiser = Segmenter(localiser_net, patch_size=(64, 256, 256))  # doctest: +SKIP
    >>> organ = Segmenter(organ_net, patch_size=(64, 256, 256))  # doctest: +SKIP
    >>> result = two_stage_predict(localiser, organ, image, Localisation(margin=15))  # doctest: +SKIP
    >>> save_prediction(result.mask, task.case("spleen_2"), "spleen_2.nii.gz")  # doctest: +SKIP
"""

from __future__ import annotations

__all__ = [
    "Segmenter",
    "box_predict",
    "gt_localised_predict",
    "predict_mask",
    "predict_probability",
    "predict_volume",
    "save_prediction",
    "two_stage_predict",
    "volume_margin",
    "window_starts",
]

import contextlib
import dataclasses
import itertools
import math
import os
import time
import warnings
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from l2s_core.box_guard import grown_box, touched_faces
from l2s_core.boxes import (
    Box,
    crop,
    expand_box,
    largest_component_box,
    organ_box,
    paste,
    scale_box,
    upsampled_organ_box,
)
from l2s_core.compiling import compile_network, compile_wanted
from l2s_core.data.cache import PreparedCase
from l2s_core.data.io import write_mask
from l2s_core.data.prepare import downsample_image
from l2s_core.errors import ConfigError
from l2s_core.prediction import Localisation, Prediction


@dataclass(frozen=True)
class Segmenter:
    """A trained network with the window it predicts through.

    Attributes:
        model: network mapping ``(N, 1, z, y, x)`` to ``(N, 2, z, y, x)`` logits.
        patch_size: ``(z, y, x)`` largest input the network is given (its training patch).
        overlap: fraction of overlap between neighbouring windows per axis.
        sw_batch_size: windows per forward pass; ``None``: as many as half the free memory
            holds (:func:`_windows_per_pass`).
        amp: run under bfloat16 autocast (CUDA).
        multiple: inputs are zero-padded to a multiple of this per axis (default: the
            model's ``size_multiple``, ``2 ** depth`` of a U-Net, else 1).
        compile: compile the network (:mod:`l2s_core.compiling`); ``None``: on GPUs only.
    """

    model: torch.nn.Module
    patch_size: tuple[int, int, int]
    overlap: float = 0.25
    sw_batch_size: int | None = 1
    amp: bool = False
    multiple: int = 0
    compile: bool | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "patch_size", tuple(int(s) for s in self.patch_size))
        if not self.multiple:
            object.__setattr__(self, "multiple", int(getattr(self.model, "size_multiple", 1)))
        if len(self.patch_size) != 3 or any(s < 1 or s % self.multiple for s in self.patch_size):
            raise ConfigError(
                "patch_size",
                f"{self.patch_size} (z, y, x) needs three sides, each a positive "
                f"multiple of the network's size multiple {self.multiple}",
            )

    def window(self, padded_shape: tuple[int, ...]) -> tuple[int, int, int]:
        """The window used on an image of ``padded_shape``: the patch, clipped to the image."""
        return tuple(min(p, s) for p, s in zip(self.patch_size, padded_shape))  # type: ignore[return-value]


@contextlib.contextmanager
def _evaluating(segmenter: Segmenter, device: str | torch.device) -> Iterator[torch.nn.Module]:
    """The segmenter's network on ``device`` in eval mode, under inference mode and bf16 autocast
    (CUDA, when asked), compiled when its ``compile`` option wants it there
    (:func:`~l2s_core.compiling.compile_wanted`); its train/eval mode is restored afterwards."""
    model = segmenter.model
    was_training = model.training
    model.eval()
    device_type = torch.device(device).type
    amp = segmenter.amp and device_type == "cuda"
    if compile_wanted(segmenter.compile, device):
        compile_network(model)
    try:
        with torch.inference_mode(), torch.autocast(device_type, dtype=torch.bfloat16, enabled=amp):
            yield model.to(device)
    finally:
        model.train(was_training)


def window_starts(side: int, window: int, overlap: float) -> list[int]:
    """Start indices of the windows along one axis of ``side`` voxels (MONAI's scheme): every
    ``int(window * (1 - overlap))`` voxels (at least 1), the last one shifted back to end at the
    edge; one window where it covers the axis."""
    if window >= side:
        return [0]
    interval = max(int(window * (1 - overlap)), 1)
    count = math.ceil((side - window) / interval) + 1
    return [min(i * interval, side - window) for i in range(count)]


def _coverage(side: int, window: int, starts: list[int], device: torch.device) -> torch.Tensor:
    """How many windows cover each index of an axis: float32 ``(side,)``."""
    counts = torch.zeros(side, dtype=torch.float32, device=device)
    for start in starts:
        counts[start : start + window] += 1
    return counts


#: Per network and window, bytes one more window in a forward pass takes on the GPU, measured at
#: its first pass (:func:`_windows_per_pass`).
_WINDOW_BYTES: weakref.WeakKeyDictionary[torch.nn.Module, dict[tuple[int, ...], int]] = weakref.WeakKeyDictionary()
#: Share of the GPU's free memory the windows of one forward pass may take.
_WINDOW_MEMORY_SHARE = 0.5


def _free_device_bytes(device: torch.device) -> int:
    """Bytes a forward pass can use on a CUDA device: free memory plus what PyTorch's allocator
    holds without using it."""
    free, _ = torch.cuda.mem_get_info(device)
    return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))


def _cpu_window_bytes(model: torch.nn.Module, window: tuple[int, ...]) -> int | None:
    """Estimated bytes of one window's forward pass on the CPU: the activations a training step
    saves (:mod:`l2s_core.memory`, an upper bound of a pass without gradients), for the study's
    networks; ``None`` for other modules."""
    from l2s_core.memory import estimate_training_memory
    from l2s_core.model import ARCHITECTURE_CLASSES

    architecture = next((a for a, cls in ARCHITECTURE_CLASSES.items() if type(model) is cls), None)
    hparams = getattr(model, "hparams", None)
    if architecture is None or not isinstance(hparams, dict):
        return None
    shape = (int(window[0]), int(window[1]), int(window[2]))
    return max(estimate_training_memory(hparams, shape, 1, architecture).activation_bytes, 1)


def _available_cpu_bytes() -> int:
    """Physical memory not in use (Linux ``sysconf``; 0 where it cannot be read)."""
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 0


def _windows_per_pass(
    segmenter: Segmenter, net: torch.nn.Module, batch: torch.Tensor, window: tuple[int, ...], count: int
) -> int:
    """Windows per forward pass: the segmenter's ``sw_batch_size``, or (``None``) as many of the
    ``count`` windows as half the free memory holds: on a GPU from the peak memory of one
    window's pass, measured once per network and window; on the CPU from the memory estimate of
    the study's networks (one window for other modules)."""
    if segmenter.sw_batch_size is not None:
        return min(segmenter.sw_batch_size, count)
    if count == 1:
        return 1
    device = batch.device
    known = _WINDOW_BYTES.setdefault(segmenter.model, {})
    if window not in known:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
            before = torch.cuda.memory_allocated(device)
            net(batch[..., : window[0], : window[1], : window[2]])
            known[window] = max(int(torch.cuda.max_memory_allocated(device) - before), 1)
        else:
            known[window] = _cpu_window_bytes(segmenter.model, window) or 0
    if not known[window]:
        return 1
    free = _free_device_bytes(device) if device.type == "cuda" else _available_cpu_bytes()
    return int(max(1, min(count, _WINDOW_MEMORY_SHARE * free // known[window])))


def _as_volume(image: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    """A ``(z, y, x)`` image as a float32 tensor on ``device``, copied at most once (a read-only
    memory map is read straight into the device's tensor)."""
    if isinstance(image, torch.Tensor):
        return image.to(device=device, dtype=torch.float32)
    array = np.asarray(image)
    with warnings.catch_warnings():  # a read-only memory map: only read, never written through
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        tensor = torch.from_numpy(array if array.dtype == np.float32 else array.astype(np.float32))
    return tensor.to(device)


def volume_margin(segmenter: Segmenter, image: np.ndarray | torch.Tensor, device: str | torch.device) -> torch.Tensor:
    """Float32 ``(z, y, x)`` organ-minus-background logit margin of an image, on ``device``,
    never feeding the network more than its patch.

    The image is zero-padded at the end (on the device) to the network's size multiple; if it
    then fits the patch it is segmented in one pass, otherwise window by window with the patch
    clipped to the padded image per axis (:func:`window_starts`), as many windows per forward
    pass as :func:`_windows_per_pass` allows, overlapping windows averaged with equal weights
    (MONAI's ``sliding_window_inference`` with constant weights, without its host-side padding
    and copies). The margin is cropped back to the image; the organ is where it is positive, its
    probability its sigmoid (the two-class softmax of the averaged logits).
    """
    device = torch.device(device)
    volume = _as_volume(image, device)
    z, y, x = volume.shape
    padding = [-side % segmenter.multiple for side in (z, y, x)]
    batch = volume[None, None]
    if any(padding):
        batch = torch.nn.functional.pad(batch, (0, padding[2], 0, padding[1], 0, padding[0]))
    padded_shape = tuple(batch.shape[2:])
    window = segmenter.window(padded_shape)
    with _evaluating(segmenter, device) as net:
        if window == padded_shape:
            logits = net(batch)
            return (logits[0, 1].float() - logits[0, 0].float())[:z, :y, :x]
        starts = [window_starts(s, w, segmenter.overlap) for s, w in zip(padded_shape, window)]
        corners = list(itertools.product(*starts))
        total = torch.zeros(padded_shape, dtype=torch.float32, device=device)
        per_pass = _windows_per_pass(segmenter, net, batch, window, len(corners))
        for first in range(0, len(corners), per_pass):
            chunk = corners[first : first + per_pass]
            slices = [tuple(slice(c, c + w) for c, w in zip(corner, window)) for corner in chunk]
            logits = net(torch.cat([batch[0, :, s[0], s[1], s[2]][None] for s in slices]))
            margins = logits[:, 1].float() - logits[:, 0].float()
            for s, margin in zip(slices, margins):
                total[s] += margin
        coverage = [_coverage(s, w, a, device) for s, w, a in zip(padded_shape, window, starts)]
        if any(bool((c > 1).any()) for c in coverage):
            total /= coverage[0][:, None, None] * coverage[1][None, :, None] * coverage[2][None, None, :]
    return total[:z, :y, :x]


def predict_mask(
    segmenter: Segmenter, image: np.ndarray | torch.Tensor, device: str | torch.device = "cpu"
) -> torch.Tensor:
    """Boolean ``(z, y, x)`` organ mask of an image, left on ``device`` (see :func:`volume_margin`);
    the organ where its logit exceeds the background's (ties go to the background, as argmax)."""
    return volume_margin(segmenter, image, device) > 0


def predict_volume(segmenter: Segmenter, image: np.ndarray, device: str | torch.device = "cpu") -> np.ndarray:
    """Segment a ``(z, y, x)`` image patch-wise (see :func:`volume_margin`).

    Args:
        segmenter: the network and its window.
        image: normalised ``(z, y, x)`` image of any size (a read-only memory map is fine).
        device: where the network runs and the logits are accumulated.

    Returns:
        uint8 ``(z, y, x)`` mask (argmax over the classes: organ where its logit exceeds the
        background's) of the image's shape.
    """
    return predict_mask(segmenter, image, device).to(torch.uint8).cpu().numpy()


def predict_probability(segmenter: Segmenter, image: np.ndarray, device: str | torch.device = "cpu") -> np.ndarray:
    """Foreground probability (softmax) of a ``(z, y, x)`` image, predicted patch-wise.

    Returns:
        float32 ``(z, y, x)`` array in ``[0, 1]``; averaging these over runs gives an ensemble.
    """
    return torch.sigmoid(volume_margin(segmenter, image, device)).cpu().numpy()


def _segment_box(
    organ: Segmenter, image: np.ndarray, box: Box | None, localisation: Localisation, device: str | torch.device
) -> Prediction:
    """The organ network's full-size mask for ``box`` (or the fallback's when ``box`` is None),
    with the box finally segmented and how often the guard grew it (``localisation.guard_grows``)."""
    if box is None:
        if localisation.fallback == "empty":
            return Prediction(np.zeros(image.shape, dtype=np.uint8), fallback_used="empty")
        return Prediction(predict_volume(organ, image, device), fallback_used=localisation.fallback)
    grows = 0
    organ_mask = predict_volume(organ, crop(image, box), device)
    while grows < localisation.guard_grows:
        faces = touched_faces(organ_mask, box, image.shape)
        if not faces:
            break
        box = grown_box(box, faces, localisation.margin, image.shape)
        grows += 1
        organ_mask = predict_volume(organ, crop(image, box), device)
    return Prediction(paste(organ_mask, box, image.shape), box, box_grows=grows)


def two_stage_predict(
    localiser: Segmenter,
    organ: Segmenter,
    image: np.ndarray,
    localisation: Localisation,
    device: str | torch.device = "cpu",
) -> Prediction:
    """The paper's two-stage pipeline.

    The image is resized to low resolution as in preparation (:func:`downsample_image` with
    the localisation's divisors); the localiser segments it; the organ box is found by
    ``localisation.box_mapping``: ``scale`` maps the bounding box of the largest connected
    component to full resolution and grows it by ``localisation.margin`` voxels,
    ``upsample_nearest`` is the released code's rule (:func:`upsampled_organ_box`); the organ
    network segments that box of the image (zero-filled where it reaches beyond the image),
    grown by the guard where its mask touches a face inside the image
    (``localisation.guard_grows`` times at most); its mask is pasted into an empty full-size
    mask. Both networks predict patch-wise (:func:`predict_volume`).

    Args:
        localiser: network trained on low-resolution images, with its window.
        organ: network trained on organ crops, with its window.
        image: normalised full-resolution ``(z, y, x)`` image.
        localisation: margin, fallback, divisors and box mapping.
        device: where the networks run.

    Returns:
        The :class:`~l2s_core.prediction.Prediction`, with the localiser's ``lowres_mask``
        and the ``seconds`` of the whole prediction.
    """
    started = time.perf_counter()
    image = np.asarray(image, dtype=np.float32)
    lowres = downsample_image(image, localisation.divisors)
    lowres_mask = predict_volume(localiser, lowres, device)
    if localisation.box_mapping == "scale":
        lowres_box = largest_component_box(lowres_mask)
        box = (
            None
            if lowres_box is None
            else expand_box(scale_box(lowres_box, lowres.shape, image.shape), localisation.margin)
        )
    else:
        box = upsampled_organ_box(lowres_mask, image.shape, localisation.margin)
    prediction = _segment_box(organ, image, box, localisation, device)
    return dataclasses.replace(prediction, lowres_mask=lowres_mask, seconds=time.perf_counter() - started)


def gt_localised_predict(
    organ: Segmenter,
    image: np.ndarray,
    label: np.ndarray,
    localisation: Localisation,
    device: str | torch.device = "cpu",
) -> Prediction:
    """The organ network on the ground-truth box: the label's largest component + the margin.

    Args:
        organ: network trained on organ crops, with its window.
        image: normalised full-resolution ``(z, y, x)`` image.
        label: organ mask ``(z, y, x)`` of the same shape.
        localisation: margin and fallback (for an empty label).
        device: where the network runs.

    Returns:
        The :class:`~l2s_core.prediction.Prediction` (``lowres_mask`` is ``None``), with the
        ``seconds`` of the whole prediction.

    Raises:
        ValueError: image and label differ in shape.
    """
    if image.shape != label.shape:
        raise ValueError(f"image {image.shape} and label {label.shape} (z, y, x) differ in shape")
    started = time.perf_counter()
    image = np.asarray(image, dtype=np.float32)
    box = organ_box(np.asarray(label), localisation.margin)
    prediction = _segment_box(organ, image, box, localisation, device)
    return dataclasses.replace(prediction, seconds=time.perf_counter() - started)


def box_predict(organ: Segmenter, image: np.ndarray, box: Box, device: str | torch.device = "cpu") -> np.ndarray:
    """The organ network inside a given box (a manual localisation), pasted into a full-size mask.

    Args:
        organ: network trained on organ crops, with its window.
        image: normalised full-resolution ``(z, y, x)`` image.
        box: half-open ``(z0, y0, x0, z1, y1, x1)``; it may reach beyond the image (zero-filled).
        device: where the network runs.

    Returns:
        uint8 ``(z, y, x)`` mask of the image's shape, zero outside the box.
    """
    return _segment_box(organ, np.asarray(image, dtype=np.float32), box, Localisation(0, "empty"), device).mask


def save_prediction(mask: np.ndarray, case: PreparedCase, path: str | Path) -> None:
    """Write a ``(z, y, x)`` mask of a prepared case as NIfTI on its source scan's voxel grid.

    Args:
        mask: full-resolution mask ``(z, y, x)`` of the case's prepared shape.
        case: the prepared case the mask belongs to.
        path: output ``.nii.gz`` (or ``.nii``) file, written atomically.

    Raises:
        ValueError: the mask's shape does not match the case.
    """
    write_mask(mask, case.meta.source, path)
