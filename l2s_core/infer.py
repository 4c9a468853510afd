"""Segmenting a normalised ``(z, y, x)`` image with trained networks: patch-wise prediction
(one pass where the image fits the network's patch, a sliding window of the patch otherwise),
the paper's two-stage pipeline (localise at low resolution, segment the organ box at full
resolution) and its ground-truth-localised variant.

No network ever receives an input larger than its training patch: a 512×512×900 CT, a large
liver crop or the whole-image fallback are all segmented window by window, so the memory of a
prediction is bounded by the patch, as in training.

Functions take and return numpy arrays; networks map ``(N, 1, z, y, x)`` images to
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
    "Localisation",
    "Segmenter",
    "TwoStageResult",
    "box_predict",
    "gt_localised_predict",
    "predict_probability",
    "predict_volume",
    "save_prediction",
    "two_stage_predict",
]

import contextlib
import time
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
from l2s_core.data.cache import PreparedCase
from l2s_core.data.io import write_mask
from l2s_core.data.prepare import downsample_image
from l2s_core.data.prepared_layout import LOWRES_DIVISORS, PrepareSettings
from l2s_core.errors import ConfigError
from l2s_core.sampling import pad_to_multiple
from l2s_core.train.config import TrainConfig
from l2s_core.vocabulary import BOX_MAPPINGS, FALLBACKS


@dataclass(frozen=True)
class Segmenter:
    """A trained network with the window it predicts through.

    Attributes:
        model: network mapping ``(N, 1, z, y, x)`` to ``(N, 2, z, y, x)`` logits.
        patch_size: ``(z, y, x)`` largest input the network is given (its training patch).
        overlap: fraction of overlap between neighbouring windows per axis.
        sw_batch_size: windows per forward pass.
        amp: run under bfloat16 autocast (CUDA).
        multiple: inputs are zero-padded to a multiple of this per axis (default: the
            model's ``size_multiple``, ``2 ** depth`` of a U-Net, else 1).
    """

    model: torch.nn.Module
    patch_size: tuple[int, int, int]
    overlap: float = 0.25
    sw_batch_size: int = 1
    amp: bool = False
    multiple: int = 0

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

    @classmethod
    def of_run(cls, model: torch.nn.Module, config: TrainConfig, sw_batch_size: int | None = None) -> Segmenter:
        """``model`` with the window of the run ``config`` trained it with: its patch, overlap and
        autocast; ``sw_batch_size`` windows per pass (default: the run's global batch)."""
        return cls(
            model,
            config.patch_size,
            overlap=config.sw_overlap,
            sw_batch_size=sw_batch_size or config.batch_size,
            amp=config.amp,
        )

    def window(self, padded_shape: tuple[int, ...]) -> tuple[int, int, int]:
        """The window used on an image of ``padded_shape``: the patch, clipped to the image."""
        return tuple(min(p, s) for p, s in zip(self.patch_size, padded_shape))  # type: ignore[return-value]


@dataclass(frozen=True)
class Localisation:
    """How an organ box, predicted or given, becomes the organ network's input.

    Attributes:
        margin: voxels added on each side of the box (the prepared task's crop margin; the
            paper's 15).
        fallback: when no box is found: ``"whole_image"`` segments the whole image with the
            organ network, ``"empty"`` predicts no organ.
        divisors: low-resolution divisors ``(z, y, x)`` the localiser was trained with (the
            prepared task's ``lowres_divisors``).
        box_mapping: ``"scale"`` (:func:`~l2s_core.boxes.scale_box`) or ``"upsample_nearest"``
            (the released code, :func:`~l2s_core.boxes.upsampled_organ_box`).
        guard_grows: the second-stage guard (an l2s addition, :mod:`l2s_core.box_guard`): at
            most this many times, when the organ mask touches a face of its box inside the
            image, that face moves out by the margin and the box is segmented again; 0 (the
            paper's method) never.

    Raises:
        ConfigError: an unknown ``fallback`` or ``box_mapping``, or a negative ``guard_grows``.
    """

    margin: int
    fallback: str = "whole_image"
    divisors: tuple[int, int, int] = LOWRES_DIVISORS
    box_mapping: str = "scale"
    guard_grows: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "divisors", tuple(int(d) for d in self.divisors))
        for name, value, choices in (
            ("fallback", self.fallback, FALLBACKS),
            ("box_mapping", self.box_mapping, BOX_MAPPINGS),
        ):
            if value not in choices:
                raise ConfigError(name, f"must be one of {', '.join(choices)}, got {value!r}")
        if self.guard_grows < 0:
            raise ConfigError("guard_grows", f"must be 0 (off) or more, got {self.guard_grows}")

    @classmethod
    def of_settings(
        cls, settings: PrepareSettings, fallback: str = "whole_image", box_mapping: str = "scale", guard_grows: int = 0
    ) -> Localisation:
        """The localisation of a task prepared with ``settings`` (its margin and divisors)."""
        return cls(settings.crop_margin, fallback, settings.lowres_divisors, box_mapping, guard_grows)


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
        box_grows: how many times the second-stage guard grew the box (0 without the guard).
    """

    mask: np.ndarray
    lowres_mask: np.ndarray | None
    box: Box | None
    fallback_used: str | None
    seconds: float
    box_grows: int = 0


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


def _volume_logits(segmenter: Segmenter, image: np.ndarray, device: str | torch.device) -> torch.Tensor:
    """Float32 ``(2, z, y, x)`` logits of a ``(z, y, x)`` image, never feeding more than the patch.

    The image is zero-padded at the end to the network's size multiple; if it then fits the
    patch it is segmented in one pass, otherwise by MONAI's ``sliding_window_inference`` with
    the patch clipped to the padded image per axis (overlapping windows averaged with equal
    weights). The logits are cropped back to the image.
    """
    padded = pad_to_multiple(np.asarray(image), segmenter.multiple)
    # One float32 copy at most (a 512x512x900 CT is ~1 GB): padding already made a writable copy.
    batch = torch.from_numpy(np.require(padded, dtype=np.float32, requirements=["W", "C"]))[None, None].to(device)
    window = segmenter.window(padded.shape)
    amp = segmenter.amp and torch.device(device).type == "cuda"
    with _evaluating(segmenter.model, device, amp) as net:
        if window == tuple(padded.shape):
            logits = net(batch)
        else:
            from monai.inferers import sliding_window_inference  # imported here: MONAI's import costs ~3 s

            logits = sliding_window_inference(
                batch,
                roi_size=window,
                sw_batch_size=segmenter.sw_batch_size,
                predictor=net,
                overlap=segmenter.overlap,
                sw_device=device,
                device=device,
            )
    z, y, x = image.shape
    return logits[0, :, :z, :y, :x].float()


def predict_volume(segmenter: Segmenter, image: np.ndarray, device: str | torch.device = "cpu") -> np.ndarray:
    """Segment a ``(z, y, x)`` image patch-wise (see :func:`_volume_logits`).

    Args:
        segmenter: the network and its window.
        image: normalised ``(z, y, x)`` image of any size (a read-only memory map is fine).
        device: where the network runs and the logits are accumulated.

    Returns:
        uint8 ``(z, y, x)`` mask (argmax over the classes: organ where its logit exceeds the
        background's) of the image's shape.
    """
    logits = _volume_logits(segmenter, image, device)
    # the two-class argmax as one comparison: on the CPU, argmax over dim 0 of a 512x512x128 slab
    # takes ~3.7 s and an int64 copy, the comparison ~0.02 s; ties go to the background in both
    return (logits[1] > logits[0]).to(torch.uint8).cpu().numpy()


def predict_probability(segmenter: Segmenter, image: np.ndarray, device: str | torch.device = "cpu") -> np.ndarray:
    """Foreground probability (softmax) of a ``(z, y, x)`` image, predicted patch-wise.

    Returns:
        float32 ``(z, y, x)`` array in ``[0, 1]``; averaging these over runs gives an ensemble.
    """
    return torch.softmax(_volume_logits(segmenter, image, device), dim=0)[1].cpu().numpy()


def _segment_box(
    organ: Segmenter, image: np.ndarray, box: Box | None, localisation: Localisation, device: str | torch.device
) -> tuple[np.ndarray, Box | None, str | None, int]:
    """The organ network's full-size mask for ``box`` (or the fallback's when ``box`` is None),
    the box finally segmented and how often the guard grew it (``localisation.guard_grows``)."""
    if box is None:
        if localisation.fallback == "empty":
            return np.zeros(image.shape, dtype=np.uint8), None, "empty", 0
        return predict_volume(organ, image, device), None, localisation.fallback, 0
    grows = 0
    organ_mask = predict_volume(organ, crop(image, box), device)
    while grows < localisation.guard_grows:
        faces = touched_faces(organ_mask, box, image.shape)
        if not faces:
            break
        box = grown_box(box, faces, localisation.margin, image.shape)
        grows += 1
        organ_mask = predict_volume(organ, crop(image, box), device)
    return paste(organ_mask, box, image.shape), box, None, grows


def two_stage_predict(
    localiser: Segmenter,
    organ: Segmenter,
    image: np.ndarray,
    localisation: Localisation,
    device: str | torch.device = "cpu",
) -> TwoStageResult:
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
        The :class:`TwoStageResult`.
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
    mask, box, fallback_used, grows = _segment_box(organ, image, box, localisation, device)
    return TwoStageResult(mask, lowres_mask, box, fallback_used, time.perf_counter() - started, grows)


def gt_localised_predict(
    organ: Segmenter,
    image: np.ndarray,
    label: np.ndarray,
    localisation: Localisation,
    device: str | torch.device = "cpu",
) -> TwoStageResult:
    """The organ network on the ground-truth box: the label's largest component + the margin.

    Args:
        organ: network trained on organ crops, with its window.
        image: normalised full-resolution ``(z, y, x)`` image.
        label: organ mask ``(z, y, x)`` of the same shape.
        localisation: margin and fallback (for an empty label).
        device: where the network runs.

    Returns:
        The :class:`TwoStageResult` (``lowres_mask`` is ``None``).

    Raises:
        ValueError: image and label differ in shape.
    """
    if image.shape != label.shape:
        raise ValueError(f"image {image.shape} and label {label.shape} (z, y, x) differ in shape")
    started = time.perf_counter()
    image = np.asarray(image, dtype=np.float32)
    box = organ_box(np.asarray(label), localisation.margin)
    mask, box, fallback_used, grows = _segment_box(organ, image, box, localisation, device)
    return TwoStageResult(mask, None, box, fallback_used, time.perf_counter() - started, grows)


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
    return _segment_box(organ, np.asarray(image, dtype=np.float32), box, Localisation(0, "empty"), device)[0]


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
