"""Seconds per training step of our UNet3D against MONAI's BasicUNet.

A training step is forward, :class:`~l2s_core.losses.DiceCELoss`, backward and an Adam step
on one random batch. Both models see the same batch and loss; after warm-up steps their
steps alternate one by one, so that a change in machine load affects both alike, and the
median step time of each is reported.

BasicUNet always has four 2×2×2 poolings (five levels). It is given GroupNorm with our number
of groups and ReLU, as in our model, and the per-level widths that bring its parameter count
closest to ours: with ``--depth 4`` (the default, the depth of ``UNet3D.PAPER_CONFIG``) these
are exactly our widths, so the two networks have the same architecture and the benchmark
compares implementations.

Usage::

    python benchmarks/bench_train.py --steps 10 --patch 32 64 64 --batch 2 --device cpu
    python benchmarks/bench_train.py --channels-last        # both models in channels_last_3d

The last printed line is one JSON object with the results.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Sequence

import torch
from monai.networks.nets import BasicUNet
from torch import nn

from l2s_core.losses import DiceCELoss
from l2s_core.model import UNet3D

PARAMETER_TOLERANCE = 0.15
"""Largest accepted relative difference between the two models' parameter counts."""


def parameter_count(model: nn.Module) -> int:
    """Number of trainable parameters of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def basic_unet_features(full_resolution_width: int) -> tuple[int, ...]:
    """BasicUNet ``features``: the first level's width doubled at each of the four lower
    levels, and that width again after the last upsampling."""
    return (*(full_resolution_width * 2**level for level in range(5)), full_resolution_width)


def basic_unet(features: tuple[int, ...], groups: int) -> BasicUNet:
    """MONAI BasicUNet (3D, 1 input channel, 2 classes) with GroupNorm and ReLU like ours."""
    return BasicUNet(
        spatial_dims=3,
        in_channels=1,
        out_channels=2,
        features=features,
        norm=("group", {"num_groups": groups}),
        act=("relu", {"inplace": True}),
    )


def matching_features(target_parameters: int, groups: int) -> tuple[int, ...]:
    """The BasicUNet ``features`` whose parameter count is closest to ``target_parameters``.

    Widths are multiples of ``groups`` so that GroupNorm divides every layer.

    Raises:
        SystemExit: if no width comes within :data:`PARAMETER_TOLERANCE` of the target.
    """
    best, best_difference = basic_unet_features(groups), float("inf")
    width = groups
    while True:  # the count grows with the width: stop at the first one above the target
        features = basic_unet_features(width)
        difference = parameter_count(basic_unet(features, groups)) - target_parameters
        if abs(difference) < best_difference:
            best, best_difference = features, abs(difference)
        if difference >= 0:
            break
        width += groups
    if best_difference > PARAMETER_TOLERANCE * target_parameters:
        raise SystemExit(
            f"--base-channels/--depth: no BasicUNet within {PARAMETER_TOLERANCE:.0%} "
            f"of our {target_parameters} parameters"
        )
    return best


def training_step(
    model: nn.Module,
    optimiser: torch.optim.Optimizer,
    loss_function: nn.Module,
    images: torch.Tensor,
    target: torch.Tensor,
) -> float:
    """Run one training step and return its wall-clock seconds (device synchronised)."""
    synchronise = torch.cuda.synchronize if images.is_cuda else (lambda: None)
    synchronise()
    start = time.perf_counter()
    optimiser.zero_grad(set_to_none=True)
    loss_function(model(images), target).backward()
    optimiser.step()
    synchronise()
    return time.perf_counter() - start


def main(argv: Sequence[str] | None = None) -> dict:
    """Time training steps of both models; print the per-step medians, the last line as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=10, help="timed steps per model")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per model first")
    parser.add_argument("--patch", type=int, nargs=3, default=[32, 64, 64], metavar=("Z", "Y", "X"))
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--base-channels", type=int, default=8)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--groups", type=int, default=4)
    parser.add_argument(
        "--channels-last",
        action="store_true",
        help="run both models and the batch in torch.channels_last_3d memory format",
    )
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    device = torch.device(args.device)
    ours = UNet3D(base_channels=args.base_channels, depth=args.depth, groups=args.groups).to(device)
    monai_features = matching_features(parameter_count(ours), args.groups)
    monai = basic_unet(monai_features, args.groups).to(device)
    images = torch.randn(args.batch, 1, *args.patch, device=device)
    if args.channels_last:
        # Module.to takes memory_format at run time; torch's type stubs do not list it
        ours, monai = (model.to(memory_format=torch.channels_last_3d) for model in (ours, monai))  # type: ignore[call-overload]
        images = images.contiguous(memory_format=torch.channels_last_3d)
    target = (torch.rand(args.batch, *args.patch, device=device) > 0.9).long()
    loss_function = DiceCELoss()
    models = {"ours": ours, "monai": monai}
    optimisers = {name: torch.optim.Adam(model.parameters(), lr=1e-4) for name, model in models.items()}
    for name, model in models.items():
        print(f"{name}: {type(model).__name__}, {parameter_count(model)} parameters")

    times: dict[str, list[float]] = {name: [] for name in models}
    for step in range(args.warmup + args.steps):
        for name, model in models.items():
            seconds = training_step(model, optimisers[name], loss_function, images, target)
            if step >= args.warmup:
                times[name].append(seconds)
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, values in times.items():
        print(f"{name}: median {medians[name]:.4f} s/step, min {min(values):.4f}, max {max(values):.4f}")

    result = {
        "benchmark": "train_step",
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "channels_last_3d": args.channels_last,
        "patch": list(args.patch),
        "batch": args.batch,
        "steps": args.steps,
        "ours_config": ours.hparams,
        "monai_features": list(monai_features),
        "ours_params": parameter_count(ours),
        "monai_params": parameter_count(monai),
        "ours_s_per_step": round(medians["ours"], 5),
        "monai_s_per_step": round(medians["monai"], 5),
        "ratio_ours_over_monai": round(medians["ours"] / medians["monai"], 4),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
