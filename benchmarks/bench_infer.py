"""Seconds to segment one full volume: the baseline's sliding-window prediction against the
two-stage pipeline (localise at low resolution, segment the organ box at full resolution).

All three networks are :class:`~l2s_core.model.UNet3D` with the same (default) architecture.
The baseline and organ networks keep their random initial weights: the time of a forward pass
does not depend on the weights. The localiser's weights do matter, since its prediction sets
the size of the box the organ network segments (an untrained localiser marks most of the image
and the box covers all of it), so it is first trained briefly on the phantom's low-resolution
training images, until its training Dice reaches ``--localiser-dice`` or ``--localiser-steps``
full-batch steps have run. The pipeline then runs for real, without any oracle, on a test case
it has not seen. After one warm-up call each, the two methods alternate ``--repeats`` times and
the median of each is reported.

Usage::

    python benchmarks/bench_infer.py --repeats 5 --patch 16 48 48 --device cpu

The last printed line is one JSON object with the results.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from bench_data import DEFAULT_PATCH, add_phantom_arguments, prepared_phantom

from l2s_core.data.cache import PreparedTask
from l2s_core.infer import (
    Segmenter,
    predict_mask,
    predict_volume,
    two_stage_predict,
    window_starts,
)
from l2s_core.losses import DiceCELoss, hard_dice_counts
from l2s_core.model import UNet3D
from l2s_core.prediction import Localisation, Prediction
from l2s_core.sampling import PatchDataset, pad_collate

T = TypeVar("T")


def train_localiser(
    localiser: UNet3D, task: PreparedTask, max_steps: int, target_dice: float, lr: float, device: torch.device
) -> tuple[int, float]:
    """Fit the localiser on all low-resolution training images at once (one batch per step).

    Returns:
        ``(steps run, hard Dice of the last step's batch)``.
    """
    ids = task.split["train"]
    whole = (1024, 1024, 1024)  # larger than every low-resolution image: each item is a whole image
    batch = pad_collate(
        [PatchDataset(task, [case_id], "lowres", whole, multiple=localiser.size_multiple)[0] for case_id in ids]
    )
    images, labels = batch["image"].to(device), batch["label"].to(device)
    optimiser = torch.optim.Adam(localiser.parameters(), lr=lr)
    loss_function = DiceCELoss()
    localiser.train()
    steps, dice = 0, 0.0
    while steps < max_steps and dice < target_dice:
        optimiser.zero_grad(set_to_none=True)
        logits = localiser(images)
        loss_function(logits, labels).backward()
        optimiser.step()
        tp, fp, fn = (int(c) for c in hard_dice_counts(logits.detach(), labels))
        dice = 2 * tp / max(2 * tp + fp + fn, 1)
        steps += 1
    return steps, dice


def _timed(function: Callable[[], T]) -> tuple[float, T]:
    """Wall-clock seconds of ``function()`` and its result (predictions end on the CPU, so
    device work is finished when it returns)."""
    start = time.perf_counter()
    out = function()
    return time.perf_counter() - start, out


def _median_seconds(function: Callable[[], object], device: torch.device, warmup: int = 2, repeats: int = 5) -> float:
    """Median seconds of ``function`` after ``warmup`` untimed calls, the device synchronised."""
    seconds = []
    for index in range(warmup + repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        function()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if index >= warmup:
            seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def validation_overhead(
    model: torch.nn.Module,
    patch: tuple[int, int, int],
    volume_shape: tuple[int, int, int],
    device: torch.device,
    amp: bool,
) -> dict:
    """One validation pass (:func:`predict_mask` of a random volume already on the device,
    non-overlapping windows, as many per forward pass as memory allows, compiled on GPUs) beside
    the pure forward time of the same windows stacked in one tensor: the pass's overhead."""
    model = model.to(device)
    segmenter = Segmenter(model, patch, overlap=0.0, sw_batch_size=None, amp=amp)
    volume = torch.randn(volume_shape, device=device)
    pass_s = _median_seconds(lambda: predict_mask(segmenter, volume, device), device)
    multiple = segmenter.multiple
    windows = 1
    for side, p in zip(volume_shape, patch):
        padded = -(-side // multiple) * multiple
        windows *= len(window_starts(padded, min(padded, p), 0.0))
    window = segmenter.window(tuple(-(-s // multiple) * multiple for s in volume_shape))
    stacked = torch.randn((windows, 1, *window), device=device)
    model.eval()
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
        forward_s = _median_seconds(lambda: model(stacked), device)
    return {
        "volume": list(volume_shape),
        "windows": windows,
        "pass_s": round(pass_s, 4),
        "forward_s": round(forward_s, 4),
        "pass_over_forward": round(pass_s / forward_s, 2),
    }


def main(argv: Sequence[str] | None = None) -> dict:
    """Time the baseline sliding window and the two-stage pipeline; print the figures, the last line as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_phantom_arguments(parser)
    parser.add_argument(
        "--patch",
        type=int,
        nargs=3,
        default=list(DEFAULT_PATCH),
        metavar=("Z", "Y", "X"),
        help="baseline sliding window (its training patch)",
    )
    parser.add_argument("--overlap", type=float, default=0.25)
    parser.add_argument("--sw-batch-size", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per method")
    parser.add_argument("--localiser-steps", type=int, default=150, help="most training steps of the localiser")
    parser.add_argument("--localiser-dice", type=float, default=0.7, help="training Dice that ends them early")
    parser.add_argument("--localiser-lr", type=float, default=1e-3)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--amp", action="store_true", help="bfloat16 autocast")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    baseline, localiser, organ_net = (UNet3D().to(device) for _ in range(3))
    with tempfile.TemporaryDirectory(prefix="l2s_bench_infer_") as scratch:
        task = prepared_phantom(args, args.work or Path(scratch))
        steps, train_dice = train_localiser(
            localiser, task, args.localiser_steps, args.localiser_dice, args.localiser_lr, device
        )
        case = task.case(task.split["test"][0])
        image = np.array(case.array("full", "image"))
    print(f"localiser trained {steps} steps (training Dice {train_dice:.3f}); baseline and organ network untrained")
    print(f"test case {case.case_id}, (z, y, x) {image.shape}, sliding window {tuple(args.patch)}")

    def segmenter(model: UNet3D) -> Segmenter:
        return Segmenter(model, tuple(args.patch), args.overlap, args.sw_batch_size, args.amp)

    def run_baseline() -> np.ndarray:
        return predict_volume(segmenter(baseline), image, device)

    localisation = Localisation.of_settings(task.preparation.settings)

    def run_two_stage() -> Prediction:
        return two_stage_predict(segmenter(localiser), segmenter(organ_net), image, localisation, device=device)

    run_baseline(), run_two_stage()  # warm-up
    times: dict[str, list[float]] = {"baseline": [], "two_stage": []}
    for _ in range(args.repeats):
        seconds, _ = _timed(run_baseline)
        times["baseline"].append(seconds)
        seconds, result = _timed(run_two_stage)
        times["two_stage"].append(seconds)
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, values in times.items():
        print(f"{name}: median {medians[name]:.3f} s, min {min(values):.3f}, max {max(values):.3f}")

    overhead = validation_overhead(baseline, tuple(args.patch), image.shape, device, args.amp)
    print(
        f"validation pass {overhead['pass_s']:.3f} s = {overhead['pass_over_forward']} x the pure forward "
        f"{overhead['forward_s']:.3f} s of its {overhead['windows']} windows"
    )
    organ = case.meta.organ_box
    box = result.box
    result_json = {
        "benchmark": "inference",
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "amp": args.amp,
        "organ": args.organ,
        "volume_shape": list(image.shape),
        "window": list(args.patch),
        "overlap": args.overlap,
        "model": organ_net.hparams,
        "weights": f"baseline and organ network untrained; localiser trained {steps} steps",
        "two_stage_box": list(box) if box is not None else None,
        "fallback_used": result.fallback_used,
        "box_contains_organ": box is not None
        and all(box[a] <= organ[a] and box[a + 3] >= organ[a + 3] for a in range(3)),
        "repeats": args.repeats,
        "baseline_s": round(medians["baseline"], 4),
        "two_stage_s": round(medians["two_stage"], 4),
        "ratio_baseline_over_two_stage": round(medians["baseline"] / medians["two_stage"], 2),
        "validation_pass": overhead,
    }
    print(json.dumps(result_json))
    return result_json


if __name__ == "__main__":
    main()
