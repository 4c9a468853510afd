"""Prediction sources of a study: results as predictions, saved masks, the raw-CT window and the
converged networks of a study feeding the viewer (``l2s_core.viewer.sources``)."""

import dataclasses
import shutil

import numpy as np
import pytest
import torch
from msd_builder import CUBE_SHAPE as SHAPE
from study_folder import run_summary

from l2s_core.checkpoint import save_checkpoint
from l2s_core.data.cache import PreparedTask
from l2s_core.data.prepare import prepare_task
from l2s_core.data.prepared_layout import PrepareSettings
from l2s_core.errors import InputDataError
from l2s_core.evaluation_tables import prediction_file
from l2s_core.files import atomic_write_json
from l2s_core.infer import save_prediction
from l2s_core.model import UNet3D
from l2s_core.prediction import Localisation, Prediction
from l2s_core.study.localisation import evaluation_localisation
from l2s_core.study.params import EvaluateOptions, StudyParams
from l2s_core.train.config import TrainConfig
from l2s_core.viewer.display import CT_SOFT_TISSUE
from l2s_core.viewer.slice_viewer import SliceViewer
from l2s_core.viewer.sources import (
    StudyModels,
    as_prediction,
    load_study_models,
    raw_ct_window,
    saved_prediction_source,
)


def test_as_prediction_accepts_masks_and_results():
    mask = np.ones((2, 2, 2), np.uint8)
    assert as_prediction(mask).mask is mask and as_prediction(mask).box is None
    result = Prediction(mask, (0, 0, 0, 2, 2, 2), seconds=0.1)
    assert as_prediction(result) is result


def test_saved_prediction_source_reads_evaluations_nifti_back_onto_the_prepared_grid(task, tmp_path):
    case = task.case(task.split["train"][0])
    mask = np.zeros(SHAPE, np.uint8)
    mask[1, 2, 3] = 1  # asymmetric, so a wrong orientation would move it
    save_prediction(mask, case, tmp_path / f"{case.case_id}.nii.gz")
    loaded = saved_prediction_source(tmp_path)(case)
    assert np.array_equal(loaded, mask)
    with pytest.raises(InputDataError, match="no saved prediction"):
        saved_prediction_source(tmp_path / "nothing")(case)


def test_raw_ct_window_only_for_unnormalised_ct(make_task, tmp_path):
    folder = make_task(n_cases=3)
    prepare_task(folder, tmp_path / "raw", PrepareSettings(normalisation="none"), progress=False, workers=1)
    prepare_task(folder, tmp_path / "z", progress=False, workers=1)
    assert raw_ct_window(PreparedTask(tmp_path / "raw")) == CT_SOFT_TISSUE
    assert raw_ct_window(PreparedTask(tmp_path / "z")) is None


def _save_run(network_dir, index, converged, network, config=None):
    run = network_dir / f"run_{index:02d}"
    save_checkpoint(run / "best.pt", network, network=network_dir.name)
    summary = run_summary(network_dir.name, index, converged)
    if config is not None:
        config.write(run / "config.json")
        summary = dataclasses.replace(summary, config=config)
    summary.write(run / "summary.json")
    return run / "best.pt"


def test_load_study_models_feeds_the_viewer(task, tmp_path):
    organ_dir = tmp_path / "study" / "cube"
    assert load_study_models(organ_dir) == StudyModels({}, None, {})
    torch.manual_seed(0)

    def config(network, depth=1):
        return TrainConfig(
            prepared_dir=str(task.folder),
            run_dir="run_00",
            network=network,
            depth=depth,
            base_channels=2,
            patch_size=(8, 8, 8),
        )

    _save_run(organ_dir / "baseline", 0, True, UNet3D(base_channels=2, depth=1, groups=1), config("baseline"))
    _save_run(organ_dir / "localiser", 0, False, UNet3D(base_channels=2, depth=1, groups=1))
    _save_run(organ_dir / "localiser", 1, True, UNet3D(base_channels=2, depth=1, groups=1), config("localiser"))
    _save_run(organ_dir / "organ", 0, False, UNet3D(base_channels=2, depth=1, groups=1))
    organ_path = _save_run(
        organ_dir / "organ", 1, True, UNet3D(base_channels=2, depth=2, groups=1), config("organ", depth=2)
    )
    models = load_study_models(organ_dir, localisation=Localisation.of_settings(task.preparation.settings))
    assert set(models.sources) == {"baseline", "two_stage", "gt_localised"}
    assert models.runs["organ"].folder == organ_path.parent and models.organ_network.multiple == 4
    case = task.case(task.split["val"][0])
    two_stage = models.sources["two_stage"](case)
    assert isinstance(two_stage, Prediction) and two_stage.mask.shape == SHAPE
    assert models.sources["gt_localised"](case).box == case.crop_box
    narrow = (
        load_study_models(organ_dir, localisation=Localisation(2)).sources["gt_localised"](case).box
    )  # the margin reaches the pipeline
    assert narrow == tuple(v + (case.meta.crop_margin - 2) * (1 if i < 3 else -1) for i, v in enumerate(case.crop_box))
    baseline = models.sources["baseline"](case).mask
    assert baseline.shape == SHAPE
    saved = np.logical_not(baseline).astype(np.uint8)  # evaluation's saved mask wins over predicting again
    save_prediction(saved, case, organ_dir / "evaluation" / prediction_file("val", "baseline", 0, case.case_id))
    assert np.array_equal(models.sources["baseline"](case).mask, saved)
    viewer = SliceViewer(task, sources=models.sources, organ_network=models.organ_network, split="val")
    assert all(viewer.overlay_artists[name].get_visible() for name in ("ground_truth", *models.sources))
    viewer.widgets["segment"].click()
    assert viewer.overlay_artists["manual"].get_visible()


def test_the_explorer_localises_as_the_studys_evaluation(study_dir, tmp_path):
    organ_dir = tmp_path / "runs" / "copy" / "spleen"
    shutil.copytree(study_dir / "spleen" / "prepared", organ_dir / "prepared")
    settings = PreparedTask(organ_dir / "prepared").preparation.settings
    assert evaluation_localisation(organ_dir) == Localisation.of_settings(settings)  # no snapshot: the defaults
    evaluate = EvaluateOptions(fallback="empty", box_mapping="upsample_nearest")
    atomic_write_json(
        organ_dir.parent / "study_params.json", StudyParams(data="phantom", study="copy", evaluate=evaluate).to_dict()
    )
    assert evaluation_localisation(organ_dir) == Localisation.of_settings(settings, "empty", "upsample_nearest")
