"""The explorer on a model folder and new scans (``l2s_core.viewer.scans``, ``explore.ipynb``):
what it shows is what ``l2s predict`` writes, and "segment in box" runs the model's organ network."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

from pathlib import Path

import nbformat
import nibabel as nib
import numpy as np
import papermill
import pytest

from l2s_core.data.io import read_label
from l2s_core.deploy.predict import load_model_folder, normalised_image, predict_scans, read_scan
from l2s_core.errors import ConfigError, InputDataError
from l2s_core.infer import box_predict
from l2s_core.viewer import ScanCase, load_folder_models, open_explorer, scan_explorer

NOTEBOOK = Path(__file__).resolve().parents[2] / "l2s_core" / "notebooks" / "explore.ipynb"
#: Scan shape in nibabel (x, y, z) order, stored LPS so that the explorer's RAS array is flipped.
SCAN_XYZ = (30, 34, 14)


@pytest.fixture(scope="module")
def scan(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bright box on noise (like the training cases of the tiny study), stored LPS."""
    rng = np.random.default_rng(1)
    label = np.zeros(SCAN_XYZ, np.float32)
    label[9:23, 12:26, 4:10] = 1.0
    image = (100.0 * label + rng.normal(0, 20, SCAN_XYZ)).astype(np.float32)
    affine = np.diag([-1.5, -1.5, 3.0, 1.0])
    path = tmp_path_factory.mktemp("scans") / "new_patient.nii.gz"
    nib.save(nib.Nifti1Image(image, affine), path)
    return path


def test_scan_mode_shows_what_l2s_predict_writes(model_dir: Path, scan: Path, tmp_path: Path) -> None:
    viewer, notes = open_explorer(model_dir=model_dir, scan=scan)
    case = viewer.case
    assert isinstance(case, ScanCase) and case.case_id == "new_patient.nii.gz"
    assert notes[0].startswith(f"{model_dir}: spleen on CT (1 baseline, 2 two-stage; runs all)")
    expected_image = normalised_image(read_scan(scan, case.card), case.card)
    assert viewer.image_artist.get_array().shape == expected_image.shape[1:]
    assert np.array_equal(case.image, expected_image) and case.spacing == (3.0, 1.5, 1.5)
    assert viewer.overlay_names == ["baseline", "two_stage", "manual"]  # no ground truth for a scan
    predict_scans(model_dir, [scan], tmp_path / "out", progress=False)
    written, _ = read_label(tmp_path / "out" / "new_patient.nii.gz")  # RAS (z, y, x), as the explorer shows it
    assert np.array_equal(viewer.prediction("two_stage").mask, written)
    status, legend = viewer.widgets["status"].value, viewer.widgets["legend"].value
    assert "label box" not in status and "ground truth" not in legend and "label box" not in legend
    assert "two-stage" in legend and "baseline" in legend and "manual box" in legend


def test_scan_mode_opens_on_the_two_stage_box_and_segments_in_the_manual_box(model_dir: Path, scan: Path) -> None:
    viewer, notes = scan_explorer(model_dir, [scan, scan], runs=1)
    w = viewer.widgets
    assert len(viewer.cases) == 2 and not w["segment"].disabled
    assert viewer.overlay_names == ["two_stage", "manual"] and "1 baseline (no position 1: not shown)" in notes[0]
    box = viewer.prediction("two_stage").box
    start = box or (0, 0, 0, *viewer.case.image.shape)
    shape = viewer.case.image.shape
    assert w["box_z"].value == (max(start[0], 0), min(start[3], shape[0]) - 1)
    assert w["slice"].value == (max(start[0], 0) + min(start[3], shape[0]) - 1) // 2
    w["box_z"].value, w["box_y"].value, w["box_x"].value = (2, 11), (4, 28), (3, 25)
    w["segment"].click()
    expected = box_predict(
        load_model_folder(model_dir, "two_stage", runs=1).networks["organ"], viewer.case.image, (2, 4, 3, 12, 29, 26)
    )
    manual = viewer.overlay_artists["manual"]
    assert manual.get_visible() and "segmented in box" in w["legend"].value
    assert np.array_equal(~np.ma.getmaskarray(manual.get_array()), expected[w["slice"].value] > 0)


def test_folder_models_default_to_the_mean_of_every_pair(model_dir: Path) -> None:
    models = load_folder_models(model_dir)
    assert set(models.sources) == {"baseline", "two_stage"} and models.organ_network is not None
    assert models.models["two_stage"].runs is None  # as `l2s predict` without --runs
    assert len(models.models["two_stage"].entries["organ"]) == 2
    assert set(load_folder_models(model_dir, runs=0).models) == {"baseline", "two_stage"}


def test_scan_mode_errors(model_dir: Path, scan: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="give both"):
        open_explorer(model_dir=model_dir)
    with pytest.raises(ConfigError, match="give both"):
        open_explorer(scan=scan)
    with pytest.raises(ConfigError, match="study folder"):
        open_explorer()
    with pytest.raises(InputDataError, match="no such NIfTI file"):
        open_explorer(model_dir=model_dir, scan=tmp_path / "missing.nii.gz")
    with pytest.raises(ConfigError, match="5 is not a position"):
        scan_explorer(model_dir, scan, runs=5)


@pytest.mark.slow
def test_explore_notebook_on_a_model_folder_and_a_scan(
    model_dir: Path, scan: Path, tmp_path: Path, l2s_kernel: str
) -> None:
    executed = tmp_path / "explore.ipynb"
    papermill.execute_notebook(
        NOTEBOOK,
        executed,
        parameters={"model_dir": str(model_dir), "scan": str(scan)},
        kernel_name=l2s_kernel,
        cwd=str(tmp_path),
        progress_bar=False,
    )
    cells = nbformat.read(executed, as_version=4).cells
    printed = "".join(o.get("text", "") for cell in cells if cell.cell_type == "code" for o in cell.outputs)
    assert "spleen on CT" in printed
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in cells[-1].outputs)
