import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import setuptools
import yaml

from l2s_core.errors import ConfigError
from l2s_core.notebook_files import copy_notebooks, notebooks_dir
from l2s_core.study.layout import StudyPaths

PROJECT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ("prepare", "train", "evaluate", "analysis", "explore")


def test_the_notebooks_are_found_at_the_top_of_the_checkout():
    """An editable install (``make``) finds the notebooks a user opens: ``notebooks/`` at the top."""
    assert notebooks_dir() == PROJECT / "notebooks"
    assert {f"{kind}.ipynb" for kind in NOTEBOOKS} <= {path.name for path in notebooks_dir().iterdir()}


def test_every_package_is_listed_for_the_wheel():
    """``pyproject.toml`` lists the packages (the notebooks' mapping needs a list): none may be forgotten."""
    listed = set(_pyproject()["tool"]["setuptools"]["packages"])
    found = set(setuptools.find_packages(str(PROJECT), include=["l2s_core*"]))
    assert listed == found | {"l2s_core.notebooks"}


def test_the_explorers_default_study_is_the_one_make_reproduce_writes():
    """``explore.ipynb`` opened in JupyterLab runs in ``notebooks/``; its default ``study_dir`` must name
    ``runs/quick`` at the project root, where ``make reproduce`` (``l2s run papermill_params/quick.yaml``) writes."""
    cells = json.loads((notebooks_dir() / "explore.ipynb").read_text())["cells"]
    parameters = next(c for c in cells if "parameters" in c.get("metadata", {}).get("tags", []))
    namespace: dict[str, object] = {}
    exec("".join(parameters["source"]), namespace)  # the parameters cell: plain assignments
    study = yaml.safe_load((PROJECT / "papermill_params" / "quick.yaml").read_text())["study"]
    expected = StudyPaths(PROJECT, study).study_dir
    assert (notebooks_dir() / str(namespace["study_dir"])).resolve() == expected.resolve()


def test_copy_notebooks_never_overwrites(tmp_path):
    copied = copy_notebooks(tmp_path / "mine")
    assert sorted(p.name for p in copied) == sorted(f"{kind}.ipynb" for kind in NOTEBOOKS)
    (tmp_path / "mine" / "train.ipynb").write_text("my edits")
    with pytest.raises(ConfigError, match="already exists; nothing copied"):
        copy_notebooks(tmp_path / "mine")
    assert (tmp_path / "mine" / "train.ipynb").read_text() == "my edits"


@pytest.mark.slow
def test_an_installed_wheel_carries_the_notebooks_and_runs_a_study(tmp_path, l2s_kernel):
    """From a built wheel (not the checkout): the notebooks are inside it, ``l2s notebooks`` copies them
    out, and ``l2s run`` runs a one-organ smoke study end to end with the wheel's notebooks and code."""
    source = tmp_path / "source"  # a copy: setuptools writes build/ into the tree it builds
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(PROJECT / name, source / name)
    for folder in ("l2s_core", "notebooks"):
        shutil.copytree(PROJECT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(source)],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("l2s-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"l2s_core/notebooks/{kind}.ipynb" for kind in NOTEBOOKS} <= names
    site = tmp_path / "site"
    subprocess.run([*pip, "install", "--no-deps", "-q", "--target", str(site), str(wheel)], check=True)
    shutil.rmtree(source)  # nothing of the checkout's copy is left to fall back on

    work = tmp_path / "work"  # a user's folder outside the project
    work.mkdir()
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    cli = [sys.executable, "-m", "l2s_core.cli"]
    where = subprocess.run(
        [sys.executable, "-c", "import l2s_core.notebook_files as n; print(n.notebooks_dir())"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(where).is_relative_to(site)
    copied = subprocess.run([*cli, "notebooks", "mine"], cwd=work, env=env, capture_output=True, text=True)
    assert copied.returncode == 0, copied.stderr
    assert {p.name for p in (work / "mine").iterdir()} == {f"{kind}.ipynb" for kind in NOTEBOOKS}

    smoke = yaml.safe_load((PROJECT / "papermill_params" / "smoke.yaml").read_text())
    smoke.update(organs=["spleen"], task_folders={})
    smoke["prepare"].pop("per_organ")
    (work / "smoke.yaml").write_text(yaml.safe_dump(smoke))
    run = subprocess.run([*cli, "run", "smoke.yaml"], cwd=work, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    assert (work / "reports" / "smoke" / "report.html").is_file()


def _pyproject() -> dict:
    import tomllib

    return tomllib.loads((PROJECT / "pyproject.toml").read_text())
