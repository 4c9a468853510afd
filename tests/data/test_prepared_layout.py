"""The prepared task folder's names and records (``l2s_core.data.prepared_layout``): array file
names, the checks of :class:`PrepareSettings`, the modality of the network's channel, the crop
geometry of :class:`CaseMeta`, and the ``meta.json`` a real preparation writes."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from msd_builder import CUBE_ORGAN, CUBE_SHAPE, write_case
from study_folder import IDENTITY

from l2s_core.boxes import bounding_box, expand_box, largest_component
from l2s_core.data.cache import PreparedTask
from l2s_core.data.io import VolumeMeta
from l2s_core.data.prepare import prepare_task
from l2s_core.data.prepared_layout import (
    CASE_META_FILE,
    CROP_MARGIN,
    LOWRES_DIVISORS,
    PREP_FILE,
    CaseMeta,
    Exclusions,
    PrepareSettings,
    TaskPreparation,
    array_file,
)
from l2s_core.errors import ConfigError, InputDataError
from l2s_core.files import FORMAT_VERSION
from l2s_core.vocabulary import KINDS, LEVELS


def _case_meta(organ_box: tuple[int, ...], margin: int) -> CaseMeta:
    """A case of a (10, 20, 30) image whose crop is ``organ_box`` widened by ``margin``."""
    return CaseMeta(
        case_id="case_0",
        image_path="/task/imagesTr/case_0.nii.gz",
        label_path="/task/labelsTr/case_0.nii.gz",
        source=VolumeMeta("/task/imagesTr/case_0.nii.gz", IDENTITY, (30, 20, 10), IDENTITY, (3.0, 2.0, 1.0)),
        original_shape=(10, 20, 30),
        lowres_shape=(4, 10, 15),
        organ_box=organ_box,  # type: ignore[arg-type]
        crop_box=expand_box(organ_box, margin),  # type: ignore[arg-type]
        crop_margin=margin,
        label_values=(0, 1, 2),
        organ_voxels=42,
        foreground_share=42 / 6000,
    )


def test_array_file_names_every_level_and_kind() -> None:
    assert array_file("crop", "label") == "crop_label.npy"
    assert {array_file(level, kind) for level in LEVELS for kind in KINDS} == {
        "full_image.npy",
        "full_label.npy",
        "lowres_image.npy",
        "lowres_label.npy",
        "crop_image.npy",
        "crop_label.npy",
    }
    for level, kind in (("highres", "image"), ("crop", "mask"), ("image", "crop")):
        with pytest.raises(ValueError, match=f"got {level!r}, {kind!r}"):
            array_file(level, kind)


def test_prepare_settings_default_to_the_paper_and_round_trip() -> None:
    default = PrepareSettings()
    assert (default.crop_margin, default.lowres_divisors) == (CROP_MARGIN, LOWRES_DIVISORS) == (15, (3, 2, 2))
    settings = PrepareSettings(
        normalisation="ct",
        channel=1,
        organ_labels=(1, 3),
        split_seed=7,
        split_order="released_code",
        crop_margin=0,
        max_cases=4,
        lowres_divisors=[2, 3, 2],  # type: ignore[arg-type]
        crop_label="largest_component",
    )
    assert settings.lowres_divisors == (2, 3, 2)
    raw = json.loads(json.dumps(settings.to_dict()))
    assert raw["organ_labels"] == [1, 3] and raw["lowres_divisors"] == [2, 3, 2]
    assert PrepareSettings.from_dict(raw) == settings
    assert PrepareSettings.from_dict({}) == default


@pytest.mark.parametrize(
    ("values", "where", "problem"),
    [
        ({"normalisation": "minmax"}, "normalisation", "must be one of zscore, ct, none, got 'minmax'"),
        ({"split_order": "random"}, "split_order", "must be one of table1, released_code, got 'random'"),
        ({"crop_label": "biggest"}, "crop_label", "must be one of all, largest_component, got 'biggest'"),
        ({"crop_margin": -1}, "crop_margin", "must not be negative, got -1"),
        ({"lowres_divisors": (3, 0, 2)}, "lowres_divisors", "needs three positive (z, y, x) divisors, got (3, 0, 2)"),
        ({"lowres_divisors": (3, 2)}, "lowres_divisors", "needs three positive (z, y, x) divisors, got (3, 2)"),
    ],
    ids=["normalisation", "split-order", "crop-label", "negative-margin", "zero-divisor", "two-divisors"],
)
def test_prepare_settings_refuse_bad_values_naming_the_field(values: dict, where: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        PrepareSettings(**values)
    assert (caught.value.where, caught.value.problem) == (where, problem)
    raw = {**PrepareSettings().to_dict(), **values}
    with pytest.raises(ConfigError) as caught:
        PrepareSettings.from_dict(raw, source="prep.json")
    message = str(caught.value)
    assert message.startswith(f"prep.json: {where}: ") and "\n" not in message


def test_channel_modality_is_the_modality_of_the_settings_channel() -> None:
    def preparation(channel: int) -> TaskPreparation:
        return TaskPreparation(
            task_name="Task05_Prostate",
            task_dir="/data/Task05_Prostate",
            settings=PrepareSettings(channel=channel),
            modality={"0": "T2", "1": "ADC"},
            labels={"0": "background", "1": "PZ", "2": "TZ"},
        )

    assert [preparation(channel).channel_modality for channel in (0, 1, 2)] == ["T2", "ADC", ""]
    back = TaskPreparation.from_dict(json.loads(json.dumps(preparation(1).to_dict())))
    assert back == preparation(1) and back.ct_stats is None and back.channel_modality == "ADC"


def test_crop_shape_and_organ_box_in_crop_of_a_hand_built_case() -> None:
    meta = _case_meta((2, 5, 7, 6, 12, 20), margin=3)
    assert meta.crop_box == (-1, 2, 4, 9, 15, 23)
    assert meta.crop_shape == (10, 13, 19)
    assert meta.organ_box_in_crop() == (3, 3, 3, 7, 10, 16)
    tight = _case_meta((2, 5, 7, 6, 12, 20), margin=0)
    assert tight.crop_shape == (4, 7, 13) and tight.organ_box_in_crop() == (0, 0, 0, 4, 7, 13)
    assert CaseMeta.from_dict(json.loads(json.dumps(meta.to_dict()))) == meta


def _assert_meta_matches_arrays(task: PreparedTask, case_id: str) -> CaseMeta:
    """The checks of one prepared case's ``meta.json`` against its arrays; returns the meta."""
    case = task.case(case_id)
    meta = case.meta
    full_label = np.asarray(case.array("full", "label"))
    assert meta.organ_box == bounding_box(largest_component(full_label))
    assert meta.crop_box == expand_box(meta.organ_box, meta.crop_margin)
    assert meta.crop_margin == task.preparation.settings.crop_margin
    crop_label = np.asarray(case.array("crop", "label"))
    assert crop_label.shape == meta.crop_shape
    assert bounding_box(largest_component(crop_label)) == meta.organ_box_in_crop()
    assert meta.original_shape == full_label.shape and meta.organ_voxels == int(full_label.sum())
    assert CaseMeta.read(case.folder / CASE_META_FILE) == meta
    on_disk = json.loads((case.folder / CASE_META_FILE).read_text())
    assert on_disk["format_version"] == FORMAT_VERSION
    assert CaseMeta.from_dict(on_disk) == meta and meta.to_dict() == {
        k: v for k, v in on_disk.items() if k != "format_version"
    }
    return meta


def test_meta_of_a_prepared_case_matches_its_arrays(prepared_task: Callable[..., PreparedTask]) -> None:
    organs = [CUBE_ORGAN, (1, 2, 3, 5, 9, 12), (6, 8, 2, 11, 15, 7)]
    task = prepared_task(n_cases=3, organ=organs)
    for i, organ in enumerate(organs):
        meta = _assert_meta_matches_arrays(task, f"cube_{i}")
        assert meta.organ_box == organ and meta.original_shape == CUBE_SHAPE
        assert meta.crop_box == expand_box(organ, CROP_MARGIN)
        crop_label = np.asarray(task.case(f"cube_{i}").array("crop", "label"))
        assert bounding_box(crop_label) == meta.organ_box_in_crop()  # one cuboid: all of the organ
    assert TaskPreparation.read(task.folder / PREP_FILE) == task.preparation
    assert task.preparation.channel_modality == "CT"


def test_organ_box_is_the_box_of_the_largest_component(make_task: Callable[..., Path], tmp_path: Path) -> None:
    """A second, smaller blob within the margin: outside the organ box, but inside the crop."""
    task_dir = make_task(n_cases=3)
    label = np.zeros(CUBE_SHAPE, np.uint8)
    z0, y0, x0, z1, y1, x1 = CUBE_ORGAN
    label[z0:z1, y0:y1, x0:x1] = 1
    label[9:11, 12:14, 12:14] = 1  # not 26-connected to the cube (z 7 and 8 lie between)
    image = (label + np.random.default_rng(1).normal(0, 0.1, CUBE_SHAPE)).astype(np.float32)
    write_case(task_dir, "cube_0", image.transpose(2, 1, 0), label.transpose(2, 1, 0), np.diag([1.0, 1.0, 2.0, 1.0]))
    prepare_task(task_dir, tmp_path / "prepared", PrepareSettings(crop_margin=4), progress=False, workers=1)
    meta = _assert_meta_matches_arrays(PreparedTask(tmp_path / "prepared"), "cube_0")
    assert meta.organ_box == CUBE_ORGAN != bounding_box(label)
    assert meta.organ_voxels == int(label.sum()) == 4 * 6 * 6 + 2 * 2 * 2
    crop_label = np.asarray(PreparedTask(tmp_path / "prepared").case("cube_0").array("crop", "label"))
    assert crop_label.sum() == label.sum()  # crop_label "all": the blob is in the crop, outside the organ box
    assert bounding_box(crop_label) != meta.organ_box_in_crop()


def test_an_old_meta_without_organ_box_is_one_line_naming_the_file(
    prepared_task: Callable[..., PreparedTask],
) -> None:
    task = prepared_task(n_cases=3)
    path = task.folder / "cases" / "cube_0" / CASE_META_FILE
    old = json.loads(path.read_text())
    del old["organ_box"]
    path.write_text(json.dumps(old))
    with pytest.raises(InputDataError) as caught:
        task.case("cube_0")
    message = str(caught.value)
    assert message == f"{path}: organ_box: required key missing" and "\n" not in message


def test_exclusions_round_trip_and_a_malformed_file_is_one_line(tmp_path):
    path = tmp_path / "excluded.json"
    assert Exclusions.of_folder(tmp_path) == Exclusions()  # absent: nothing excluded
    Exclusions({"box_3": "empty organ"}).write(path)
    assert Exclusions.of_folder(tmp_path).cases == {"box_3": "empty organ"}
    path.write_text(json.dumps({"format_version": FORMAT_VERSION, "cases": ["box_3"]}))
    with pytest.raises(InputDataError, match=r"excluded\.json: cases: expected") as caught:
        Exclusions.of_folder(tmp_path)
    assert "\n" not in str(caught.value)
