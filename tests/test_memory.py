"""Training memory estimated on the meta device."""

import pytest

from l2s_core.memory import estimate_training_memory
from l2s_core.model import UNet3D


def test_estimate_counts_parameters_and_grows_with_the_input():
    small = estimate_training_memory({"base_channels": 4, "depth": 2}, (8, 16, 16))
    assert small.parameters == sum(p.numel() for p in UNet3D(base_channels=4, depth=2).parameters())
    assert small.parameter_bytes == 16 * small.parameters
    assert small.peak_bytes > small.activation_bytes + small.parameter_bytes
    double = estimate_training_memory({"base_channels": 4, "depth": 2}, (16, 16, 16))
    assert double.activation_bytes == pytest.approx(2 * small.activation_bytes, rel=0.05)
    batch = estimate_training_memory({"base_channels": 4, "depth": 2}, (8, 16, 16), batch=2)
    assert batch.activation_bytes == pytest.approx(2 * small.activation_bytes, rel=0.05)


def test_paper_configuration_fits_a_24_gb_gpu_at_one_patch():
    estimate = estimate_training_memory(UNet3D.PAPER_CONFIG, (64, 256, 256))
    assert 22e6 < estimate.parameters < 23e6
    assert 4 * 2**30 < estimate.peak_bytes < 24 * 2**30
