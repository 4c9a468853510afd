"""The second-stage guard (``l2s_core.box_guard`` through ``l2s_core.infer``): when the localiser's
box is too small, the organ touches its faces inside the image and the guard grows them until the
organ is whole (bounded); without the guard (the paper's method) the organ is cut at the box."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from l2s_core.box_guard import grown_box, touched_faces
from l2s_core.errors import ConfigError
from l2s_core.infer import Segmenter, two_stage_predict
from l2s_core.prediction import Localisation

SHAPE = (24, 40, 40)  # low resolution (8, 20, 20)


class TooSmallBox(nn.Module):
    """Localiser stand-in that finds only part of the organ: one low-resolution voxel."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        organ = torch.zeros(images.shape[2:])
        organ[3, 8, 8] = 1.0  # full resolution (9..12, 16..18, 16..18)
        return torch.stack([1 - organ, organ])[None]


class Threshold(nn.Module):
    """Organ-network stand-in: organ where the image is positive."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.cat([-images, images], dim=1)


def _organ() -> np.ndarray:
    organ = np.zeros(SHAPE, dtype=np.uint8)
    organ[4:20, 6:34, 10:30] = 1  # far larger than the box the localiser finds
    return organ


def _predict(guard_grows: int, margin: int = 2):
    organ = _organ()
    image = np.where(organ > 0, 1.0, -1.0).astype(np.float32)
    segmenters = (Segmenter(TooSmallBox(), (64, 64, 64), multiple=8), Segmenter(Threshold(), (64, 64, 64), multiple=8))
    return organ, two_stage_predict(*segmenters, image, Localisation(margin, guard_grows=guard_grows))


def test_without_the_guard_a_too_small_box_cuts_the_organ_off() -> None:
    organ, result = _predict(guard_grows=0)
    assert result.box_grows == 0 and result.box == (7, 14, 14, 14, 20, 20)
    assert 0 < result.mask.sum() < organ.sum() / 10


def test_the_guard_grows_the_box_until_the_organ_is_whole() -> None:
    organ, result = _predict(guard_grows=20)
    assert np.array_equal(result.mask, organ)
    assert 0 < result.box_grows < 20
    z0, y0, x0, z1, y1, x1 = result.box
    assert z0 < 4 and y0 < 6 and x0 < 10 and z1 > 20 and y1 > 34 and x1 > 30  # a margin of background around it


def test_the_guard_is_bounded() -> None:
    organ, result = _predict(guard_grows=2)
    assert result.box_grows == 2
    assert _predict(guard_grows=0)[1].mask.sum() < result.mask.sum() < organ.sum()


def test_faces_at_the_image_edge_never_grow() -> None:
    mask = np.ones((4, 4, 4), dtype=np.uint8)
    assert touched_faces(mask, (0, 0, 0, 4, 4, 4), (4, 4, 4)) == []
    assert touched_faces(mask, (-3, 0, 2, 4, 4, 6), (4, 4, 8)) == [(2, 0), (2, 1)]
    assert grown_box((0, 0, 2, 4, 4, 6), [(2, 0), (2, 1)], 5, (4, 4, 8)) == (0, 0, 0, 4, 4, 8)
    assert grown_box((1, 1, 1, 3, 3, 3), [(0, 1)], 0, (9, 9, 9)) == (1, 1, 1, 4, 3, 3)  # a zero margin still grows


def test_a_negative_bound_is_refused() -> None:
    with pytest.raises(ConfigError, match="guard_grows"):
        Localisation(2, guard_grows=-1)


def test_a_stray_blob_at_a_face_is_not_the_organ() -> None:
    mask = np.zeros((10, 10, 10), dtype=np.uint8)
    mask[3:7, 3:7, 3:7] = 1  # the organ, inside
    mask[0, 0, 0] = 1  # a false positive at the low faces
    assert touched_faces(mask, (2, 2, 2, 12, 12, 12), (20, 20, 20)) == []
    mask[3:7, 3:7, 7:] = 1  # the organ reaches the high x face
    assert touched_faces(mask, (2, 2, 2, 12, 12, 12), (20, 20, 20)) == [(2, 1)]
