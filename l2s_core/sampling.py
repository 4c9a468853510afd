"""Training patches over a prepared task, for all three networks (the paper: "an input patch
size of 64x256x256 for all experiments"): full-resolution patches for the baseline, of which a
share must contain organ, and plain random patches of the low-resolution images (localiser) and
of the organ crops (organ network).

Arrays are read from the memory-mapped cache of :mod:`l2s_core.data.cache`; a patch is cut
from the memory map, so a whole volume is never loaded to draw one patch.

On an axis where an image is smaller than the patch (a 15-slice prostate MRI against a
64-slice patch, a small crop), the patch is clipped to the image and zero-padded at the end to
the network's size multiple, as the paper's released code padded; items therefore differ in
size and are batched with :func:`pad_collate`.

Every item depends only on ``(seed, epoch, index)``: its random generator is
``numpy.random.default_rng([seed, epoch, index])`` (and, for one patch per training image, its
image is entry ``index`` of the epoch's permutation, drawn by ``default_rng([seed, epoch])``).
An item is therefore the same whatever the number of DataLoader workers, the process that
draws it or the order of drawing, and a run resumed at epoch ``e`` (after :meth:`set_epoch`)
sees the same data as an uninterrupted one.
With ``DistributedSampler(shuffle=False)`` rank ``r`` of ``w`` takes items ``r, r + w, ...``,
so a global batch over ``w`` ranks holds the same items as one process with ``w`` times the
per-rank batch size.

Example:
    >>> task = PreparedTask("prepared/spleen")  # doctest: +SKIP
    >>> patches = PatchDataset(task, task.split["train"], "full", (64, 256, 256))  # doctest: +SKIP
    >>> loader = DataLoader(patches, batch_size=2, num_workers=4, collate_fn=pad_collate)  # doctest: +SKIP
"""

from __future__ import annotations

__all__ = ["PatchDataset", "organ_bounds", "pad_collate", "pad_to_multiple"]

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from l2s_core.boxes import Box, crop
from l2s_core.data.cache import PreparedCase, PreparedTask
from l2s_core.errors import ConfigError, check_choice
from l2s_core.vocabulary import LEVELS


def pad_to_multiple(array: np.ndarray, multiple: int) -> np.ndarray:
    """Zero-pad a ``(z, y, x)`` array at the end of every axis to a multiple of ``multiple``.

    Args:
        array: array of shape ``(z, y, x)``.
        multiple: each output side is the smallest multiple of this at least the input side
            (``2 ** depth`` for a U-Net of that depth).

    Returns:
        The array itself if nothing needs padding, else a padded copy of the same dtype;
        ``array`` sits at index ``(0, 0, 0)`` of it.
    """
    padding = [(0, -side % multiple) for side in array.shape]
    if not any(after for _, after in padding):
        return array
    return np.pad(array, padding)


def pad_collate(batch: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Collate items of different sizes by zero-padding at the end to the largest size.

    Args:
        batch: items ``{"image": (1, z, y, x) float tensor, "label": (z, y, x) uint8 tensor,
            "case_id": str}`` as produced by the datasets of this module.

    Returns:
        ``{"image": (N, 1, z, y, x), "label": (N, z, y, x), "case_id": list of N str}`` with
        ``(z, y, x)`` the largest side per axis in the batch.
    """
    shape = tuple(max(int(item["label"].shape[a]) for item in batch) for a in range(3))
    first = batch[0]
    images = first["image"].new_zeros((len(batch), first["image"].shape[0], *shape))
    labels = first["label"].new_zeros((len(batch), *shape))
    for n, item in enumerate(batch):
        z, y, x = item["label"].shape
        images[n, :, :z, :y, :x] = item["image"]
        labels[n, :z, :y, :x] = item["label"]
    return {"image": images, "label": labels, "case_id": [item["case_id"] for item in batch]}


def _item(image: np.ndarray, label: np.ndarray, case_id: str) -> dict[str, Any]:
    """The dataset item of a ``(z, y, x)`` image and label (uint8: the loader's workers, the pinned
    copy and the transfer to the GPU move an eighth of int64's bytes; the loss widens it)."""
    return {
        "image": torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)[None]),
        "label": torch.from_numpy(np.ascontiguousarray(label, dtype=np.uint8)),
        "case_id": case_id,
    }


def organ_bounds(case: PreparedCase, level: str) -> Box:
    """Bounding box of the organ's largest component in the voxel indices of ``level``.

    Args:
        case: the prepared case.
        level: ``"full"`` or ``"crop"`` (the crop holds the box plus the margin on every side).

    Raises:
        ConfigError: ``level`` is ``"lowres"``, where no organ box is stored.
    """
    if level == "full":
        return case.meta.organ_box
    if level == "crop":
        return case.meta.organ_box_in_crop()
    raise ConfigError("foreground_probability", f"organ-forced patches need the full or crop level, not {level!r}")


class PatchDataset(Dataset):
    """Random patches of one cache level, a share of them forced to contain organ.

    Item ``i``: with ``samples_per_epoch=None`` (one patch per training image, the released code's
    epoch) the case at position ``i`` of a permutation of the cases drawn per epoch, so an epoch
    sees every image once; with an explicit ``samples_per_epoch`` a case drawn uniformly with
    replacement. With probability ``foreground_probability`` the patch
    must contain organ (the paper's baseline rule, 0.8), otherwise its location is uniform over
    the image (the localiser and the organ network: 0). A patch that must contain organ has
    its location drawn uniformly among the locations whose patch overlaps the bounding box of
    the organ's largest component, and redrawn (at most ``max_redraws`` times) until it holds
    an organ voxel; the organ is not centred, so it appears anywhere in the patch.

    On an axis where the image is smaller than the patch, the patch covers the whole axis and
    is zero-padded at the end to a multiple of ``multiple``, so an item's side along an axis is
    ``patch_size`` where the image is at least that large, else the image side rounded up to
    ``multiple``.

    Args:
        task: the prepared task.
        case_ids: cases to draw from (usually ``task.split["train"]``).
        level: ``"full"`` (baseline), ``"lowres"`` (localiser) or ``"crop"`` (organ network).
        patch_size: ``(z, y, x)`` patch size.
        samples_per_epoch: items per epoch; ``None``: one per case (the released code's epoch).
        foreground_probability: probability that a patch is required to contain organ
            (``"full"`` and ``"crop"`` levels only).
        seed: seed of the item generators.
        multiple: clipped sides are padded to a multiple of this (``2 ** depth`` of the U-Net).
        max_redraws: redraws allowed to find a patch with organ; after that the last draw is used.

    Raises:
        ConfigError: an empty case list, an unknown level or a parameter out of range.

    Items:
        ``{"image": float32 tensor (1, z, y, x), "label": uint8 tensor (z, y, x), "case_id": str}``
        with ``(z, y, x)`` at most ``patch_size``.
    """

    def __init__(
        self,
        task: PreparedTask,
        case_ids: Sequence[str],
        level: str,
        patch_size: tuple[int, int, int],
        samples_per_epoch: int | None = None,
        foreground_probability: float = 0.0,
        seed: int = 0,
        multiple: int = 1,
        max_redraws: int = 200,
    ) -> None:
        check_choice("level", level, LEVELS)
        if len(patch_size) != 3 or min(patch_size) < 1:
            raise ConfigError("patch_size", f"expected three positive sides (z, y, x), got {tuple(patch_size)}")
        if samples_per_epoch is not None and samples_per_epoch < 1:
            raise ConfigError("samples_per_epoch", f"must be at least 1, got {samples_per_epoch}")
        if not 0.0 <= foreground_probability <= 1.0:
            raise ConfigError("foreground_probability", f"must lie in [0, 1], got {foreground_probability}")
        if multiple < 1 or max_redraws < 0:
            raise ConfigError(
                "multiple" if multiple < 1 else "max_redraws",
                f"out of range: multiple {multiple} (>= 1), max_redraws {max_redraws} (>= 0)",
            )
        if len(case_ids) == 0:
            raise ConfigError("case_ids", "no cases to draw from")
        self.task = task
        self.case_ids = [str(c) for c in case_ids]
        self.seed = int(seed)
        self.epoch = 0
        self._cases = [task.case(c) for c in self.case_ids]
        self._arrays: dict[tuple[int, str, str], np.ndarray] = {}  # memory maps, opened once per process
        self.level = level
        self.patch_size = tuple(int(s) for s in patch_size)
        self.permuted = samples_per_epoch is None
        self.samples_per_epoch = len(self.case_ids) if samples_per_epoch is None else int(samples_per_epoch)
        self.foreground_probability = float(foreground_probability)
        self.multiple = int(multiple)
        self.max_redraws = int(max_redraws)
        self._organ_bounds = [organ_bounds(case, level) for case in self._cases] if foreground_probability else []

    def __len__(self) -> int:
        return self.samples_per_epoch

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose items are drawn (call before iterating each epoch).

        DataLoader workers hold their own copy of the dataset, made when an iteration starts;
        with ``persistent_workers=True`` they would keep the epoch they were started with.
        """
        self.epoch = int(epoch)

    def _array(self, case_index: int, level: str, kind: str) -> np.ndarray:
        key = (case_index, level, kind)
        if key not in self._arrays:
            self._arrays[key] = self._cases[case_index].array(level, kind)
        return self._arrays[key]

    def __getstate__(self) -> dict[str, Any]:
        # Memory maps are reopened in the receiving process rather than pickled as copies.
        return {**self.__dict__, "_arrays": {}}

    def _check_index(self, index: int) -> None:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")

    def _start_ranges(self, shape: tuple[int, ...], organ: Box | None) -> list[tuple[int, int]]:
        """Inclusive ``(first, last)`` patch start per axis: anywhere, or overlapping ``organ``."""
        ranges = []
        for axis, (side, patch) in enumerate(zip(shape, self.patch_size)):
            last = max(side - patch, 0)
            if organ is None:
                ranges.append((0, last))
            else:
                ranges.append((min(max(0, organ[axis] - patch + 1), last), min(last, organ[axis + 3] - 1)))
        return ranges

    def _draw(self, index: int) -> tuple[int, Box, np.ndarray]:
        """Case index, patch box (clipped to the image) and ``(z, y, x)`` label patch of item ``index``."""
        self._check_index(index)
        rng = np.random.default_rng([self.seed, self.epoch, index])
        if self.permuted:
            case_index = int(np.random.default_rng([self.seed, self.epoch]).permutation(len(self._cases))[index])
        else:
            case_index = int(rng.integers(len(self._cases)))
        must_hold_organ = bool(rng.random() < self.foreground_probability)
        label_volume = self._array(case_index, self.level, "label")
        sides = [min(p, s) for p, s in zip(self.patch_size, label_volume.shape)]
        ranges = self._start_ranges(label_volume.shape, self._organ_bounds[case_index] if must_hold_organ else None)
        for _ in range(1 + (self.max_redraws if must_hold_organ else 0)):
            start = [int(rng.integers(first, last + 1)) for first, last in ranges]
            box: Box = (*start, *(s + p for s, p in zip(start, sides)))  # type: ignore[assignment]
            label = crop(label_volume, box)
            if label.any() or not must_hold_organ:
                break
        return case_index, box, label

    def patch_location(self, index: int) -> tuple[str, Box]:
        """Case id and box ``(z0, y0, x0, z1, y1, x1)`` (in the level's voxel indices, inside the
        image) of item ``index`` of the current epoch."""
        case_index, box, _ = self._draw(index)
        return self.case_ids[case_index], box

    def __getitem__(self, index: int) -> dict[str, Any]:
        case_index, box, label = self._draw(index)
        image = crop(self._array(case_index, self.level, "image"), box)
        return _item(
            pad_to_multiple(image, self.multiple), pad_to_multiple(label, self.multiple), self.case_ids[case_index]
        )
