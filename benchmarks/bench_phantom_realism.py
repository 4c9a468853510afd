"""The quick study's phantoms beside a real MSD-layout task, on the measures the report uses: the
organ's foreground share, its extent in voxels, and the z-scored intensities inside and outside it
(:mod:`l2s_core.data.task_statistics`).

The phantoms are generated as ``papermill_params/quick.yaml`` makes them (each organ with its
``phantom.per_organ`` scale and case count) into a temporary folder; the real task is read where
it lies (default: ``../shared/data/Task04_Hippocampus`` beside the project).

Usage::

    python benchmarks/bench_phantom_realism.py [--real ../shared/data/Task04_Hippocampus] \\
        [--params papermill_params/quick.yaml] [--max-cases N]

Prints one Markdown table row per task; the last printed line is one JSON object with the results.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
from pathlib import Path

from l2s_core.data.task_statistics import TaskStatistics, task_statistics
from l2s_core.study.params import load_study_params

PROJECT = Path(__file__).resolve().parents[1]
HEADER = (
    "| task | cases | image (z, y, x) | organ extent (z, y, x) | foreground % (range) | "
    "raw maxima | inside mean ± sd | outside mean ± sd | contrast (sd) |"
)


def row(name: str, stats: TaskStatistics) -> str:
    """One Markdown table row of :data:`HEADER`."""

    def sides(values: tuple[float, ...]) -> str:
        return " × ".join(f"{v:.0f}" for v in values)

    low, high = stats.foreground_percent_range
    smallest, largest = stats.raw_max_range
    return (
        f"| {name} | {stats.n_cases} | {sides(stats.shape)} | {sides(stats.organ_extent)} | "
        f"{stats.foreground_percent:.2f} ({low:.2f}–{high:.2f}) | {smallest:.3g}–{largest:.3g} | "
        f"{stats.inside_mean:+.2f} ± {stats.inside_sd:.2f} | {stats.outside_mean:+.2f} ± {stats.outside_sd:.2f} | "
        f"{stats.contrast:+.2f} |"
    )


def phantom_statistics(params_path: Path, work: Path) -> dict[str, TaskStatistics]:
    """The statistics of every phantom task of a ``data: phantom`` study file, generated into ``work``."""
    params = load_study_params(params_path)
    result = {}
    for organ in params.organs:
        task_dir = params.write_phantom_task(organ, work)
        result[f"phantom {organ}"] = task_statistics(task_dir)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--real", type=Path, default=PROJECT.parent / "shared" / "data" / "Task04_Hippocampus")
    parser.add_argument("--params", type=Path, default=PROJECT / "papermill_params" / "quick.yaml")
    parser.add_argument("--max-cases", type=int, default=None, help="real cases measured (default: all)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        tasks = phantom_statistics(args.params, Path(work))
    real = task_statistics(args.real, args.max_cases)
    tasks[f"real {real.task_name} ({args.real.name})"] = real
    print(HEADER)
    print("|" + "---|" * (HEADER.count("|") - 1))
    for name, stats in tasks.items():
        print(row(name, stats))
    print(json.dumps({name: dataclasses.asdict(stats) for name, stats in tasks.items()}))


if __name__ == "__main__":
    main()
