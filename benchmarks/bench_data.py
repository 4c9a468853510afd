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

Usage::

    python benchmarks/bench_data.py --patches 200 --patch 16 48 48

The last printed line is one JSON object with the results.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from l2s_core.boxes import crop
from l2s_core.data.cache import PreparedCase, PreparedTask
from l2s_core.data.io import read_image, read_label
from l2s_core.data.msd import organ_mask
from l2s_core.data.phantom import generate_phantom_task
from l2s_core.data.prepare import prepare_task
from l2s_core.sampling import PatchDataset

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
        args.organ, work / "raw", n_cases=args.cases, shape=tuple(args.shape), seed=args.seed, progress=False
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


if __name__ == "__main__":
    main()
