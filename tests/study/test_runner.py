import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml
from msd_builder import write_small_task
from nbformat.v4 import new_code_cell, new_notebook
from process_tools import descendants, environment, kill_and_reap, state, wait_gone, wait_until

from l2s_core.errors import ConfigError, StudyLockedError
from l2s_core.study import execute
from l2s_core.study.layout import Step, StudyPaths
from l2s_core.study.runner import gpu_slots, run_study
from l2s_core.study.status import UnitStatus
from l2s_core.study.step_records import study_lock

# Test notebooks: each appends "start <step id>" and "end <step id>" to <root>/executions.log,
# hangs when <root>/hang-<step id with - for /> exists (its pid in pid-<...>; first preparing the MSD task
# task-<...> with 2 worker processes when it exists), fails when fail-<...> exists, and
# writes the outputs the runner checks (a run: its summary and best.pt). Run 0 of spleen/baseline does not converge.
_STEP_CODE = """
import os
import time
from pathlib import Path

from l2s_core.data.prepare import prepare_task
from l2s_core.files import atomic_write_json, atomic_write_text
from l2s_core.study.layout import Step, StudyPaths
from l2s_core.train.config import TrainConfig
from l2s_core.train.run_files import BEST_FILE, SUMMARY_FILE, RunSummary

if KIND == "analysis":
    paths = StudyPaths(Path(study_dir).parents[1], Path(study_dir).name)
else:
    paths = StudyPaths(Path(root), Path(params_path).parent.name)
arguments = dict(organ=organ, network=network, run=run, split=split)
step = Step(KIND, **{k: v for k, v in arguments.items() if v is not None})
flag = step.step_id.replace("/", "-")


def log(event):
    with open(paths.root / "executions.log", "a") as handle:
        handle.write(f"{event} {step.step_id}\\n")


log("start")
if (paths.root / f"hang-{flag}").exists():
    atomic_write_text(paths.root / f"pid-{flag}", str(os.getpid()))
    if (paths.root / f"task-{flag}").exists():
        prepare_task(paths.root / f"task-{flag}", paths.root / f"prepared-{flag}", workers=2, progress=False)
    time.sleep(600)
if (paths.root / f"fail-{flag}").exists():
    raise RuntimeError("injected failure")
if KIND == "prepare":
    for name in ("split.json", "prep.json"):
        atomic_write_json(paths.prepared_dir(organ) / name, {})
elif KIND == "train":
    converged = not (organ == "spleen" and network == "baseline" and run == 0)
    config = TrainConfig(prepared_dir=".", run_dir=".", network=network, seed=run)
    summary = RunSummary(converged, False, 1, 0.5, 1.0, 1, "patience", network, run, config)
    summary.write(paths.run_dir(organ, network, run) / SUMMARY_FILE)
    (paths.run_dir(organ, network, run) / BEST_FILE).touch()  # the best weights, as a real run leaves them
elif KIND == "evaluate":
    for name in (f"{split}_cases.csv", f"{split}_runs.csv"):
        atomic_write_text(paths.evaluation_dir(organ) / name, "x\\n")
print(f"finished {step.step_id}")
log("end")
"""

STEP_IDS = [
    "prepare/spleen",
    "prepare/liver",
    "train/spleen/baseline/run_00",
    "train/spleen/baseline/run_01",
    "train/spleen/organ/run_00",
    "train/liver/baseline/run_00",
    "train/liver/organ/run_00",
    "evaluate/spleen/test",
    "evaluate/liver/test",
    "analysis",
]


def write_test_notebooks(folder: Path) -> Path:
    folder.mkdir()
    for kind in ("prepare", "train", "evaluate", "analysis"):
        names = ["study_dir"] if kind == "analysis" else ["params_path", "root", "gpus"]
        parameters = "\n".join(f"{name} = None" for name in [*names, "organ", "network", "run", "split"])
        notebook = new_notebook(
            cells=[
                new_code_cell(parameters, metadata={"tags": ["parameters"]}),
                new_code_cell(f"KIND = {kind!r}\n" + _STEP_CODE),
            ],
            metadata={"kernelspec": {"name": "l2s", "language": "python", "display_name": "l2s"}},
        )
        nbformat.write(notebook, folder / f"{kind}.ipynb")
    return folder


@pytest.fixture
def study(tmp_path, l2s_kernel):
    """A tiny study (two organs, two networks, the test split) with the test notebooks."""
    params_path = tmp_path / "tiny.yaml"
    params_path.write_text(
        yaml.safe_dump(
            {
                "data": "phantom",
                "organs": ["spleen", "liver"],
                "networks": ["baseline", "organ"],
                "runs": 1,
                "max_runs": 3,
                "evaluate": {"splits": ["test"]},
            }
        )
    )
    root = tmp_path / "root"
    root.mkdir()
    return params_path, root, write_test_notebooks(tmp_path / "notebooks")


def events(root: Path) -> list[tuple[str, str]]:
    log = root / "executions.log"
    return [tuple(line.split(" ", 1)) for line in log.read_text().splitlines()] if log.exists() else []


def assert_dependency_order(log: list[tuple[str, str]]) -> None:
    start = {step_id: i for i, (event, step_id) in reversed(list(enumerate(log))) if event == "start"}
    end = {step_id: i for i, (event, step_id) in enumerate(log) if event == "end"}
    needs = {step_id: [] for step_id in STEP_IDS}
    for step_id in STEP_IDS:
        parts = step_id.split("/")
        if parts[0] == "train":
            needs[step_id].append(f"prepare/{parts[1]}")
            if parts[3] == "run_01":
                needs[step_id].append("/".join(parts[:3]) + "/run_00")
        elif parts[0] == "evaluate":
            needs[step_id] += [s for s in STEP_IDS if s.startswith(f"train/{parts[1]}/")]
        elif parts[0] == "analysis":
            needs[step_id] += [s for s in STEP_IDS if s.startswith("evaluate/")]
    for step_id, required in needs.items():
        assert all(end[r] < start[step_id] for r in required), (step_id, required)


def ended_once(log: list[tuple[str, str]]) -> bool:
    ends = [step_id for event, step_id in log if event == "end"]
    return sorted(ends) == sorted(STEP_IDS)


def test_study_runs_in_dependency_order_and_is_not_redone(study, capsys):
    params_path, root, notebooks = study
    status = run_study(params_path, root=root, jobs=2, notebooks_dir=notebooks, progress=False)
    log = events(root)
    assert ended_once(log) and len(log) == 2 * len(STEP_IDS)
    assert_dependency_order(log)
    assert status.failed == () and all(u.state == "done" for u in status.units.values())
    assert status.units["train/spleen/baseline"] == UnitStatus("done", runs=2, converged=1)
    assert status.units["train/liver/organ"] == UnitStatus("done", runs=1, converged=1)
    paths = StudyPaths(root, "tiny")
    assert Path(status.report) == paths.report_path and "finished analysis" in paths.report_path.read_text()
    assert "KIND" not in paths.report_path.read_text()  # code cells are hidden
    assert paths.executed_notebook(Step("train", "liver", "organ", run=0)).is_file()
    assert "spleen  done" in capsys.readouterr().out

    again = run_study(params_path, root=root, jobs=1, notebooks_dir=notebooks, progress=False)
    assert events(root) == log
    assert again.units == status.units

    params_path.write_text(params_path.read_text().replace("runs: 1", "runs: 2"))  # more converged runs wanted
    run_study(params_path, root=root, jobs=1, notebooks_dir=notebooks, progress=False)
    redone = [step_id for event, step_id in events(root)[len(log) :] if event == "end"]
    assert redone == [
        "train/spleen/baseline/run_02",
        "train/spleen/organ/run_01",
        "train/liver/baseline/run_01",
        "train/liver/organ/run_01",
        "evaluate/spleen/test",
        "evaluate/liver/test",
        "analysis",
    ]


def test_failure_is_recorded_and_independent_steps_continue(study):
    params_path, root, notebooks = study
    (root / "fail-train-spleen-organ-run_00").touch()
    status = run_study(params_path, root=root, notebooks_dir=notebooks, progress=False)
    assert status.failed == ("train/spleen/organ",)
    assert status.units["train/spleen/organ"].error == "RuntimeError: injected failure"
    states = {unit_id: unit.state for unit_id, unit in status.units.items()}
    assert states["evaluate/spleen/test"] == "blocked"  # the analysis and report cover what finished
    assert states["evaluate/liver/test"] == states["train/spleen/baseline"] == states["analysis"] == "done"
    assert states["report"] == "done" and status.report is not None
    paths = StudyPaths(root, "tiny")
    failed = Step("train", "spleen", "organ", run=0)
    record = paths.read_record(failed)
    assert record.state == "failed" and record.error == "RuntimeError: injected failure"
    assert "injected failure" in Path(record.notebook).read_text()  # the failing notebook is kept

    (root / "fail-train-spleen-organ-run_00").unlink()
    status = run_study(params_path, root=root, notebooks_dir=notebooks, progress=False)
    assert status.failed == () and status.report is not None
    log = events(root)
    ends = [step_id for event, step_id in log if event == "end"]
    assert sorted(set(ends)) == sorted(STEP_IDS)
    assert ends.count("analysis") == 2  # once over what finished, once more with the mended organ
    assert all(ends.count(step_id) == 1 for step_id in STEP_IDS if step_id != "analysis")
    assert [s for e, s in log if e == "start"].count("train/spleen/organ/run_00") == 2


def test_killed_study_resumes_without_losing_or_repeating_steps(study, capsys):
    params_path, root, notebooks = study
    hang = root / "hang-train-liver-baseline-run_00"
    hang.touch()
    write_small_task(root / "task-train-liver-baseline-run_00")  # prepared by the hanging step's 2 workers
    script = (
        "from l2s_core.study.runner import run_study; "
        f"run_study({str(params_path)!r}, root={str(root)!r}, notebooks_dir={str(notebooks)!r}, progress=False)"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=environment(stop_at="writing full_image.npy"),
    )  # the workers stop mid-case
    kernel_pid_file = root / "pid-train-liver-baseline-run_00"
    try:
        wait_until(lambda: process.poll() is None and kernel_pid_file.exists(), "the runner executing the hanging step")
        kernel = int(kernel_pid_file.read_text())
        wait_until(lambda: sum(state(pid) == "T" for pid in descendants(kernel)) == 2, "the step's workers mid-case")
        kernel_and_workers = [kernel, *descendants(kernel)]
    finally:
        kill_and_reap(process)
    wait_gone(kernel_and_workers, "the kernel of the SIGKILLed runner and its workers ending")
    before = events(root)
    hang.unlink()

    status = run_study(params_path, root=root, notebooks_dir=notebooks, progress=False)
    assert f"taking over the stale lock of pid {process.pid}" in capsys.readouterr().out
    assert status.failed == () and status.report is not None
    log = events(root)
    assert log[: len(before)] == before
    assert ended_once(log)
    starts = [step_id for event, step_id in log if event == "start"]
    assert starts.count("train/liver/baseline/run_00") == 2
    assert sorted(set(starts)) == sorted(STEP_IDS) and len(starts) == len(STEP_IDS) + 1


def test_second_runner_is_refused_by_the_lock(study):
    params_path, root, notebooks = study
    lock_path = StudyPaths(root.resolve(), "tiny").lock_path
    with study_lock(lock_path):
        with pytest.raises(StudyLockedError) as caught:
            run_study(params_path, root=root, notebooks_dir=notebooks, progress=False)
    assert str(caught.value).startswith(f"{lock_path}: held by pid {os.getpid()} on ")
    assert events(root) == []


def test_missing_kernel_is_reported(study, monkeypatch):
    params_path, root, notebooks = study
    monkeypatch.setattr(execute, "KERNEL_NAME", "l2s-not-installed")
    with pytest.raises(
        ConfigError,
        match="Jupyter kernel 'l2s-not-installed': not installed; install it into this "
        "environment with `python -m ipykernel install --sys-prefix",
    ):
        run_study(params_path, root=root, notebooks_dir=notebooks, progress=False)


def test_submitit_executor_runs_the_steps_as_jobs(tmp_path, l2s_kernel):
    params_path = tmp_path / "tiny.yaml"
    params_path.write_text(
        yaml.safe_dump(
            {"data": "phantom", "organs": ["liver"], "networks": ["organ"], "runs": 1, "evaluate": {"splits": ["test"]}}
        )
    )
    root = tmp_path / "root"
    root.mkdir()
    notebooks = write_test_notebooks(tmp_path / "notebooks")
    (notebooks / "analysis.ipynb").unlink()  # a study without analysis stops after evaluation
    status = run_study(
        params_path, root=root, jobs=2, executor="submitit-local", notebooks_dir=notebooks, progress=False
    )
    assert status.failed == () and status.report is None
    assert list(status.units) == ["prepare/liver", "train/liver/organ", "evaluate/liver/test"]
    ends = [step_id for event, step_id in events(root) if event == "end"]
    assert ends == ["prepare/liver", "train/liver/organ/run_00", "evaluate/liver/test"]
    record = StudyPaths(root, "tiny").read_record(Step("train", "liver", "organ", run=0))
    assert record.state == "done"
    assert len(list((root / "runs" / "tiny" / "submitit").glob("*/*_result.pkl"))) == 3  # one job per step


def test_gpu_slots():
    assert gpu_slots(3, 2, []) == [None, None, None]
    assert gpu_slots(3, 2, ["0", "1", "2", "3", "4"]) == ["0,1", "2,3"]
    assert gpu_slots(1, 1, ["4", "6"]) == ["4"]
    with pytest.raises(ConfigError, match="2 GPUs per run, but only 1 visible"):
        gpu_slots(1, 2, ["0"])


def test_bad_runner_options(study):
    params_path, root, notebooks = study
    with pytest.raises(ConfigError, match="--jobs: must be at least 1"):
        run_study(params_path, root=root, jobs=0, notebooks_dir=notebooks)
    with pytest.raises(ConfigError, match="--executor: must be one of local, slurm, submitit-local"):
        run_study(params_path, root=root, executor="pbs", notebooks_dir=notebooks)
