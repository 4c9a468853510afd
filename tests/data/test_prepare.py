import json
import shutil

import nibabel as nib
import numpy as np
import pytest
from msd_builder import write_case, write_dataset_json

from l2s_core.data.cache import PreparedTask
from l2s_core.data.io import write_mask
from l2s_core.data.prepare import PrepareSettings, lowres_shape, prepare_task
from l2s_core.errors import ConfigError, EmptyOrganError, InputDataError


def _prepare(task, out, **kw):
    return prepare_task(task, out, workers=kw.pop("workers", 1), progress=False, **kw)


def test_cache_layout_and_shapes(small_task, tmp_path):
    out = tmp_path / "prep"
    statuses = _prepare(small_task, out, workers=2)
    assert set(statuses.values()) == {"prepared"}
    task = PreparedTask(out)
    assert sum(len(v) for v in task.split.values()) == 5
    case = task.case("box_0")
    full = case.array("full", "image")
    assert isinstance(full, np.memmap) and full.shape == (12, 20, 24) and full.dtype == np.float32
    assert case.array("full", "label").dtype == np.uint8
    assert case.array("lowres", "image").shape == lowres_shape(full.shape) == (4, 10, 12)
    assert abs(float(full.mean())) < 1e-4 and abs(float(full.std()) - 1) < 1e-3  # zscore default
    assert case.meta["foreground_share"] == pytest.approx(case.array("full", "label").mean())


def test_crop_box_holds_organ_with_margin(small_task, tmp_path):
    task = PreparedTask(tmp_path / "prep") if _prepare(small_task, tmp_path / "prep") else None
    case = task.case("box_2")
    z0, y0, x0, z1, y1, x1 = case.crop_box
    label = np.asarray(case.array("full", "label"))
    zs, ys, xs = np.nonzero(label)
    assert (z0, y0, x0) == (zs.min() - 15, ys.min() - 15, xs.min() - 15)
    assert (z1, y1, x1) == (zs.max() + 16, ys.max() + 16, xs.max() + 16)
    assert case.array("crop", "label").sum() == label.sum()  # every organ voxel in the crop
    assert case.array("crop", "image").shape == (z1 - z0, y1 - y0, x1 - x0)


def test_tumour_merged_by_default_and_rule_is_a_parameter(small_task, tmp_path):
    merged = PreparedTask(tmp_path / "a") if _prepare(small_task, tmp_path / "a") else None
    organ_only = PreparedTask(tmp_path / "b") if _prepare(small_task, tmp_path / "b",
                                                           settings=PrepareSettings(organ_labels=(2,))) else None
    assert merged.case("box_0").meta["organ_voxels"] == 8 * 6 * 5
    assert organ_only.case("box_0").meta["organ_voxels"] == 2 * 2 * 2


def test_rerun_skips_and_partial_case_is_redone(small_task, tmp_path):
    out = tmp_path / "prep"
    _prepare(small_task, out)
    shutil.rmtree(out / "cases" / "box_1")
    (out / "cases" / ".box_1.partial-dead").mkdir()  # left by a killed run
    (out / "cases" / ".box_1.partial-dead" / "full_image.npy").write_bytes(b"half")
    before = (out / "cases" / "box_0" / "full_image.npy").stat().st_mtime_ns
    statuses = _prepare(small_task, out)
    assert statuses["box_1"] == "prepared" and statuses["box_0"] == "already prepared"
    assert (out / "cases" / "box_0" / "full_image.npy").stat().st_mtime_ns == before
    assert PreparedTask(out).case("box_1").array("full", "image").shape == (12, 20, 24)


def test_settings_change_refused(small_task, tmp_path):
    _prepare(small_task, tmp_path / "prep")
    with pytest.raises(ConfigError, match="normalisation"):
        _prepare(small_task, tmp_path / "prep", settings=PrepareSettings(normalisation="none"))


def test_ct_normalisation_uses_training_foreground(small_task, tmp_path):
    _prepare(small_task, tmp_path / "prep", settings=PrepareSettings(normalisation="ct"))
    stats = PreparedTask(tmp_path / "prep").settings["ct_stats"]
    assert stats["low"] < stats["mean"] < stats["high"] and 200 < stats["mean"] < 400


def test_none_normalisation_keeps_raw_values(small_task, tmp_path):
    _prepare(small_task, tmp_path / "prep", settings=PrepareSettings(normalisation="none"))
    raw = np.asarray(nib.load(small_task / "imagesTr" / "box_0.nii.gz").dataobj)
    assert PreparedTask(tmp_path / "prep").case("box_0").array("full", "image").sum() == pytest.approx(raw.sum())


@pytest.mark.parametrize("make_bad, problem", [
    (lambda: dict(image=np.zeros((24, 20, 12), np.int16), label=np.zeros((24, 20, 10), np.uint8)), "label shape"),
    (lambda: dict(image=np.zeros((24, 20, 12), np.int16), label=np.ones((24, 20, 12), np.uint8),
                  label_affine=np.diag([-1.5, -1.5, 5.0, 1.0])), "affine differs"),
    (lambda: dict(image=np.zeros((24, 20, 12), np.int16), label=np.full((24, 20, 12), 7, np.uint8)),
     r"unexpected label values \[7\]"),
    (lambda: dict(image=np.full((24, 20, 12), np.inf, np.float32), label=np.ones((24, 20, 12), np.uint8)),
     "NaN or infinite"),
    (lambda: dict(image=np.zeros((24, 20, 12), np.int16), label=np.zeros((24, 20, 12), np.uint8)),
     "organ mask is empty"),
])
def test_bad_case_named_and_prepared_cases_kept(small_task, tmp_path, make_bad, problem):
    out = tmp_path / "prep"
    _prepare(small_task, out)
    shutil.rmtree(out / "cases" / "box_4")
    write_case(small_task, "box_4", **make_bad())
    with pytest.raises(InputDataError, match=problem) as info:
        _prepare(small_task, out)
    assert "box_4.nii.gz" in str(info.value)
    assert sorted(p.name for p in (out / "cases").iterdir()) == ["box_0", "box_1", "box_2", "box_3"]


def test_truncated_image_named(small_task, tmp_path):
    path = small_task / "imagesTr" / "box_1.nii.gz"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(InputDataError, match=r"box_1\.nii\.gz: (truncated|not a readable)"):
        _prepare(small_task, tmp_path / "prep")


def test_empty_organ_skipped_when_asked_and_recorded(small_task, tmp_path):
    write_case(small_task, "box_3", np.zeros((24, 20, 12), np.int16), np.zeros((24, 20, 12), np.uint8))
    with pytest.raises(EmptyOrganError, match="box_3"):
        _prepare(small_task, tmp_path / "strict")
    statuses = _prepare(small_task, tmp_path / "prep", skip_empty=True)
    assert statuses["box_3"].startswith("excluded")
    task = PreparedTask(tmp_path / "prep")
    assert "box_3" in task.excluded and all("box_3" not in ids for ids in task.split.values())
    assert "empty" in json.loads((tmp_path / "prep" / "excluded.json").read_text())["cases"]["box_3"]


@pytest.mark.parametrize("organ, value", [("spleen", 1), ("pancreas", 7)])
def test_real_ct_one_case_task(real_ct, tmp_path, organ, value):
    task_dir = tmp_path / f"Task_{organ}"
    (task_dir / "imagesTr").mkdir(parents=True)
    (task_dir / "labelsTr").mkdir()
    (task_dir / "imagesTr" / "ct_0.nii.gz").symlink_to(real_ct / "example_ct_sm.nii.gz")
    (task_dir / "labelsTr" / "ct_0.nii.gz").symlink_to(real_ct / "example_seg.nii.gz")
    present = np.unique(np.asarray(nib.load(real_ct / "example_seg.nii.gz").dataobj))
    write_dataset_json(task_dir, ["ct_0"], labels={str(int(v)): f"class {int(v)}" for v in present})
    out = tmp_path / "prep"
    _prepare(task_dir, out, settings=PrepareSettings(organ_labels=(value,)))
    case = PreparedTask(out).case("ct_0")
    full_label = np.asarray(case.array("full", "label"))
    assert full_label.sum() == case.meta["organ_voxels"] > 0
    assert case.array("crop", "label").sum() == full_label.sum()  # the crop holds every organ voxel
    assert case.array("lowres", "image").shape == (30 // 3, 101 // 2, 122 // 2)
    write_mask(full_label, case.volume_meta, tmp_path / "back.nii.gz")
    source = np.asarray(nib.load(real_ct / "example_seg.nii.gz").dataobj)
    assert np.array_equal(np.asarray(nib.load(tmp_path / "back.nii.gz").dataobj), (source == value).astype(np.uint8))


def test_organ_absent_in_every_case(small_task, tmp_path):
    write_dataset_json(small_task, [f"box_{i}" for i in range(5)],
                       labels={"0": "background", "1": "organ", "2": "tumour", "9": "other"})
    with pytest.raises(EmptyOrganError, match=r"labelsTr: the organ \(labels \(9,\)\) is absent in every case"):
        _prepare(small_task, tmp_path / "prep", settings=PrepareSettings(organ_labels=(9,)), skip_empty=True)


def test_failed_write_leaves_no_case_that_looks_prepared(small_task, tmp_path, monkeypatch):
    import l2s_core.data.prepare as prepare_module

    calls = {"n": 0}
    real_save = prepare_module.atomic_save_npy

    def disk_full_on_third_file(path, array):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(28, "No space left on device")
        real_save(path, array)

    monkeypatch.setattr(prepare_module, "atomic_save_npy", disk_full_on_third_file)
    with pytest.raises(OSError, match="No space left"):
        _prepare(small_task, tmp_path / "prep")
    assert list((tmp_path / "prep" / "cases").iterdir()) == []  # no case folder, no staging left behind
    monkeypatch.setattr(prepare_module, "atomic_save_npy", real_save)
    assert set(_prepare(small_task, tmp_path / "prep").values()) == {"prepared"}
