import numpy as np
import pytest
from scipy import ndimage
from skimage import measure
from skimage.transform import resize

from l2s_core.boxes import (
    bounding_box,
    crop,
    expand_box,
    largest_component,
    largest_component_box,
    organ_box,
    paste,
    scale_box,
    upsampled_organ_box,
)


def test_largest_component_and_box():
    mask = np.zeros((10, 10, 10), np.uint8)
    mask[1:3, 1:3, 1:3] = 1
    mask[5:9, 4:8, 2:9] = 1
    assert bounding_box(largest_component(mask)) == (5, 4, 2, 9, 8, 9)
    assert organ_box(mask, margin=2) == (3, 2, 0, 11, 10, 11)
    assert bounding_box(np.zeros((3, 3, 3))) is None and organ_box(np.zeros((3, 3, 3))) is None


def test_crop_beyond_border_is_zero_filled_and_paste_inverts():
    array = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6) + 1
    box = expand_box((0, 1, 2, 4, 5, 6), 2)
    patch = crop(array, box)
    assert patch.shape == (8, 8, 8)
    assert patch[:2].sum() == 0 and patch[2:6, 1:6, 2:6].min() > 0
    assert np.array_equal(paste(patch, box, array.shape), array)


def test_scale_box_covers_lowres_voxels():
    # low-res voxel z in [2, 4) of a 10-slice grid covers full-res slices [6, 12) of a 30-slice grid.
    assert scale_box((2, 1, 0, 4, 3, 5), (10, 8, 5), (30, 16, 11)) == (6, 2, 0, 12, 6, 11)


def _released_box(low: np.ndarray, full_shape: tuple[int, ...], margin: int) -> tuple[int, ...]:
    """The released code's rule, from its description: skimage's order-0 resize to full resolution,
    the largest skimage-labelled component (ties: the higher label), then (min - margin, max + margin)."""
    full = resize(low.astype(np.float32), full_shape, order=0)
    labels = measure.label(full == 1, background=0)
    sizes = [(int(np.sum(labels == n)), n) for n in range(1, labels.max() + 1)]
    largest = sorted(sizes, reverse=True)[0][1]
    coords = np.argwhere(labels == largest)
    return (*(coords.min(axis=0) - margin), *(coords.max(axis=0) + margin))


def test_upsampled_organ_box_is_the_released_skimage_rule():
    rng = np.random.default_rng(0)
    low_shapes = [tuple(int(s) for s in rng.integers(3, 14, 3)) for _ in range(60)] + [(33, 64, 64)]
    for low_shape in low_shapes:
        divisors = rng.integers(2, 4, 3)
        full_shape = tuple(int(s * d + rng.integers(0, d)) for s, d in zip(low_shape, divisors))
        low = np.zeros(low_shape, np.uint8)
        for _ in range(int(rng.integers(1, 4))):  # one to three blobs, often apart
            start = [int(rng.integers(0, s)) for s in low_shape]
            stop = [int(rng.integers(a + 1, min(a + 4, s) + 1)) for a, s in zip(start, low_shape)]
            low[start[0] : stop[0], start[1] : stop[1], start[2] : stop[2]] = 1
        assert upsampled_organ_box(low, full_shape, 15) == _released_box(low, full_shape, 15), (low_shape, full_shape)
    assert upsampled_organ_box(np.zeros((3, 3, 3)), (6, 6, 6), 15) is None
    with pytest.raises(ValueError, match="upsampling"):
        upsampled_organ_box(low, (1, 1, 1), 15)


def test_upsampled_organ_box_takes_the_component_largest_after_upsampling():
    """5 -> 8 voxels per axis: low-res indices 0, 2, 4 become two voxels, 1 and 3 one."""
    low = np.zeros((5, 5, 5), np.uint8)
    low[3, 3, 0:2] = 1  # 2 low-res voxels, 1 * 1 * (2 + 1) = 3 full-res voxels
    low[0, 0, 4] = 1  # 1 low-res voxel, 2 * 2 * 2 = 8 full-res voxels: the organ
    assert upsampled_organ_box(low, (8, 8, 8), 0) == _released_box(low, (8, 8, 8), 0) == (0, 0, 6, 1, 1, 7)
    assert upsampled_organ_box(low, (8, 8, 8), 15) == (-15, -15, -9, 16, 16, 22)  # end: max + 15, exclusive


def test_largest_component_labelled_inside_the_foreground_box_equals_labelling_everything():
    rng = np.random.default_rng(0)
    structure = np.ones((3, 3, 3), dtype=bool)
    for _ in range(100):
        shape = tuple(int(s) for s in rng.integers(1, 16, 3))
        mask = (rng.random(shape) < rng.random() * 0.3).astype(np.uint8)
        labelled, n = ndimage.label(mask, structure=structure)
        sizes = np.bincount(labelled.ravel())[1:]
        reference = labelled == 1 + int(np.argmax(sizes)) if n else np.zeros(shape, bool)
        assert np.array_equal(largest_component(mask), reference)
        assert largest_component_box(mask) == bounding_box(reference)


def test_box_context_counts_the_image_inside_the_box_and_the_organ_share_of_the_whole_box():
    import math

    from l2s_core.boxes import box_context

    label = np.zeros((10, 10, 10), np.uint8)
    label[4:6, 4:6, 4:6] = 1  # 8 organ voxels
    whole = box_context((0, 0, 0, 10, 10, 10), label)
    assert (whole.box_share, whole.foreground_share) == (1.0, 8 / 1000)
    inner = box_context((4, 4, 4, 6, 6, 8), label)  # 16 voxels, all inside the image
    assert (inner.box_share, inner.foreground_share) == (16 / 1000, 0.5)
    beyond = box_context((-5, 0, 0, 15, 10, 10), label)  # twice the image: half of it zero padding
    assert (beyond.box_share, beyond.foreground_share) == (1.0, 8 / 2000)
    nothing = box_context(None, label)
    assert nothing.box_share == 0.0 and math.isnan(nothing.foreground_share)
