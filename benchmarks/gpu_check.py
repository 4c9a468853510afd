"""The one script to run on a borrowed GPU (one call, under 8 minutes): how fast the paper's
training step, validation and loader are, beside other networks of the same width.

1. Our U-Net (``UNet3D.PAPER_CONFIG``) at the paper patch 64×256×256: eager against compiled
   training steps (:func:`l2s_core.train.loop.train_step`), batch 1 and 2, float32 and bfloat16
   autocast, each with TFLOP/s (FLOPs counted by ``FlopCounterMode``) and peak memory.
2. nnU-Net's ``PlainConvUNet`` (InstanceNorm and GroupNorm(4)) and MONAI's ``BasicUNet``
   (GroupNorm(4)) at equal widths: eager and compiled, batch 2, bfloat16 (skipped with the reason
   where a package is missing).
3. One validation pass (:func:`l2s_core.infer.predict_mask`, the compiled bf16 network) of a
   93×512×512 volume beside the pure forward time of its windows.
4. The trainer's loader (patches/s at the paper patch, 0/4/8/15 workers) beside the compiled
   step's patches/s.
5. The dry-run projection of ``papermill_params/paper.yaml`` (MSD-shaped volumes of the phantom
   geometry, one GPU per run: this device).

Writes ``benchmarks/results/gpu_check_<device>.json`` (or ``--out``) and ends with one JSON line.
``--tiny`` runs everything at toy sizes (the CPU too), to check the script end to end.

Usage::

    python benchmarks/gpu_check.py [--tiny] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from bench_data import SyntheticTask, loader_rate
from bench_infer import validation_overhead
from torch.utils.flop_counter import FlopCounterMode

from l2s_core.compiling import compile_network
from l2s_core.distributed import ProcessContext
from l2s_core.files import atomic_write_json
from l2s_core.losses import DiceCELoss
from l2s_core.model import UNet3D
from l2s_core.train.loop import train_step

RESULTS_DIR = Path(__file__).resolve().parent / "results"
PARAMS = Path(__file__).resolve().parent.parent / "papermill_params" / "paper.yaml"


@dataclass(frozen=True)
class Sizes:
    """Sizes of one check: the patch, the validation volume, the loader's volumes, the U-Net."""

    patch: tuple[int, int, int]
    volume: tuple[int, int, int]
    loader_shape: tuple[int, int, int]
    hparams: dict[str, int]


PAPER = Sizes((64, 256, 256), (93, 512, 512), (96, 320, 320), UNet3D.PAPER_CONFIG)
TINY = Sizes((16, 32, 32), (20, 64, 64), (24, 48, 48), dict(base_channels=4, depth=2))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(function: Callable[[], Any], device: torch.device, warmup: int, repeats: int) -> float:
    """Median seconds of ``function`` after ``warmup`` untimed calls."""
    seconds = []
    for index in range(warmup + repeats):
        _sync(device)
        started = time.perf_counter()
        function()
        _sync(device)
        if index >= warmup:
            seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def _peak_reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak_gib(device: torch.device) -> float | None:
    return round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if device.type == "cuda" else None


def step_check(
    make: Callable[[], torch.nn.Module],
    patch: tuple[int, int, int],
    batch: int,
    amp: bool,
    compiled: bool,
    device: torch.device,
    steps: int,
) -> dict[str, Any]:
    """Median step seconds, TFLOP/s, peak memory and compile warm-up of one network and setting."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = make().to(device)
    context = ProcessContext(rank=0, world_size=1, device=device, distributed=False)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    images = torch.randn((batch, 1, *patch), device=device)
    labels = (torch.rand((batch, *patch), device=device) < 0.1).to(torch.uint8)
    loss = DiceCELoss()
    with FlopCounterMode(display=False) as counter:
        train_step(model, images, labels, optimizer, loss, context, amp)
    flops = counter.get_total_flops()
    if compiled:
        compile_network(model)
    _peak_reset(device)
    started = time.perf_counter()
    train_step(model, images, labels, optimizer, loss, context, amp)
    _sync(device)
    first = time.perf_counter() - started
    seconds = _timed(lambda: train_step(model, images, labels, optimizer, loss, context, amp), device, 2, steps)
    return {
        "step_s": round(seconds, 4),
        "tflops": round(flops / seconds / 1e12, 2),
        "peak_gib": _peak_gib(device),
        "first_step_s": round(first, 2),
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def _outcome(function: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """The result, or the error (one line) where it raised."""
    try:
        return function()
    except Exception as exc:  # recorded beside the other figures
        return {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"}


def comparators(width: int, depth: int) -> dict[str, Callable[[], torch.nn.Module]]:
    """nnU-Net's PlainConvUNet (InstanceNorm, GroupNorm(4)) and MONAI's BasicUNet at our widths."""
    nets: dict[str, Callable[[], torch.nn.Module]] = {}
    features = [width * 2**level for level in range(depth + 1)]
    try:
        from dynamic_network_architectures.architectures.unet import PlainConvUNet

        def plain(norm: type, norm_kwargs: dict[str, Any]) -> Callable[[], torch.nn.Module]:
            return lambda: PlainConvUNet(
                1,
                depth + 1,
                features,
                torch.nn.Conv3d,
                3,
                [1] + [2] * depth,
                2,
                2,
                [2] * depth,
                conv_bias=True,
                norm_op=norm,
                norm_op_kwargs=norm_kwargs,
                nonlin=torch.nn.LeakyReLU,
                nonlin_kwargs={"inplace": True},
            )

        nets["nnunet_plain_instancenorm"] = plain(torch.nn.InstanceNorm3d, {"eps": 1e-5, "affine": True})
        nets["nnunet_plain_groupnorm4"] = plain(_GroupNorm4, {})
    except ImportError as exc:
        print(f"nnU-Net's networks skipped: {exc}")
    try:
        from monai.networks.nets import BasicUNet

        if depth == 4:
            nets["monai_basicunet_groupnorm4"] = lambda: BasicUNet(
                3, 1, 2, features=(*features, width), norm=("group", {"num_groups": 4})
            )
    except ImportError as exc:
        print(f"MONAI's BasicUNet skipped: {exc}")
    return nets


class _GroupNorm4(torch.nn.GroupNorm):
    """GroupNorm with 4 groups, built the way nnU-Net builds its norm (channels only)."""

    def __init__(self, channels: int, **_: Any) -> None:
        super().__init__(4, channels)


def loader_check(
    shape: tuple[int, int, int], patch: tuple[int, int, int], workers: list[int], device: torch.device, batches: int
) -> dict[str, float]:
    """Loader patches/s (batch 2) per worker count on synthetic volumes of ``shape``."""
    with tempfile.TemporaryDirectory(prefix="l2s_gpu_loader_") as work:
        task = SyntheticTask(Path(work), 4, shape)
        return {str(w): round(loader_rate(task, patch, 2, w, batches, device), 1) for w in workers}


def projection_check(tiny: bool) -> dict[str, Any]:
    """``l2s run paper.yaml --dry-run --measure`` on MSD-shaped phantom geometry, one GPU per run."""
    from l2s_core.study.dry_run import dry_run

    text = PARAMS.read_text(encoding="utf-8").replace("data: msd", "data: phantom\nphantom: {profile: msd}", 1)
    if tiny:
        text = text.replace("base_channels: 32", "base_channels: 4").replace(
            "patch_size: [64, 256, 256]", "patch_size: [16, 32, 32]"
        )
    with tempfile.TemporaryDirectory(prefix="l2s_gpu_dry_") as root:
        params = Path(root) / "paper.yaml"
        params.write_text(text, encoding="utf-8")
        started = time.perf_counter()
        output = dry_run(params, root=root, gpus_per_run=1, with_analysis=False, epochs_per_run=100)
    lines = output.splitlines()
    measured = lines[next(i for i, line in enumerate(lines) if line.startswith("measured on")) :]
    print("\n".join(measured))
    return {"lines": measured, "seconds": round(time.perf_counter() - started, 1)}


def main(argv: list[str] | None = None) -> int:
    """Run the checks; save and print the JSON result (last line); returns 0."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="toy sizes: check the script end to end (CPU too)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per setting")
    parser.add_argument("--deadline", type=float, default=400.0, help="seconds after which checks are skipped")
    parser.add_argument("--out", type=Path, default=None, help="JSON file (default benchmarks/results/...)")
    args = parser.parse_args(argv)
    sizes = TINY if args.tiny else PAPER
    cuda = torch.cuda.is_available()
    if not cuda and not args.tiny:
        print(json.dumps({"gpu": False, "message": "CUDA is not available; run with --tiny to check the script"}))
        return 0
    device = torch.device("cuda", 0) if cuda else torch.device("cpu")
    torch.backends.cudnn.benchmark = True
    name = torch.cuda.get_device_name(device) if cuda else "cpu"
    patch, hparams = sizes.patch, sizes.hparams
    result: dict[str, Any] = {
        "device_name": name,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "tiny": args.tiny,
        "patch": list(patch),
        "model": dict(hparams),
    }
    started = time.perf_counter()

    def step(make: Callable[[], torch.nn.Module], batch: int, amp: bool, compiled: bool) -> Callable[[], dict]:
        return lambda: step_check(make, patch, batch, amp and cuda, compiled, device, args.steps)

    def unet() -> torch.nn.Module:
        return UNet3D(**hparams)

    def mode(compiled: bool, amp: bool, batch: int) -> str:
        return f"{'compiled' if compiled else 'eager'}_{'bf16' if amp else 'fp32'}_batch{batch}"

    workers = [0, 1] if args.tiny else [0, 4, 8, 15]
    # most wanted first: what is left when --deadline passes is recorded as skipped
    checks: list[tuple[str, str, Callable[[], Any]]] = [
        ("unet3d_steps", mode(True, True, 2), step(unet, 2, True, True)),
        ("unet3d_steps", mode(False, True, 2), step(unet, 2, True, False)),
        ("validation", "pass", lambda: validation_overhead(UNet3D(**hparams), patch, sizes.volume, device, amp=cuda)),
        ("loader", "patches_per_s", lambda: loader_check(sizes.loader_shape, patch, workers, device, 12)),
        ("paper_projection", "dry_run", lambda: projection_check(args.tiny)),
    ]
    for label, make in comparators(hparams["base_channels"], hparams["depth"]).items():
        checks += [("other_networks", f"{label}_{mode(c, True, 2)}", step(make, 2, True, c)) for c in (False, True)]
    checks += [
        ("unet3d_steps", mode(compiled, amp, batch), step(unet, batch, amp, compiled))
        for compiled, amp, batch in (
            (False, False, 2),
            (False, True, 1),
            (False, False, 1),
            (True, False, 2),
            (True, True, 1),
            (True, False, 1),
        )
    ]
    for section, key, check in checks:
        elapsed = time.perf_counter() - started
        if elapsed > args.deadline:
            result.setdefault(section, {})[key] = {"skipped": f"past the {args.deadline:.0f} s deadline"}
            continue
        print(f"[{elapsed:6.1f} s] {section} {key}", flush=True)
        result.setdefault(section, {})[key] = _outcome(check)
        print(f"  {result[section][key]}", flush=True)
    step_s = result["unet3d_steps"].get(mode(cuda, True, 2), {}).get("step_s")
    rates = result["loader"].get("patches_per_s", {})
    if step_s and "error" not in rates and "skipped" not in rates:
        result["loader"]["step_patches_per_s"] = round(2 / step_s, 2)
        result["loader"]["loader_over_step"] = {w: round(r * step_s / 2, 2) for w, r in rates.items()}
    result["seconds"] = round(time.perf_counter() - started, 1)
    slug = re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_")
    out = args.out or RESULTS_DIR / f"gpu_check_{slug}{'_tiny' if args.tiny else ''}.json"
    atomic_write_json(out, result)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
