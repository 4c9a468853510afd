"""Validation volumes kept on the device within a budget, and TP/FP/FN counted there."""

import numpy as np
import torch

from l2s_core.metrics import confusion_counts
from l2s_core.train.validation_volumes import ValidationVolumes, device_budget, mask_counts


def test_counts_on_the_device_match_the_metrics():
    rng = np.random.default_rng(0)
    prediction = rng.random((6, 7, 8)) < 0.4
    label = (rng.random((6, 7, 8)) < 0.3).astype(np.uint8)
    counts = mask_counts(torch.from_numpy(prediction), torch.from_numpy(label))
    assert counts.dtype == torch.int64
    assert counts.tolist() == [int(c) for c in confusion_counts(prediction.astype(np.uint8), label)]


def test_cases_are_kept_in_order_until_the_budget_is_spent(prepared_task):
    task = prepared_task(n_cases=5, shape=(6, 10, 14), organ=(1, 2, 3, 4, 5, 11))
    cases = [task.case(c) for c in task.split["train"]]  # 3 cases, 5 bytes a voxel each
    one = 5 * 6 * 10 * 14
    volumes = ValidationVolumes(cases, "full", torch.device("cpu"), budget=2 * one + 1)
    assert volumes.kept == 2 and volumes.kept_bytes == 2 * one and len(volumes) == 3
    items = list(volumes)
    for (image, label), case in zip(items, cases):
        assert np.array_equal(np.asarray(image), case.array("full", "image"))
        assert label.dtype == torch.uint8 and np.array_equal(label.numpy(), case.array("full", "label"))
    assert isinstance(items[0][0], torch.Tensor) and not isinstance(items[2][0], torch.Tensor)
    assert ValidationVolumes(cases, "full", torch.device("cpu"), budget=0).kept == 0


def test_nothing_is_kept_on_the_cpu(tmp_path):
    from config_builder import cpu_config

    assert device_budget(cpu_config(tmp_path, tmp_path), torch.device("cpu"), 1) == 0
