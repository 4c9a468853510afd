"""Shared fixtures: tiny synthetic MSD task folders with a cuboid organ, raw and prepared, and a tiny
trained study with its exported model folder (the deploy and viewer tests')."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from config_builder import cpu_config
from msd_builder import (
    CUBE_ORGAN,
    CUBE_SHAPE,
    REAL_CT,
    REAL_HIPPOCAMPUS,
    require_real_ct_in_ci,
    require_real_hippocampus_in_ci,
    write_case,
    write_cuboid_task,
    write_dataset_json,
)

from l2s_core.boxes import Box
from l2s_core.data.cache import PreparedTask
from l2s_core.data.prepare import prepare_task
from l2s_core.data.prepared_layout import PrepareSettings
from l2s_core.deploy.export import export_model
from l2s_core.evaluate import evaluate_organ
from l2s_core.study.execute import KERNEL_NAME
from l2s_core.study.layout import StudyPaths
from l2s_core.train.launch import train_run

#: Volume shape of the trained study's cases.
STUDY_SHAPE = (12, 32, 32)
#: Runs per network: two converged pairs and one baseline, so that --runs all averages something.
STUDY_RUNS = {"baseline": 1, "localiser": 2, "organ": 2}


def pytest_configure(config: pytest.Config) -> None:
    """Checks before any test runs: see :func:`require_real_ct_in_ci` and
    :func:`require_real_hippocampus_in_ci`."""
    require_real_ct_in_ci(os.environ, REAL_CT)
    require_real_hippocampus_in_ci(os.environ, REAL_HIPPOCAMPUS)


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread() -> None:
    """One torch/OpenMP thread here and in every process a test starts: the volumes are tiny, and on
    a shared 2-core machine a second thread makes their convolutions many times slower."""
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


@pytest.fixture
def make_task(tmp_path: Path) -> Callable[..., Path]:
    """Factory writing an MSD task folder under ``tmp_path``; returns the folder.

    Arguments of the factory:
        n_cases: number of training cases ``cube_0``, ``cube_1``, ...
        shape: ``(z, y, x)`` volume shape.
        organ: half-open ``(z0, y0, x0, z1, y1, x1)`` organ box in ``(z, y, x)`` indices, one
            for all cases or a sequence with one per case.
        affine: 4×4 affine; the default (diagonal, positive) keeps the RAS ``(z, y, x)``
            arrays of preparation equal to the arrays written here.
        noise: standard deviation of the Gaussian noise added to the image (organ = 1, rest = 0).
        name: task folder name.
    """

    def make(
        n_cases: int = 5,
        shape: tuple[int, int, int] = CUBE_SHAPE,
        organ: Box | Sequence[Box] = CUBE_ORGAN,
        affine: np.ndarray | None = None,
        noise: float = 0.1,
        name: str = "Task00_Cube",
    ) -> Path:
        root = tmp_path / name
        boxes = [organ] * n_cases if isinstance(organ[0], int) else list(organ)
        rng = np.random.default_rng(0)
        ids = [f"cube_{i}" for i in range(n_cases)]
        for case_id, (z0, y0, x0, z1, y1, x1) in zip(ids, boxes):
            label = np.zeros(shape, np.uint8)
            label[z0:z1, y0:y1, x0:x1] = 1
            image = (label + rng.normal(0, noise, shape)).astype(np.float32)
            write_case(
                root,
                case_id,
                image.transpose(2, 1, 0),
                label.transpose(2, 1, 0),
                affine=np.diag([1.0, 1.0, 2.0, 1.0]) if affine is None else affine,
            )
        write_dataset_json(root, ids, labels={"0": "background", "1": "organ"})
        return root

    return make


@pytest.fixture
def prepared_task(make_task: Callable[..., Path], tmp_path: Path) -> Callable[..., PreparedTask]:
    """Factory: :func:`make_task` with the same arguments, prepared into ``tmp_path/prepared/<name>``."""

    def prepare(**task_args) -> PreparedTask:
        task_dir = make_task(**task_args)
        out_dir = tmp_path / "prepared" / task_dir.name
        prepare_task(task_dir, out_dir, progress=False, workers=1)
        return PreparedTask(out_dir)

    return prepare


@pytest.fixture(scope="session")
def l2s_kernel() -> str:
    """The project's kernel, installed into this environment (``sys.prefix``) when missing."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec(KERNEL_NAME)
    except NoSuchKernel:
        subprocess.run(
            [sys.executable, "-m", "ipykernel", "install", "--sys-prefix", "--name", KERNEL_NAME],
            check=True,
            capture_output=True,
        )
    return KERNEL_NAME


def _bright_box_task(root: Path) -> Path:
    """Ten cases of a bright box (the organ) on a darker noisy background."""
    boxes = [(3 + i % 3, 8 + i % 5, 10, 9 + i % 3, 20 + i % 5, 24) for i in range(10)]
    return write_cuboid_task(root, STUDY_SHAPE, boxes, "box", 100.0, 20.0, (1.5, 1.5, 3.0), "spleen")


@pytest.fixture(scope="session")
def study_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``runs/tiny`` with a prepared spleen task, trained runs and evaluation CSVs (the smoke
    study's layout, trained in-process in seconds)."""
    paths = StudyPaths(tmp_path_factory.mktemp("study"), "tiny")
    prepared = paths.prepared_dir("spleen")
    prepare_task(
        _bright_box_task(paths.root / "Task09_Spleen"),
        prepared,
        PrepareSettings(crop_margin=4),
        progress=False,
        workers=1,
    )
    for network, n in STUDY_RUNS.items():
        for run in range(n):
            train_run(
                cpu_config(
                    prepared,
                    paths.run_dir("spleen", network, run),
                    network,
                    seed=run,
                    depth=1,
                    patch_size=(8, 16, 16),
                    samples_per_epoch=8,
                    lr=1e-2,
                    max_epochs=4,
                    patience=4,
                    convergence_threshold=0.0,
                ),
                progress=False,
            )
    for split in ("val", "test"):
        evaluate_organ(paths.organ_dir("spleen"), split, progress=False)
    return paths.study_dir


@pytest.fixture(scope="session")
def model_dir(study_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The study's spleen exported by :func:`export_model`."""
    out = tmp_path_factory.mktemp("models") / "spleen"
    export_model(study_dir, "spleen", out)
    return out
