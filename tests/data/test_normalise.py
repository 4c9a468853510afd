"""Intensity normalisations: zscore per image, ct with the training foreground, none."""

import numpy as np
import pytest

from l2s_core.data.normalise import foreground_intensity_stats, normalise
from l2s_core.errors import ConfigError


def test_zscore_none_and_the_input_left_untouched():
    image = np.random.default_rng(0).normal(40.0, 7.0, (5, 6, 7)).astype(np.float32)
    original = image.copy()
    zscored = normalise(image)
    assert zscored.dtype == np.float32 and zscored.shape == image.shape
    assert abs(float(zscored.mean())) < 1e-5 and float(zscored.std()) == pytest.approx(1.0, abs=1e-4)
    assert np.array_equal(image, original)  # the in-place steps work on a copy
    assert np.array_equal(normalise(image.astype(np.int16), "none"), image.astype(np.int16).astype(np.float32))
    assert not normalise(np.full((2, 2, 2), 5.0, np.float32)).any()  # a constant image: no division by zero


def test_ct_clips_to_the_training_foreground_percentiles():
    rng = np.random.default_rng(1)
    samples = []
    for _ in range(3):
        image = rng.normal(0, 300, (8, 8, 8)).astype(np.float32)
        mask = np.zeros(image.shape, bool)
        mask[2:6, 2:6, 2:6] = True
        image[mask] = rng.normal(60, 10, int(mask.sum()))
        samples.append((image, mask))
    stats = foreground_intensity_stats(samples)
    values = np.concatenate([image[mask] for image, mask in samples])
    low, high = np.percentile(values, [0.5, 99.5])
    assert stats.low == pytest.approx(low) and stats.high == pytest.approx(high)
    ct = normalise(samples[0][0], "ct", stats)
    assert ct.max() == pytest.approx((high - stats.mean) / stats.sd, rel=1e-5)
    with pytest.raises(ConfigError, match="foreground statistics"):
        normalise(samples[0][0], "ct")
    with pytest.raises(ConfigError, match="normalisation"):
        normalise(samples[0][0], "minmax")
