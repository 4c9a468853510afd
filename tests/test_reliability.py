"""Reliability promises that need a real process, signal or file (see RELIABILITY.md).

* a training run of 2 gloo ranks killed (SIGKILL of the process the user started) while it
  writes its checkpoint, resume state, log or summary (held there by the SIGSTOP harness of
  :mod:`process_tools`), or mid-epoch, leaves no rank alive and resumes to the weights and
  log of an uninterrupted run;
* a full disk (OSError ENOSPC injected into the atomic write a module uses) surfaces as an
  error and leaves no file that a later step would take for a finished one;
* a diverged run inside a chain of runs does not stop the chain;
* loading never unpickles code (checked over the sources, and with a booby-trapped file);
* user errors reach the terminal as one line and exit status 2.

Volumes are tiny (16, 32, 32) and networks small, so every run takes a fraction of a second;
most of the time goes into starting Python processes.
"""

from __future__ import annotations

import ast
import errno
import json
import os
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbformat
import pandas as pd
import papermill
import pytest
import torch
import yaml
from config_builder import cpu_config
from process_tools import (
    assert_one_line_error,
    descendants,
    kill_and_reap,
    run_module,
    start_module,
    state,
    wait_gone,
    wait_until,
)

from l2s_core import evaluation_tables, records
from l2s_core.checkpoint import load_model, load_resume_state
from l2s_core.data.cache import PreparedTask
from l2s_core.errors import CheckpointError, ConfigError
from l2s_core.evaluate import evaluate_organ
from l2s_core.evaluation_tables import CASE_COLUMNS, RUN_COLUMNS
from l2s_core.files import FORMAT_VERSION, atomic_open, atomic_write_json, read_json
from l2s_core.study import runner
from l2s_core.study.layout import Step, StudyPaths
from l2s_core.study.params import load_study_params
from l2s_core.study.plan import StudyPlan
from l2s_core.study.status import StudyStatus, UnitStatus
from l2s_core.train.config import TrainConfig
from l2s_core.train.launch import train_run
from l2s_core.train.run_files import RunSummary, finished_summary, read_log

PROJECT = Path(__file__).resolve().parents[1]
SHAPE = (16, 32, 32)
#: One cuboid organ per case (z0, y0, x0, z1, y1, x1), placed differently in each case.
ORGANS = [(3 + i % 3, 6 + 2 * i, 8, 11 + i % 3, 18 + 2 * i, 20) for i in range(5)]
#: The organ of the study (named "study") whose folder layout these tests use.
ORGAN = "spleen"


@pytest.fixture
def phantom(prepared_task: Callable[..., PreparedTask]) -> PreparedTask:
    """Five bright cuboids on noise, prepared (3 training, 1 validation, 1 test case)."""
    return prepared_task(n_cases=5, shape=SHAPE, organ=ORGANS, noise=0.3)


@pytest.fixture
def paths(tmp_path: Path) -> StudyPaths:
    """The folders of a study ``study`` under ``tmp_path/root``."""
    return StudyPaths(tmp_path / "root", "study")


def small_config(task: PreparedTask, run_dir: Path, **overrides: Any) -> TrainConfig:
    """A localiser run of a fraction of a second per epoch on the CPU."""
    settings = {"base_channels": 8, "patch_size": (64, 256, 256), "max_epochs": 2}  # the default patch, clipped
    return cpu_config(task.folder, run_dir, **{"network": "localiser", **settings, **overrides})


def temporary_files(folder: Path) -> list[str]:
    """Names of the temporary files of unfinished atomic writes (``.<name>.<random>.tmp``) in ``folder``."""
    try:
        return sorted(name for name in os.listdir(folder) if name.startswith(".") and name.endswith(".tmp"))
    except FileNotFoundError:
        return []


def committed_epochs(run_dir: Path) -> int:
    """Epochs in the run's ``resume.pt`` (0 without one)."""
    resume = run_dir / "resume.pt"
    return load_resume_state(resume).epochs_done if resume.exists() else 0


def kill_training(config_path: Path, stop_at: str | None, ready: Callable[[], bool] = lambda: True) -> None:
    """Start ``python -m l2s_core.train CONFIG`` and SIGKILL it, leaving no process of it alive.

    With ``stop_at``, the process that reaches that moment (rank 0, which writes the files)
    stops itself there and the kill comes then; without, the kill comes once ``ready()`` holds.
    """
    training = start_module("l2s_core.train", config_path, "--no-progress", stop_at=stop_at)
    try:
        if stop_at is None:
            wait_until(lambda: training.poll() is None and ready(), "the moment of the kill")
        else:
            wait_until(
                lambda: any(state(pid) == "T" for pid in descendants(training.pid)) or training.poll() is not None,
                f"a rank stopping at {stop_at!r}",
            )
        ranks = descendants(training.pid)
    finally:
        kill_and_reap(training)
    wait_gone(ranks, "the ranks of the SIGKILLed training dying with it")


#: Kills of one run folder in order (2 gloo ranks, 4 epochs): the moment at which rank 0 stops,
#: and the epochs in ``resume.pt`` after the kill. ``None``: mid-epoch, once 2 epochs are logged.
KILL_MOMENTS = [
    ("writing best.next.pt", 0),  # epoch 1's new best weights, nothing committed yet
    ("writing resume.pt", 0),  # epoch 1's commit point, before its rename
    ("wrote resume.pt", 1),  # just after the commit point: best.next.pt not yet renamed, no log.csv yet
    ("writing log.csv", 1),  # the restart settling the interrupted commit rewrites log.csv
    (None, (2, 3)),  # during epoch 3 (or its commit)
    ("writing summary.json", 4),  # every epoch done, the run not yet finished
]


@pytest.mark.slow
def test_run_killed_at_every_kind_of_run_file_write_and_mid_epoch_resumes_to_an_uninterrupted_run(
    phantom: PreparedTask, tmp_path: Path
) -> None:
    epochs = 4
    run_dir = tmp_path / "killed"
    config_path = tmp_path / "killed.json"
    atomic_write_json(config_path, small_config(phantom, run_dir, max_epochs=epochs, world_size=2).to_dict())
    for moment, committed in KILL_MOMENTS:
        kill_training(config_path, moment, ready=lambda: (run_dir / "log.csv").exists() and len(read_log(run_dir)) >= 2)
        assert committed_epochs(run_dir) in (committed if isinstance(committed, tuple) else (committed,)), moment
        assert finished_summary(run_dir) is None, moment  # nothing looks like a finished run
        if moment is not None and moment.startswith("writing"):
            name = moment.split()[1]
            assert any(n.startswith(f".{name}.") for n in temporary_files(run_dir)), moment  # its write was unfinished
        if moment == "wrote resume.pt":
            assert (run_dir / "best.next.pt").exists() and not (run_dir / "best.pt").exists()

    resumed = run_module("l2s_core.train", config_path, "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    summary = RunSummary.read(run_dir / "summary.json")
    assert RunSummary.from_dict(json.loads(resumed.stdout.strip().splitlines()[-1])) == summary
    reference = train_run(
        small_config(phantom, tmp_path / "reference", max_epochs=epochs, world_size=2), progress=False
    )
    assert (summary.epochs, summary.stop_reason, summary.diverged) == (epochs, "max_epochs", False)
    for key in ("converged", "best_epoch", "best_val_dice"):
        assert getattr(summary, key) == getattr(reference, key), key
    assert [row["epoch"] for row in read_log(run_dir)] == list(range(1, epochs + 1))
    without_times = [{k: v for k, v in row.items() if k != "wall_seconds"} for row in read_log(run_dir)]
    assert without_times == [
        {k: v for k, v in row.items() if k != "wall_seconds"} for row in read_log(tmp_path / "reference")
    ]
    assert sorted(os.listdir(run_dir)) == ["best.pt", "config.json", "log.csv", "summary.json"]
    killed_weights = load_model(run_dir / "best.pt")[0].state_dict()
    reference_weights = load_model(tmp_path / "reference" / "best.pt")[0].state_dict()
    assert all(torch.equal(killed_weights[k], reference_weights[k]) for k in reference_weights)


# --- full disk --------------------------------------------------------------------------------


def disk_full_for(file_name: str, real_write: Callable[[Path, Any], None]) -> Callable[[Path, Any], None]:
    """An atomic write like ``real_write`` that fails as on a full disk for files named ``file_name``:
    the first bytes reach the temporary file, then OSError ENOSPC."""

    def write(path: Path, content: Any) -> None:
        if Path(path).name != file_name:
            real_write(path, content)
            return
        with atomic_open(path) as handle:
            handle.write(b"partial ")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    return write


def test_full_disk_at_the_summary_loses_no_epoch_and_leaves_the_run_unfinished(
    phantom: PreparedTask, paths: StudyPaths, monkeypatch: pytest.MonkeyPatch
) -> None:
    step = Step("train", ORGAN, "localiser", run=0)
    run_dir = paths.run_dir(ORGAN, "localiser", 0)
    config = small_config(phantom, run_dir)
    monkeypatch.setattr(records, "atomic_write_json", disk_full_for("summary.json", records.atomic_write_json))
    with pytest.raises(OSError) as failure:
        train_run(config, progress=False)
    assert failure.value.errno == errno.ENOSPC
    assert finished_summary(run_dir) is None and not temporary_files(run_dir)
    assert not all(path.exists() for path in paths.outputs(step))  # the runner would do the step again
    assert load_resume_state(run_dir / "resume.pt").epochs_done == 2  # both epochs kept
    best_weights = (run_dir / "best.pt").read_bytes()

    monkeypatch.undo()
    summary = train_run(config, progress=False)
    assert summary.epochs == 2 and not summary.diverged
    assert [row["epoch"] for row in read_log(run_dir)] == [1, 2]
    assert (run_dir / "best.pt").read_bytes() == best_weights  # not trained again
    assert sorted(os.listdir(run_dir)) == ["best.pt", "config.json", "log.csv", "summary.json"]


@pytest.mark.parametrize("file_name", ["val_cases.csv", "val_runs.csv"])
def test_full_disk_at_an_evaluation_table_leaves_the_step_unfinished(
    phantom: PreparedTask, paths: StudyPaths, monkeypatch: pytest.MonkeyPatch, file_name: str
) -> None:
    organ_dir = paths.organ_dir(ORGAN)
    train_run(
        small_config(
            phantom, paths.run_dir(ORGAN, "organ", 0), network="organ", max_epochs=1, convergence_threshold=0.0
        ),
        progress=False,
    )
    evaluation_dir = paths.evaluation_dir(ORGAN)
    monkeypatch.setattr(
        evaluation_tables, "atomic_write_text", disk_full_for(file_name, evaluation_tables.atomic_write_text)
    )
    with pytest.raises(OSError) as failure:
        evaluate_organ(organ_dir, "val", prepared_dir=phantom.folder, progress=False)
    assert failure.value.errno == errno.ENOSPC
    assert not (evaluation_dir / file_name).exists() and not temporary_files(evaluation_dir)
    assert not all(path.exists() for path in paths.outputs(Step("evaluate", ORGAN, split="val")))

    monkeypatch.undo()
    written = evaluate_organ(organ_dir, "val", prepared_dir=phantom.folder, progress=False)
    cases, runs = pd.read_csv(written["cases"]), pd.read_csv(written["runs"])
    assert list(cases.columns) == list(CASE_COLUMNS) and list(runs.columns) == list(RUN_COLUMNS)
    assert list(cases["method"]) == ["gt_localised"] * len(phantom.split["val"])
    assert list(runs["n_cases"]) == [len(phantom.split["val"])]


def test_full_disk_for_the_step_records_fails_the_step_instead_of_hanging_the_runner(
    tmp_path: Path, paths: StudyPaths, monkeypatch: pytest.MonkeyPatch, l2s_kernel: str
) -> None:
    params_path = tmp_path / "study.yaml"
    params_path.write_text(
        yaml.safe_dump(
            {"data": "phantom", "organs": [ORGAN], "networks": ["organ"], "runs": 1, "evaluate": {"splits": ["val"]}}
        )
    )

    def notebook_on_full_disk(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def write_unless_step_record(path: Path, obj: dict[str, Any]) -> None:
        if Path(path).is_relative_to(paths.study_dir.resolve() / "steps"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        atomic_write_json(path, obj)

    monkeypatch.setattr(papermill, "execute_notebook", notebook_on_full_disk)
    monkeypatch.setattr(records, "atomic_write_json", write_unless_step_record)  # Record.write: the step records
    outcome: list[StudyStatus] = []
    study = threading.Thread(
        target=lambda: outcome.append(runner.run_study(params_path, root=paths.root, progress=False)), daemon=True
    )
    study.start()
    study.join(timeout=60)
    assert not study.is_alive(), "l2s run waits forever for a step whose record could not be written"
    (result,) = outcome
    assert result.failed == (f"prepare/{ORGAN}",)
    assert "No space left on device" in result.units[f"prepare/{ORGAN}"].error
    assert result.units[f"train/{ORGAN}/organ"].state == "blocked"
    assert not (paths.study_dir / "steps").exists()  # no record claims anything


# --- divergence -------------------------------------------------------------------------------


def test_a_diverged_run_does_not_stop_its_chain(phantom: PreparedTask, tmp_path: Path, paths: StudyPaths) -> None:
    def make_config(index: int) -> TrainConfig:  # run 0's learning rate sends the weights to infinity
        return small_config(
            phantom,
            paths.run_dir(ORGAN, "localiser", index),
            seed=index,
            max_epochs=1,
            lr=1e30 if index == 0 else 3e-3,
            convergence_threshold=0.0,
        )

    summaries = [train_run(make_config(index), progress=False) for index in range(2)]
    assert [(s.diverged, s.converged, s.stop_reason) for s in summaries] == [
        (True, False, "diverged"),
        (False, True, "max_epochs"),
    ]
    assert read_json(paths.run_dir(ORGAN, "localiser", 0) / "summary.json")["diverged"] is True

    # the study runner's chain counts the diverged run as made, not converged, and goes on
    params_path = tmp_path / "study.yaml"
    params_path.write_text(
        yaml.safe_dump(
            {
                "data": "phantom",
                "organs": [ORGAN],
                "networks": ["localiser"],
                "runs": 1,
                "max_runs": 3,
                "evaluate": {"splits": ["val"]},
            }
        )
    )
    plan = StudyPlan(load_study_params(params_path, root=paths.root), paths, with_analysis=False)
    plan.finish(Step("prepare", ORGAN), succeeded=True)
    plan.finish(Step("train", ORGAN, "localiser", run=0), succeeded=True)
    assert plan.ready() == [Step("train", ORGAN, "localiser", run=1)]
    plan.finish(Step("train", ORGAN, "localiser", run=1), succeeded=True)
    assert plan.status()[f"train/{ORGAN}/localiser"] == UnitStatus("done", runs=2, converged=1)
    assert plan.ready() == [Step("evaluate", ORGAN, split="val")]


# --- safe by construction ---------------------------------------------------------------------

#: Modules whose loaders can run code stored in a file; l2s calls none of their loaders.
PICKLE_MODULES = ("pickle", "cPickle", "_pickle", "cloudpickle", "dill", "joblib", "shelve", "marshal")


def _dotted(node: ast.AST) -> str:
    """``torch.load`` for the expression ``torch.load`` (empty for anything but names and attributes)."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else ""
    return ""


def _keyword(call: ast.Call, name: str) -> Any:
    """The constant value of keyword ``name`` of a call (``None`` when absent or not a constant)."""
    for keyword in call.keywords:
        if keyword.arg == name and isinstance(keyword.value, ast.Constant):
            return keyword.value.value
    return None


#: Names a module is usually imported as, for sources that use them without importing.
CUSTOMARY_ALIASES = {"np": "numpy", "pd": "pandas"}


def _aliases(tree: ast.AST) -> dict[str, str]:
    """Local name → what it names, from the imports of a module (``pk`` → ``pickle`` for
    ``import pickle as pk``, ``load`` → ``torch.load`` for ``from torch import load``)."""
    aliases = dict(CUSTOMARY_ALIASES)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                aliases[alias.asname or alias.name.split(".")[0]] = (
                    alias.name if alias.asname else alias.name.split(".")[0]
                )
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return aliases


def _qualified(node: ast.AST, aliases: dict[str, str]) -> str:
    """The full name an expression such as ``pk.loads`` or ``load`` stands for (``pickle.loads``, ``torch.load``)."""
    head, _, rest = _dotted(node).partition(".")
    head = aliases.get(head, head)
    return f"{head}.{rest}" if rest else head


def _load_problem(name: str, call: ast.Call | None) -> str | None:
    """What is unsafe about using ``name`` (called as ``call``, or ``None`` when only referenced)."""
    module, _, function = name.rpartition(".")
    if name in ("torch.load", "torch.serialization.load"):
        return None if call is not None and _keyword(call, "weights_only") is True else "needs weights_only=True"
    if module == "yaml" and "load" in function and function not in ("safe_load", "safe_load_all"):
        return "use yaml.safe_load"
    if (
        name == "numpy.load"
        and call is not None
        and any(k.arg == "allow_pickle" for k in call.keywords)
        and _keyword(call, "allow_pickle") is not False
    ):
        return "allow_pickle must be False"
    if (
        module.split(".")[0] in PICKLE_MODULES and ("load" in function or function == "Unpickler")
    ) or function == "read_pickle":
        return "unpickles"
    return None


def unsafe_loads(source: str) -> list[str]:
    """Uses in Python ``source`` of a loader that could unpickle (run) code from a file.

    Names are resolved through the module's imports, so aliases count (``import pickle as pk``,
    ``from torch import load``), and a loader merely referenced (``loader = torch.load``) counts
    as a call without safe arguments.

    Returns:
        One ``line N: name: problem`` per use of ``torch.load`` without ``weights_only=True``,
        of a YAML loader other than ``yaml.safe_load``, of ``numpy.load`` with
        ``allow_pickle=True``, or of any loader of :data:`PICKLE_MODULES` or ``read_pickle``.
    """
    tree = ast.parse(source)
    aliases = _aliases(tree)
    calls = {id(node.func): node for node in ast.walk(tree) if isinstance(node, ast.Call)}
    inner = {
        id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Attribute)
    }  # ``torch`` of ``torch.load``
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Name, ast.Attribute)) and id(node) not in inner:
            name = _qualified(node, aliases)
            problem = _load_problem(name, calls.get(id(node)))
            if problem:
                problems.append((node.lineno, f"line {node.lineno}: {name}: {problem}"))
    return [text for _, text in sorted(problems)]


def project_sources() -> dict[str, str]:
    """Name → Python source of every l2s_core module and of every code cell of the study notebooks
    (IPython magics removed)."""
    sources = {
        str(path.relative_to(PROJECT)): path.read_text(encoding="utf-8")
        for path in sorted((PROJECT / "l2s_core").rglob("*.py"))
    }
    for path in sorted((PROJECT / "notebooks").glob("*.ipynb")):
        cells = [cell.source for cell in nbformat.read(path, as_version=4).cells if cell.cell_type == "code"]
        code = "\n".join(
            line for cell in cells for line in cell.splitlines() if not line.lstrip().startswith(("%", "!"))
        )
        sources[str(path.relative_to(PROJECT))] = code
    return sources


UNSAFE_SOURCE = """import pickle as pk
import joblib
import torch
import yaml
from pickle import loads as unpickle
from torch import load
from torch import load as torch_load
from yaml import unsafe_load
torch.load(p)
torch.load(p, weights_only=False)
yaml.load(t, Loader=yaml.Loader)
yaml.unsafe_load(t)
pk.load(f)
pk.loads(b)
np.load(p, allow_pickle=True)
pd.read_pickle(p)
joblib.load(p)
load(p)
torch_load(p, weights_only=False)
unpickle(b)
unsafe_load(t)
loader = torch.load
torch.serialization.load(p)
"""
SAFE_SOURCE = """import json
import numpy
import torch
import yaml
from torch import load
load(p, weights_only=True)
torch.load(p, weights_only=True)
yaml.safe_load(t)
numpy.load(p, allow_pickle=False)
numpy.load(p)
json.load(f)
loader = yaml.SafeLoader
"""


def test_the_checker_finds_unsafe_loads_also_through_aliases() -> None:
    found = unsafe_loads(UNSAFE_SOURCE)
    assert [int(problem.split(":")[0].removeprefix("line ")) for problem in found] == list(range(9, 24))
    assert found[9] == "line 18: torch.load: needs weights_only=True"  # load(p) after ``from torch import load``
    assert found[11] == "line 20: pickle.loads: unpickles"  # unpickle(b) after ``from pickle import loads as unpickle``
    assert unsafe_loads(SAFE_SOURCE) == []


def test_sources_load_files_only_in_ways_that_cannot_run_code() -> None:
    sources = project_sources()
    assert any("torch.load(" in s for s in sources.values()) and any("yaml.safe_load(" in s for s in sources.values())
    problems = {name: unsafe_loads(source) for name, source in sources.items()}
    assert {name: found for name, found in problems.items() if found} == {}


class _MakesFolderWhenUnpickled:
    """Pickles as a call of ``os.mkdir(folder)``: unpickling it would run that call."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def __reduce__(self) -> tuple[Callable[[str], None], tuple[str]]:
        return os.mkdir, (str(self.folder),)


@pytest.mark.parametrize("loader", [load_model, load_resume_state])
def test_a_booby_trapped_checkpoint_is_refused_without_running_its_code(tmp_path: Path, loader: Callable) -> None:
    marker = tmp_path / "code_ran"
    torch.save(
        {"state_dict": {}, "metadata": _MakesFolderWhenUnpickled(marker), "format_version": FORMAT_VERSION},
        tmp_path / "trap.pt",
    )
    with pytest.raises(CheckpointError, match=r"trap\.pt: cannot be read as plain data.*never unpickles"):
        loader(tmp_path / "trap.pt")
    assert not marker.exists()


def test_a_yaml_parameter_file_cannot_run_code(tmp_path: Path) -> None:
    marker = tmp_path / "code_ran"
    params_path = tmp_path / "study.yaml"
    params_path.write_text(f"study: !!python/object/apply:os.mkdir [{str(marker)!r}]\ndata: phantom\n")
    with pytest.raises(ConfigError, match=r"study\.yaml: not valid YAML"):
        load_study_params(params_path)
    assert not marker.exists()


# --- one-line errors on the command line ------------------------------------------------------


@pytest.mark.slow
def test_bad_parameter_file_for_l2s_run(tmp_path: Path) -> None:
    params_path = tmp_path / "quick.yaml"
    params_path.write_text(yaml.safe_dump({"data": "phantom", "train": {"patience": "twenty"}}))
    result = run_module("l2s_core.cli", "run", params_path, "--root", tmp_path)
    assert_one_line_error(result, f"l2s: error: {params_path}: train.patience: expected int, got str 'twenty'")


@pytest.mark.slow
def test_study_snapshot_of_another_format_version_for_l2s_run(paths: StudyPaths) -> None:
    atomic_write_json(paths.params_snapshot, {"study": "study", "data": "phantom"})
    snapshot = json.loads(paths.params_snapshot.read_text())
    paths.params_snapshot.write_text(json.dumps({**snapshot, "format_version": 999}))
    result = run_module("l2s_core.cli", "run", paths.params_snapshot, "--root", paths.root)
    assert_one_line_error(
        result, f"l2s: error: {paths.params_snapshot}: format_version 999, this l2s reads version {FORMAT_VERSION}"
    )


def train_command(config_path: Path, launcher: str) -> list[str | Path]:
    """``python -m`` arguments training ``config_path``: ``l2s_core.train`` (which spawns the
    config's ``world_size`` ranks itself), or ``torchrun`` with 2 ranks."""
    if launcher == "torchrun":
        return ["torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "l2s_core.train", config_path]
    return ["l2s_core.train", config_path]


def assert_each_rank_one_line(result: subprocess.CompletedProcess, line: str) -> None:
    """Under ``torchrun``: every line from the ranks is ``line``, each rank exited with status 2,
    and no traceback comes from l2s (torchrun adds its own report of the failed ranks)."""
    from_ranks = [text for text in result.stderr.splitlines() if text.startswith("error: ")]
    assert from_ranks and set(from_ranks) == {line}, result.stderr
    assert "exitcode  : 2" in result.stderr and f'File "{PROJECT / "l2s_core"}' not in result.stderr, result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("world_size, launcher", [(1, "l2s_core.train"), (2, "l2s_core.train"), (1, "torchrun")])
def test_resume_state_that_is_a_pickled_model_for_training(
    phantom: PreparedTask, tmp_path: Path, world_size: int, launcher: str
) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    torch.save(torch.nn.Linear(2, 2), run_dir / "resume.pt")  # torch's refusal of it is a 6-line message
    atomic_write_json(tmp_path / "config.json", small_config(phantom, run_dir, world_size=world_size).to_dict())
    result = run_module(*train_command(tmp_path / "config.json", launcher), "--no-progress")
    expected = f"error: {run_dir / 'resume.pt'}: cannot be read as plain data"
    if launcher == "torchrun":
        assert_each_rank_one_line(
            result, next(line for line in result.stderr.splitlines() if line.startswith(expected))
        )
    else:
        assert_one_line_error(result, expected)


@pytest.mark.slow
def test_corrupt_cache_file_read_by_data_loader_workers_of_two_ranks(phantom: PreparedTask, tmp_path: Path) -> None:
    corrupt = phantom.folder / "cases" / phantom.split["train"][0] / "lowres_image.npy"
    corrupt.write_bytes(corrupt.read_bytes()[:100])
    config = small_config(phantom, tmp_path / "run", world_size=2, num_workers=2)
    atomic_write_json(tmp_path / "config.json", config.to_dict())
    result = run_module("l2s_core.train", tmp_path / "config.json", "--no-progress")
    assert_one_line_error(result, f"error: {corrupt}: corrupt cache file")


@pytest.mark.slow
def test_unprepared_task_folder_for_training(tmp_path: Path) -> None:
    (tmp_path / "not_prepared").mkdir()
    config = TrainConfig(prepared_dir=str(tmp_path / "not_prepared"), run_dir=str(tmp_path / "run"), network="organ")
    atomic_write_json(tmp_path / "config.json", config.to_dict())
    result = run_module("l2s_core.train", tmp_path / "config.json")
    assert_one_line_error(result, f"error: {tmp_path / 'not_prepared' / 'prep.json'}: file not found")
