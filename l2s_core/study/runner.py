"""Run a whole study through Papermill (``l2s run PARAMS.yaml``).

:func:`run_study` validates the parameter file, takes the study's lock, writes the parameter
snapshot the notebooks read, and then executes the steps of :class:`~l2s_core.study.plan.StudyPlan`
in dependency order: ``l2s_core/notebooks/prepare.ipynb`` per organ, ``l2s_core/notebooks/train.ipynb`` per
training run (each organ × network chain until enough runs converged), ``l2s_core/notebooks/evaluate.ipynb``
per organ × split, ``l2s_core/notebooks/analysis.ipynb`` and finally the HTML report. Executed notebooks
go to ``executed/<study>/<step id>.ipynb`` (kept when a step fails).

* Resumable: a step's record (``runs/<study>/steps/<step id>.json``) is written atomically
  after it finished; finished steps are skipped on the next run, failed or interrupted ones
  are done again (training continues from its last completed epoch).
* Failures stay local: a failed step is recorded with the last line of its error, steps
  that depend on it are marked blocked, the others go on.
* ``jobs`` steps run at the same time; with GPUs each slot owns ``gpus_per_run`` GPUs (passed
  to the notebook, which sets ``CUDA_VISIBLE_DEVICES`` before CUDA starts).
* ``executor="slurm"`` submits every step as a Slurm job through ``submitit``;
  ``"submitit-local"`` runs the same path as local submitit jobs (to try it without a cluster).
* One ``l2s run`` per study at a time: the lock file ``runs/<study>/l2s_run.lock``.

Notebooks run in the Jupyter kernel :data:`KERNEL_NAME`, which ``make`` installs into the
virtual environment (``python -m ipykernel install --sys-prefix --name l2s``).
"""

from __future__ import annotations

__all__ = [
    "EXECUTORS",
    "GPU_KINDS",
    "KERNEL_ARGUMENTS",
    "KERNEL_NAME",
    "NOTEBOOKS_DIR",
    "REQUIRED_NOTEBOOKS",
    "StepRequest",
    "Submit",
    "check_kernel",
    "execute_step",
    "gpu_slots",
    "run_study",
    "study_lock",
    "visible_gpus",
]

import contextlib
import dataclasses
import datetime
import fcntl
import json
import os
import queue
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm.auto import tqdm

from l2s_core.errors import ConfigError, L2SError, StudyLockedError
from l2s_core.files import atomic_write_json
from l2s_core.processes import process_alive
from l2s_core.study.plan import DONE, FAILED, NOTEBOOK_KINDS, Step, StudyPaths, StudyPlan
from l2s_core.study.report import render_report

if TYPE_CHECKING:
    from l2s_core.study.params import StudyParams

#: The Jupyter kernel the study notebooks run in (installed by ``make``).
KERNEL_NAME = "l2s"
#: The project's study notebooks.
NOTEBOOKS_DIR = Path(__file__).resolve().parents[1] / "notebooks"
EXECUTORS = ("local", "slurm", "submitit-local")
#: Notebooks a study needs; ``analysis.ipynb`` is optional (without it: no analysis, no report).
REQUIRED_NOTEBOOKS = ("prepare", "train", "evaluate")
#: Steps given GPUs: their notebooks get the slot's GPU ids as the parameter ``gpus``.
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


def _check_notebooks(notebooks_dir: Path) -> None:
    for kind in REQUIRED_NOTEBOOKS:
        if not (notebooks_dir / f"{kind}.ipynb").is_file():
            raise ConfigError(notebooks_dir / f"{kind}.ipynb", "study notebook not found")


@contextlib.contextmanager
def study_lock(lock_path: Path) -> Iterator[None]:
    """Hold the study's lock file while the block runs.

    The lock is an advisory ``flock`` on ``lock_path``, which also records the holder's pid
    and host. The operating system releases it when the holder dies, so the lock of a dead
    ``l2s run`` is taken over by the next one.

    Args:
        lock_path: the lock file (created).

    Raises:
        StudyLockedError: another process holds the lock (the message names the file and its pid).
    """
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _lock_holder(fd)
            raise StudyLockedError(
                lock_path,
                f"held by pid {holder.get('pid', '?')} on {holder.get('host', '?')} "
                f"since {holder.get('since', '?')}: another `l2s run` is working on this study; "
                "wait for it to finish or stop it",
            ) from None
        previous = _lock_holder(fd)
        if (
            previous.get("host") == socket.gethostname()
            and isinstance(previous.get("pid"), int)
            and not process_alive(previous["pid"])
        ):
            print(f"{lock_path}: taking over the stale lock of pid {previous['pid']} (no longer running)")
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": datetime.datetime.now().isoformat(timespec="seconds"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the flock


def _lock_holder(fd: int) -> dict[str, Any]:
    """The holder recorded in the lock file (empty when unreadable)."""
    try:
        holder = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return holder if isinstance(holder, dict) else {}


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


def _error_line(exc: BaseException) -> str:
    """The last line of an error, prefixed with its type (a notebook's error: its exception)."""
    import papermill

    if isinstance(exc, papermill.PapermillExecutionError):
        name, text = exc.ename, str(exc.evalue)
    else:
        name, text = type(exc).__name__, str(exc)
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return f"{name}: {lines[-1]}" if lines else name


def _write_record(request: StepRequest, state: str, seconds: float, error: str | None) -> dict[str, Any]:
    step, paths = request.step, request.paths
    record = {
        "step": step.step_id,
        "state": state,
        "seconds": round(seconds, 3),
        "finished": datetime.datetime.now().isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "notebook": str(paths.executed_notebook(step)) if request.notebook is not None else None,
        "error": error,
        "inputs": request.inputs,
    }
    atomic_write_json(paths.step_record(step), record)
    return record


def execute_step(request: StepRequest) -> dict[str, Any]:
    """Execute one step and write its record; never raises for a failing step.

    A notebook step runs in the kernel :data:`KERNEL_NAME` with the study root as working
    directory; the executed notebook is written even when a cell fails. The step counts as
    done only if it also left its outputs.

    Args:
        request: the step.

    Returns:
        The record written to ``runs/<study>/steps/<step id>.json``: ``step``, ``state``
        (``done`` or ``failed``), ``seconds``, ``finished``, ``host``, ``notebook``, ``error``
        (last line of the error, ``None`` when done).
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
        return _write_record(request, FAILED, time.perf_counter() - started, _error_line(exc))
    return _write_record(request, DONE, time.perf_counter() - started, None)


def _request(
    step: Step, paths: StudyPaths, notebooks_dir: Path, gpus: str | None, inputs: dict[str, Any]
) -> StepRequest:
    """The request of ``step``; the analysis notebook takes the study folder, the others the
    parameter snapshot, the study root and the step's arguments."""
    if step.kind not in NOTEBOOK_KINDS:
        return StepRequest(step, paths, None, {}, inputs)
    notebook = notebooks_dir / f"{step.kind}.ipynb"
    if step.kind == "analysis":
        return StepRequest(step, paths, notebook, {"study_dir": str(paths.study_dir)}, inputs)
    parameters = {"params_path": str(paths.params_snapshot), "root": str(paths.root), **step.arguments()}
    if step.kind in GPU_KINDS:
        parameters["gpus"] = gpus
    return StepRequest(step, paths, notebook, parameters, inputs)


Submit = Callable[[StepRequest], dict[str, Any]]


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

    def __call__(self, request: StepRequest) -> dict[str, Any]:
        step = request.step
        if request.notebook is None:
            return execute_step(request)
        gpus = {"train": self.params.gpus_per_run, "evaluate": 1}.get(step.kind, 0)
        with self.lock:
            self.executor.update_parameters(
                name=f"l2s-{self.params.study}-{step.step_id.replace('/', '-')}",
                timeout_min=self.params.slurm.timeout_min,
                gpus_per_node=gpus,
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
            return _write_record(
                request, FAILED, time.perf_counter() - started, f"job {job.job_id}: {_error_line(exc)}"
            )


def _work(submit: Submit, request: StepRequest, slot: str | None, finished: queue.Queue) -> None:
    """Execute a step (in a worker thread) and always hand a record to :func:`_run_plan`.

    A failure whose record cannot be written either (e.g. on a full disk) still fails the step
    in this run instead of leaving the runner waiting for it forever.
    """
    try:
        record = submit(request)
    except Exception as exc:  # a failure of the runner around the step (e.g. submission, or writing its record)
        error = _error_line(exc)
        try:
            record = _write_record(request, FAILED, 0.0, error)
        except OSError as record_error:
            record = {
                "state": FAILED,
                "notebook": None,
                "error": f"{error} (its record could not be written: {_error_line(record_error)})",
            }
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
            plan.finish(step, record["state"] == DONE, record["error"])
            on_finish()
            if record["state"] != DONE:
                bar.write(f"failed: {step.step_id}: {record['error']} (notebook: {record['notebook']})")
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
    notebooks_dir: str | Path = NOTEBOOKS_DIR,
) -> dict[str, Any]:
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
            (optionally) ``analysis.ipynb``.

    Returns:
        ``{"study", "units": unit id → {"state", ...}, "failed": [unit ids], "report": path
        or None}``; also written to ``runs/<study>/status.json``.

    Raises:
        ConfigError: invalid parameters or options, missing kernel, notebook or data.
        StudyLockedError: another ``l2s run`` works on the study.
    """
    from l2s_core.study.params import load_study_params  # imported here: it loads torch

    if jobs < 1:
        raise ConfigError("--jobs", f"must be at least 1, got {jobs}")
    if executor not in EXECUTORS:
        raise ConfigError("--executor", f"must be one of {', '.join(EXECUTORS)}, got {executor!r}")
    root = Path(root).resolve()
    notebooks_dir = Path(notebooks_dir)
    params = load_study_params(params_path, root=root, data_root=data_root, gpus_per_run=gpus_per_run)
    check_kernel()
    _check_notebooks(notebooks_dir)
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

        def write_status() -> dict[str, Any]:
            report_done = "report" in plan.units and plan.units["report"].state == DONE
            status = {
                "study": params.study,
                "units": plan.status(),
                "failed": [unit_id for unit_id, unit in plan.units.items() if unit.state == FAILED],
                "report": str(paths.report_path) if report_done else None,
            }
            atomic_write_json(paths.status_path, status)
            return status

        _run_plan(
            plan,
            lambda step, slot: _request(step, paths, notebooks_dir, slot, plan.inputs(step)),
            submit,
            slots,
            progress,
            write_status,
        )
        status = write_status()
    print(plan.status_table())
    if status["report"]:
        print(f"report: {paths.report_path}")
    return status
