import math

import pytest
import torch
from torch import nn

from l2s_core.errors import ConfigError
from l2s_core.model import UNet3D


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _small_net(**kwargs) -> UNet3D:
    return UNet3D(**{"base_channels": 4, "depth": 2, **kwargs})


@pytest.mark.parametrize(("depth", "shape"), [(3, (16, 24, 32)), (3, (8, 8, 8)), (2, (4, 12, 8))])
def test_output_has_input_spatial_shape(depth, shape):
    net = _small_net(depth=depth, out_channels=3, in_channels=2)
    with torch.no_grad():
        logits = net(torch.randn(2, 2, *shape))
    assert logits.shape == (2, 3, *shape)


def test_indivisible_shape_raises_clear_error():
    net = _small_net(depth=3)
    with pytest.raises(ValueError, match=r"\(1, 1, 8, 12, 8\).*multiples of 8"):
        net(torch.zeros(1, 1, 8, 12, 8))
    with pytest.raises(ValueError, match="multiples of 8"):
        net(torch.zeros(1, 8, 8, 8))


def test_depth_and_width_set_levels_and_channels():
    net = UNet3D(in_channels=1, out_channels=2, base_channels=6, depth=2, groups=3)
    encoder_widths = [block[0].out_channels for block in net.encoder]
    decoder_widths = [level.convs[0].out_channels for level in net.decoder]
    assert encoder_widths == [6, 12, 24]
    assert decoder_widths == [12, 6]
    assert net.encoder[0][0].in_channels == 1 and net.head.out_channels == 2
    assert net.size_multiple == 4
    assert net.hparams == dict(in_channels=1, out_channels=2, base_channels=6, depth=2, groups=3)


def test_paper_config_builds_a_wider_deeper_net():
    assert UNet3D.PAPER_CONFIG == dict(base_channels=32, depth=4)
    net = UNet3D(**UNet3D.PAPER_CONFIG)
    assert len(net.encoder) == 5 and net.encoder[-1][0].out_channels == 512


@pytest.mark.parametrize("kwargs", [dict(depth=0), dict(base_channels=6, groups=4), dict(groups=0)])
def test_bad_hyperparameters_raise_config_error(kwargs):
    with pytest.raises(ConfigError, match="UNet3D"):
        UNet3D(**kwargs)


def test_groupnorm_and_relu_follow_every_3x3x3_conv():
    net = UNet3D(base_channels=2, depth=2, groups=4)
    checked = 0
    for module in net.modules():
        if isinstance(module, nn.Sequential):
            children = list(module.children())
            for position, child in enumerate(children):
                if isinstance(child, nn.Conv3d):
                    norm, activation = children[position + 1], children[position + 2]
                    assert isinstance(norm, nn.GroupNorm) and isinstance(activation, nn.ReLU)
                    assert norm.num_channels == child.out_channels
                    assert norm.num_groups == min(4, child.out_channels)
                    assert child.bias is None
                    checked += 1
    n_convs = sum(isinstance(m, nn.Conv3d) and m.kernel_size == (3, 3, 3) for m in net.modules())
    assert checked == n_convs == 2 * (2 * 2 + 1)


def test_he_initialisation_statistics():
    net = UNet3D(base_channels=16, depth=2)
    for module in net.modules():
        if isinstance(module, (nn.Conv3d, nn.ConvTranspose3d)):
            fan_in = module.weight[0].numel()
            expected_std = math.sqrt(2.0 / fan_in)
            assert abs(module.weight.std().item() / expected_std - 1) < 0.15
            assert abs(module.weight.mean().item()) < 0.2 * expected_std
            if module.bias is not None:
                assert torch.count_nonzero(module.bias) == 0


def test_autocast_bfloat16_forward_on_cpu():
    net = _small_net()
    images = torch.randn(1, 1, 8, 8, 8)
    with torch.no_grad():
        reference = net(images)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = net(images)
    assert logits.shape == reference.shape
    assert torch.isfinite(logits).all()
    assert torch.allclose(logits.float(), reference, atol=0.1 * reference.abs().max().item())


def test_channels_last_3d_matches_contiguous():
    net = _small_net()
    images = torch.randn(2, 1, 8, 16, 8)
    with torch.no_grad():
        reference = net(images)
        net_channels_last = net.to(memory_format=torch.channels_last_3d)
        logits = net_channels_last(images.to(memory_format=torch.channels_last_3d))
    assert torch.allclose(logits, reference, atol=1e-4, rtol=1e-4)


def test_forward_backward_under_deterministic_algorithms():
    net = _small_net()
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        gradients = []
        for _ in range(2):
            net.zero_grad()
            torch.manual_seed(1)
            net(torch.randn(1, 1, 4, 8, 8)).square().mean().backward()
            gradients.append(torch.cat([p.grad.flatten() for p in net.parameters()]))
    finally:
        torch.use_deterministic_algorithms(previous)
    assert torch.equal(gradients[0], gradients[1])
    assert gradients[0].abs().sum() > 0
