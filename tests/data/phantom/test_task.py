"""Tests of the phantom task folders: MSD layout, NIfTI geometry, the rendered cases stored in
nibabel's axis order, determinism, resuming and refusals. Files are read back with nibabel only;
what a case holds is tested in test_render.py."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from l2s_core.data.phantom.anatomy import ORGANS
from l2s_core.data.phantom.render import render_case
from l2s_core.data.phantom.settings import PhantomSettings
from l2s_core.data.phantom.task import TASK_FOLDERS, generate_phantom_task, generate_phantom_tasks
from l2s_core.errors import ConfigError

SMALL = (24, 64, 64)
N_CASES = 5
SEED = 3
MSD_LABELS = {
    "spleen": {0, 1},
    "pancreas": {0, 1, 2},
    "prostate": {0, 1, 2},
    "liver": {0, 1, 2},
    "heart": {0, 1},
}


@pytest.fixture(scope="module")
def phantom_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """All five tasks, five small cases each."""
    root = tmp_path_factory.mktemp("phantom")
    generate_phantom_tasks(root, settings=PhantomSettings(n_cases=N_CASES, shape=SMALL, seed=SEED), progress=False)
    return root


def _cases(task_dir: Path) -> list[tuple[np.ndarray, np.ndarray, nib.Nifti1Image]]:
    """(image (x, y, z[, c]), label (x, y, z), image header) per case listed in dataset.json."""
    meta = json.loads((task_dir / "dataset.json").read_text())
    cases = []
    for entry in meta["training"]:
        image = nib.load(task_dir / entry["image"])
        label = nib.load(task_dir / entry["label"])
        cases.append((np.asarray(image.dataobj), np.asarray(label.dataobj), image))
    return cases


def _channels(image: np.ndarray) -> np.ndarray:
    """(x, y, z) or (x, y, z, c) → (c, x, y, z)."""
    return image[None] if image.ndim == 3 else np.moveaxis(image, -1, 0)


@pytest.mark.parametrize("organ", ORGANS)
def test_task_folder_has_msd_layout(phantom_root: Path, organ: str) -> None:
    task_dir = phantom_root / TASK_FOLDERS[organ]
    meta = json.loads((task_dir / "dataset.json").read_text())
    assert "format_version" not in meta
    assert {
        "name",
        "description",
        "reference",
        "licence",
        "release",
        "tensorImageSize",
        "modality",
        "labels",
        "numTraining",
        "numTest",
        "training",
        "test",
    } <= meta.keys()
    assert "not patient data" in meta["description"]
    assert meta["numTraining"] == N_CASES and meta["numTest"] == 0 and meta["test"] == []
    assert {int(k) for k in meta["labels"]} == MSD_LABELS[organ]
    ids = [f"{organ}_{i:03d}" for i in range(1, N_CASES + 1)]
    assert meta["training"] == [{"image": f"./imagesTr/{c}.nii.gz", "label": f"./labelsTr/{c}.nii.gz"} for c in ids]
    assert sorted(p.name for p in (task_dir / "imagesTr").iterdir()) == [f"{c}.nii.gz" for c in ids]
    assert sorted(p.name for p in (task_dir / "labelsTr").iterdir()) == [f"{c}.nii.gz" for c in ids]
    expected_modality = {"prostate": {"0": "T2", "1": "ADC"}, "heart": {"0": "MRI"}}.get(organ, {"0": "CT"})
    assert meta["modality"] == expected_modality
    assert meta["tensorImageSize"] == ("4D" if organ == "prostate" else "3D")


@pytest.mark.parametrize("organ", ORGANS)
def test_images_have_lps_affine_anisotropic_spacing_and_stored_shape(phantom_root: Path, organ: str) -> None:
    for image, label, header in _cases(phantom_root / TASK_FOLDERS[organ]):
        assert nib.aff2axcodes(header.affine) == ("L", "P", "S")
        sx, sy, sz = header.header.get_zooms()[:3]
        assert sx == pytest.approx(sy) and sz > 1.1 * sx
        assert label.shape == SMALL[::-1] and label.dtype == np.uint8
        assert image.shape[:3] == SMALL[::-1]
        assert np.allclose(nib.load(header.get_filename().replace("imagesTr", "labelsTr")).affine, header.affine)
        assert image.ndim == (4 if organ == "prostate" else 3)
        if organ == "prostate":
            assert image.shape[3] == 2


@pytest.mark.parametrize("organ", ORGANS)
def test_files_hold_the_rendered_cases_in_nibabel_axis_order(phantom_root: Path, organ: str) -> None:
    present: set[int] = set()
    for case_index, (image, label, header) in enumerate(_cases(phantom_root / TASK_FOLDERS[organ])):
        stream = np.random.default_rng([SEED, ORGANS.index(organ), case_index])
        rendered_image, rendered_label, affine = render_case(organ, SMALL, stream)
        assert image.dtype == np.int16 and label.dtype == np.uint8
        assert np.array_equal(_channels(image), rendered_image.transpose(0, 3, 2, 1))
        assert np.array_equal(label, rendered_label.transpose(2, 1, 0))
        assert np.allclose(header.affine, affine)
        present |= {int(v) for v in np.unique(label)}
    assert present == MSD_LABELS[organ]


def test_same_seed_gives_identical_files_and_another_seed_differs(tmp_path: Path) -> None:
    first = generate_phantom_task(
        "pancreas", tmp_path / "a", settings=PhantomSettings(n_cases=2, shape=SMALL, seed=7), progress=False
    )
    second = generate_phantom_task(
        "pancreas", tmp_path / "b", settings=PhantomSettings(n_cases=2, shape=SMALL, seed=7), progress=False
    )
    other = generate_phantom_task(
        "pancreas", tmp_path / "c", settings=PhantomSettings(n_cases=2, shape=SMALL, seed=8), progress=False
    )
    for sub in ("imagesTr", "labelsTr"):
        for path in (first / sub).iterdir():
            assert path.read_bytes() == (second / sub / path.name).read_bytes()
    a, b = (np.asarray(nib.load(first / "imagesTr" / f"pancreas_00{i}.nii.gz").dataobj) for i in (1, 2))
    c = np.asarray(nib.load(other / "imagesTr" / "pancreas_001.nii.gz").dataobj)
    assert not np.array_equal(a, b) and not np.array_equal(a, c)


def test_rerun_skips_existing_cases_and_regenerates_missing_ones(tmp_path: Path) -> None:
    task_dir = generate_phantom_task(
        "heart", tmp_path, settings=PhantomSettings(n_cases=2, shape=SMALL), progress=False
    )
    kept = task_dir / "imagesTr" / "heart_001.nii.gz"
    removed = task_dir / "labelsTr" / "heart_002.nii.gz"
    kept_mtime, removed_bytes = kept.stat().st_mtime_ns, removed.read_bytes()
    removed.unlink()
    generate_phantom_task("heart", tmp_path, settings=PhantomSettings(n_cases=3, shape=SMALL), progress=False)
    assert kept.stat().st_mtime_ns == kept_mtime
    assert removed.read_bytes() == removed_bytes
    assert json.loads((task_dir / "dataset.json").read_text())["numTraining"] == 3


def test_rerun_with_other_settings_or_into_foreign_folder_is_refused(tmp_path: Path) -> None:
    generate_phantom_task("spleen", tmp_path, settings=PhantomSettings(n_cases=1, shape=SMALL), progress=False)
    with pytest.raises(ConfigError, match="Task09_Spleen"):
        generate_phantom_task(
            "spleen", tmp_path, settings=PhantomSettings(n_cases=1, shape=SMALL, seed=1), progress=False
        )
    foreign = tmp_path / "real" / "Task03_Liver"
    (foreign / "imagesTr").mkdir(parents=True)
    with pytest.raises(ConfigError, match="not an l2s phantom folder"):
        generate_phantom_task(
            "liver", tmp_path / "real", settings=PhantomSettings(n_cases=1, shape=SMALL), progress=False
        )


def test_unknown_organ_or_bad_shape_is_a_config_error_and_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="kidney"):
        generate_phantom_tasks(
            tmp_path, organs=["spleen", "kidney"], settings=PhantomSettings(n_cases=1, shape=SMALL), progress=False
        )
    with pytest.raises(ConfigError, match="kidney"):
        generate_phantom_task("kidney", tmp_path, progress=False)
    with pytest.raises(ConfigError, match="shape"):
        generate_phantom_task("spleen", tmp_path, settings=PhantomSettings(shape=(4, 64, 64)), progress=False)
    assert list(tmp_path.iterdir()) == []


def test_progress_bar_names_the_organ(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    generate_phantom_task("spleen", tmp_path, settings=PhantomSettings(n_cases=1, shape=(8, 16, 16)), progress=True)
    assert "phantom spleen" in capsys.readouterr().err
