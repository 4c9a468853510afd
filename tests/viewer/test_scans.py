"""Scans with a model folder in the explorer (``l2s_core.viewer.scans``): what it shows is what
``l2s predict`` writes, "segment in box" runs the model's organ network, and a folder's models
default to the mean of every pair."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

import numpy as np

from l2s_core.data.io import read_label
from l2s_core.deploy import model_folder
from l2s_core.deploy.loaded_model import load_model_folder
from l2s_core.deploy.predict import predict_scans
from l2s_core.deploy.scan_input import normalised_image, read_scan
from l2s_core.infer import box_predict
from l2s_core.viewer.explorer import open_explorer, scan_explorer
from l2s_core.viewer.scans import ScanCase, load_folder_models


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


def test_paging_to_another_scan_frees_the_previous_scans_volume(model_dir: Path, scan: Path) -> None:
    """Only the current scan's volume stays in memory; the previous one is read again when asked for."""
    viewer, _ = scan_explorer(model_dir, [scan, scan])
    first = viewer.case
    volume = weakref.ref(first.image)
    assert first.image is volume()  # held by the viewer: given again without a new read
    viewer.widgets["case"].value = 1
    gc.collect()
    assert volume() is None
    assert first.spacing == (3.0, 1.5, 1.5)
    assert np.array_equal(first.image, viewer.case.image)


def test_folder_models_hash_each_weight_file_once(model_dir: Path, monkeypatch) -> None:
    """The folder is opened and checked once, not again for each method built."""
    hashed: list[Path] = []
    sha256_of = model_folder.sha256_of
    monkeypatch.setattr(model_folder, "sha256_of", lambda path: hashed.append(path) or sha256_of(path))
    models = load_folder_models(model_dir)
    assert set(models.models) == {"baseline", "two_stage"}
    assert sorted(hashed) == sorted(Path(model_dir) / entry.file for entry in models.card.networks)
