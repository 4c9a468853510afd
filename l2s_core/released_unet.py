"""The 3D network of the paper's released code, rebuilt from its description (no code copied).

The authors' ``unet3d.py`` (github.com/Abe404/localise_to_segment) differs from the U-Net the
paper's text describes: it has **no skip connections** (the encoder's features reach the
up-blocks and are ignored; the residual additions are commented out). Its layout:

* input block: two 3×3×3 convolutions to ``base_channels`` (64);
* ``depth`` (4) down-blocks: 2×2×2 max-pooling, a 3×3×3 convolution to ``2 * base_channels``,
  another at ``2 * base_channels``, then a bare bias-free 1×1×1 convolution back to
  ``base_channels`` (no activation or normalisation after it: its output goes straight on);
* ``depth`` up-blocks: a 2×2×2 stride-2 transposed convolution at ``base_channels``, then two
  3×3×3 convolutions at ``base_channels``;
* every other convolution (transposed included) is followed by ReLU and then GroupNorm(``groups``,
  32): the activation comes before the normalisation;
* output: a 1×1×1 convolution to the classes, followed by a ReLU (logits are never negative).

PyTorch's default initialisation is kept, as in the released code. With the defaults the
network has 3,820,994 parameters (``l2s_core.model.UNet3D.PAPER_CONFIG``: 22.6 M).
``l2s_core.model.build_network("released_code", ...)`` builds it for a study.
"""

from __future__ import annotations

__all__ = ["ReleasedCodeUNet3D"]

from typing import Any

import torch
from torch import nn

from l2s_core.errors import ConfigError, require_positive


def _conv_relu_norm(in_channels: int, out_channels: int, groups: int, transposed: bool = False) -> list[nn.Module]:
    """A 3×3×3 (or 2×2×2 stride-2 transposed) convolution, ReLU, then GroupNorm: the released code's order."""
    if transposed:
        conv: nn.Module = nn.ConvTranspose3d(in_channels, out_channels, kernel_size=2, stride=2)
    else:
        conv = nn.Conv3d(in_channels, out_channels, kernel_size=3, padding=1)
    return [conv, nn.ReLU(inplace=True), nn.GroupNorm(min(groups, out_channels), out_channels)]


class ReleasedCodeUNet3D(nn.Module):
    """Encoder-decoder without skip connections, as in the paper's released code.

    Args:
        in_channels: image channels of the input.
        out_channels: classes (channels of the output).
        base_channels: width of the input block, the up-blocks and the down-blocks' outputs (64).
        depth: down-blocks and up-blocks (4); input sides must be multiples of ``2 ** depth``.
        groups: GroupNorm groups (32); must divide ``base_channels``.

    Raises:
        ConfigError: a parameter out of range.

    Examples:
        >>> net = ReleasedCodeUNet3D(base_channels=8, depth=2, groups=4)
        >>> net(torch.zeros(1, 1, 8, 12, 16)).shape
        torch.Size([1, 2, 8, 12, 16])
    """

    def __init__(
        self, in_channels: int = 1, out_channels: int = 2, base_channels: int = 64, depth: int = 4, groups: int = 32
    ) -> None:
        super().__init__()
        require_positive(
            "ReleasedCodeUNet3D",
            in_channels=in_channels,
            out_channels=out_channels,
            base_channels=base_channels,
            depth=depth,
            groups=groups,
        )
        if base_channels % min(groups, base_channels):
            raise ConfigError("ReleasedCodeUNet3D groups", f"{groups} groups do not divide {base_channels} channels")
        self.hparams: dict[str, Any] = dict(
            in_channels=in_channels, out_channels=out_channels, base_channels=base_channels, depth=depth, groups=groups
        )
        width, wide = base_channels, 2 * base_channels
        self.input_block = nn.Sequential(
            *_conv_relu_norm(in_channels, width, groups), *_conv_relu_norm(width, width, groups)
        )
        self.down_blocks = nn.ModuleList(
            nn.Sequential(
                nn.MaxPool3d(2),
                *_conv_relu_norm(width, wide, groups),
                *_conv_relu_norm(wide, wide, groups),
                nn.Conv3d(wide, width, kernel_size=1, bias=False),
            )
            for _ in range(depth)
        )
        self.up_blocks = nn.ModuleList(
            nn.Sequential(
                *_conv_relu_norm(width, width, groups, transposed=True),
                *_conv_relu_norm(width, width, groups),
                *_conv_relu_norm(width, width, groups),
            )
            for _ in range(depth)
        )
        self.head = nn.Sequential(nn.Conv3d(width, out_channels, kernel_size=1), nn.ReLU())

    @property
    def size_multiple(self) -> int:
        """Every spatial side of an input must be a multiple of this (``2 ** depth``)."""
        return 2 ** self.hparams["depth"]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Map ``(N, in_channels, z, y, x)`` images to ``(N, out_channels, z, y, x)`` non-negative logits.

        Raises:
            ValueError: a spatial side is not a multiple of :attr:`size_multiple`.
        """
        if images.ndim != 5 or any(side % self.size_multiple for side in images.shape[2:]):
            raise ValueError(
                f"ReleasedCodeUNet3D input: shape {tuple(images.shape)} must be (N, C, z, y, x) with "
                f"z, y, x multiples of {self.size_multiple}"
            )
        features = self.input_block(images)
        for block in self.down_blocks:
            features = block(features)
        for block in self.up_blocks:
            features = block(features)
        return self.head(features)
