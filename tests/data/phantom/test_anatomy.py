"""Tests of the phantom anatomy records: every task's target, labels and channels agree with its
anatomy, left/right pairs mirror each other, and an unknown organ is refused."""

from __future__ import annotations

import pytest

from l2s_core.data.phantom.anatomy import ORGANS, TASKS, phantom_task
from l2s_core.errors import ConfigError


def test_every_organ_has_a_task() -> None:
    assert set(TASKS) == set(ORGANS)
    assert all(phantom_task(organ) is TASKS[organ] for organ in ORGANS)


@pytest.mark.parametrize("organ", ORGANS)
def test_target_is_one_named_structure_of_the_anatomy(organ: str) -> None:
    task = phantom_task(organ)
    names = [name for name, _ in task.anatomy.blobs]
    assert len(names) == len(set(names))
    assert task.target in names


@pytest.mark.parametrize("organ", ORGANS)
def test_labels_name_the_background_the_organ_and_the_inner_structure(organ: str) -> None:
    task = phantom_task(organ)
    assert task.labels["0"] == "background"
    assert set(task.labels) == {"0", "1"} | ({"2"} if task.inner is not None else set())
    if task.inner is not None:
        assert 0 < task.inner.probability <= 1


@pytest.mark.parametrize("organ", ORGANS)
def test_every_value_has_one_entry_per_modality_channel(organ: str) -> None:
    task = phantom_task(organ)
    anatomy = task.anatomy
    channels = len(task.modality)
    assert len(anatomy.background) == len(anatomy.noise_sd) == len(anatomy.bias_strength) == channels
    blobs = [blob for _, blob in anatomy.blobs] + ([task.inner.blob] if task.inner is not None else [])
    assert all(len(blob.intensity) == channels for blob in blobs)
    assert anatomy.is_ct == (task.modality == {"0": "CT"})


@pytest.mark.parametrize("organ", ORGANS)
def test_left_and_right_structures_mirror_each_other(organ: str) -> None:
    blobs = dict(phantom_task(organ).anatomy.blobs)
    pairs = [(blobs[name], blobs[name[: -len("left")] + "right"]) for name in blobs if name.endswith(" left")]
    for left, right in pairs:
        (z, y, x), (rz, ry, rx) = left.centre_mm, right.centre_mm
        assert (rz, ry, rx) == (z, y, -x)
        assert right.semi_axes_mm == left.semi_axes_mm and right.intensity == left.intensity
        assert right.angle_deg == -left.angle_deg


def test_pairs_exist_in_every_anatomy() -> None:
    assert all(any(name.endswith(" left") for name, _ in task.anatomy.blobs) for task in TASKS.values())


def test_unknown_organ_is_a_config_error_naming_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="kidney") as raised:
        phantom_task("kidney")
    assert all(organ in str(raised.value) for organ in ORGANS)
