"""The 3D U-Net used by every network of the study (baseline, localiser, organ network).

An encoder-decoder after Çiçek et al. (2016) with the paper's choices: GroupNorm after each
convolution (the global batch is 2, one patch per GPU, too small for batch normalisation),
zero padding so the logits have the input's spatial shape, and He initialisation.

Each level has two 3×3×3 convolutions, each followed by GroupNorm and ReLU. The encoder
halves the spatial size with 2×2×2 max-pooling and doubles the channels per level; the
decoder doubles the spatial size with a 2×2×2 transposed convolution that halves the
channels, concatenates the encoder's features of the same level (skip connection) and
applies the level's two convolutions. A final 1×1×1 convolution gives the class logits.

The convolutions followed by GroupNorm have no bias: GroupNorm subtracts the per-group mean,
so a bias there would be a parameter without effect.
"""

from __future__ import annotations

__all__ = ["ARCHITECTURE_CLASSES", "NETWORK_CLASSES", "TwoConvNormReLU", "UNet3D", "UpLevel", "build_network"]

from typing import Any, ClassVar

import torch
from torch import nn

from l2s_core.errors import ConfigError, check_choice, require_positive
from l2s_core.released_unet import ReleasedCodeUNet3D


class TwoConvNormReLU(nn.Sequential):
    """Two 3×3×3 zero-padded convolutions, each followed by GroupNorm and ReLU.

    Args:
        in_channels: channels of the input.
        out_channels: channels of both convolutions' outputs.
        groups: GroupNorm groups; ``min(groups, out_channels)`` groups are used.
    """

    def __init__(self, in_channels: int, out_channels: int, groups: int) -> None:
        norm_groups = min(groups, out_channels)
        super().__init__(
            nn.Conv3d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
            nn.GroupNorm(norm_groups, out_channels),
            nn.ReLU(inplace=True),
            nn.Conv3d(out_channels, out_channels, kernel_size=3, padding=1, bias=False),
            nn.GroupNorm(norm_groups, out_channels),
            nn.ReLU(inplace=True),
        )


class UpLevel(nn.Module):
    """One decoder level: upsample, concatenate the skip features, two convolutions.

    Args:
        in_channels: channels coming from the level below (twice ``out_channels``).
        out_channels: channels of this level (and of its skip features).
        groups: GroupNorm groups of the level's convolutions.
    """

    def __init__(self, in_channels: int, out_channels: int, groups: int) -> None:
        super().__init__()
        self.upsample = nn.ConvTranspose3d(in_channels, out_channels, kernel_size=2, stride=2)
        self.convs = TwoConvNormReLU(2 * out_channels, out_channels, groups)

    def forward(self, below: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """Decode one level.

        Args:
            below: features of the level below, shape ``(N, in_channels, z/2, y/2, x/2)``.
            skip: encoder features of this level, shape ``(N, out_channels, z, y, x)``.

        Returns:
            Features of shape ``(N, out_channels, z, y, x)``.
        """
        return self.convs(torch.cat([skip, self.upsample(below)], dim=1))


class UNet3D(nn.Module):
    """3D U-Net with GroupNorm, zero padding and He initialisation.

    Level ``i`` (0 at full resolution, ``depth`` at the bottleneck) has
    ``base_channels * 2**i`` channels, so inputs must have spatial sides divisible by
    ``2**depth``; callers pad other sizes and crop the logits back.

    Args:
        in_channels: image channels ``C`` of the input.
        out_channels: classes, i.e. channels of the logits (2: background and organ).
        base_channels: channels of the full-resolution level.
        depth: number of 2×2×2 max-pooling steps (levels below full resolution), at least 1.
        groups: GroupNorm groups per normalisation layer (``min(groups, channels)`` where a
            layer has fewer channels); must divide every level's channels.

    Raises:
        ConfigError: if a parameter is out of range or ``groups`` does not divide the
            channels.

    Examples:
        >>> net = UNet3D(base_channels=8, depth=3)
        >>> net(torch.zeros(1, 1, 16, 24, 32)).shape
        torch.Size([1, 2, 16, 24, 32])
    """

    PAPER_CONFIG: ClassVar[dict[str, int]] = dict(base_channels=32, depth=4)
    """Width and depth we use for GPU runs of the paper protocol. The paper does not state
    them; 32 channels and 4 poolings are the common 3D U-Net choice that fits a 64×256×256
    patch per GPU."""

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 2,
        base_channels: int = 8,
        depth: int = 3,
        groups: int = 4,
    ) -> None:
        super().__init__()
        require_positive(
            "UNet3D",
            in_channels=in_channels,
            out_channels=out_channels,
            base_channels=base_channels,
            depth=depth,
            groups=groups,
        )
        channels = [base_channels * 2**level for level in range(depth + 1)]
        for level_channels in channels:
            if level_channels % min(groups, level_channels) != 0:
                raise ConfigError(
                    "UNet3D groups",
                    f"{groups} GroupNorm groups do not divide a level's {level_channels} channels",
                )
        self.hparams: dict[str, Any] = dict(
            in_channels=in_channels,
            out_channels=out_channels,
            base_channels=base_channels,
            depth=depth,
            groups=groups,
        )
        self.encoder = nn.ModuleList(
            TwoConvNormReLU(c_in, c_out, groups) for c_in, c_out in zip([in_channels] + channels[:-1], channels)
        )
        self.pool = nn.MaxPool3d(kernel_size=2, stride=2)
        self.decoder = nn.ModuleList(
            UpLevel(channels[level + 1], channels[level], groups) for level in reversed(range(depth))
        )
        self.head = nn.Conv3d(base_channels, out_channels, kernel_size=1)
        self._init_weights()

    @property
    def size_multiple(self) -> int:
        """Every spatial side of an input must be a multiple of this (``2**depth``)."""
        return 2 ** self.hparams["depth"]

    def _init_weights(self) -> None:
        """He (Kaiming normal, ReLU gain, fan-in) weights and zero biases for every convolution."""
        for module in self.modules():
            if isinstance(module, (nn.Conv3d, nn.ConvTranspose3d)):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Segment a batch of patches.

        Args:
            images: shape ``(N, in_channels, z, y, x)`` with ``z``, ``y``, ``x`` multiples of
                :attr:`size_multiple`.

        Returns:
            Logits of shape ``(N, out_channels, z, y, x)``.

        Raises:
            ValueError: if ``images`` is not 5-D or a spatial side is not a multiple of
                :attr:`size_multiple`.
        """
        if images.ndim != 5 or any(side % self.size_multiple for side in images.shape[2:]):
            raise ValueError(
                f"UNet3D input: shape {tuple(images.shape)} must be (N, C, z, y, x) with z, y, x "
                f"multiples of {self.size_multiple} (2**depth); pad the input and crop the logits"
            )
        skips = []
        features = images
        for level, block in enumerate(self.encoder):
            if level > 0:
                features = self.pool(features)
            features = block(features)
            skips.append(features)
        skips.pop()
        for up_level in self.decoder:
            features = up_level(features, skips.pop())
        return self.head(features)


#: The study option ``architecture`` → network class: the paper's text (``unet``) or its released code.
ARCHITECTURE_CLASSES: dict[str, type[nn.Module]] = {"unet": UNet3D, "released_code": ReleasedCodeUNet3D}
#: Network classes by the name that checkpoints and model cards record.
NETWORK_CLASSES: dict[str, type[nn.Module]] = {cls.__name__: cls for cls in ARCHITECTURE_CLASSES.values()}


def build_network(architecture: str = "unet", **hparams: Any) -> nn.Module:
    """The network of a study's ``architecture`` option with these constructor arguments.

    Raises:
        ConfigError: an unknown architecture or invalid arguments.
    """
    check_choice("architecture", architecture, ARCHITECTURE_CLASSES)
    return ARCHITECTURE_CLASSES[architecture](**hparams)
