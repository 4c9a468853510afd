"""A tiny trained study (the smoke study's layout, trained in-process in seconds) and its export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from msd_builder import REAL_CT, write_case, write_dataset_json

from l2s_core.data.prepare import prepare_task
from l2s_core.data.prepared_layout import PrepareSettings
from l2s_core.deploy.export import export_model
from l2s_core.evaluate import evaluate_organ
from l2s_core.study.plan import StudyPaths
from l2s_core.train.config import TrainConfig
from l2s_core.train.launch import train_run

SHAPE = (12, 32, 32)
#: Runs per network: two converged pairs and one baseline, so that --runs all averages something.
RUNS = {"baseline": 1, "localiser": 2, "organ": 2}


def _bright_box_task(root: Path) -> Path:
    """Ten cases of a bright box (the organ) on a darker noisy background."""
    rng = np.random.default_rng(0)
    ids = [f"box_{i}" for i in range(10)]
    for i, case_id in enumerate(ids):
        label = np.zeros(SHAPE, np.uint8)
        label[3 + i % 3 : 9 + i % 3, 8 + i % 5 : 20 + i % 5, 10:24] = 1
        image = (100.0 * label + rng.normal(0, 20, SHAPE)).astype(np.float32)
        write_case(
            root, case_id, image.transpose(2, 1, 0), label.transpose(2, 1, 0), affine=np.diag([1.5, 1.5, 3.0, 1.0])
        )
    write_dataset_json(root, ids, labels={"0": "background", "1": "spleen"})
    return root


@pytest.fixture(scope="session")
def study_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``runs/tiny`` with a prepared spleen task, trained runs and evaluation CSVs."""
    paths = StudyPaths(tmp_path_factory.mktemp("study"), "tiny")
    prepared = paths.prepared_dir("spleen")
    prepare_task(
        _bright_box_task(paths.root / "Task09_Spleen"),
        prepared,
        PrepareSettings(crop_margin=4),
        progress=False,
        workers=1,
    )
    for network, n in RUNS.items():
        for run in range(n):
            train_run(
                TrainConfig(
                    prepared_dir=str(prepared),
                    run_dir=str(paths.run_dir("spleen", network, run)),
                    network=network,
                    seed=run,
                    base_channels=4,
                    depth=1,
                    patch_size=(8, 16, 16),
                    batch_size=2,
                    samples_per_epoch=8,
                    lr=1e-2,
                    max_epochs=4,
                    patience=4,
                    convergence_threshold=0.0,
                    device="cpu",
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


@pytest.fixture(scope="session")
def real_ct() -> Path:
    """The TotalSegmentator example CT folder in ../shared (skips when it is absent)."""
    if not (REAL_CT / "example_ct_sm.nii.gz").exists():
        pytest.skip(f"real CT example not found at {REAL_CT} (the shared data folder sits beside the project)")
    return REAL_CT
