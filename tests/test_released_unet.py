"""The released code's network: its layout, parameter count and missing skip connections."""

import pytest
import torch

from l2s_core.errors import ConfigError
from l2s_core.model import build_network
from l2s_core.released_unet import ReleasedCodeUNet3D


def test_released_code_network_matches_its_description():
    net = build_network("released_code")
    assert isinstance(net, ReleasedCodeUNet3D) and net.size_multiple == 16
    assert sum(p.numel() for p in net.parameters()) == 3_820_994  # the released UNet3D(im_channels=1, out_channels=2)
    first = list(net.input_block)
    assert [type(m).__name__ for m in first[:3]] == ["Conv3d", "ReLU", "GroupNorm"]  # ReLU before the norm
    assert first[2].num_groups == 32 and first[0].out_channels == 64
    down = list(net.down_blocks[0])
    assert type(down[0]).__name__ == "MaxPool3d" and down[7].kernel_size == (1, 1, 1) and down[7].bias is None
    assert len(down) == 8  # the 1×1 convolution is bare: nothing after it
    small = build_network("released_code", base_channels=4, depth=2, groups=2)
    logits = small(torch.randn(2, 1, 8, 12, 16))
    assert logits.shape == (2, 2, 8, 12, 16) and bool((logits >= 0).all())  # the output ReLU


def test_released_code_network_has_no_skip_connections():
    """The output is a function of the bottleneck alone: no encoder feature reaches the decoder."""
    torch.manual_seed(0)
    net = build_network("released_code", base_channels=4, depth=2, groups=2).eval()
    images = torch.randn(1, 1, 8, 8, 8)
    features = {}
    net.down_blocks[-1].register_forward_hook(lambda module, args, output: features.setdefault("bottleneck", output))
    with torch.no_grad():
        net(images)
        bottleneck = features["bottleneck"]
        decoded = bottleneck
        for block in net.up_blocks:
            decoded = block(decoded)
        assert torch.allclose(net.head(decoded), net(images))  # the output is a function of the bottleneck alone


def test_unknown_architecture_is_a_config_error():
    with pytest.raises(ConfigError, match="architecture"):
        build_network("transformer")
