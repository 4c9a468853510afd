import nibabel as nib
import numpy as np
import pytest
import torch
from msd_builder import LPS_AFFINE
from torch import nn

from l2s_core.boxes import upsampled_organ_box
from l2s_core.data.prepare import downsample_image, downsample_mask
from l2s_core.errors import ConfigError
from l2s_core.infer import (
    Segmenter,
    box_predict,
    gt_localised_predict,
    predict_probability,
    predict_volume,
    save_prediction,
    two_stage_predict,
)
from l2s_core.model import UNet3D
from l2s_core.prediction import Localisation

SHAPE = (24, 40, 40)  # low resolution (8, 20, 20)


class MaskOracle(nn.Module):
    """Localiser stand-in: logits of a fixed low-resolution mask, placed at the start of the
    (end-padded) input; keeps the inputs it was given."""

    def __init__(self, mask: np.ndarray) -> None:
        super().__init__()
        self.mask = torch.from_numpy(mask.astype(np.float32))
        self.inputs: list[np.ndarray] = []

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.inputs.append(images[0, 0].numpy().copy())
        organ = torch.zeros(images.shape[2:])
        z, y, x = self.mask.shape
        organ[:z, :y, :x] = self.mask
        return torch.stack([1 - organ, organ])[None]


class ThresholdOracle(nn.Module):
    """Organ-network stand-in: organ where the image is positive."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.cat([-images, images], dim=1)


def _seg(model, patch=(64, 64, 64), multiple=8):
    """A network with a window larger than every test image: one pass, padded to ``multiple``."""
    return Segmenter(model, patch, multiple=multiple)


class ShapeRecorder(nn.Module):
    """Voxel-wise network that records the spatial shape of every input it receives."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(1, 2, 1)
        self.shapes: list[tuple[int, ...]] = []

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.shapes.append(tuple(images.shape[2:]))
        return self.conv(images)


def _cube(box, shape=SHAPE):
    mask = np.zeros(shape, np.uint8)
    mask[box[0] : box[3], box[1] : box[4], box[2] : box[5]] = 1
    return mask


def _image(mask):
    return np.where(mask > 0, 1.0, -1.0).astype(np.float32)


@pytest.mark.parametrize(
    "cube, expected_box",
    [
        ((6, 10, 10, 12, 20, 20), (-9, -5, -5, 27, 35, 35)),  # inside
        ((0, 30, 0, 6, 40, 10), (-15, 15, -15, 21, 55, 25)),  # touching three borders
    ],
)
def test_two_stage_box_maps_lowres_to_full_resolution(cube, expected_box):
    truth = _cube(cube)
    image = _image(truth)
    lowres_truth = downsample_mask(truth)
    localiser = MaskOracle(lowres_truth)
    result = two_stage_predict(_seg(localiser), _seg(ThresholdOracle()), image, Localisation(15))
    assert result.box == expected_box and result.fallback_used is None
    assert np.array_equal(result.lowres_mask, lowres_truth)
    assert result.mask.dtype == np.uint8 and np.array_equal(result.mask, truth)
    seen = localiser.inputs[0]
    assert seen.shape == (8, 24, 24)  # (8, 20, 20) padded to a multiple of 8
    assert np.array_equal(seen[:8, :20, :20], downsample_image(image)) and not seen[:, 20:].any()
    assert result.seconds > 0


def test_two_stage_covers_an_unaligned_cube_and_ignores_small_components():
    truth = _cube((7, 11, 3, 16, 24, 14))
    lowres = downsample_mask(truth)
    lowres[7, 18:20, 18:20] = 1  # a stray blob smaller than the organ
    result = two_stage_predict(_seg(MaskOracle(lowres)), _seg(ThresholdOracle()), _image(truth), Localisation(4))
    assert np.array_equal(result.mask, truth)
    cube_with_margin = (7 - 4, 11 - 4, 3 - 4, 16 + 4, 24 + 4, 14 + 4)
    for axis, divisor in enumerate((3, 2, 2)):  # within one low-resolution voxel of the true box
        assert abs(result.box[axis] - cube_with_margin[axis]) < divisor
        assert abs(result.box[axis + 3] - cube_with_margin[axis + 3]) < divisor


def test_two_stage_upsample_nearest_uses_the_released_box():
    truth = _cube((7, 11, 3, 16, 24, 14))
    lowres = downsample_mask(truth)
    lowres[7, 18:20, 18:20] = 1  # a stray blob smaller than the organ
    localisation = Localisation(4, box_mapping="upsample_nearest")
    result = two_stage_predict(_seg(MaskOracle(lowres)), _seg(ThresholdOracle()), _image(truth), localisation)
    assert result.box == upsampled_organ_box(lowres, truth.shape, 4)
    assert np.array_equal(result.mask, truth)


def test_two_stage_fallbacks_when_nothing_is_localised():
    truth = _cube((6, 10, 10, 12, 20, 20))
    nothing, organ = _seg(MaskOracle(np.zeros((8, 20, 20), np.uint8))), _seg(ThresholdOracle())
    whole = two_stage_predict(nothing, organ, _image(truth), Localisation(15))
    assert whole.fallback_used == "whole_image" and whole.box is None
    assert np.array_equal(whole.mask, truth)
    empty = two_stage_predict(nothing, organ, _image(truth), Localisation(15, fallback="empty"))
    assert empty.fallback_used == "empty" and empty.box is None
    assert empty.mask.shape == SHAPE and empty.mask.dtype == np.uint8 and not empty.mask.any()
    with pytest.raises(ConfigError, match="fallback"):
        two_stage_predict(nothing, organ, _image(truth), Localisation(15, fallback="guess"))


def test_gt_localised_uses_the_label_box():
    truth = _cube((0, 5, 31, 9, 18, 40))
    image = _image(truth)
    result = gt_localised_predict(_seg(ThresholdOracle()), image, truth, Localisation(3))
    assert result.box == (-3, 2, 28, 12, 21, 43) and result.lowres_mask is None and result.fallback_used is None
    assert np.array_equal(result.mask, truth)
    empty_label = np.zeros(SHAPE, np.uint8)
    fallback = gt_localised_predict(_seg(ThresholdOracle()), image, empty_label, Localisation(3, fallback="empty"))
    assert fallback.fallback_used == "empty" and not fallback.mask.any()


def test_one_pass_pads_crops_and_restores_training_mode():
    torch.manual_seed(0)
    model = nn.Conv3d(1, 2, 3, padding=1).train()
    image = np.random.default_rng(0).normal(size=(5, 9, 7)).astype(np.float32)
    mask = predict_volume(_seg(model, multiple=4), image)
    with torch.no_grad():
        direct = model(torch.from_numpy(image)[None, None])[0].argmax(0).numpy()
    assert mask.shape == image.shape and mask.dtype == np.uint8
    assert np.array_equal(mask, direct)  # zero padding at the end = the convolution's own zero padding
    assert model.training
    assert predict_volume(Segmenter(model, (8, 12, 8), amp=True, multiple=4), image).shape == image.shape


@pytest.mark.parametrize("shape", [(5, 6, 7), (20, 30, 17), (3, 70, 41)])
def test_no_input_is_larger_than_the_patch_and_windows_agree_with_one_pass(shape):
    torch.manual_seed(0)
    model = ShapeRecorder()  # voxel-wise, so windows cannot change the result
    image = np.random.default_rng(1).normal(size=shape).astype(np.float32)
    windowed = Segmenter(model, (8, 16, 16), overlap=0.25, sw_batch_size=2, multiple=4)
    mask = predict_volume(windowed, image)
    assert model.shapes and all(all(s <= p for s, p in zip(seen, (8, 16, 16))) for seen in model.shapes)
    assert all(side % 4 == 0 for seen in model.shapes for side in seen)
    assert mask.shape == shape and mask.dtype == np.uint8
    assert np.array_equal(mask, predict_volume(_seg(model, patch=(128, 128, 128), multiple=1), image))
    probability = predict_probability(windowed, image)
    assert probability.shape == shape and probability.dtype == np.float32
    assert np.array_equal(probability > 0.5, mask.astype(bool))


def test_box_prediction_runs_the_network_only_inside_the_box():
    image = np.zeros((8, 10, 12), np.float32)
    image[1:7, 2:9, 3:11] = 1.0
    box = (-2, 4, 5, 5, 12, 9)  # reaches beyond the image: zero-filled there
    mask = box_predict(_seg(ThresholdOracle(), multiple=4), image, box)
    expected = np.zeros_like(mask)
    expected[0:5, 4:10, 5:9] = image[0:5, 4:10, 5:9] > 0.5
    assert mask.dtype == np.uint8 and mask.shape == image.shape
    assert np.array_equal(mask, expected)


def test_pipeline_runs_with_the_unet_through_windows():
    torch.manual_seed(0)
    localiser, organ_net = UNet3D(base_channels=4, depth=3), UNet3D(base_channels=4, depth=3)
    image = _image(_cube((6, 10, 10, 12, 20, 20)))
    result = two_stage_predict(
        Segmenter(localiser, (8, 16, 16)), Segmenter(organ_net, (16, 16, 16)), image, Localisation(15)
    )
    assert result.mask.shape == SHAPE and result.lowres_mask.shape == (8, 20, 20)
    assert predict_volume(Segmenter(organ_net, (16, 32, 32)), image).shape == SHAPE
    with pytest.raises(ConfigError, match="patch_size"):
        Segmenter(organ_net, (12, 16, 16))


def test_save_prediction_lands_on_the_non_ras_source_grid(prepared_task, tmp_path):
    task = prepared_task(n_cases=1, shape=(6, 10, 14), organ=(1, 2, 3, 4, 5, 11), affine=LPS_AFFINE)
    case = task.case("cube_0")
    mask = np.asarray(case.array("full", "label"))
    out = tmp_path / "cube_0_pred.nii.gz"
    save_prediction(mask, case, out)
    written, source = nib.load(out), nib.load(case.meta.label_path)
    assert written.shape == source.shape == (14, 10, 6)
    assert np.allclose(written.affine, source.affine)
    assert np.array_equal(np.asarray(written.dataobj), np.asarray(source.dataobj))
    with pytest.raises(ValueError):
        save_prediction(mask[:-1], case, out)


@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5])
def test_windows_average_as_monais_sliding_window(overlap):
    from monai.inferers import sliding_window_inference

    torch.manual_seed(0)
    model = nn.Conv3d(1, 2, 3, padding=1).eval()
    image = np.random.default_rng(2).normal(size=(12, 37, 21)).astype(np.float32)  # not multiples of the window
    segmenter = Segmenter(model, (8, 16, 16), overlap=overlap, sw_batch_size=3, multiple=1)
    with torch.no_grad():
        logits = sliding_window_inference(torch.from_numpy(image)[None, None], (8, 16, 16), 3, model, overlap)[0]
    expected = torch.sigmoid(logits[1] - logits[0]).numpy()
    assert np.allclose(predict_probability(segmenter, image), expected, atol=1e-5)


def test_window_starts_cover_the_axis_and_end_at_its_edge():
    from l2s_core.infer import window_starts

    assert window_starts(96, 64, 0.0) == [0, 32]
    assert window_starts(512, 256, 0.0) == [0, 256]
    assert window_starts(40, 16, 0.25) == [0, 12, 24]
    assert window_starts(16, 16, 0.5) == [0]


def test_a_tensor_on_the_device_is_segmented_without_a_host_copy():
    from l2s_core.infer import predict_mask

    model = ThresholdOracle()
    image = torch.linspace(-1, 1, 5 * 6 * 7).reshape(5, 6, 7)
    mask = predict_mask(_seg(model, multiple=4), image)
    assert mask.dtype == torch.bool and torch.equal(mask, image > 0)


def test_windows_are_batched_by_the_memory_estimate_and_agree_with_one_at_a_time(monkeypatch):
    torch.manual_seed(0)
    model = UNet3D(base_channels=2, depth=2)
    batches: list[int] = []
    forward = UNet3D.forward

    def recording(self, images):
        batches.append(len(images))
        return forward(self, images)

    monkeypatch.setattr(UNet3D, "forward", recording)
    image = np.random.default_rng(3).normal(size=(16, 32, 32)).astype(np.float32)
    auto = predict_probability(Segmenter(model, (8, 16, 16), overlap=0.0, sw_batch_size=None), image)
    assert max(batches) == 8  # all eight windows in one pass: a few MiB against the free memory
    batches.clear()
    single = predict_probability(Segmenter(model, (8, 16, 16), overlap=0.0, sw_batch_size=1), image)
    assert max(batches) == 1 and np.allclose(auto, single, atol=1e-5)
