"""Random training patches per second: the memory-mapped prepared cache against decompressing
the NIfTI files for every patch.

The cache side draws items of :class:`~l2s_core.sampling.PatchDataset` (the baseline
network's foreground-biased sampler), which cuts each patch out of the memory-mapped ``.npy``
files. The NIfTI side does what the paper's code did: for every patch, read the case's
``.nii.gz`` image and label with nibabel (decompressing the whole volumes; here through
:func:`~l2s_core.data.io.read_image` / :func:`~l2s_core.data.io.read_label`, which also
reorient to the same ``(z, y, x)`` grid) and cut the same patch, at the location the sampler
chose. It is not charged for normalisation or for drawing the location. Both sides read files
that were just written, so from the page cache. The two alternate patch by patch.

Then the trainer's loader (``PatchDataset`` with 80 % organ, ``pad_collate``, batch 2, pinned
memory and the transfer on CUDA) at the paper patch 64×256×256 on synthetic volumes of
``--loader-shape``, per worker count, beside the patches per second that the training step of
the default U-Net consumes on ``--device`` (eager; ``gpu_check.py`` sets it beside the compiled
paper configuration's step). ``--no-loader`` skips it.

Usage::

    python benchmarks/bench_data.py --patches 200 --patch 16 48 48 [--workers 0 1 2] [--device cuda]

The last printed line is one JSON object with the results.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from l2s_core.boxes import crop
from l2s_core.data.cache import PreparedCase, PreparedTask
from l2s_core.data.io import read_image, read_label
from l2s_core.data.msd import organ_mask
from l2s_core.data.phantom.settings import PhantomSettings
from l2s_core.data.phantom.task import generate_phantom_task
from l2s_core.data.prepare import prepare_task
from l2s_core.losses import DiceCELoss
from l2s_core.model import UNet3D
from l2s_core.sampling import PatchDataset, pad_collate

#: Half of each side of the default (32, 96, 96) phantom, as 64×256×256 is of a 128×512×512 CT.
DEFAULT_PATCH = (16, 48, 48)


def add_phantom_arguments(parser: argparse.ArgumentParser) -> None:
    """Command-line options choosing the phantom task, shared with ``bench_infer.py``."""
    parser.add_argument("--organ", default="spleen", help="phantom organ (spleen, pancreas, prostate, liver, heart)")
    parser.add_argument("--cases", type=int, default=10, help="phantom cases")
    parser.add_argument("--shape", type=int, nargs=3, default=[32, 96, 96], metavar=("Z", "Y", "X"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--work",
        type=Path,
        default=None,
        help="folder for the phantom and its cache (kept and reused); default a temporary folder",
    )


def prepared_phantom(args: argparse.Namespace, work: Path) -> PreparedTask:
    """Generate the phantom task of ``args`` under ``work/raw`` and prepare it into ``work/prepared``."""
    task_dir = generate_phantom_task(
        args.organ,
        work / "raw",
        settings=PhantomSettings(n_cases=args.cases, shape=tuple(args.shape), seed=args.seed),
        progress=False,
    )
    prepare_task(task_dir, work / "prepared" / task_dir.name, progress=False, workers=1)
    return PreparedTask(work / "prepared" / task_dir.name)


def nifti_patch(
    case: PreparedCase, box: tuple[int, ...], organ_labels: Sequence[int] | None
) -> tuple[np.ndarray, np.ndarray]:
    """Read the case's NIfTI image and label and cut ``box``: ``(z, y, x)`` image and organ mask."""
    image, _ = read_image(case.meta.image_path)
    label, _ = read_label(case.meta.label_path)
    return crop(image, box), crop(organ_mask(label, organ_labels), box)  # type: ignore[arg-type]


@dataclass(frozen=True)
class _SyntheticCase:
    """A stand-in for a prepared case: memory-mapped ``full`` image and label and the organ box."""

    folder: Path
    meta: Any

    def array(self, level: str, kind: str) -> np.ndarray:
        return np.load(self.folder / f"{kind}.npy", mmap_mode="r")


class SyntheticTask:
    """Full-resolution cases of noise with an ellipsoid organ, written as ``.npy`` and read through
    memory maps like the prepared cache (enough for :class:`PatchDataset` at the ``full`` level;
    seconds to make where a phantom of the paper's size takes minutes)."""

    def __init__(self, folder: Path, cases: int, shape: tuple[int, int, int], seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        grid = np.ogrid[tuple(slice(0, s) for s in shape)]
        self._cases = {}
        for index in range(cases):
            centre = [rng.uniform(0.3, 0.7) * s for s in shape]
            radii = [rng.uniform(0.08, 0.15) * s for s in shape]
            label = np.asarray(sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii)) <= 1, dtype=np.uint8)
            image = rng.standard_normal(shape, dtype=np.float32) + label
            case_dir = folder / f"case_{index}"
            case_dir.mkdir(parents=True, exist_ok=True)
            np.save(case_dir / "image.npy", image)
            np.save(case_dir / "label.npy", label)
            nonzero = np.nonzero(label)
            box = (*(int(a.min()) for a in nonzero), *(int(a.max()) + 1 for a in nonzero))
            self._cases[f"case_{index}"] = _SyntheticCase(case_dir, SimpleNamespace(organ_box=box))
        self.split = {"train": list(self._cases)}

    def case(self, case_id: str) -> _SyntheticCase:
        return self._cases[case_id]


def loader_rate(
    task: Any, patch: tuple[int, int, int], batch: int, workers: int, batches: int, device: torch.device
) -> float:
    """Training patches per second through the trainer's loader (80 % organ, ``pad_collate``,
    pinned memory on CUDA) to ``device``, after one untimed batch (workers starting)."""
    dataset = PatchDataset(
        task, task.split["train"], "full", patch, samples_per_epoch=batch * (batches + 1), foreground_probability=0.8
    )
    loader = DataLoader(
        dataset,
        batch_size=batch,
        num_workers=workers,
        collate_fn=pad_collate,
        pin_memory=device.type == "cuda",
        prefetch_factor=4 if workers else None,
    )
    started = 0.0
    for index, item in enumerate(loader):
        item["image"].to(device, non_blocking=True), item["label"].to(device, non_blocking=True)
        if index == 0:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            started = time.perf_counter()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return batch * batches / (time.perf_counter() - started)


def step_rate(
    model: torch.nn.Module,
    patch: tuple[int, int, int],
    batch: int,
    device: torch.device,
    amp: bool,
    warmup: int = 2,
    repeats: int = 3,
) -> float:
    """Patches per second the training step of ``model`` consumes (median of ``repeats`` steps after
    ``warmup`` untimed ones)."""
    from l2s_core.distributed import ProcessContext
    from l2s_core.train.loop import train_step

    context = ProcessContext(rank=0, world_size=1, device=device, distributed=False)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    images = torch.randn((batch, 1, *patch), device=device)
    labels = (torch.rand((batch, *patch), device=device) < 0.1).to(torch.uint8)
    seconds = []
    for index in range(warmup + repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        started = time.perf_counter()
        train_step(model, images, labels, optimizer, DiceCELoss(), context, amp)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if index >= warmup:
            seconds.append(time.perf_counter() - started)
    return batch / statistics.median(seconds)


def measure(task: PreparedTask, patch: tuple[int, int, int], n_patches: int, seed: int) -> dict:
    """Time ``n_patches`` patches each way, alternating; check that both cut the same label patch."""
    dataset = PatchDataset(
        task, task.split["train"], "full", patch, samples_per_epoch=n_patches, foreground_probability=0.8, seed=seed
    )
    cases = {case_id: task.case(case_id) for case_id in dataset.case_ids}
    organ_labels = task.preparation.settings.organ_labels
    cache_seconds, nifti_seconds = [], []
    with_organ = 0
    for index in range(n_patches):
        start = time.perf_counter()
        item = dataset[index]
        cache_seconds.append(time.perf_counter() - start)
        case_id, box = dataset.patch_location(index)
        start = time.perf_counter()
        _, label = nifti_patch(cases[case_id], box, organ_labels)
        nifti_seconds.append(time.perf_counter() - start)
        if not np.array_equal(label, item["label"].numpy()):
            raise SystemExit(f"patch {index} of {case_id}: the two ways cut different label patches")
        with_organ += bool(label.any())
    cache_rate, nifti_rate = n_patches / sum(cache_seconds), n_patches / sum(nifti_seconds)
    return {
        "cache_patches_per_s": round(cache_rate, 1),
        "nifti_patches_per_s": round(nifti_rate, 2),
        "ratio_cache_over_nifti": round(cache_rate / nifti_rate, 1),
        "patches_with_organ": round(with_organ / n_patches, 3),
    }


def main(argv: Sequence[str] | None = None) -> dict:
    """Time patch reading from the cache and from NIfTI; print the figures, the last line as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_phantom_arguments(parser)
    parser.add_argument("--patch", type=int, nargs=3, default=list(DEFAULT_PATCH), metavar=("Z", "Y", "X"))
    parser.add_argument("--patches", type=int, default=200, help="patches drawn each way")
    parser.add_argument(
        "--loader-patch", type=int, nargs=3, default=[64, 256, 256], metavar=("Z", "Y", "X"), help="loader patch"
    )
    parser.add_argument(
        "--loader-shape",
        type=int,
        nargs=3,
        default=[96, 320, 320],
        metavar=("Z", "Y", "X"),
        help="synthetic volumes the loader draws from",
    )
    parser.add_argument("--no-loader", action="store_true", help="skip the loader against the step")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="loader worker counts to time")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="l2s_bench_data_") as scratch:
        task = prepared_phantom(args, args.work or Path(scratch))
        shape = task.case(task.split["train"][0]).array("full", "image").shape
        print(
            f"phantom {args.organ}: {len(task.split['train'])} training cases of (z, y, x) {shape}, "
            f"patch {tuple(args.patch)}"
        )
        timings = measure(task, tuple(args.patch), args.patches, args.seed)
    print(f"cache: {timings['cache_patches_per_s']} patches/s; NIfTI: {timings['nifti_patches_per_s']} patches/s")
    if not args.no_loader:
        with tempfile.TemporaryDirectory(prefix="l2s_bench_loader_") as scratch:
            timings.update(loader_against_step(args, Path(scratch)))
    result = {
        "benchmark": "training_patches",
        "organ": args.organ,
        "volume_shape": list(shape),
        "patch": list(args.patch),
        "patches": args.patches,
        **timings,
    }
    print(json.dumps(result))
    return result


def loader_against_step(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """The loader's patches/s per worker count beside the rate the (eager) default U-Net's training
    step consumes them at ``--loader-patch`` on ``--device``."""
    device = torch.device(args.device)
    patch = tuple(args.loader_patch)
    task = SyntheticTask(work, 4, tuple(args.loader_shape), args.seed)
    rates = {w: round(loader_rate(task, patch, 2, w, 6, device), 1) for w in args.workers}
    quick = device.type == "cpu"  # a paper-patch step takes tens of seconds there: one warm-up, one timed
    steps = step_rate(
        UNet3D().to(device), patch, 2, device, amp=False, warmup=1 if quick else 2, repeats=1 if quick else 3
    )
    for workers, rate in rates.items():
        print(f"loader, {workers} workers: {rate} patches/s = {rate / steps:.2f} x the step's {steps:.2f}")
    return {
        "loader_patch": list(patch),
        "loader_patches_per_s": rates,
        "step_patches_per_s": round(steps, 2),
        "loader_over_step": {w: round(r / steps, 2) for w, r in rates.items()},
    }


if __name__ == "__main__":
    main()
