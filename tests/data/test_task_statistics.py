"""The report's measures of a task's cases (``l2s_core.data.task_statistics``): exact on a cuboid
task, and on real cases of ../shared/data/Task04_Hippocampus (skipped where absent)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from msd_builder import real_hippocampus, write_case, write_dataset_json

from l2s_core.data.task_statistics import case_statistics, task_statistics
from l2s_core.errors import EmptyOrganError


def test_case_statistics_of_a_bright_cuboid() -> None:
    mask = np.zeros((10, 20, 20), np.uint8)
    mask[2:6, 5:15, 5:10] = 1  # 200 voxels of 4000
    image = np.where(mask > 0, 300.0, 100.0).astype(np.float32)
    image[0, 0, 0] = 120.0  # some spread outside
    stats = case_statistics(image, mask)
    assert stats.shape == (10, 20, 20) and stats.organ_extent == (4, 10, 5)
    assert stats.foreground_share == 200 / 4000 and stats.raw_max == 300.0
    assert stats.inside_sd == pytest.approx(0.0, abs=1e-6)
    assert stats.inside_mean > 4 > 0 > stats.outside_mean  # z-scored: the organ far above the rest
    assert stats.contrast == pytest.approx((stats.inside_mean - stats.outside_mean) / stats.outside_sd)
    with pytest.raises(ValueError, match="empty"):
        case_statistics(image, np.zeros_like(mask))


def test_task_statistics_average_the_cases_and_keep_the_ranges(make_task: Callable[..., Path]) -> None:
    task_dir = make_task(n_cases=3, organ=[(3, 4, 4, 7, 10, 10), (2, 2, 2, 4, 4, 4), (0, 0, 0, 12, 16, 8)])
    stats = task_statistics(task_dir)
    shares = [4 * 6 * 6 / 3072, 8 / 3072, 12 * 16 * 8 / 3072]
    assert stats.n_cases == 3 and stats.shape == (12.0, 16.0, 16.0)
    assert stats.foreground_percent == pytest.approx(100 * np.mean(shares))
    assert stats.foreground_percent_range == pytest.approx((100 * min(shares), 100 * max(shares)))
    assert stats.organ_extent == pytest.approx(((4 + 2 + 12) / 3, (6 + 2 + 16) / 3, (6 + 2 + 8) / 3))
    assert task_statistics(task_dir, max_cases=1).n_cases == 1


def test_a_case_without_organ_names_its_label_file(tmp_path: Path) -> None:
    image = np.ones((8, 8, 8), np.float32)
    write_case(tmp_path, "empty_0", image, np.zeros((8, 8, 8), np.uint8))
    write_dataset_json(tmp_path, ["empty_0"])
    with pytest.raises(EmptyOrganError, match="labelsTr/empty_0.nii.gz"):
        task_statistics(tmp_path)


def test_real_hippocampus_cases_are_pre_cropped_with_a_low_contrast_organ() -> None:
    stats = task_statistics(real_hippocampus(), max_cases=20)
    assert stats.task_name == "Hippocampus" and stats.n_cases == 20
    assert 3 < stats.foreground_percent < 8  # the organ fills a large share of the pre-cropped image
    assert all(20 < side < 60 for side in stats.shape) and all(10 < side < 50 for side in stats.organ_extent)
    assert stats.raw_max_range[1] > 10 * stats.raw_max_range[0]  # per-image normalisation matters
    assert -1 < stats.contrast < 0  # the hippocampus is a little darker than its surroundings, by less than 1 sd
