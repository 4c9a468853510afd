"""Tests of one rendered phantom case: (C, z, y, x) image and (z, y, x) label of the asked shape,
the affine, determinism, label values, intensities, class balance and distractors."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from l2s_core.data.phantom.anatomy import ORGANS, phantom_task
from l2s_core.data.phantom.render import render_case
from l2s_core.errors import ConfigError

SMALL = (24, 64, 64)
N_CASES = 5
SEED = 3
TARGET_FOREGROUND = {"spleen": 0.005, "pancreas": 0.002, "prostate": 0.027, "liver": 0.05, "heart": 0.006}
CT_ORGANS = ("spleen", "pancreas", "liver")

Case = tuple[np.ndarray, np.ndarray]


def _stream(organ: str, case_index: int, seed: int = SEED) -> np.random.Generator:
    """The image stream of a case, as the task folder writer seeds it."""
    return np.random.default_rng([seed, ORGANS.index(organ), case_index])


@pytest.fixture(scope="module")
def cases() -> dict[str, list[Case]]:
    """Organ → five small cases (image (C, z, y, x), label (z, y, x))."""
    return {organ: [render_case(organ, SMALL, _stream(organ, i))[:2] for i in range(N_CASES)] for organ in ORGANS}


@pytest.mark.parametrize("organ", ORGANS)
def test_arrays_are_z_y_x_of_the_asked_shape_with_a_channel_per_modality(organ: str) -> None:
    shape = (10, 20, 30)
    image, label, _ = render_case(organ, shape, _stream(organ, 0))
    assert image.shape == (len(phantom_task(organ).modality), *shape) and image.dtype == np.int16
    assert label.shape == shape and label.dtype == np.uint8


def test_affine_is_lps_with_the_spacing_and_the_centre_voxel_at_world_zero() -> None:
    shape = (9, 21, 31)
    _, _, affine = render_case("spleen", shape, _stream("spleen", 0), spacing=(2.0, 0.5, 0.75))
    assert nib.aff2axcodes(affine) == ("L", "P", "S")
    assert np.array_equal(affine[:3, :3], np.diag([-0.75, -0.5, 2.0]))
    assert np.allclose(affine @ [15, 10, 4, 1], [0, 0, 0, 1])  # centre voxel (x, y, z)
    _, _, default = render_case("heart", shape, _stream("heart", 0))
    fov_xyz = phantom_task("heart").anatomy.fov_mm[::-1]
    assert np.allclose(np.abs(np.diag(default)[:3]), np.divide(fov_xyz, shape[::-1]))


def test_same_stream_gives_identical_arrays_and_another_stream_differs() -> None:
    first, second = (render_case("pancreas", SMALL, _stream("pancreas", 1)) for _ in range(2))
    other = render_case("pancreas", SMALL, _stream("pancreas", 1, seed=SEED + 1))
    assert all(np.array_equal(a, b) for a, b in zip(first, second))
    assert not np.array_equal(first[0], other[0]) and not np.array_equal(first[1], other[1])


def test_unknown_organ_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="kidney"):
        render_case("kidney", SMALL, np.random.default_rng(0))


@pytest.mark.parametrize("organ", ORGANS)
def test_label_values_are_the_tasks_labels_and_the_organ_is_one_component(
    cases: dict[str, list[Case]], organ: str
) -> None:
    present: set[int] = set()
    for _, label in cases[organ]:
        present |= {int(v) for v in np.unique(label)}
        assert (label == 1).any()
        _, n_components = ndimage.label(label > 0, structure=np.ones((3, 3, 3)))
        assert n_components == 1
    assert present == {int(k) for k in phantom_task(organ).labels}


@pytest.mark.parametrize("organ", CT_ORGANS)
def test_ct_is_hounsfield_with_air_bone_and_organ_values(cases: dict[str, list[Case]], organ: str) -> None:
    for image, label in cases[organ]:
        assert image.min() >= -1024 and image.max() <= 3071
        corners = image[0, :, :4, :4]
        assert abs(np.median(corners) + 1000) < 30
        assert 50 <= np.median(image[0][label == 1]) <= 130
        assert np.percentile(image, 99.5) > 400  # bone


@pytest.mark.parametrize("organ", ["prostate", "heart"])
def test_mri_is_positive(cases: dict[str, list[Case]], organ: str) -> None:
    for image, label in cases[organ]:
        assert image.min() >= 0
        assert all(np.median(channel[label == 1]) > 100 for channel in image)


@pytest.mark.parametrize("organ", ORGANS)
def test_organ_like_distractors_exist_away_from_the_organ(cases: dict[str, list[Case]], organ: str) -> None:
    # Voxels whose every channel is within 12 % (+10) of the organ's median, in compact groups
    # (binary opening) more than two voxels from the labelled organ.
    for image, label in cases[organ]:
        organ_mask = label == 1
        core = ndimage.binary_erosion(organ_mask)
        reference = core if core.sum() >= 20 else organ_mask
        organ_like = np.ones(label.shape, bool)
        for channel in image.astype(np.float32):
            median = np.median(channel[reference])
            organ_like &= np.abs(channel - median) < 0.12 * abs(median) + 10
        far = ~ndimage.binary_dilation(label > 0, iterations=2)
        assert (ndimage.binary_opening(organ_like) & far).sum() >= 50


@pytest.mark.parametrize("organ", ORGANS)
def test_foreground_share_at_default_shape_is_near_the_msd_mean(organ: str) -> None:
    shares = []
    for case_index in range(6):
        _, label, _ = render_case(organ, (32, 96, 96), _stream(organ, case_index, seed=0))
        assert (label == 1).any()
        shares.append((label > 0).mean())
    assert np.mean(shares) == pytest.approx(TARGET_FOREGROUND[organ], rel=0.4)
    assert np.std(shares) > 0
