"""``l2s predict`` on NIfTI files (RAS, LPS, axis-permuted) and DICOM series: masks on the input
grid, RTSTRUCT read back by an independent reader, predictions.csv, bad input in one line and
nothing written (the scan and box input itself: ``test_scan_input.py``)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from cli_runner import assert_one_line_error, run_l2s

from l2s_core.data.io import read_image, read_label
from l2s_core.deploy.predict import PREDICTION_COLUMNS

CT = "example_ct_sm.nii.gz"


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0, b > 0
    return 2.0 * float((a & b).sum()) / max(float(a.sum() + b.sum()), 1.0)


def _reoriented_copies(real_ct: Path, folder: Path) -> dict[str, Path]:
    """The real CT as stored (RAS), flipped to LPS and with its axes permuted (k, i, j)."""
    img = nib.load(str(real_ct / CT))
    data, affine = np.asarray(img.dataobj), img.affine
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    flip[:2, 3] = [data.shape[0] - 1, data.shape[1] - 1]
    permute = np.eye(4)[[2, 0, 1, 3]].T  # new voxel (a, b, c) = old (b, c, a)
    copies = {"lps": (data[::-1, ::-1, :], affine @ flip), "permuted": (data.transpose(2, 0, 1), affine @ permute)}
    folder.mkdir()
    paths = {"ras": real_ct / CT}
    for name, (array, new_affine) in copies.items():
        nib.save(nib.Nifti1Image(np.ascontiguousarray(array), new_affine), folder / f"{name}.nii.gz")
        paths[name] = folder / f"{name}.nii.gz"
    return paths


@pytest.fixture(scope="module")
def series_dir(real_ct: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from dicom_builder import write_nifti_as_series

    folder = tmp_path_factory.mktemp("dicom") / "ct_series"
    write_nifti_as_series(folder, real_ct / CT)
    return folder


def test_predict_on_ras_lps_and_permuted_nifti_lands_on_each_source_grid(
    model_dir: Path, real_ct: Path, tmp_path: Path, capsys
) -> None:
    inputs = _reoriented_copies(real_ct, tmp_path / "in")
    code, out, err = run_l2s(capsys, "predict", model_dir, *inputs.values(), "--out", tmp_path / "out", "--runs", "0")
    assert code == 0, err
    masks = {}
    for name, path in inputs.items():
        source, written = nib.load(str(path)), nib.load(str(tmp_path / "out" / path.name))
        assert written.shape == source.shape[:3] and np.array_equal(written.affine, source.affine)
        masks[name] = read_label(tmp_path / "out" / path.name)[0]
    assert masks["ras"].any()
    assert np.array_equal(masks["lps"], masks["ras"]) and np.array_equal(masks["permuted"], masks["ras"])
    table = pd.read_csv(tmp_path / "out" / "predictions.csv")
    assert list(table.columns) == list(PREDICTION_COLUMNS) and len(table) == 3
    spacing = read_image(real_ct / CT)[1].spacing
    assert table["volume_ml"].iloc[0] == pytest.approx(masks["ras"].sum() * math.prod(spacing) / 1000)
    assert set(table["fallback"]) <= {"none", "whole_image"}


@pytest.mark.parametrize("method", ["two_stage", "baseline"])
def test_mean_of_all_runs_and_each_method(model_dir: Path, real_ct: Path, tmp_path: Path, method: str) -> None:
    from l2s_core.deploy.predict import predict_scans

    table = predict_scans(model_dir, [real_ct / CT], tmp_path, method=method, runs=None, progress=False)
    assert table["runs"].iloc[0] == "all" and (method == "baseline") == (
        table["box"].iloc[0] == "" or pd.isna(table["box"].iloc[0])
    )
    mask = read_label(tmp_path / CT)[0]
    assert mask.shape == read_image(real_ct / CT)[0].shape


def test_predict_on_a_dicom_series_matches_the_nifti_and_writes_a_readable_rtstruct(
    model_dir: Path, real_ct: Path, series_dir: Path, tmp_path: Path, capsys
) -> None:
    from dicom_builder import independent_mask

    code, out, err = run_l2s(capsys, "predict", model_dir, series_dir, real_ct / CT, "--out", tmp_path, "--runs", "0")
    assert code == 0, err
    from_dicom, from_nifti = read_label(tmp_path / "ct_series.nii.gz")[0], read_label(tmp_path / CT)[0]
    assert np.array_equal(from_dicom, from_nifti)
    rtstruct = tmp_path / "ct_series_rtstruct.dcm"
    # the ROI has the organ's TG-263 name; (i, j, k) of the series = the NIfTI's (RAS) order
    read_back = independent_mask(series_dir, rtstruct, "Spleen")
    source_mask = np.asarray(nib.load(str(tmp_path / "ct_series.nii.gz")).dataobj)
    dice = _dice(read_back, source_mask)
    print(f"RTSTRUCT of the prediction read back independently: Dice {dice:.4f}", file=sys.stderr)
    assert dice >= 0.95


def test_unknown_pair_and_same_output_names_are_refused(model_dir: Path, real_ct: Path, tmp_path: Path, capsys) -> None:
    assert_one_line_error(
        capsys, "predict", model_dir, real_ct / CT, "--out", tmp_path, "--runs", "5", names="--runs", says="0..1"
    )
    (tmp_path / "a").mkdir()
    copy = tmp_path / "a" / CT
    copy.write_bytes((real_ct / CT).read_bytes())
    assert_one_line_error(
        capsys, "predict", model_dir, real_ct / CT, copy, "--out", tmp_path / "o", names=copy, says="same output name"
    )


def test_a_bad_input_after_a_good_one_writes_nothing(model_dir: Path, real_ct: Path, tmp_path: Path, capsys) -> None:
    """Every input is read and checked before any output is written (the good scan's mask was
    written, without a predictions.csv row, before the bad one stopped the run)."""
    bad = tmp_path / "bad.nii.gz"
    data = (real_ct / CT).read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    out = tmp_path / "out"
    assert_one_line_error(
        capsys, "predict", model_dir, real_ct / CT, bad, "--out", out, "--runs", "0", names=bad, says="truncated"
    )
    assert not out.exists() or not any(out.iterdir())


def test_predictions_csv_lists_exactly_the_masks_of_its_folder_and_a_held_folder_is_refused(
    model_dir: Path, real_ct: Path, tmp_path: Path, capsys
) -> None:
    """Two runs into one folder kept only the last run's rows (both exit 0); now each scan's row
    joins the table once its files are written, and a folder another run holds is refused."""
    other = tmp_path / "in" / "other.nii.gz"
    other.parent.mkdir()
    other.write_bytes((real_ct / CT).read_bytes())
    out = tmp_path / "out"
    for inputs in ([real_ct / CT], [other], [real_ct / CT]):
        code, _, err = run_l2s(capsys, "predict", model_dir, *inputs, "--out", out, "--runs", "0")
        assert code == 0, err
    table = pd.read_csv(out / "predictions.csv")
    masks = sorted(p.name for p in out.glob("*.nii.gz"))
    assert sorted(Path(m).name for m in table["mask"]) == masks == sorted([CT, "other.nii.gz"])
    from l2s_core.deploy.prediction_table import output_lock

    with output_lock(out):  # another run writing into the folder
        assert_one_line_error(
            capsys, "predict", model_dir, other, "--out", out, "--runs", "0", names=out, says="another `l2s predict`"
        )
