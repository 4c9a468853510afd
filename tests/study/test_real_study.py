"""A real MSD task end to end: the first cases of ../shared/data/Task04_Hippocampus through
``l2s run`` with ``papermill_params/hippocampus.yaml`` (shrunk to seconds: few cases, tiny
networks, two epochs) to the report, then ``l2s export`` and ``l2s predict`` on real scans
stored as uint8 and as float32. Skipped with the reason where the data are absent; in CI their
absence fails the run (tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import yaml
from cli_runner import run_l2s
from msd_builder import real_hippocampus

from l2s_core.study.layout import StudyPaths
from l2s_core.study.runner import run_study

HIPPOCAMPUS_PARAMS = Path(__file__).resolve().parents[2] / "papermill_params" / "hippocampus.yaml"
#: Cases the test study takes (sorted ids: hippocampus_001 has a uint8 image, hippocampus_003 a
#: float32 label): split 10 / 3 / 3.
MAX_CASES = 16
#: What the test changes in hippocampus.yaml: seconds instead of minutes.
SECONDS = {
    "study": "hippocampus_test",
    "runs": 1,
    "max_runs": 1,
    "prepare": {"max_cases": MAX_CASES, "workers": 1},
    "train": {
        "base_channels": 2,
        "depth": 1,
        "lr": 0.01,
        "max_epochs": 2,
        "patience": 2,
        "convergence_threshold": 0.0,  # every run counts, so that every method is evaluated
        "device": "cpu",
    },
    "evaluate": {"device": "cpu"},
}


def _merged(base: dict, changes: dict) -> dict:
    """``base`` with ``changes`` applied, nested mappings merged key by key."""
    merged = dict(base)
    for key, value in changes.items():
        merged[key] = _merged(base.get(key) or {}, value) if isinstance(value, dict) else value
    return merged


@pytest.fixture(scope="module")
def real_study(tmp_path_factory: pytest.TempPathFactory, l2s_kernel: str) -> StudyPaths:
    """The shrunk hippocampus study, run by ``l2s run`` with two jobs."""
    source = real_hippocampus()
    root = tmp_path_factory.mktemp("real_study")
    params = root / "hippocampus_test.yaml"
    params.write_text(yaml.safe_dump(_merged(yaml.safe_load(HIPPOCAMPUS_PARAMS.read_text()), SECONDS)))
    status = run_study(params, root=root, jobs=2, progress=False, data_root=source.parent)
    assert status.failed == (), status.units
    return StudyPaths(root, "hippocampus_test")


@pytest.mark.slow
def test_real_cases_run_through_the_protocol_to_a_report(real_study: StudyPaths) -> None:
    paths = real_study
    cases = pd.concat(pd.read_csv(paths.evaluation_dir("hippocampus") / f"{s}_cases.csv") for s in ("val", "test"))
    assert set(cases["method"]) == {"baseline", "two_stage", "gt_localised"} and len(set(cases["case_id"])) == 6
    assert (cases.loc[cases["method"] == "baseline", "box_share"] == 1.0).all()
    gt = cases[cases["method"] == "gt_localised"]
    assert (gt["box_share"] < 1.0).all() and (gt["box_foreground_share"] > 0.03).all()  # a pre-cropped organ
    report = paths.report_path.read_text()
    for text in (
        "MSD-layout task folders",
        "hippocampus: Hippocampus (named so by its dataset.json",
        "What localisation changed",
        "<strong>hippocampus</strong> (test): the organ fills",
        "Localisation context",
    ):
        assert text in report, text
    assert "Decathlon tasks" not in report


@pytest.mark.slow
def test_the_real_study_exports_a_model_that_predicts_real_uint8_and_float32_scans(
    real_study: StudyPaths, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = real_study
    source = real_hippocampus()
    code, out, err = run_l2s(capsys, "export", paths.study_dir, "--organ", "hippocampus", "--out", tmp_path / "model")
    assert code == 0, err
    scans = [source / "imagesTr" / f"hippocampus_{i}.nii.gz" for i in ("001", "003")]  # uint8, float32 images
    assert [str(nib.load(s).get_data_dtype()) for s in scans] == ["uint8", "float32"]
    for method in ("two_stage", "baseline"):
        code, out, err = run_l2s(
            capsys, "predict", tmp_path / "model", *scans, "--out", tmp_path / method, "--method", method
        )
        assert code == 0, err
        table = pd.read_csv(tmp_path / method / "predictions.csv")
        assert len(table) == 2 and set(table["method"]) == {method}
        for scan in scans:
            mask = nib.load(tmp_path / method / scan.name)
            assert mask.shape == nib.load(scan).shape and np.allclose(mask.affine, nib.load(scan).affine)
            assert set(np.unique(np.asarray(mask.dataobj))) <= {0, 1}
