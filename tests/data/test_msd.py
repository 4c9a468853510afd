import numpy as np
import pytest

from l2s_core.data.msd import organ_mask, read_task, selected_cases
from l2s_core.errors import ConfigError, InputDataError


def test_reads_cases_sorted(small_task):
    task = read_task(small_task)
    assert [c.case_id for c in task.cases] == [f"box_{i}" for i in range(5)]
    assert task.labels == {0: "background", 1: "organ", 2: "tumour"}


def test_selected_cases_are_the_first_case_ids(small_task):
    task = read_task(small_task)
    shuffled = type(task)(task.root, task.name, task.modality, task.labels, task.cases[::-1])
    assert [c.case_id for c in selected_cases(shuffled, 2)] == ["box_0", "box_1"]
    assert selected_cases(task, None) == task.cases
    with pytest.raises(ConfigError, match="max_cases: must be at least 1, got 0"):
        selected_cases(task, 0)


def test_max_cases_takes_the_first_ids_in_string_order(small_task):
    task = read_task(small_task)
    case = task.cases[0]
    ids = [f"liver_{i}" for i in range(131)]
    liver = type(task)(
        task.root, task.name, task.modality, task.labels, [type(case)(i, case.image_path, case.label_path) for i in ids]
    )
    first = [c.case_id for c in selected_cases(liver, 69)]
    assert first[:5] == ["liver_0", "liver_1", "liver_10", "liver_100", "liver_101"]
    assert "liver_130" in first and "liver_68" not in first


def test_missing_dataset_json(small_task):
    (small_task / "dataset.json").unlink()
    with pytest.raises(InputDataError, match=r"dataset\.json: dataset.json not found"):
        read_task(small_task)


@pytest.mark.parametrize(
    "content, problem",
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"labels": {"0": "bg"}, "modality": {"0": "CT"}}', "'training' missing"),
        ('{"labels": {"0": "bg"}, "modality": {"0": "CT"}, "training": [{"image": 3}]}', r"training\[0\]"),
        ('{"labels": {"x": "bg"}, "modality": {"0": "CT"}, "training": []}', "empty|not an integer"),
    ],
)
def test_malformed_dataset_json(small_task, content, problem):
    (small_task / "dataset.json").write_text(content)
    with pytest.raises(InputDataError, match=problem):
        read_task(small_task)


def test_image_without_label(small_task):
    (small_task / "labelsTr" / "box_3.nii.gz").unlink()
    with pytest.raises(InputDataError, match=r"box_3\.nii\.gz: image without a label"):
        read_task(small_task)


def test_label_without_image(small_task):
    (small_task / "imagesTr" / "box_2.nii.gz").unlink()
    with pytest.raises(InputDataError, match=r"box_2\.nii\.gz: label without an image"):
        read_task(small_task)


def test_macos_resource_files_ignored(small_task):
    (small_task / "imagesTr" / "._box_0.nii.gz").write_bytes(b"junk")
    assert len(read_task(small_task).cases) == 5


def test_organ_mask_merge_rule():
    label = np.array([[[0, 1, 2, 1]]], np.uint8)
    assert organ_mask(label).tolist() == [[[0, 1, 1, 1]]]
    assert organ_mask(label, organ_labels=[1]).tolist() == [[[0, 1, 0, 1]]]
