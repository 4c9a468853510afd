"""Real-scale figures: preparing, training and predicting on full-size MSD-shaped volumes.

One phantom case per organ at a median size of its MSD task (a 500×512×512 liver, a
15×320×320 two-channel prostate, ...; ``--scale`` shrinks them for a quick look), then:

* **prepare**: seconds and peak resident memory of preparing each case (``l2s prepare`` with
  one worker, in a fresh process), beside the case's float32 full-resolution size (the promise:
  peak below 4× that, on top of the process's imports);
* **train**: for each network at the paper configuration (``UNet3D.PAPER_CONFIG``, one patch per
  process), one optimisation step on the largest input it gets over these cases (the 64×256×256
  patch, clipped where images are smaller): seconds and peak memory (CPU: resident set of a
  fresh process above its imports; CUDA: ``torch.cuda.max_memory_allocated``, float32 and
  bfloat16 autocast), beside the estimate of :mod:`l2s_core.memory`;
* **predict**: on one case (``--predict-organ``): seconds of the baseline's sliding-window
  prediction of the full image, which is also one validation pass of that image, against the
  two-stage prediction (resize, localiser on the low-resolution image, organ network on the
  box). The networks are untrained, so the box comes from the label (the organ stage's cost is
  that of a real box); the localiser stage runs in full all the same.

The paper configuration is meant to fit a 24 GB GPU (the paper's RTX 3090) at one patch per
GPU; ``fits_24_gb`` says whether the largest measured (else estimated) step does.

Usage::

    python benchmarks/bench_scale.py [--organs spleen prostate] [--scale 0.5] [--device cuda]
        [--out benchmarks/results/bench_scale_<device>.json]

The last printed line is one JSON object with the results.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from l2s_core.data.cache import PreparedTask
from l2s_core.data.phantom.geometry import MIN_SIDE
from l2s_core.data.phantom.task import TASK_FOLDERS, write_phantom_cases
from l2s_core.files import atomic_write_json
from l2s_core.infer import Segmenter, gt_localised_predict, predict_volume
from l2s_core.memory import estimate_training_memory, largest_forward_input
from l2s_core.model import UNet3D
from l2s_core.prediction import Localisation
from l2s_core.vocabulary import LEVEL_OF_NETWORK, LEVELS, NETWORKS

#: ``(z, y, x)`` shape and spacing (mm) of each organ's case: MSD medians (see
#: l2s_core/data/phantom/geometry.py for the sources), the liver at 500 slices.
CASES: dict[str, tuple[tuple[int, int, int], tuple[float, float, float]]] = {
    "spleen": ((90, 512, 512), (5.0, 0.79, 0.79)),
    "pancreas": ((93, 512, 512), (2.5, 0.80, 0.80)),
    "prostate": ((15, 320, 320), (3.6, 0.62, 0.62)),
    "liver": ((500, 512, 512), (1.0, 0.77, 0.77)),
    "heart": ((115, 320, 320), (1.37, 1.25, 1.25)),
}
PATCH = (64, 256, 256)
GIB = 2**30

#: Appended to every child's code: it prints the child's own peak resident set (VmHWM), in bytes.
_PEAK = "\nprint(next(int(line.split()[1]) * 1024 for line in open('/proc/self/status') if line.startswith('VmHWM')))\n"
_PREPARE = """
import sys, time
from l2s_core.data.prepare import prepare_task
started = time.perf_counter()
prepare_task(sys.argv[1], sys.argv[2], workers=1, progress=False)
print(time.perf_counter() - started)
"""
#: What the prepare and train children import before they work: their resident set without work.
_PREPARE_IMPORTS = "import l2s_core.data.prepare"
_TRAIN_IMPORTS = "import torch, l2s_core.losses, l2s_core.model"
_TRAIN_STEP = """
import json, sys, time
import torch
from l2s_core.losses import DiceCELoss
from l2s_core.model import UNet3D
shape, device, amp = tuple(json.loads(sys.argv[1])), sys.argv[2], sys.argv[3] == "1"
torch.manual_seed(0)
model = UNet3D(**UNet3D.PAPER_CONFIG).to(device)
optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
images = torch.randn(1, 1, *shape, device=device)
labels = (torch.rand(1, *shape, device=device) > 0.99).long()
started = time.perf_counter()
with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=amp):
    logits = model(images)
DiceCELoss()(logits.float(), labels).backward()
optimizer.step()
if device.startswith("cuda"):
    torch.cuda.synchronize()
peak = torch.cuda.max_memory_allocated() if device.startswith("cuda") else 0
print(json.dumps({"seconds": time.perf_counter() - started, "cuda_peak_bytes": peak}))
"""


def _child(code: str, *args: str) -> tuple[str, int]:
    """Run ``python -c code args`` in a fresh process: its output, and its peak resident bytes as it
    reports them itself (:data:`_PEAK`: a forked child's ``ru_maxrss`` would start from its
    parent's, which holds this benchmark's rendered volumes)."""
    result = subprocess.run(
        [sys.executable, "-c", code + _PEAK, *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    if result.returncode != 0:
        raise RuntimeError(f"benchmark child failed ({result.returncode}): {result.stderr.strip()[-500:]}")
    *output, peak = result.stdout.strip().splitlines()
    return "\n".join(output), int(peak)


def _scaled(
    shape: tuple[int, int, int], spacing: tuple[float, float, float], scale: float
) -> tuple[tuple[int, int, int], tuple[float, float, float]]:
    small = tuple(max(MIN_SIDE, round(s * scale)) for s in shape)
    return small, tuple(mm * (s / t) for mm, s, t in zip(spacing, shape, small))  # type: ignore[return-value]


def prepare_cases(organs: Sequence[str], scale: float, work: Path) -> tuple[dict[str, PreparedTask], list[dict]]:
    """Write one phantom case per organ and prepare it in a fresh process; the rows of figures."""
    _, imports_rss = _child(_PREPARE_IMPORTS)
    tasks, rows = {}, []
    for organ in organs:
        shape, spacing = _scaled(*CASES[organ], scale)
        task_dir = work / TASK_FOLDERS[organ]
        write_phantom_cases(organ, task_dir, [(shape, spacing)], seed=0, progress=False)  # kept with --work
        shutil.rmtree(work / "prepared" / organ, ignore_errors=True)  # prepared afresh: that is what is timed
        seconds, rss = _child(_PREPARE, str(task_dir), str(work / "prepared" / organ))
        float32_bytes = 4 * int(np.prod(shape))
        rows.append(
            {
                "organ": organ,
                "shape": list(shape),
                "seconds": round(float(seconds), 2),
                "peak_rss_gib": round(rss / GIB, 3),
                "above_imports_gib": round((rss - imports_rss) / GIB, 3),
                "float32_gib": round(float32_bytes / GIB, 3),
                "ratio_to_float32": round((rss - imports_rss) / float32_bytes, 2),
            }
        )
        print(
            f"prepare {organ} {shape}: {rows[-1]['seconds']} s, peak {rows[-1]['peak_rss_gib']} GiB "
            f"({rows[-1]['ratio_to_float32']} x the float32 volume above the imports)"
        )
        tasks[organ] = PreparedTask(work / "prepared" / organ)
    return tasks, rows


def _extents(tasks: dict[str, PreparedTask]) -> dict[str, tuple[int, int, int]]:
    """Largest ``(z, y, x)`` per cache level over the benchmark's cases."""
    shapes: dict[str, list[tuple[int, ...]]] = {level: [] for level in LEVELS}
    for task in tasks.values():
        for case_id in task.split["train"] + task.split["val"] + task.split["test"]:
            case = task.case(case_id)
            for level in LEVELS:
                shapes[level].append(case.array(level, "image").shape)
    return {level: tuple(int(v) for v in np.max(found, axis=0)) for level, found in shapes.items()}  # type: ignore[misc]


def train_steps(tasks: dict[str, PreparedTask], device: str) -> list[dict]:
    """One paper-configuration training step per network on its largest input, in fresh processes."""
    multiple = 2 ** UNet3D.PAPER_CONFIG["depth"]
    _, imports_rss = _child(_TRAIN_IMPORTS)
    extents = _extents(tasks)
    rows = []
    for network in NETWORKS:
        shape = largest_forward_input(PATCH, extents[LEVEL_OF_NETWORK[network]], multiple)
        estimate = estimate_training_memory(UNet3D.PAPER_CONFIG, shape)
        row: dict[str, Any] = {
            "network": network,
            "input": list(shape),
            "estimated_peak_gib": round(estimate.peak_bytes / GIB, 2),
        }
        for precision, amp in (("fp32", "0"), ("bf16", "1")) if device.startswith("cuda") else (("fp32", "0"),):
            out, rss = _child(_TRAIN_STEP, json.dumps(shape), device, amp)
            measured = json.loads(out)
            peak = measured["cuda_peak_bytes"] if device.startswith("cuda") else rss - imports_rss
            row[f"{precision}_seconds"] = round(measured["seconds"], 2)
            row[f"{precision}_peak_gib"] = round(peak / GIB, 2)
        print(f"train step {network} {shape}: {row}")
        rows.append(row)
    return rows


def predictions(task: PreparedTask, device: str, overlap: float) -> dict[str, Any]:
    """Seconds of the sliding-window baseline (= one validation pass) and of the two-stage prediction."""
    case = task.case((task.split["test"] + task.split["val"] + task.split["train"])[0])
    image = np.array(case.array("full", "image"))
    label = np.array(case.array("full", "label"))
    torch.manual_seed(0)
    baseline, localiser, organ = (Segmenter(UNet3D(**UNet3D.PAPER_CONFIG).to(device), PATCH, overlap) for _ in range(3))
    from l2s_core.data.prepare import downsample_image

    started = time.perf_counter()
    predict_volume(baseline, image, device)
    baseline_seconds = time.perf_counter() - started
    started = time.perf_counter()
    settings = task.preparation.settings
    predict_volume(localiser, downsample_image(image, settings.lowres_divisors), device)
    result = gt_localised_predict(organ, image, label, Localisation.of_settings(settings), device=device)
    two_stage_seconds = time.perf_counter() - started
    box = result.box or (0, 0, 0, *image.shape)
    row = {
        "case_shape": list(image.shape),
        "organ_box_shape": [box[3 + a] - box[a] for a in range(3)],
        "baseline_sliding_window_s": round(baseline_seconds, 2),
        "validation_pass_s": round(baseline_seconds, 2),
        "two_stage_s": round(two_stage_seconds, 2),
        "ratio_baseline_over_two_stage": round(baseline_seconds / two_stage_seconds, 2),
    }
    print(f"predict {row}")
    return row


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Prepare, train-step and predict at real scale; print the figures, the last line as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--organs", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--scale", type=float, default=1.0, help="factor on every side of the cases (1: real size)")
    parser.add_argument(
        "--predict-organ",
        default="spleen",
        choices=list(CASES),
        help="the case whose baseline and two-stage predictions are timed",
    )
    parser.add_argument("--overlap", type=float, default=0.25, help="sliding-window overlap")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    parser.add_argument("--work", type=Path, default=None, help="keep the phantom and prepared cases here")
    args = parser.parse_args(argv)
    organs = list(dict.fromkeys([*args.organs, args.predict_organ]))
    with tempfile.TemporaryDirectory(prefix="l2s_bench_scale_") as scratch:
        tasks, prepare_rows = prepare_cases(organs, args.scale, args.work or Path(scratch))
        train_rows = train_steps(tasks, args.device)
        predict_row = predictions(tasks[args.predict_organ], args.device, args.overlap)
    measured = [row.get("fp32_peak_gib", row["estimated_peak_gib"]) for row in train_rows]
    result = {
        "benchmark": "scale",
        "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "scale": args.scale,
        "patch": list(PATCH),
        "model": UNet3D.PAPER_CONFIG,
        "prepare": prepare_rows,
        "train_step": train_rows,
        "predict": {"organ": args.predict_organ, **predict_row},
        "max_prepare_ratio_to_float32": max(row["ratio_to_float32"] for row in prepare_rows),
        "fits_24_gb": max(measured) < 24 * 1e9 / GIB,
        "peak_rss_of_this_process_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB, 2),
    }
    if args.out is not None:
        atomic_write_json(args.out, result)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
