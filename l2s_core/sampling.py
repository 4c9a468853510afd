"""Training datasets over a prepared task: foreground-biased random patches (the baseline
network) and whole images (the localiser on low-resolution images, the organ network on crops).

Arrays are read from the memory-mapped cache of :mod:`l2s_core.data.cache`; a patch is cut
from the memory map, so a whole volume is never loaded to draw one patch.

Every item depends only on ``(seed, epoch, index)``: its random generator is
``numpy.random.default_rng([seed, epoch, index])``. An item is therefore the same whatever the
number of DataLoader workers, the process that draws it or the order of drawing, and a run
resumed at epoch ``e`` (after :meth:`set_epoch`) sees the same data as an uninterrupted one.
With ``DistributedSampler(shuffle=False)`` rank ``r`` of ``w`` takes items ``r, r + w, ...``,
so a global batch over ``w`` ranks holds the same items as one process with ``w`` times the
per-rank batch size.

Example:
    >>> task = PreparedTask("prepared/spleen")  # doctest: +SKIP
    >>> patches = BaselinePatchDataset(task, task.split["train"], (64, 256, 256), 250)  # doctest: +SKIP
    >>> loader = DataLoader(patches, batch_size=2, num_workers=4)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from l2s_core.boxes import Box, crop
from l2s_core.data.cache import LEVELS, PreparedCase, PreparedTask
from l2s_core.errors import ConfigError


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
        batch: items ``{"image": (1, z, y, x) float tensor, "label": (z, y, x) int tensor,
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
    """The dataset item of a ``(z, y, x)`` image and label."""
    return {
        "image": torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)[None]),
        "label": torch.from_numpy(np.ascontiguousarray(label, dtype=np.int64)),
        "case_id": case_id,
    }


class _CachedCases(Dataset):
    """Common part of the datasets: the cases, their memory maps (opened once per process), the epoch.

    Subclasses define ``__len__`` and ``__getitem__``.
    """

    def __init__(self, task: PreparedTask, case_ids: Sequence[str], seed: int) -> None:
        if len(case_ids) == 0:
            raise ConfigError("case_ids", "no cases to draw from")
        self.task = task
        self.case_ids = [str(c) for c in case_ids]
        self.seed = int(seed)
        self.epoch = 0
        self._cases = [task.case(c) for c in self.case_ids]
        self._arrays: dict[tuple[int, str, str], np.ndarray] = {}

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


def _organ_bounds(case: PreparedCase) -> Box:
    """Bounding box of the organ's largest component: the crop box without its margin."""
    margin = int(case.meta["crop_margin"])
    box = case.crop_box
    return (box[0] + margin, box[1] + margin, box[2] + margin, box[3] - margin, box[4] - margin, box[5] - margin)


class BaselinePatchDataset(_CachedCases):
    """Random full-resolution patches, a share of them forced to contain organ (the paper's
    baseline sampler).

    Item ``i``: a case drawn uniformly; with probability ``foreground_probability`` the patch
    must contain organ, otherwise its location is uniform over the image. A patch that must
    contain organ has its location drawn uniformly among the locations whose patch overlaps the
    bounding box of the organ's largest component, and redrawn (at most ``max_redraws`` times)
    until it holds an organ voxel; the organ is not centred, so it appears anywhere in the
    patch. On an axis where the volume is smaller than the patch, the patch starts at 0 and
    is zero-padded at the end.

    Args:
        task: the prepared task.
        case_ids: cases to draw from (usually ``task.split["train"]``).
        patch_size: ``(z, y, x)`` patch size.
        samples_per_epoch: number of items (patches) per epoch.
        foreground_probability: probability that a patch is required to contain organ.
        seed: seed of the item generators.
        max_redraws: redraws allowed to find a patch with organ; after that the last draw is used.

    Raises:
        ConfigError: an empty case list or a parameter out of range.

    Items:
        ``{"image": float32 tensor (1, z, y, x), "label": int64 tensor (z, y, x), "case_id": str}``
        with ``(z, y, x) = patch_size``.
    """

    def __init__(self, task: PreparedTask, case_ids: Sequence[str], patch_size: tuple[int, int, int],
                 samples_per_epoch: int, foreground_probability: float = 0.8, seed: int = 0,
                 max_redraws: int = 200) -> None:
        if len(patch_size) != 3 or min(patch_size) < 1:
            raise ConfigError("patch_size", f"expected three positive sides (z, y, x), got {tuple(patch_size)}")
        if samples_per_epoch < 1:
            raise ConfigError("samples_per_epoch", f"must be at least 1, got {samples_per_epoch}")
        if not 0.0 <= foreground_probability <= 1.0:
            raise ConfigError("foreground_probability", f"must lie in [0, 1], got {foreground_probability}")
        if max_redraws < 0:
            raise ConfigError("max_redraws", f"must not be negative, got {max_redraws}")
        super().__init__(task, case_ids, seed)
        self.patch_size = tuple(int(s) for s in patch_size)
        self.samples_per_epoch = int(samples_per_epoch)
        self.foreground_probability = float(foreground_probability)
        self.max_redraws = int(max_redraws)
        self._organ_bounds = [_organ_bounds(case) for case in self._cases]

    def __len__(self) -> int:
        return self.samples_per_epoch

    def _start_ranges(self, shape: tuple[int, ...], organ: Box | None) -> list[tuple[int, int]]:
        """Inclusive ``(first, last)`` patch start per axis: anywhere, or overlapping ``organ``."""
        ranges = []
        for axis, (side, patch) in enumerate(zip(shape, self.patch_size)):
            last = max(side - patch, 0)
            if organ is None:
                ranges.append((0, last))
            else:
                ranges.append((max(0, organ[axis] - patch + 1), min(last, organ[axis + 3] - 1)))
        return ranges

    def _draw(self, index: int) -> tuple[int, Box, np.ndarray]:
        """Case index, patch box and ``(z, y, x)`` label patch of item ``index``."""
        self._check_index(index)
        rng = np.random.default_rng([self.seed, self.epoch, index])
        case_index = int(rng.integers(len(self._cases)))
        must_hold_organ = bool(rng.random() < self.foreground_probability)
        label_volume = self._array(case_index, "full", "label")
        ranges = self._start_ranges(label_volume.shape, self._organ_bounds[case_index] if must_hold_organ else None)
        for _ in range(1 + (self.max_redraws if must_hold_organ else 0)):
            start = [int(rng.integers(first, last + 1)) for first, last in ranges]
            box: Box = (*start, *(s + p for s, p in zip(start, self.patch_size)))  # type: ignore[assignment]
            label = crop(label_volume, box)
            if label.any() or not must_hold_organ:
                break
        return case_index, box, label

    def patch_location(self, index: int) -> tuple[str, Box]:
        """Case id and full-resolution box ``(z0, y0, x0, z1, y1, x1)`` of item ``index`` of the
        current epoch (the box may reach beyond the volume, where the patch is zero-filled)."""
        case_index, box, _ = self._draw(index)
        return self.case_ids[case_index], box

    def __getitem__(self, index: int) -> dict[str, Any]:
        case_index, box, label = self._draw(index)
        image = crop(self._array(case_index, "full", "image"), box)
        return _item(image, label, self.case_ids[case_index])


class WholeImageDataset(_CachedCases):
    """Whole images of one cache level, zero-padded at the end to a multiple of ``multiple``.

    Args:
        task: the prepared task.
        case_ids: the cases; one item per case and epoch.
        level: ``"lowres"`` (localiser), ``"crop"`` (organ network) or ``"full"`` (validation
            of the baseline).
        multiple: every side is padded to a multiple of this (``2 ** depth`` of the U-Net).
        seed: seed of the case order.
        shuffle: visit the cases in the order of a permutation drawn from
            ``default_rng([seed, epoch])``; otherwise in the order of ``case_ids``.

    Raises:
        ConfigError: an empty case list, an unknown level or ``multiple < 1``.

    Items:
        ``{"image": float32 tensor (1, z, y, x), "label": int64 tensor (z, y, x), "case_id": str}``;
        images differ in size, so batch them with :func:`pad_collate`.
    """

    def __init__(self, task: PreparedTask, case_ids: Sequence[str], level: str, multiple: int,
                 seed: int = 0, shuffle: bool = True) -> None:
        if level not in LEVELS:
            raise ConfigError("level", f"must be one of {', '.join(LEVELS)}, got {level!r}")
        if multiple < 1:
            raise ConfigError("multiple", f"must be at least 1, got {multiple}")
        super().__init__(task, case_ids, seed)
        self.level = level
        self.multiple = int(multiple)
        self.shuffle = bool(shuffle)

    def __len__(self) -> int:
        return len(self._cases)

    def __getitem__(self, index: int) -> dict[str, Any]:
        self._check_index(index)
        if self.shuffle:
            index = int(np.random.default_rng([self.seed, self.epoch]).permutation(len(self._cases))[index])
        image = pad_to_multiple(np.array(self._array(index, self.level, "image")), self.multiple)
        label = pad_to_multiple(np.array(self._array(index, self.level, "label")), self.multiple)
        return _item(image, label, self.case_ids[index])
