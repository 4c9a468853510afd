"""Tests of l2s_core.metrics: hand-computed cubes, empty masks, and two independent oracles."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from monai.metrics import compute_hausdorff_distance, compute_surface_dice
from scipy import ndimage

from l2s_core.errors import ConfigError, InputDataError
from l2s_core.metrics import case_metrics, confusion_counts, dice, dice_from_counts, hd95, pooled_dice, surface_dice

ANISOTROPIC = (3.0, 1.0, 1.0)


def cube(corner: tuple[int, int, int], size: int = 4, shape: tuple[int, int, int] = (10, 10, 10)) -> np.ndarray:
    """A ``(z, y, x)`` uint8 mask holding one ``size``-voxel cube at ``corner``."""
    mask = np.zeros(shape, np.uint8)
    z, y, x = corner
    mask[z : z + size, y : y + size, x : x + size] = 1
    return mask


def blob(seed: int, shape: tuple[int, int, int] = (14, 22, 26)) -> np.ndarray:
    """A random smooth ``(z, y, x)`` boolean blob (thresholded smoothed noise)."""
    noise = ndimage.gaussian_filter(np.random.default_rng(seed).normal(size=shape), 2.0)
    return noise > np.quantile(noise, 0.75)


def edt_distances(pred: np.ndarray, truth: np.ndarray, spacing: tuple[float, float, float]):
    """Directed surface distances by distance transforms over the whole volume (test oracle)."""
    surfaces = [
        m ^ ndimage.binary_erosion(m, structure=ndimage.generate_binary_structure(3, 1))
        for m in (pred.astype(bool), truth.astype(bool))
    ]
    to_truth = ndimage.distance_transform_edt(~surfaces[1], sampling=spacing)
    to_pred = ndimage.distance_transform_edt(~surfaces[0], sampling=spacing)
    return to_truth[surfaces[0]], to_pred[surfaces[1]]


def monai_scores(
    pred: np.ndarray, truth: np.ndarray, spacing: tuple[float, float, float], tolerance_mm: float
) -> tuple[float, float]:
    """MONAI's HD95 and (voxel-counting) normalised surface Dice of one pair of masks."""
    p = torch.from_numpy(pred.astype(np.float32))[None, None]
    t = torch.from_numpy(truth.astype(np.float32))[None, None]
    hd = compute_hausdorff_distance(p, t, include_background=True, percentile=95, spacing=spacing)
    nsd = compute_surface_dice(p, t, [tolerance_mm], include_background=True, spacing=spacing)
    return float(hd.item()), float(nsd.item())


def test_confusion_counts_and_dice_on_overlapping_cubes_of_any_dtype():
    pred = cube((2, 2, 2)) * 7  # any nonzero value is organ
    truth = cube((3, 2, 2)).astype(bool)
    # 4×4×4 cubes offset by one slice overlap in 3×4×4 voxels.
    assert confusion_counts(pred, truth) == (48, 16, 16)
    assert all(type(c) is int for c in confusion_counts(pred, truth))
    assert dice(pred.astype(np.int64), truth) == pytest.approx(0.75)
    assert type(dice(pred, truth)) is float


def test_dice_from_counts_values_and_conventions():
    assert dice_from_counts(2, 1, 1) == pytest.approx(4 / 6)
    assert dice_from_counts(0, 0, 0) == 1.0
    assert dice_from_counts(0, 5, 0) == 0.0
    assert dice_from_counts(0, 0, 5) == 0.0
    with pytest.raises(InputDataError, match="dice_from_counts"):
        dice_from_counts(1, -1, 0)


def test_dice_of_empty_masks():
    empty = np.zeros((4, 5, 6), np.uint8)
    organ = empty.copy()
    organ[1, 2, 3] = 1
    assert dice(empty, empty) == 1.0
    assert dice(organ, empty) == 0.0
    assert dice(empty, organ) == 0.0


def test_cubes_offset_along_coarse_axis_give_hand_computed_surface_metrics():
    # Two 4×4×4 cubes, the prediction one slice (3 mm) above the truth. Each surface has 56
    # voxels. Per direction: the 16 voxels of the face with no counterpart are 3 mm from the
    # other surface, the 4 inner voxels of the opposite face are 1 mm from its sides (one
    # in-plane step), the other 36 lie on the other surface. Sorted distances: 36 × 0,
    # 4 × 1, 16 × 3 → 95th percentile (index 52.25) = 3 mm.
    pred, truth = cube((3, 2, 2)), cube((2, 2, 2))
    assert hd95(pred, truth, ANISOTROPIC) == pytest.approx(3.0)
    assert surface_dice(pred, truth, ANISOTROPIC, tolerance_mm=0.5) == pytest.approx(72 / 112)
    assert surface_dice(pred, truth, ANISOTROPIC, tolerance_mm=2.0) == pytest.approx(80 / 112)
    assert surface_dice(pred, truth, ANISOTROPIC, tolerance_mm=3.0) == 1.0  # inclusive tolerance


def test_same_offset_along_a_fine_axis_gives_the_fine_spacing():
    # The same shift along x (1 mm voxels): the unmatched face is now 1 mm away.
    pred, truth = cube((2, 2, 3)), cube((2, 2, 2))
    assert hd95(pred, truth, ANISOTROPIC) == pytest.approx(1.0)
    assert surface_dice(pred, truth, ANISOTROPIC, tolerance_mm=0.5) == pytest.approx(72 / 112)
    assert surface_dice(pred, truth, ANISOTROPIC, tolerance_mm=1.0) == 1.0


def test_parallel_sheets_are_their_separation_apart():
    # One-voxel-thick sheets are all surface; every voxel is 3 slices × 2.5 mm from the other.
    pred, truth = np.zeros((8, 5, 5), bool), np.zeros((8, 5, 5), bool)
    pred[2], truth[5] = True, True
    assert hd95(pred, truth, (2.5, 0.8, 0.8)) == pytest.approx(7.5)
    assert surface_dice(pred, truth, (2.5, 0.8, 0.8), tolerance_mm=7.4) == 0.0
    assert surface_dice(pred, truth, (2.5, 0.8, 0.8), tolerance_mm=7.5) == 1.0
    assert dice(pred, truth) == 0.0


def test_identical_masks_are_perfect():
    mask = blob(1)
    assert hd95(mask, mask, (2.0, 0.7, 0.7)) == 0.0
    assert surface_dice(mask, mask, (2.0, 0.7, 0.7), tolerance_mm=0.0) == 1.0


def test_surface_metrics_of_empty_masks():
    empty = np.zeros((6, 6, 6), np.uint8)
    organ = cube((1, 1, 1), size=3, shape=(6, 6, 6))
    assert hd95(empty, empty, ANISOTROPIC) == 0.0
    assert hd95(organ, empty, ANISOTROPIC) == math.inf
    assert hd95(empty, organ, ANISOTROPIC) == math.inf
    assert surface_dice(empty, empty, ANISOTROPIC, 2.0) == 1.0
    assert surface_dice(organ, empty, ANISOTROPIC, 2.0) == 0.0
    assert surface_dice(empty, organ, ANISOTROPIC, 2.0) == 0.0


def test_case_metrics_gathers_every_metric_as_plain_python_values():
    pred, truth = cube((3, 2, 2)), cube((2, 2, 2))
    row = case_metrics(pred, truth, ANISOTROPIC, tolerance_mm=2.0)
    assert row == {
        "tp": 48,
        "fp": 16,
        "fn": 16,
        "dice": pytest.approx(0.75),
        "hd95_mm": pytest.approx(3.0),
        "surface_dice": pytest.approx(80 / 112),
        "pred_empty": False,
        "truth_empty": False,
    }
    assert [type(row[k]) for k in ("tp", "dice", "hd95_mm", "surface_dice", "pred_empty")] == [
        int,
        float,
        float,
        float,
        bool,
    ]


def test_case_metrics_of_a_missed_organ_and_of_two_empty_masks():
    empty = np.zeros((6, 6, 6), bool)
    organ = cube((1, 1, 1), size=3, shape=(6, 6, 6))
    missed = case_metrics(empty, organ, ANISOTROPIC)
    assert missed == {
        "tp": 0,
        "fp": 0,
        "fn": 27,
        "dice": 0.0,
        "hd95_mm": math.inf,
        "surface_dice": 0.0,
        "pred_empty": True,
        "truth_empty": False,
    }
    nothing = case_metrics(empty, empty, ANISOTROPIC)
    assert nothing == {
        "tp": 0,
        "fp": 0,
        "fn": 0,
        "dice": 1.0,
        "hd95_mm": 0.0,
        "surface_dice": 1.0,
        "pred_empty": True,
        "truth_empty": True,
    }


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_distances_equal_the_whole_volume_distance_transform_oracle(seed):
    # Blobs of this density touch the volume's faces, and a far false positive stretches the
    # bounding box: the cropped KD-tree distances must still equal the full-volume EDT's.
    spacing = (2.5, 0.7, 0.9)
    pred, truth = blob(seed), blob(seed + 10)
    pred[0, 0, 0] = True
    to_truth, to_pred = edt_distances(pred, truth, spacing)
    expected_hd95 = max(np.percentile(to_truth, 95), np.percentile(to_pred, 95))
    expected_nsd = (np.sum(to_truth <= 2.0) + np.sum(to_pred <= 2.0)) / (to_truth.size + to_pred.size)
    assert hd95(pred, truth, spacing) == pytest.approx(expected_hd95, abs=1e-9)
    assert surface_dice(pred, truth, spacing, 2.0) == pytest.approx(expected_nsd, abs=1e-12)


@pytest.mark.filterwarnings("ignore::FutureWarning")  # MONAI's own deprecation notice in get_mask_edges
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_agrees_with_monai_on_random_anisotropic_blobs(seed):
    # Same definitions (6-connectivity surfaces, max of the directed 95th percentiles,
    # voxel-counting NSD); MONAI works in float32, hence the tolerances.
    spacing = (2.5, 0.7, 0.9)
    pred, truth = blob(seed), blob(seed + 20)
    for tolerance_mm in (1.0, 2.0, 3.5):
        monai_hd95, monai_nsd = monai_scores(pred, truth, spacing, tolerance_mm)
        assert hd95(pred, truth, spacing) == pytest.approx(monai_hd95, rel=1e-5)
        assert surface_dice(pred, truth, spacing, tolerance_mm) == pytest.approx(monai_nsd, abs=1e-6)


def test_pooled_dice_sums_counts_over_cases():
    rows = [{"tp": 10, "fp": 2, "fn": 3}, {"tp": 0, "fp": 0, "fn": 5}, {"tp": 0, "fp": 0, "fn": 0}]
    assert pooled_dice(rows) == pytest.approx(20 / 30)
    assert pooled_dice(SimpleNamespace(**row) for row in rows) == pytest.approx(20 / 30)
    assert pooled_dice([{"tp": 0, "fp": 0, "fn": 0}]) == 1.0
    assert pooled_dice([{"tp": 0, "fp": 4, "fn": 0}]) == 0.0


def test_pooled_dice_refuses_no_cases_and_rows_without_counts():
    with pytest.raises(InputDataError, match="no cases"):
        pooled_dice([])
    with pytest.raises(InputDataError, match="'fn'"):
        pooled_dice([{"tp": 1, "fp": 0}])
    with pytest.raises(InputDataError, match="'tp'"):
        pooled_dice([SimpleNamespace(fp=1, fn=0)])


def test_bad_inputs_raise_one_line_errors():
    mask = np.zeros((4, 4, 4), np.uint8)
    with pytest.raises(InputDataError, match="^pred: mask shape"):
        dice(mask, np.zeros((4, 4, 5), np.uint8))
    with pytest.raises(InputDataError, match="^truth: mask must be a"):
        dice(mask, np.zeros((4, 4), np.uint8))
    with pytest.raises(InputDataError, match="^spacing:"):
        hd95(mask, mask, (1.0, 1.0))
    with pytest.raises(InputDataError, match="^spacing:"):
        case_metrics(mask, mask, (1.0, 0.0, 1.0))
    with pytest.raises(ConfigError, match="^tolerance_mm:"):
        surface_dice(mask, mask, (1.0, 1.0, 1.0), tolerance_mm=-1.0)
