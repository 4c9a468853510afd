"""Organ boxes: largest connected component, bounding boxes, margins, and mapping between
the low-resolution and full-resolution grids.

A box is a half-open tuple ``(z0, y0, x0, z1, y1, x1)`` of voxel indices. It may reach beyond
the array (the paper zero-pads by 15 voxels before cropping); :func:`crop` fills what lies
outside with zeros and :func:`paste` clips it back.
"""

from __future__ import annotations

__all__ = [
    "Box",
    "BoxContext",
    "box_context",
    "bounding_box",
    "crop",
    "expand_box",
    "largest_component",
    "largest_component_box",
    "organ_box",
    "paste",
    "scale_box",
    "upsampled_organ_box",
]

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage.transform import resize

Box = tuple[int, int, int, int, int, int]


def _largest_in(mask: np.ndarray) -> np.ndarray:
    """The largest 26-connected foreground component of a ``(z, y, x)`` array, as bool."""
    labelled, n = ndimage.label(mask > 0, structure=np.ones((3, 3, 3), dtype=bool))
    if n <= 1:
        return labelled > 0
    sizes = np.bincount(labelled.ravel())
    sizes[0] = 0
    return labelled == int(np.argmax(sizes))


def _slices(box: Box) -> tuple[slice, slice, slice]:
    return slice(box[0], box[3]), slice(box[1], box[4]), slice(box[2], box[5])


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 26-connected foreground component of a ``(z, y, x)`` mask, as bool.

    Components are labelled inside the foreground's bounding box only: on a 512x512x900 CT the
    labelling of the whole volume (an int32 copy, ~1 GB, and seconds) shrinks to the organ's box.
    """
    out = np.zeros(mask.shape, dtype=bool)
    box = bounding_box(mask)
    if box is not None:
        out[_slices(box)] = _largest_in(mask[_slices(box)])
    return out


def largest_component_box(mask: np.ndarray) -> Box | None:
    """Half-open bounding box of the largest component of a ``(z, y, x)`` mask (``None`` if
    empty), without a full-size copy of the mask."""
    outer = bounding_box(mask)
    if outer is None:
        return None
    inner = bounding_box(_largest_in(mask[_slices(outer)]))
    assert inner is not None  # the foreground's box holds foreground
    return tuple(v + outer[i % 3] for i, v in enumerate(inner))  # type: ignore[return-value]


def bounding_box(mask: np.ndarray) -> Box | None:
    """Half-open bounding box of the foreground of a ``(z, y, x)`` mask, or ``None`` if empty."""
    coords = [np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis))) for axis in range(3)]
    if any(c.size == 0 for c in coords):
        return None
    return (
        int(coords[0][0]),
        int(coords[1][0]),
        int(coords[2][0]),
        int(coords[0][-1]) + 1,
        int(coords[1][-1]) + 1,
        int(coords[2][-1]) + 1,
    )


def expand_box(box: Box, margin: int) -> Box:
    """Grow a box by ``margin`` voxels on each side (it may then reach beyond the array)."""
    return (box[0] - margin, box[1] - margin, box[2] - margin, box[3] + margin, box[4] + margin, box[5] + margin)


def scale_box(box: Box, from_shape: tuple[int, ...], to_shape: tuple[int, ...]) -> Box:
    """Map a box from one grid to another covering the same field of view.

    Used to take the localiser's low-resolution box to full resolution: starts are scaled
    down (floor), ends up (ceil), so the full-resolution box covers every voxel that the
    low-resolution box touches.
    """
    factors = [t / f for f, t in zip(from_shape, to_shape)]
    starts = [math.floor(box[a] * factors[a] + 1e-9) for a in range(3)]
    ends = [math.ceil(box[a + 3] * factors[a] - 1e-9) for a in range(3)]
    return (starts[0], starts[1], starts[2], ends[0], ends[1], ends[2])


def _nearest_sources(from_side: int, to_side: int) -> np.ndarray:
    """For each of ``to_side`` voxels along an axis, the index of the ``from_side`` voxel that
    ``skimage.transform.resize(order=0)`` copies into it (its own rule, asked of it on one axis)."""
    indices = np.arange(from_side, dtype=np.float64)
    return resize(indices, (to_side,), order=0, preserve_range=True, anti_aliasing=False).astype(np.int64)


def upsampled_organ_box(lowres_mask: np.ndarray, to_shape: tuple[int, ...], margin: int) -> Box | None:
    """The released code's organ box of a low-resolution mask: the mask resized to ``to_shape``
    with ``skimage.transform.resize(order=0)``, its largest 26-connected component (taken after
    upsampling, so by full-resolution size; ties to the component labelled last), then
    ``[min - margin, max + margin)`` per axis (the end is exclusive: ``margin - 1`` voxels beyond
    the organ's last one, as released). Computed without building the full-size mask.

    Args:
        lowres_mask: ``(z, y, x)`` mask on the low-resolution grid.
        to_shape: the full-resolution shape, at least the mask's shape on every axis.
        margin: voxels before the organ's first voxel (the paper's 15).

    Returns:
        The box (it may reach beyond the image), or ``None`` for an empty mask.

    Raises:
        ValueError: ``to_shape`` smaller than the mask's shape on an axis.
    """
    if len(to_shape) != 3 or any(t < f for f, t in zip(lowres_mask.shape, to_shape)):
        raise ValueError(f"upsampled_organ_box: {tuple(to_shape)} is not an upsampling of {lowres_mask.shape}")
    outer = bounding_box(lowres_mask)
    if outer is None:
        return None
    sources = [_nearest_sources(f, t) for f, t in zip(lowres_mask.shape, to_shape)]
    # Upsampling is monotone and hits every low-resolution voxel, so components map one to one;
    # a low-resolution voxel becomes the product of its three runs of full-resolution voxels.
    runs = [
        np.bincount(s, minlength=f)[outer[a] : outer[a + 3]] for a, (s, f) in enumerate(zip(sources, lowres_mask.shape))
    ]
    labelled, n = ndimage.label(lowres_mask[_slices(outer)] > 0, structure=np.ones((3, 3, 3), dtype=bool))
    weights = runs[0][:, None, None] * runs[1][None, :, None] * runs[2][None, None, :]
    sizes = np.asarray(ndimage.sum_labels(weights, labelled, index=np.arange(1, n + 1)))
    largest = n - int(np.argmax(sizes[::-1]))
    inner = bounding_box(labelled == largest)
    assert inner is not None  # the label exists
    starts = [int(np.searchsorted(sources[a], inner[a] + outer[a], side="left")) for a in range(3)]
    lasts = [int(np.searchsorted(sources[a], inner[a + 3] - 1 + outer[a], side="right")) - 1 for a in range(3)]
    return (
        starts[0] - margin,
        starts[1] - margin,
        starts[2] - margin,
        lasts[0] + margin,
        lasts[1] + margin,
        lasts[2] + margin,
    )


def organ_box(mask: np.ndarray, margin: int = 15) -> Box | None:
    """Box of the largest component of ``mask`` plus ``margin`` voxels, or ``None`` if empty."""
    box = largest_component_box(mask)
    return None if box is None else expand_box(box, margin)


def crop(array: np.ndarray, box: Box) -> np.ndarray:
    """Cut ``box`` out of a ``(z, y, x)`` array, zero-filling the parts beyond the array."""
    shape = tuple(box[a + 3] - box[a] for a in range(3))
    out = np.zeros(shape, dtype=array.dtype)
    src = tuple(slice(max(box[a], 0), min(box[a + 3], array.shape[a])) for a in range(3))
    dst = tuple(slice(s.start - box[a], s.stop - box[a]) for a, s in enumerate(src))
    if all(s.stop > s.start for s in src):
        out[dst] = array[src]
    return out


def paste(patch: np.ndarray, box: Box, shape: tuple[int, int, int]) -> np.ndarray:
    """Place ``patch`` (the content of ``box``) into an empty array of ``shape``, clipped to it."""
    out = np.zeros(shape, dtype=patch.dtype)
    dst = tuple(slice(max(box[a], 0), min(box[a + 3], shape[a])) for a in range(3))
    src = tuple(slice(s.start - box[a], s.stop - box[a]) for a, s in enumerate(dst))
    if all(s.stop > s.start for s in dst):
        out[dst] = patch[src]
    return out


@dataclass(frozen=True)
class BoxContext:
    """What the box a network segmented holds of an image and of its organ.

    Attributes:
        box_share: share of the image's voxels inside the box (1.0: the whole image, as the
            baseline segments; 0.0: nothing was segmented).
        foreground_share: organ voxels inside the box / the box's voxels, its zero-filled part
            beyond the image included: the class balance the network segmenting the box faced
            (NaN where nothing was segmented).
    """

    box_share: float
    foreground_share: float


def box_context(box: Box | None, label: np.ndarray) -> BoxContext:
    """The :class:`BoxContext` of a box segmented in an image with the ``(z, y, x)`` organ mask
    ``label``; ``box`` ``None``: nothing was segmented."""
    if box is None:
        return BoxContext(0.0, math.nan)
    inside = tuple(slice(max(box[a], 0), min(box[a + 3], label.shape[a])) for a in range(3))
    inside_voxels = math.prod(max(s.stop - s.start, 0) for s in inside)
    box_voxels = math.prod(box[a + 3] - box[a] for a in range(3))
    organ = int(np.count_nonzero(label[inside])) if inside_voxels else 0
    return BoxContext(inside_voxels / label.size, organ / box_voxels)
