"""Scan input of ``l2s predict`` (``l2s_core.deploy.scan_input``): a scan read on the channel and
``(z, y, x)`` grid the model expects, the box given in voxels or in mm, and each refusal (another
channel count or modality, a damaged series, a bad or missing box, doubled output names) in one
line naming the file or the option; through ``l2s predict`` and on the functions themselves."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from cli_runner import assert_one_line_error, run_l2s

from l2s_core.data.io import read_image, read_label
from l2s_core.deploy.model_folder import ModelCard
from l2s_core.deploy.scan_input import (
    box_from_mm,
    check_box_given,
    check_unique_names,
    chosen_box,
    normalisation_key,
    output_name,
    read_scan,
    scans_of,
)
from l2s_core.errors import ConfigError, ModelFolderError

CT = "example_ct_sm.nii.gz"


def _card(**changes) -> ModelCard:
    """A one-channel CT card (no networks: reading a scan needs none), with ``changes``."""
    fields = {
        "organ": "spleen",
        "modality": "CT",
        "n_channels": 1,
        "channel": 0,
        "organ_labels": None,
        "labels": {"0": "background", "1": "spleen"},
        "normalisation": "zscore",
        "ct_stats": None,
        "crop_margin": 4,
        "lowres_divisors": (2, 2, 2),
        "networks": (),
        "pairs": (),
    }
    return ModelCard(**{**fields, **changes})


def _two_channels(path: Path) -> np.ndarray:
    """A two-channel NIfTI of nibabel shape ``(x, y, z, c) = (4, 5, 6, 2)`` (channel c holds
    ``1000 c`` + voxel index) with an identity affine; returns its data."""
    voxels = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    data = np.stack([voxels, voxels + 1000.0], axis=-1)
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    return data


def test_manual_box_in_voxels_and_in_mm_agree(model_dir: Path, real_ct: Path, tmp_path: Path, capsys) -> None:
    box = (5, 20, 60, 20, 60, 100)
    image, meta = read_image(real_ct / CT)
    corners_ras = [meta.affine @ np.array([x, y, z, 1.0]) for z, y, x in (box[:3], np.array(box[3:]) - 1)]
    corners_lps = [c[:3] * np.array([-1, -1, 1]) for c in corners_ras]
    assert box_from_mm([*corners_lps[0], *corners_lps[1]], meta, image.shape) == box
    run_l2s(capsys, "predict", model_dir, real_ct / CT, "--out", tmp_path / "v", "--method", "box", "--box", *box)
    code, _, err = run_l2s(
        capsys,
        "predict",
        model_dir,
        real_ct / CT,
        "--out",
        tmp_path / "m",
        "--method",
        "box",
        "--box-mm",
        *corners_lps[0],
        *corners_lps[1],
    )
    assert code == 0, err
    voxel, mm = (read_label(tmp_path / f / CT)[0] for f in ("v", "m"))
    assert np.array_equal(voxel, mm)
    outside = np.ones(voxel.shape, bool)
    outside[1:24, 16:64, 56:104] = False  # the box grown by the crop margin (4)
    assert not voxel[outside].any()
    assert pd.read_csv(tmp_path / "v" / "predictions.csv")["box"].iloc[0] == "1 16 56 24 64 104"
    assert_one_line_error(
        capsys,
        "predict",
        model_dir,
        real_ct / CT,
        "--out",
        tmp_path / "x",
        "--method",
        "box",
        names="--box",
        says="exactly one of --box or --box-mm",
    )


def test_dicom_series_of_another_modality_is_refused(model_dir: Path, real_ct: Path, tmp_path: Path, capsys) -> None:
    from dicom_builder import write_nifti_as_series

    write_nifti_as_series(tmp_path / "mr", real_ct / CT, modality="MR")
    assert_one_line_error(
        capsys,
        "predict",
        model_dir,
        tmp_path / "mr",
        "--out",
        tmp_path / "out",
        names=tmp_path / "mr",
        says="modality MR",
    )


def test_nifti_with_another_channel_count_is_refused(model_dir: Path, tmp_path: Path, capsys) -> None:
    path = tmp_path / "two_channels.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8, 2), np.float32), np.eye(4)), path)
    assert_one_line_error(
        capsys, "predict", model_dir, path, "--out", tmp_path / "out", names=path, says="2 channel(s)"
    )


def test_folder_with_several_series_is_refused(real_ct: Path, tmp_path: Path, model_dir, capsys) -> None:
    from dicom_builder import write_nifti_as_series

    write_nifti_as_series(tmp_path / "ct", real_ct / CT)
    other = tmp_path / "other"
    write_nifti_as_series(other, real_ct / CT)
    for i, path in enumerate(sorted(other.iterdir())[:3]):
        path.rename(tmp_path / "ct" / f"other_{i}.dcm")
    assert_one_line_error(
        capsys,
        "predict",
        model_dir,
        tmp_path / "ct",
        "--out",
        tmp_path / "out",
        names=tmp_path / "ct",
        says="holds 2 image series",
    )


@pytest.mark.parametrize(
    ("kwargs", "says"), [({"skip_slices": (7,)}, "missing slices"), ({"shift_mm": {10: 0.6}}, "unevenly spaced slices")]
)
def test_missing_or_unevenly_spaced_slices_are_refused(
    real_ct: Path, tmp_path: Path, model_dir, capsys, kwargs: dict, says: str
) -> None:
    from dicom_builder import write_nifti_as_series

    write_nifti_as_series(tmp_path / "ct", real_ct / CT, **kwargs)
    assert_one_line_error(
        capsys, "predict", model_dir, tmp_path / "ct", "--out", tmp_path / "out", names=tmp_path / "ct", says=says
    )


def test_read_scan_reads_the_cards_channel_on_the_ras_zyx_grid(tmp_path: Path) -> None:
    data = _two_channels(tmp_path / "two.nii.gz")
    scan = read_scan(tmp_path / "two.nii.gz", _card(n_channels=2, channel=1))
    assert scan.name == "two" and scan.channels == 2 and scan.series is None
    assert scan.image.shape == (6, 5, 4) and scan.image.dtype == np.float32
    assert np.array_equal(scan.image, data[..., 1].transpose(2, 1, 0))


def test_a_scan_whose_channel_count_does_not_fit_the_card_is_one_line_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "one.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 5, 6), np.float32), np.eye(4)), path)
    with pytest.raises(ModelFolderError) as error:
        read_scan(path, _card(modality="FLAIR", n_channels=2, channel=1))
    assert str(error.value) == f"{path}: 1 channel(s), the model was trained on 2-channel images (FLAIR = channel 1)"


def test_a_dicom_series_for_a_model_of_several_channels_is_refused(tmp_path: Path) -> None:
    from dicom_builder import write_ct_series

    write_ct_series(tmp_path / "series", np.zeros((4, 5, 6), np.int16), np.eye(4))
    with pytest.raises(ModelFolderError) as error:
        read_scan(tmp_path / "series", _card(n_channels=2, channel=1))
    assert str(error.value) == (
        f"{tmp_path / 'series'}: a DICOM series is one channel; the model reads channel 1 of 2-channel images"
    )
    scan = read_scan(tmp_path / "series", _card())
    assert scan.name == "series" and scan.image.shape == (6, 5, 4) and scan.series is not None


def test_scans_of_reads_each_channel_once_and_checks_every_card(tmp_path: Path) -> None:
    path = tmp_path / "two.nii.gz"
    data = _two_channels(path)
    scans = scans_of(path, [_card(n_channels=2, channel=c) for c in (1, 0, 1)])
    assert sorted(scans) == [0, 1]
    for channel, scan in scans.items():
        assert np.array_equal(scan.image, data[..., channel].transpose(2, 1, 0))
    with pytest.raises(ModelFolderError) as error:  # channel 0 already read: checked, not read again
        scans_of(path, [_card(n_channels=2, channel=0), _card(n_channels=3, channel=0)])
    assert str(error.value).startswith(f"{path}: 2 channel(s), the model was trained on 3-channel images")


def test_chosen_box_checks_a_voxel_box_and_maps_a_box_in_mm(tmp_path: Path) -> None:
    path = tmp_path / "two.nii.gz"
    _two_channels(path)
    scan = read_scan(path, _card(n_channels=2))
    assert chosen_box(scan, None, None) is None
    assert chosen_box(scan, (1, 0, 2, 6, 5, 3), None) == (1, 0, 2, 6, 5, 3)
    # identity affine: LPS (x, y, z) mm = (-i, -j, k); voxels i 1..2, j 0..1, k 3..4 → (z, y, x) box
    assert chosen_box(scan, None, (-1.0, 0.0, 3.0, -2.0, -1.0, 4.0)) == (3, 0, 1, 5, 2, 3)
    for box in [(0, 0, 0, 7, 5, 4), (2, 0, 0, 2, 5, 4), (-1, 0, 0, 3, 3, 3)]:
        with pytest.raises(ConfigError) as error:
            chosen_box(scan, box, None)
        assert (
            str(error.value) == f"--box: {list(box)} is not a non-empty box inside the scan's (z, y, x) shape (6, 5, 4)"
        )
    with pytest.raises(ConfigError, match="^--box-mm: .* mm holds no voxel of the scan$"):
        chosen_box(scan, None, (100.0, 100.0, 100.0, 110.0, 110.0, 110.0))


def test_the_box_is_given_exactly_once_for_method_box_only() -> None:
    check_box_given("box", (0, 0, 0, 1, 1, 1), None)
    check_box_given("box", None, (0.0,) * 6)
    check_box_given("two_stage", None, None)
    for method, box, box_mm in [
        ("box", None, None),
        ("box", (0, 0, 0, 1, 1, 1), (0.0,) * 6),
        ("two_stage", (0, 0, 0, 1, 1, 1), None),
        ("baseline", None, (0.0,) * 6),
    ]:
        with pytest.raises(ConfigError, match="^--box: method box needs exactly one of --box or --box-mm"):
            check_box_given(method, box, box_mm)


def test_output_names_are_the_stems_and_must_differ(tmp_path: Path) -> None:
    (tmp_path / "patient_1").mkdir()
    names = [output_name(tmp_path / n) for n in ("ct.nii.gz", "mr.nii", "patient_1", "scan.v2.nii.gz")]
    assert names == ["ct", "mr", "patient_1", "scan.v2"]
    check_unique_names([tmp_path / "a" / "ct.nii.gz", tmp_path / "a" / "mr.nii.gz"])
    with pytest.raises(ConfigError) as error:
        check_unique_names([tmp_path / "a" / "ct.nii.gz", tmp_path / "b" / "ct.nii"])
    assert str(error.value).startswith(f"{tmp_path / 'b' / 'ct.nii'}: gives the same output name 'ct' as ")


def test_normalisation_key_is_the_channel_and_the_normalisation_with_its_statistics() -> None:
    stats = {"low": -100.0, "high": 200.0, "mean": 10.0, "sd": 20.0}
    ct = _card(normalisation="ct", ct_stats=stats)
    assert normalisation_key(ct) == normalisation_key(
        _card(organ="liver", normalisation="ct", ct_stats=dict(reversed(stats.items())))
    )
    others = [
        _card(normalisation="ct", ct_stats={**stats, "mean": 11.0}),
        _card(),
        _card(n_channels=2, channel=1, normalisation="ct", ct_stats=stats),
    ]
    assert all(normalisation_key(o) != normalisation_key(ct) for o in others)
