"""Execute one step of a study: its notebook through Papermill (or the report), then its record.

* :func:`step_request` builds the :class:`StepRequest` of a step: which notebook, with which
  Papermill parameters (the analysis notebook takes the study folder, the others the parameter
  snapshot, the study root, the step's arguments and, for :data:`GPU_KINDS`, its GPUs:
  :func:`step_gpus` of its slot's).
* :func:`execute_step` executes it in the Jupyter kernel :data:`KERNEL_NAME`, in this process or
  in a submitit job, and writes its :class:`~l2s_core.study.step_records.StepRecord`. Executed
  notebooks go to ``executed/<study>/<step id>.ipynb`` (kept when a step fails).
* :func:`check_kernel` and :func:`check_notebooks`: what a study needs before its first step.

Which steps run when, and where, is :mod:`l2s_core.study.runner`'s job. The kernel is installed
into the virtual environment by ``make`` (``python -m ipykernel install --sys-prefix --name l2s``).
"""

from __future__ import annotations

__all__ = [
    "GPU_KINDS",
    "KERNEL_ARGUMENTS",
    "KERNEL_NAME",
    "REQUIRED_NOTEBOOKS",
    "StepRequest",
    "check_kernel",
    "check_notebooks",
    "error_line",
    "execute_step",
    "step_gpus",
    "step_request",
    "write_step_record",
]

import dataclasses
import time
from pathlib import Path
from typing import Any

from l2s_core.errors import ConfigError, L2SError
from l2s_core.study.layout import Step, StudyPaths
from l2s_core.study.plan import NOTEBOOK_KINDS
from l2s_core.study.report import render_report
from l2s_core.study.step_records import DONE, FAILED, StepRecord
from l2s_core.vocabulary import StepState

#: The Jupyter kernel the study notebooks run in (installed by ``make``).
KERNEL_NAME = "l2s"
#: Notebooks a study needs; ``analysis.ipynb`` is optional (without it: no analysis, no report).
REQUIRED_NOTEBOOKS = ("prepare", "train", "evaluate")
#: Steps given GPUs: their notebooks get GPU ids of their slot (:func:`step_gpus`) as the parameter ``gpus``.
GPU_KINDS = ("train", "evaluate")
#: Command-line options of every kernel: only its errors reach the terminal of ``l2s run``
#: (not e.g. its warning about unencrypted local TCP); cell output stays in the notebooks.
KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=ERROR"]


@dataclasses.dataclass(frozen=True)
class StepRequest:
    """Everything needed to execute one step, in this process or in a submitit job.

    Attributes:
        step: the step.
        paths: the study's folders.
        notebook: the notebook to execute (``None`` for the report).
        parameters: Papermill parameters of the notebook.
        inputs: what the result depends on (:meth:`StudyPlan.inputs`), kept in the record.
    """

    step: Step
    paths: StudyPaths
    notebook: Path | None
    parameters: dict[str, Any]
    inputs: dict[str, Any]


def check_kernel() -> None:
    """Make sure the Jupyter kernel :data:`KERNEL_NAME` is installed.

    Raises:
        ConfigError: the kernel is missing.
    """
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec(KERNEL_NAME)
    except NoSuchKernel:
        raise ConfigError(
            f"Jupyter kernel {KERNEL_NAME!r}",
            "not installed; install it into this environment with "
            f"`python -m ipykernel install --sys-prefix --name {KERNEL_NAME}` (make does this)",
        ) from None


def check_notebooks(notebooks_dir: Path) -> None:
    """Make sure ``notebooks_dir`` holds every notebook of :data:`REQUIRED_NOTEBOOKS`.

    Raises:
        ConfigError: a notebook is missing.
    """
    for kind in REQUIRED_NOTEBOOKS:
        if not (notebooks_dir / f"{kind}.ipynb").is_file():
            raise ConfigError(notebooks_dir / f"{kind}.ipynb", "study notebook not found")


def step_gpus(kind: str, gpus_per_run: int) -> int:
    """How many GPUs a step of this kind uses, out of the ``gpus_per_run`` of its slot.

    A training run uses them all (one process per GPU); an evaluation one (it predicts on one
    device); other steps none. The one rule for both executors: a local step's notebook gets
    that many of its slot's GPU ids, a Slurm job asks for that many GPUs.
    """
    if kind not in GPU_KINDS:
        return 0
    return gpus_per_run if kind == "train" else 1


def step_request(
    step: Step, paths: StudyPaths, notebooks_dir: Path, gpus: str | None, inputs: dict[str, Any]
) -> StepRequest:
    """The request of ``step``; the analysis notebook takes the study folder, the others the
    parameter snapshot, the study root and the step's arguments (and training and evaluation
    the first :func:`step_gpus` of the slot's GPU ids ``gpus``, ``None`` on the CPU)."""
    if step.kind not in NOTEBOOK_KINDS:
        return StepRequest(step, paths, None, {}, inputs)
    notebook = notebooks_dir / f"{step.kind}.ipynb"
    if step.kind == "analysis":
        return StepRequest(step, paths, notebook, {"study_dir": str(paths.study_dir)}, inputs)
    parameters = {"params_path": str(paths.params_snapshot), "root": str(paths.root), **step.arguments()}
    if step.kind in GPU_KINDS:
        slot = gpus.split(",") if gpus else []
        parameters["gpus"] = ",".join(slot[: step_gpus(step.kind, len(slot))]) if slot else None
    return StepRequest(step, paths, notebook, parameters, inputs)


def error_line(exc: BaseException) -> str:
    """The last line of an error, prefixed with its type (a notebook's error: its exception)."""
    import papermill

    if isinstance(exc, papermill.PapermillExecutionError):
        name, text = exc.ename, str(exc.evalue)
    else:
        name, text = type(exc).__name__, str(exc)
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return f"{name}: {lines[-1]}" if lines else name


def write_step_record(request: StepRequest, state: StepState, seconds: float, error: str | None) -> StepRecord:
    """Write the record of the request's step, which ended just now; returns it."""
    step, paths = request.step, request.paths
    notebook = str(paths.executed_notebook(step)) if request.notebook is not None else None
    record = StepRecord.ended_now(step.step_id, state, seconds, notebook, error, request.inputs)
    record.write(paths.step_record(step))
    return record


def execute_step(request: StepRequest) -> StepRecord:
    """Execute one step and write its record; never raises for a failing step.

    A notebook step runs in the kernel :data:`KERNEL_NAME` with the study root as working
    directory; the executed notebook is written even when a cell fails. The step counts as
    done only if it also left its outputs.

    Args:
        request: the step.

    Returns:
        The record written to ``runs/<study>/steps/<step id>.json``: its ``state`` is ``done``
        or ``failed``, its ``error`` the last line of the error (``None`` when done).
    """
    import papermill

    step, paths = request.step, request.paths
    started = time.perf_counter()
    try:
        if request.notebook is None:
            render_report(paths.study, paths.root)
        else:
            output = paths.executed_notebook(step)
            output.parent.mkdir(parents=True, exist_ok=True)
            papermill.execute_notebook(
                str(request.notebook),
                str(output),
                parameters=request.parameters,
                kernel_name=KERNEL_NAME,
                cwd=str(paths.root),
                progress_bar=False,
                extra_arguments=KERNEL_ARGUMENTS,
            )
        missing = [path for path in paths.outputs(step) if not path.exists()]
        if missing:
            raise L2SError(missing[0], f"step {step.step_id} finished without writing this file")
    except Exception as exc:  # any failure of the step is recorded, not raised
        return write_step_record(request, FAILED, time.perf_counter() - started, error_line(exc))
    return write_step_record(request, DONE, time.perf_counter() - started, None)
