"""Check the paper's training configuration on this machine's GPU.

Runs the trainer's own optimisation step (:func:`l2s_core.train.loop.train_step`) on the paper's
setting: a 64×256×256 patch, one patch per GPU, bfloat16 autocast and the U-Net's paper
width and depth (``UNet3D.PAPER_CONFIG``). Measures the step time, voxels per second, the
achieved TFLOP/s (FLOPs of one step counted with ``torch.utils.flop_counter.FlopCounterMode``),
the peak GPU memory and whether it fits the paper's 24 GB RTX 3090, then runs a few steps
through a one-process NCCL ``DistributedDataParallel`` group, the code path of the paper's
two-GPU data parallelism.

Writes ``benchmarks/results/gpu_check_<device-name>.json`` and prints the same JSON as the last
line. Without CUDA it prints a JSON saying so and exits with 0.

Usage::

    python benchmarks/gpu_check.py [--steps 10] [--warmup 3]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from l2s_core import distributed
from l2s_core.files import atomic_write_json
from l2s_core.losses import DiceCELoss
from l2s_core.model import UNet3D
from l2s_core.train.loop import train_step

PATCH_SIZE = (64, 256, 256)
BATCH_PER_GPU = 1
PAPER_GPU_BYTES = 24 * 1024**3  # RTX 3090: 24 GiB (the CUDA context needs a few hundred MiB beside it)
RESULTS_DIR = Path(__file__).resolve().parent / "results"


def synthetic_batch(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """A ``(1, 1, 64, 256, 256)`` noise image with a bright cuboid organ and its label."""
    generator = torch.Generator().manual_seed(0)
    labels = torch.zeros((BATCH_PER_GPU, *PATCH_SIZE), dtype=torch.int64)
    labels[:, 16:48, 64:192, 80:176] = 1
    images = labels[:, None].float() + 0.5 * torch.randn((BATCH_PER_GPU, 1, *PATCH_SIZE), generator=generator)
    return images.to(device), labels.to(device)


def timed_steps(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    context: distributed.ProcessContext,
    images: torch.Tensor,
    labels: torch.Tensor,
    steps: int,
    warmup: int,
) -> list[float]:
    """Seconds of each of ``steps`` training steps after ``warmup`` untimed ones."""
    loss_fn = DiceCELoss()
    seconds = []
    for index in range(warmup + steps):
        torch.cuda.synchronize()
        started = time.perf_counter()
        finite, _, _ = train_step(model, images, labels, optimizer, loss_fn, context, amp=True)
        torch.cuda.synchronize()
        if not finite:
            raise RuntimeError("non-finite loss or gradient on the synthetic batch")
        if index >= warmup:
            seconds.append(time.perf_counter() - started)
    return seconds


def step_flops(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    context: distributed.ProcessContext,
    images: torch.Tensor,
    labels: torch.Tensor,
) -> int:
    """FLOPs of one training step (forward and backward) counted by ``FlopCounterMode``."""
    with FlopCounterMode(display=False) as counter:
        train_step(model, images, labels, optimizer, DiceCELoss(), context, amp=True)
    return int(counter.get_total_flops())


def single_gpu_check(device: torch.device, steps: int, warmup: int) -> dict[str, Any]:
    """Step time, throughput, TFLOP/s and peak memory of the paper configuration on one GPU."""
    torch.manual_seed(0)
    context = distributed.ProcessContext(rank=0, world_size=1, device=device, distributed=False)
    model = UNet3D(**UNet3D.PAPER_CONFIG).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    images, labels = synthetic_batch(device)
    torch.cuda.reset_peak_memory_stats(device)
    seconds = timed_steps(model, optimizer, context, images, labels, steps, warmup)
    peak_allocated = torch.cuda.max_memory_allocated(device)
    peak_reserved = torch.cuda.max_memory_reserved(device)
    flops = step_flops(model, optimizer, context, images, labels)
    median = statistics.median(seconds)
    voxels = BATCH_PER_GPU * PATCH_SIZE[0] * PATCH_SIZE[1] * PATCH_SIZE[2]
    return {
        "step_seconds_median": median,
        "step_seconds_all": seconds,
        "voxels_per_second": voxels / median,
        "flops_per_step": flops,
        "achieved_tflops": flops / median / 1e12,
        "peak_memory_allocated_bytes": peak_allocated,
        "peak_memory_reserved_bytes": peak_reserved,
        "fits_24gb": peak_reserved < PAPER_GPU_BYTES,
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def one_process_ddp_check(steps: int) -> dict[str, Any]:
    """A few steps of the paper configuration in a one-process NCCL ``DistributedDataParallel`` group."""
    context = distributed.join_process_group(
        "cuda", rank=0, world_size=1, local_rank=0, init_method=f"tcp://127.0.0.1:{distributed.free_port()}"
    )
    try:
        torch.manual_seed(0)
        model = distributed.wrap(UNet3D(**UNet3D.PAPER_CONFIG).to(context.device), context)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
        images, labels = synthetic_batch(context.device)
        seconds = timed_steps(model, optimizer, context, images, labels, steps, warmup=1)
        return {
            "backend": torch.distributed.get_backend(),
            "steps": steps,
            "step_seconds_median": statistics.median(seconds),
        }
    finally:
        distributed.leave_process_group(context)


def ddp_check_outcome(steps: int) -> dict[str, Any]:
    """:func:`one_process_ddp_check`'s result with ``ok: True``, or ``ok: False`` and the error."""
    try:
        return {"ok": True, **one_process_ddp_check(steps)}
    except Exception as exc:  # recorded in the result, beside the single-GPU figures
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}


def main(argv: list[str] | None = None) -> int:
    """Run the checks, save and print the JSON result; returns the exit status (0)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="timed training steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps before timing")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print(json.dumps({"gpu": False, "message": "CUDA is not available; nothing to check"}))
        return 0
    device = torch.device("cuda", 0)
    torch.backends.cudnn.benchmark = True
    name = torch.cuda.get_device_name(device)
    result = {
        "gpu": True,
        "device_name": name,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "patch_size": list(PATCH_SIZE),
        "batch_per_gpu": BATCH_PER_GPU,
        "amp": "bfloat16 autocast",
        "model": dict(UNet3D.PAPER_CONFIG),
        "single_gpu": single_gpu_check(device, args.steps, args.warmup),
        "ddp_one_process_nccl": ddp_check_outcome(steps=3),
    }
    slug = re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_")
    atomic_write_json(RESULTS_DIR / f"gpu_check_{slug}.json", result)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
