"""``l2s run PARAMS --dry-run``: what a study would run and what each network needs, running nothing.

The parameter file and the data are checked as ``l2s run`` checks them (task folders, their
``dataset.json`` and every image header), then the plan is printed: every step with its state
on disk, and per organ and network the parameter count, the largest input a forward pass
receives (the training patch, clipped to the largest image of the network's level and padded to
the network's size multiple) and an estimate of the peak memory of one training step per
process (:mod:`l2s_core.memory`). Nothing is written and no lock is taken.

Image sizes come from the prepared cache where it exists; before preparation from the image
headers (``data: msd``) or the phantom generator's geometry (``data: phantom``), with the crop
bounded by the full image plus the crop margin on each side.

Example:
    >>> print(dry_run("papermill_params/paper.yaml", data_root="/data/msd"))  # doctest: +SKIP
"""

from __future__ import annotations

__all__ = ["DEFAULT_EPOCHS_PER_RUN", "NetworkNeeds", "dry_run", "level_extents", "network_needs"]

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from l2s_core.data.prepared_layout import CASES_DIR, SPLIT_FILE
from l2s_core.errors import ConfigError
from l2s_core.study.layout import StudyPaths
from l2s_core.study.params import StudyParams, load_study_params
from l2s_core.study.plan import StudyPlan
from l2s_core.study.step_records import DONE
from l2s_core.vocabulary import LEVEL_OF_NETWORK, LEVELS

Shape = tuple[int, int, int]

#: Epochs a run is assumed to take for ``--measure`` when none is given (a round figure: the paper
#: states none; its Table 2 pancreas baseline, 478 min a run, is ~130 epochs at an eager float32
#: step of one H200).
DEFAULT_EPOCHS_PER_RUN = 100


@dataclass(frozen=True)
class NetworkNeeds:
    """What one network of one organ needs.

    Attributes:
        organ: the organ.
        network: ``baseline``, ``localiser`` or ``organ``.
        parameters: parameter count.
        largest_input: ``(z, y, x)`` of the largest input of any forward pass.
        batch_per_process: patches per process and step.
        peak_training_bytes: estimated peak memory of one training step of one process.
    """

    organ: str
    network: str
    parameters: int
    largest_input: Shape
    batch_per_process: int
    peak_training_bytes: int


def _full_shapes(params: StudyParams, organ: str) -> list[Shape]:
    """``(z, y, x)`` of every full-resolution image of the organ's task, without reading voxels."""
    if params.data == "phantom":
        from l2s_core.data.phantom.geometry import case_geometries  # imported here: only phantom studies need it

        phantom = params.phantom.for_organ(organ)
        return [
            shape
            for shape, _ in case_geometries(
                params.phantom_organ(organ),
                phantom.n_cases,
                phantom.shape,
                phantom.seed,
                phantom.profile,
                phantom.scale,
            )
        ]
    from l2s_core.data.io import read_shape
    from l2s_core.data.msd import read_task, selected_cases

    cases = selected_cases(read_task(params.task_dir(organ)), params.prepare.for_organ(organ).max_cases)
    return [read_shape(case.image_path) for case in cases]


def _shape(sides: Sequence[int] | np.ndarray) -> Shape:
    """Three sides as a ``(z, y, x)`` tuple of ints."""
    return int(sides[0]), int(sides[1]), int(sides[2])


def level_extents(params: StudyParams, root: str | Path, organ: str) -> dict[str, Shape]:
    """The largest side per axis of each cache level's images of an organ.

    Returns:
        Level (``full``, ``lowres``, ``crop``) → ``(z, y, x)``: the prepared cache's sizes where
        the organ is prepared, else the bounds computed from the image sizes.
    """
    prepared = StudyPaths(Path(root), params.study).prepared_dir(organ)
    if (prepared / SPLIT_FILE).is_file() and (prepared / CASES_DIR).is_dir():
        from l2s_core.data.cache import PreparedTask

        task = PreparedTask(prepared)
        metas = [task.case(c).meta for ids in task.split.values() for c in ids]
        if metas:
            sizes = {
                "full": [m.original_shape for m in metas],
                "lowres": [m.lowres_shape for m in metas],
                "crop": [m.crop_shape for m in metas],
            }
            return {level: _shape(np.max(sizes[level], axis=0)) for level in LEVELS}
    from l2s_core.data.prepare import lowres_shape

    full = np.max(_full_shapes(params, organ), axis=0)
    options = params.prepare.for_organ(organ)
    return {
        "full": _shape(full),
        "lowres": lowres_shape(full, options.lowres_divisors),
        "crop": _shape(full + 2 * options.crop_margin),
    }


def network_needs(params: StudyParams, organ: str, network: str, extent: Shape) -> NetworkNeeds:
    """Parameters, largest input and estimated training memory of one network of one organ.

    Args:
        params: the study parameters.
        organ: the organ.
        network: the network.
        extent: largest ``(z, y, x)`` of the network's level.
    """
    from l2s_core.memory import estimate_training_memory, largest_forward_input  # imported here: it loads torch

    config = params.train_config(organ, network, 0, Path("."), Path("."), world_size=params.gpus_per_run)
    largest = largest_forward_input(config.patch_size, extent, 2**config.depth)
    batch = max(1, config.batch_size // params.gpus_per_run)
    memory = estimate_training_memory(
        {"base_channels": config.base_channels, "depth": config.depth}, largest, batch, config.architecture
    )
    return NetworkNeeds(organ, network, memory.parameters, largest, batch, memory.peak_bytes)  # type: ignore[arg-type]


def _size(n_bytes: int) -> str:
    """``n_bytes`` in GiB, or in MiB below one GiB."""
    return f"{n_bytes / 2**30:.1f} GiB" if n_bytes >= 2**30 else f"{n_bytes / 2**20:.0f} MiB"


def _steps(plan: StudyPlan) -> list[str]:
    """One line per unit of the plan: its step(s) and whether it is done on disk."""
    lines = []
    params = plan.params
    for unit_id, unit in plan.units.items():
        state = "done" if unit.state == DONE else "to run"
        if unit.is_chain:
            lines.append(
                f"  {unit_id}: run_{unit.made:02d} onwards until {params.runs} converged (at most "
                f"{params.max_runs} runs); {unit.made} made, {unit.converged} converged; {state}"
            )
        else:
            lines.append(f"  {unit_id}: {state}")
    return lines


def _level_shapes(params: StudyParams, root: Path, organ: str) -> tuple[int, dict[str, list[Shape]]]:
    """Training cases and every validation image's ``(z, y, x)`` per level of an organ: from the
    prepared cache where it exists, else from the image sizes and the study's split rule (crops
    bounded by the full image plus the margin, as :func:`level_extents`)."""
    prepared = StudyPaths(root, params.study).prepared_dir(organ)
    if (prepared / SPLIT_FILE).is_file() and (prepared / CASES_DIR).is_dir():
        from l2s_core.data.cache import PreparedTask

        task = PreparedTask(prepared)
        metas = [task.case(c).meta for c in task.split["val"]]
        return len(task.split["train"]), {
            "full": [_shape(m.original_shape) for m in metas],
            "lowres": [_shape(m.lowres_shape) for m in metas],
            "crop": [_shape(m.crop_shape) for m in metas],
        }
    from l2s_core.data.prepare import lowres_shape
    from l2s_core.data.split import split_cases

    options = params.prepare.for_organ(organ)
    shapes = _full_shapes(params, organ)
    split = split_cases([f"{i:05d}" for i in range(len(shapes))], options.split_seed, options.split_order)
    full = [_shape(shapes[int(c)]) for c in split["val"]]
    return len(split["train"]), {
        "full": full,
        "lowres": [lowres_shape(s, options.lowres_divisors) for s in full],
        "crop": [_shape(np.asarray(s) + 2 * options.crop_margin) for s in full],
    }


def _minutes(seconds: float) -> str:
    """Seconds as minutes, or hours from two hours on."""
    return f"{seconds / 3600:.1f} h" if seconds >= 7200 else f"{seconds / 60:.1f} min"


def _measured_lines(params: StudyParams, root: Path, epochs_per_run: int) -> list[str]:
    """Per organ and network the measured seconds per epoch and the projected wall time."""
    from l2s_core.memory import largest_forward_input
    from l2s_core.paper_values import TABLE2_MINUTES
    from l2s_core.study.timing import StepTiming, measure_network, network_timing

    lines = [
        f"measured on this device (one training step and one validation pass per network; {epochs_per_run} "
        f"epochs a run, {params.runs} runs each; the paper's Table 2 minutes a run beside):"
    ]
    measured: dict[tuple, StepTiming] = {}
    total = 0.0
    for organ in params.organs:
        extents = level_extents(params, root, organ)
        train_cases, val_shapes = _level_shapes(params, root, organ)
        for network in params.networks:
            level = LEVEL_OF_NETWORK[network]
            config = params.train_config(organ, network, 0, Path("."), Path("."), world_size=params.gpus_per_run)
            train_input = largest_forward_input(config.patch_size, extents[level], 2**config.depth)
            batch = max(1, config.batch_size // params.gpus_per_run)
            key = (config.architecture, config.base_channels, config.depth, config.amp, config.compile, batch)
            if key not in measured:  # one measurement per setting, at the patch; scaled by voxels
                pz, py, px = config.patch_size
                measured[key] = measure_network(config, config.patch_size, batch, (pz, 2 * py, 2 * px))
            timing = network_timing(
                organ,
                network,
                config,
                measured[key],
                train_input,
                train_cases,
                val_shapes[level],
                epochs_per_run,
                params.runs,
            )
            total += timing.total_seconds
            paper = TABLE2_MINUTES.get(organ, {}).get(network)
            step = timing.train_seconds / timing.steps_per_epoch
            lines.append(
                f"  {organ} {network}: step {step:.3f} s x {timing.steps_per_epoch} "
                f"+ validation {timing.validation_seconds:.1f} s = {timing.epoch_seconds:.1f} s/epoch; "
                f"a run {_minutes(timing.run_seconds)} (paper: {f'{paper} min' if paper else 'n/a'}); "
                f"{params.runs} runs {_minutes(timing.total_seconds)}"
            )
    lines.append(f"projected study wall time on this device, one run at a time: {total / 3600:.1f} h")
    return lines


def dry_run(
    params_path: str | Path,
    root: str | Path = ".",
    data_root: str | Path | None = None,
    gpus_per_run: int | None = None,
    with_analysis: bool = True,
    epochs_per_run: int | None = None,
) -> str:
    """Check a study and describe what ``l2s run`` would do, without running or writing anything.

    Args:
        params_path: the parameter file.
        root: study root.
        data_root: replaces the file's ``data_root``.
        gpus_per_run: replaces the file's ``gpus_per_run``.
        with_analysis: whether the study ends with the analysis and the report.
        epochs_per_run: when given, each network's training step and validation pass are
            measured on this device and the study's wall time projected for runs of this many
            epochs (:mod:`l2s_core.study.timing`); nothing is written either way.

    Returns:
        The text to print.

    Raises:
        ConfigError: invalid parameters, a missing task folder.
        InputDataError: an unreadable ``dataset.json`` or image header (named in the message).
    """
    if epochs_per_run is not None and epochs_per_run < 1:
        raise ConfigError("--epochs-per-run", f"must be at least 1, got {epochs_per_run}")
    root = Path(root).resolve()
    params = load_study_params(params_path, root=root, data_root=data_root, gpus_per_run=gpus_per_run)
    plan = StudyPlan(params, StudyPaths(root, params.study), with_analysis)
    lines = [
        f"study {params.study}: {len(params.organs)} organs x {len(params.networks)} networks, "
        f"{params.runs} converged runs each (at most {params.max_runs}), {params.gpus_per_run} GPU(s) per run",
        "steps:",
        *_steps(plan),
        "networks (largest forward input (z, y, x); peak training memory per process, float32, estimated):",
    ]
    for organ in params.organs:
        extents = level_extents(params, root, organ)
        for network in params.networks:
            needs = network_needs(params, organ, network, extents[LEVEL_OF_NETWORK[network]])
            lines.append(
                f"  {organ} {network}: {needs.parameters / 1e6:.2f} M parameters, input "
                f"{'x'.join(map(str, needs.largest_input))} (images up to "
                f"{'x'.join(map(str, extents[LEVEL_OF_NETWORK[network]]))}), batch {needs.batch_per_process}"
                f" per process, about {_size(needs.peak_training_bytes)}"
            )
    if epochs_per_run is not None:
        lines += _measured_lines(params, root, epochs_per_run)
    lines.append("dry run: nothing was run or written")
    return "\n".join(lines)
