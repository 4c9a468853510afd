"""``l2s run --dry-run``: the plan and each network's needs, nothing run or written."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml
from msd_builder import write_case, write_dataset_json

from l2s_core.study.dry_run import dry_run, level_extents, network_needs
from l2s_core.study.params import load_study_params

SHIPPED = Path(__file__).resolve().parents[2] / "papermill_params"


def test_smoke_dry_run_lists_every_step_and_writes_nothing(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "l2s_core.cli",
            "run",
            str(SHIPPED / "smoke.yaml"),
            "--dry-run",
            "--root",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    for step in ("prepare/atrium", "train/prostate/localiser", "evaluate/spleen/test", "analysis", "report"):
        assert f"  {step}:" in result.stdout
    assert "prostate baseline:" in result.stdout and "dry run: nothing was run or written" in result.stdout
    assert list(tmp_path.iterdir()) == []


def test_paper_protocol_plans_thin_prostates_within_the_patch(tmp_path):
    """Real MSD prostate sizes (15-24 slices of 320 x 320, two channels): planned, not refused."""
    task = tmp_path / "msd" / "Task05_Prostate"
    ids = ["prostate_00", "prostate_01"]
    for case_id, slices in zip(ids, (15, 23)):
        label = np.zeros((320, 320, slices), np.uint8)
        label[150:170, 150:170, 5:9] = 1
        write_case(
            task, case_id, np.zeros((320, 320, slices, 2), np.float32), label, affine=np.diag([0.6, 0.6, 3.6, 1])
        )
    write_dataset_json(task, ids, labels={"0": "background", "1": "PZ", "2": "TZ"})
    paper = yaml.safe_load((SHIPPED / "paper.yaml").read_text())
    params_path = tmp_path / "paper_prostate.yaml"
    params_path.write_text(
        yaml.safe_dump({**paper, "organs": ["prostate"], "prepare": {**paper["prepare"], "per_organ": {}}})
    )
    params = load_study_params(params_path, data_root=tmp_path / "msd")
    extents = level_extents(params, tmp_path, "prostate")
    assert extents == {"full": (23, 320, 320), "lowres": (7, 160, 160), "crop": (53, 350, 350)}
    baseline = network_needs(params, "prostate", "baseline", extents["full"])
    assert baseline.largest_input == (32, 256, 256)  # 23 slices padded to the U-Net's multiple 16, not 64
    assert baseline.batch_per_process == 1 and 22e6 < baseline.parameters < 23e6
    assert 4 * 2**30 < baseline.peak_training_bytes < 24 * 2**30  # one patch per GPU fits a 24 GB RTX 3090
    assert network_needs(params, "prostate", "localiser", extents["lowres"]).largest_input == (16, 160, 160)
    text = dry_run(params_path, root=tmp_path, data_root=tmp_path / "msd")
    assert "prostate baseline: 22.58 M parameters, input 32x256x256 (images up to 23x320x320)" in text


def test_lowres_extent_before_preparation_uses_the_studys_divisors(tmp_path):
    """quick_released_code.yaml divides (z, y, x) by (2, 3, 2), not the paper's (3, 2, 2)."""
    params = load_study_params(SHIPPED / "quick_released_code.yaml", root=tmp_path)
    assert params.prepare.for_organ("spleen").lowres_divisors == (2, 3, 2)
    extents = level_extents(params, tmp_path, "spleen")
    z, y, x = extents["full"]
    assert extents["lowres"] == (z // 2, y // 3, x // 2)


def test_measured_dry_run_prints_seconds_per_epoch_and_the_projected_wall_time(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "l2s_core.cli", "run", str(SHIPPED / "smoke.yaml"), "--dry-run", "--measure"]
        + ["--epochs-per-run", "7", "--root", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "7 epochs a run" in result.stdout and "projected study wall time on this device" in result.stdout
    assert (
        "prostate baseline: step" in result.stdout
        and "s/epoch" in result.stdout
        and "(paper: 6.4 min)" in result.stdout
    )
    assert list(tmp_path.iterdir()) == []


def test_epochs_per_run_below_one_is_refused_in_one_line(tmp_path):
    import pytest

    from l2s_core.errors import ConfigError

    with pytest.raises(ConfigError, match="--epochs-per-run: must be at least 1, got 0"):
        dry_run(SHIPPED / "smoke.yaml", root=tmp_path, epochs_per_run=0)
