"""The study steps the notebooks call, run in this process on MSD-shaped phantom volumes."""

from pathlib import Path

import pandas as pd
import pytest
import torch

from l2s_core.data.cache import PreparedTask
from l2s_core.model import UNet3D
from l2s_core.study.layout import StudyPaths
from l2s_core.study.params import load_study_params
from l2s_core.study.steps import evaluate_step, method_summary, prepare_step, train_step

SMOKE = Path(__file__).resolve().parents[2] / "papermill_params" / "smoke.yaml"


@pytest.mark.slow
@pytest.mark.parametrize("organ", ["spleen", "prostate"])
def test_no_network_input_is_larger_than_the_patch_in_a_whole_study_step(organ, tmp_path, monkeypatch):
    """Train all three networks and evaluate all three methods on volumes larger than the patch
    (the spleen on every axis) or thinner than it on one axis (the prostate), watching every
    forward pass of the U-Net."""
    params = load_study_params(SMOKE)
    patch = params.train_config(organ, "baseline", 0, Path("."), Path(".")).patch_size
    seen: list[tuple[int, ...]] = []
    forward = UNet3D.forward

    def watched_forward(self: UNet3D, images: torch.Tensor) -> torch.Tensor:
        seen.append(tuple(images.shape[2:]))
        return forward(self, images)

    monkeypatch.setattr(UNet3D, "forward", watched_forward)
    prepare_step(params, tmp_path, organ)
    task = PreparedTask(StudyPaths(tmp_path, "smoke").prepared_dir(organ))
    full = [task.case(c).meta.original_shape for ids in task.split.values() for c in ids]
    crops = [[b[3] - b[0], b[4] - b[1], b[5] - b[2]] for b in (task.case(c).meta.crop_box for c in task.split["val"])]
    assert any(side > p for shape in full + crops for side, p in zip(shape, patch))  # images exceed the patch
    for network in params.networks:
        assert train_step(params, tmp_path, organ, network, run=0).epochs >= 1
    runs = method_summary(pd.read_csv(evaluate_step(params, tmp_path, organ, "val")["runs"]))
    assert set(runs.index) == {"baseline", "two_stage", "gt_localised"}
    assert seen and all(all(side <= p for side, p in zip(shape, patch)) for shape in seen), sorted(set(seen))
