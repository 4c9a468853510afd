"""The second-stage guard (an l2s addition, not the paper's method): never cut the organ off at
the box.

The organ network segments only the box the localiser found plus the crop margin. When the organ
(the largest connected component of its mask, as the localiser's box is that of its largest
component) touches a face of that box that lies inside the image, the organ probably goes on
beyond it (the box was too small, the localiser found only part of the organ):
:func:`touched_faces` finds those faces (a stray blob of false positives at a face does not
count: growing for it would feed the organ network a context it was not trained on) and
:func:`grown_box` moves each of them outwards by the margin (at least one voxel, never beyond the
image), after which the organ network segments the larger box again. The caller bounds the
number of times (:class:`~l2s_core.prediction.Localisation`'s ``guard_grows``).

A larger box is context the organ network never saw in training (crops of organ + margin), so the
guard can help or hurt: on a small phantom study (one run per network) it raised the liver's
two-stage test Dice from 0.10 to 0.21 and lowered the spleen's from 0.77 to 0.41 (one of two
cases grown). A study measures it as the fourth method ``two_stage_guarded``.

Example:
    >>> import numpy as np
    >>> crop_mask = np.zeros((4, 4, 4), dtype=np.uint8); crop_mask[1:3, 1:3, 3] = 1
    >>> touched_faces(crop_mask, (2, 2, 2, 6, 6, 6), (10, 10, 10))
    [(2, 1)]
    >>> grown_box((2, 2, 2, 6, 6, 6), [(2, 1)], 3, (10, 10, 10))
    (2, 2, 2, 6, 6, 9)
"""

from __future__ import annotations

import numpy as np

from l2s_core.boxes import Box, largest_component

__all__ = ["DEFAULT_BOX_GUARD", "grown_box", "touched_faces"]

#: Growths of the organ box ``l2s predict`` allows by default (a study's ``evaluate.guard_grows`` is 0).
DEFAULT_BOX_GUARD = 3


def touched_faces(crop_mask: np.ndarray, box: Box, image_shape: tuple[int, ...]) -> list[tuple[int, int]]:
    """The faces of ``box`` inside the image that the organ (the mask's largest connected
    component) touches.

    Args:
        crop_mask: the organ network's ``(z, y, x)`` mask of the box (the box's shape).
        box: half-open ``(z0, y0, x0, z1, y1, x1)``; it may reach beyond the image.
        image_shape: ``(z, y, x)`` of the image.

    Returns:
        ``(axis, side)`` per face touched, side 0 the low face and 1 the high one; a face at or
        beyond the image's edge is never listed (nothing lies beyond it).
    """
    mask = largest_component(np.asarray(crop_mask) > 0)
    faces = []
    for axis in range(3):
        low, high = box[axis], box[axis + 3]
        ends = (np.take(mask, 0, axis=axis), np.take(mask, mask.shape[axis] - 1, axis=axis))
        if low > 0 and ends[0].any():
            faces.append((axis, 0))
        if high < image_shape[axis] and ends[1].any():
            faces.append((axis, 1))
    return faces


def grown_box(box: Box, faces: list[tuple[int, int]], margin: int, image_shape: tuple[int, ...]) -> Box:
    """``box`` with each face of ``faces`` moved outwards by ``margin`` (at least 1) voxels,
    stopping at the image's edge."""
    grown = list(box)
    step = max(int(margin), 1)
    for axis, side in faces:
        if side == 0:
            grown[axis] = max(grown[axis] - step, 0)
        else:
            grown[axis + 3] = min(grown[axis + 3] + step, int(image_shape[axis]))
    return tuple(grown)  # type: ignore[return-value]
