"""Run a whole study (``l2s run PARAMS.yaml``): which step runs when, and where.

:func:`run_study` validates the parameter file, takes the study's lock, writes the parameter
snapshot the notebooks read, and then executes the steps of :class:`~l2s_core.study.plan.StudyPlan`
in dependency order: ``notebooks/prepare.ipynb`` per organ, ``notebooks/train.ipynb`` per
training run (each organ × network chain until enough runs converged), ``notebooks/evaluate.ipynb``
per organ × split, ``notebooks/analysis.ipynb`` and finally the HTML report. One step is
executed by :func:`~l2s_core.study.execute.execute_step`; this module schedules them.

* Resumable: a step's record (:class:`~l2s_core.study.step_records.StepRecord`,
  ``runs/<study>/steps/<step id>.json``) is written atomically after it finished; finished steps
  are skipped on the next run, failed or interrupted ones are done again (training continues
  from its last completed epoch).
* Failures stay local: a failed step is recorded with the last line of its error, steps
  that depend on it are marked blocked, the others go on.
* ``jobs`` steps run at the same time; with GPUs each slot owns ``gpus_per_run`` GPUs, of which
  a step uses :func:`~l2s_core.study.execute.step_gpus` (a training run all, an evaluation one;
  passed to the notebook, which sets ``CUDA_VISIBLE_DEVICES`` before CUDA starts; a Slurm job
  asks for as many).
* ``executor="slurm"`` submits every step as a Slurm job through ``submitit``;
  ``"submitit-local"`` runs the same path as local submitit jobs (to try it without a cluster).
* One ``l2s run`` per study at a time: :func:`~l2s_core.study.step_records.study_lock` on
  ``runs/<study>/l2s_run.lock``.
"""

from __future__ import annotations

__all__ = ["Submit", "gpu_slots", "run_study", "visible_gpus"]

import os
import queue
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

from tqdm.auto import tqdm

from l2s_core import notebook_files
from l2s_core.errors import ConfigError, check_choice
from l2s_core.files import atomic_write_json
from l2s_core.study.execute import (
    StepRequest,
    check_kernel,
    check_notebooks,
    error_line,
    execute_step,
    step_gpus,
    step_request,
    write_step_record,
)
from l2s_core.study.layout import Step, StudyPaths
from l2s_core.study.params import StudyParams, load_study_params
from l2s_core.study.plan import StudyPlan
from l2s_core.study.status import StudyStatus
from l2s_core.study.step_records import DONE, FAILED, StepRecord, study_lock
from l2s_core.vocabulary import EXECUTORS


def visible_gpus() -> list[str]:
    """GPU ids this process may use, as ``CUDA_VISIBLE_DEVICES`` entries (empty without CUDA)."""
    import torch

    count = torch.cuda.device_count()
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [entry.strip() for entry in listed.split(",") if entry.strip()][:count]
    return [str(i) for i in range(count)]


def gpu_slots(jobs: int, gpus_per_run: int, gpus: list[str]) -> list[str | None]:
    """Split the GPUs into parallel slots of ``gpus_per_run`` each.

    Args:
        jobs: slots wanted.
        gpus_per_run: GPUs of one slot.
        gpus: the visible GPU ids.

    Returns:
        One entry per slot: its comma-separated GPU ids, or ``None`` for CPU slots when there
        are no GPUs. Fewer than ``jobs`` slots when the GPUs do not suffice.

    Raises:
        ConfigError: fewer GPUs than ``gpus_per_run``.
    """
    if not gpus:
        return [None] * jobs
    if len(gpus) < gpus_per_run:
        raise ConfigError(
            "gpus_per_run",
            f"{gpus_per_run} GPUs per run, but only {len(gpus)} visible "
            f"({','.join(gpus)}); lower it with --gpus-per-run",
        )
    slots = min(jobs, len(gpus) // gpus_per_run)
    return [",".join(gpus[i * gpus_per_run : (i + 1) * gpus_per_run]) for i in range(slots)]


#: Executes a step and returns its record: :func:`execute_step` or a submitit submitter.
Submit = Callable[[StepRequest], StepRecord]


class _SubmititSubmitter:
    """Runs each notebook step as a submitit job (Slurm, or local processes) and waits for it;
    the report is rendered in this process."""

    def __init__(self, params: StudyParams, paths: StudyPaths, cluster: str) -> None:
        import submitit

        if cluster == "slurm" and shutil.which("sbatch") is None:
            raise ConfigError(
                "--executor slurm", "sbatch not found; run on a Slurm login node, or use --executor local"
            )
        self.params = params
        self.executor = submitit.AutoExecutor(folder=paths.submitit_dir / "%j", cluster=cluster)
        self.lock = threading.Lock()

    def __call__(self, request: StepRequest) -> StepRecord:
        step = request.step
        if request.notebook is None:
            return execute_step(request)
        with self.lock:
            self.executor.update_parameters(
                name=f"l2s-{self.params.study}-{step.step_id.replace('/', '-')}",
                timeout_min=self.params.slurm.timeout_min,
                gpus_per_node=step_gpus(step.kind, self.params.gpus_per_run),
                tasks_per_node=1,
                cpus_per_task=self.params.slurm.cpus_per_task,
                mem_gb=self.params.slurm.mem_gb,
                slurm_partition=self.params.slurm.partition,
            )
            job = self.executor.submit(execute_step, request)
        started = time.perf_counter()
        try:
            return job.result()
        except Exception as exc:  # the job died (killed, timed out) before writing its record
            return write_step_record(
                request, FAILED, time.perf_counter() - started, f"job {job.job_id}: {error_line(exc)}"
            )


def _work(submit: Submit, request: StepRequest, slot: str | None, finished: queue.Queue) -> None:
    """Execute a step (in a worker thread) and always hand a record to :func:`_run_plan`.

    A failure whose record cannot be written either (e.g. on a full disk) still fails the step
    in this run instead of leaving the runner waiting for it forever.
    """
    try:
        record = submit(request)
    except Exception as exc:  # a failure of the runner around the step (e.g. submission, or writing its record)
        error = error_line(exc)
        try:
            record = write_step_record(request, FAILED, 0.0, error)
        except OSError as record_error:  # a record of this run only, not written
            error = f"{error} (its record could not be written: {error_line(record_error)})"
            record = StepRecord.ended_now(request.step.step_id, FAILED, 0.0, None, error, request.inputs)
    finished.put((request.step, slot, record))


def _run_plan(
    plan: StudyPlan,
    make_request: Callable[[Step, str | None], StepRequest],
    submit: Submit,
    slots: list[str | None],
    progress: bool,
    on_finish: Callable[[], object],
) -> None:
    """Execute ready steps on free slots until nothing is ready or running.

    Each step runs in a daemon thread, so that an interrupted ``l2s run`` exits at once (the
    kernels of its notebooks stop when their parent process is gone). ``on_finish`` is called
    after every step (it writes the study's status, which the analysis reads for failures).
    """
    finished: queue.Queue = queue.Queue()
    free = list(slots)
    running: dict[str, Step] = {}
    bar = tqdm(
        total=plan.expected_steps(),
        initial=plan.finished_steps(),
        desc=f"study {plan.params.study}",
        unit="step",
        disable=not progress,
        dynamic_ncols=True,
    )
    try:
        while True:
            for step in plan.ready():
                if not free:
                    break
                slot = free.pop(0)
                plan.start(step)
                running[step.step_id] = step
                threading.Thread(
                    target=_work,
                    args=(submit, make_request(step, slot), slot, finished),
                    name=step.step_id,
                    daemon=True,
                ).start()
            if not running:
                break
            bar.set_postfix_str(", ".join(running), refresh=True)
            step, slot, record = finished.get()
            del running[step.step_id]
            free.append(slot)
            plan.finish(step, record.done, record.error)
            on_finish()
            if not record.done:
                bar.write(f"failed: {step.step_id}: {record.error} (notebook: {record.notebook})")
            bar.total, bar.n = plan.expected_steps(), plan.finished_steps()
            bar.refresh()
    finally:
        bar.close()


def run_study(
    params_path: str | Path,
    root: str | Path = ".",
    jobs: int = 1,
    gpus_per_run: int | None = None,
    executor: str = "local",
    progress: bool = True,
    data_root: str | Path | None = None,
    notebooks_dir: str | Path | None = None,
) -> StudyStatus:
    """Run (or continue) a whole study and render its report.

    Args:
        params_path: the parameter file (``papermill_params/<study>.yaml``).
        root: study root; ``runs/``, ``executed/`` and ``reports/`` are created under it.
        jobs: steps run at the same time (slots); with GPUs at most ``GPUs // gpus_per_run``.
        gpus_per_run: replaces the file's ``gpus_per_run``.
        executor: ``local`` (threads of this process), ``slurm`` (submitit jobs on Slurm) or
            ``submitit-local`` (submitit jobs on this machine).
        progress: show a progress bar over the steps.
        data_root: replaces the file's ``data_root`` (folder of the MSD task folders).
        notebooks_dir: folder of ``prepare.ipynb``, ``train.ipynb``, ``evaluate.ipynb`` and
            (optionally) ``analysis.ipynb``; default: the installed study notebooks
            (:func:`~l2s_core.notebook_files.notebooks_dir`).

    Returns:
        The :class:`~l2s_core.study.status.StudyStatus` of the study (every unit's state, the
        failed units, the report), also written to ``runs/<study>/status.json``.

    Raises:
        ConfigError: invalid parameters or options, missing kernel, notebook or data.
        StudyLockedError: another ``l2s run`` works on the study.
    """
    if jobs < 1:
        raise ConfigError("--jobs", f"must be at least 1, got {jobs}")
    check_choice("--executor", executor, EXECUTORS)
    root = Path(root).resolve()
    notebooks_dir = Path(notebooks_dir) if notebooks_dir is not None else notebook_files.notebooks_dir()
    params = load_study_params(params_path, root=root, data_root=data_root, gpus_per_run=gpus_per_run)
    check_kernel()
    check_notebooks(notebooks_dir)
    if params.data == "msd":
        for organ in params.organs:
            params.task_dir(organ)
    with_analysis = (notebooks_dir / "analysis.ipynb").is_file()
    if not with_analysis:
        print(f"{notebooks_dir / 'analysis.ipynb'} not found: the study stops after evaluation, without a report")
    paths = StudyPaths(root, params.study)
    with study_lock(paths.lock_path):
        atomic_write_json(paths.params_snapshot, params.to_dict())
        plan = StudyPlan(params, paths, with_analysis)
        if executor == "local":
            submit: Submit = execute_step
            slots = gpu_slots(jobs, params.gpus_per_run, visible_gpus())
        else:
            submit = _SubmititSubmitter(params, paths, "slurm" if executor == "slurm" else "local")
            slots = [None] * jobs

        def write_status() -> StudyStatus:
            report_done = "report" in plan.units and plan.units["report"].state == DONE
            status = StudyStatus(
                study=params.study,
                units=plan.status(),
                failed=tuple(unit_id for unit_id, unit in plan.units.items() if unit.state == FAILED),
                report=str(paths.report_path) if report_done else None,
            )
            status.write(paths.status_path)
            return status

        _run_plan(
            plan,
            lambda step, slot: step_request(step, paths, notebooks_dir, slot, plan.inputs(step)),
            submit,
            slots,
            progress,
            write_status,
        )
        status = write_status()
    print(plan.status_table())
    if status.report:
        print(f"report: {paths.report_path}")
    return status
