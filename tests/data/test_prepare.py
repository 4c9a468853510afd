import json
import os
import shutil
import signal
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
from msd_builder import write_case, write_dataset_json
from process_tools import (
    assert_one_line_error,
    assert_output_is_one_error_line,
    descendants,
    ended_after_continuing,
    kill_and_reap,
    run_module,
    start_module,
    state,
    wait_gone,
    wait_until,
)

import l2s_core.data.prepare as prepare_module
from l2s_core.data.cache import PreparedTask
from l2s_core.data.io import write_mask
from l2s_core.data.msd import read_task
from l2s_core.data.prepare import PEAK_FLOAT32_COPIES, depth_axis_warning, lowres_shape, prepare_task, worker_count
from l2s_core.data.prepared_layout import PrepareSettings
from l2s_core.errors import ConfigError, EmptyOrganError


def _prepare(task, out, **kw):
    return prepare_task(task, out, workers=kw.pop("workers", 1), progress=False, **kw)


def test_cache_layout_and_shapes(small_task, tmp_path):
    out = tmp_path / "prep"
    statuses = _prepare(small_task, out, workers=2)
    assert {status.outcome for status in statuses.values()} == {"prepared"}
    task = PreparedTask(out)
    assert sum(len(v) for v in task.split.values()) == 5
    case = task.case("box_0")
    full = case.array("full", "image")
    assert isinstance(full, np.memmap) and full.shape == (12, 20, 24) and full.dtype == np.float32
    assert case.array("full", "label").dtype == np.uint8
    assert case.array("lowres", "image").shape == lowres_shape(full.shape) == (4, 10, 12)
    assert abs(float(full.mean())) < 1e-4 and abs(float(full.std()) - 1) < 1e-3  # zscore default
    assert case.meta.foreground_share == pytest.approx(case.array("full", "label").mean())


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


def test_released_code_lowres_divisors_and_largest_component_crop_labels(make_task, tmp_path):
    """The released code's low-resolution grid (z/2, y/3, x/2) and organ-network labels (largest
    component only), each a preparation setting recorded in prep.json."""
    two_parts = [(2, 2, 2, 8, 10, 10), (2, 2, 2, 8, 10, 10)]
    folder = make_task(n_cases=5, shape=(12, 18, 16), organ=two_parts[0])
    case_label = folder / "labelsTr" / "cube_0.nii.gz"
    label = np.asarray(nib.load(case_label).dataobj).copy()  # (x, y, z)
    label[13:15, 14:17, 10:12] = 1  # a second, smaller component inside the organ's crop
    nib.save(nib.Nifti1Image(label, nib.load(case_label).affine), case_label)
    settings = PrepareSettings(lowres_divisors=(2, 3, 2), crop_label="largest_component")
    prepare_task(folder, tmp_path / "released", settings, progress=False)
    task = PreparedTask(tmp_path / "released")
    case = task.case("cube_0")
    assert case.array("lowres", "image").shape == lowres_shape((12, 18, 16), (2, 3, 2)) == (6, 6, 8)
    settings = task.preparation.settings
    assert settings.lowres_divisors == (2, 3, 2) and settings.crop_label == "largest_component"
    crop_label = np.asarray(case.array("crop", "label"))
    assert crop_label.sum() == 6 * 8 * 8  # the second component is gone from the organ network's labels
    assert np.asarray(case.array("full", "label")).sum() == 6 * 8 * 8 + 2 * 3 * 2  # the full label keeps it
    with pytest.raises(ConfigError, match="crop_label"):
        PrepareSettings(crop_label="biggest")
    with pytest.raises(ConfigError, match="lowres_divisors"):
        PrepareSettings(lowres_divisors=(2, 0, 2))


def test_tumour_merged_by_default_and_rule_is_a_parameter(small_task, tmp_path):
    merged = PreparedTask(tmp_path / "a") if _prepare(small_task, tmp_path / "a") else None
    organ_only = (
        PreparedTask(tmp_path / "b")
        if _prepare(small_task, tmp_path / "b", settings=PrepareSettings(organ_labels=(2,)))
        else None
    )
    assert merged.case("box_0").meta.organ_voxels == 8 * 6 * 5
    assert organ_only.case("box_0").meta.organ_voxels == 2 * 2 * 2


@pytest.mark.slow
def test_killed_prepare_leaves_no_worker_and_a_rerun_redoes_only_the_partial_cases(small_task, tmp_path):
    out = tmp_path / "prep"
    _prepare(small_task, out)
    for case_id in ("box_1", "box_3"):
        shutil.rmtree(out / "cases" / case_id)
    before = (out / "cases" / "box_0" / "full_image.npy").stat().st_mtime_ns
    # default workers (2 on a 2-core machine); each stops itself in the middle of its case, in a write
    killed = start_module("l2s_core.cli", "prepare", small_task, "--out", out, stop_at="writing full_image.npy")
    try:
        wait_until(lambda: len(stopped_descendants(killed)) == 2, "both workers stopped in the middle of a case")
        workers = descendants(killed.pid)
    finally:
        kill_and_reap(killed)
    wait_gone(workers, "the workers of the SIGKILLed l2s prepare dying with it")
    assert sorted(p.name.split(".partial-")[0] for p in (out / "cases").glob(".*.partial-*")) == [".box_1", ".box_3"]

    rerun = run_module("l2s_core.cli", "prepare", small_task, "--out", out)
    assert rerun.returncode == 0, rerun.stderr
    assert rerun.stdout.strip() == f"{out}: 3 already prepared, 2 prepared"
    assert sorted(os.listdir(out / "cases")) == [f"box_{i}" for i in range(5)]  # the stale partial folders removed
    assert (out / "cases" / "box_0" / "full_image.npy").stat().st_mtime_ns == before
    task = PreparedTask(out)
    assert all(
        task.case(f"box_{i}").array("crop", "label").sum() == task.case(f"box_{i}").meta.organ_voxels for i in range(5)
    )


@pytest.mark.slow
def test_worker_killed_is_one_line_and_leaves_no_worker(small_task, tmp_path):
    out = tmp_path / "prep"
    preparing = start_module("l2s_core.cli", "prepare", small_task, "--out", out, stop_at="writing full_image.npy")
    wait_until(lambda: len(stopped_descendants(preparing)) == 2, "both workers stopped in the middle of a case")
    workers = stopped_descendants(preparing)
    os.kill(workers[0], signal.SIGKILL)  # as the out-of-memory killer would
    # the other goes on as it would without the harness (continued each time it stops at its next case),
    # so that the broken pool's SIGTERM, which waits while it is stopped, ends it
    wait_until(lambda: ended_after_continuing(workers[1]), "the other worker ending with the broken pool")
    stdout, stderr = preparing.communicate(timeout=300)
    assert preparing.returncode == 2, stderr
    assert_output_is_one_error_line(stdout, stderr, f"l2s: error: {out}: a preparation worker process died")


def stopped_descendants(process: subprocess.Popen) -> list[int]:
    """Descendants of a running process that have stopped themselves (state ``T``)."""
    assert process.poll() is None, process.communicate()
    return [pid for pid in descendants(process.pid) if state(pid) == "T"]


def test_stale_partial_folders_are_removed_and_those_of_running_processes_kept(small_task, tmp_path):
    cases = tmp_path / "prep" / "cases"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        for name in (
            ".box_1.partial-dead",
            f".box_2.partial-{sleeper.pid}-0a1b2c3d",
            ".box_3.partial-999999999-0a1b2c3d",
        ):
            (cases / name).mkdir(parents=True)
            (cases / name / "full_image.npy").write_bytes(b"half")
        _prepare(small_task, tmp_path / "prep")
        assert sorted(os.listdir(cases)) == [f".box_2.partial-{sleeper.pid}-0a1b2c3d"] + [f"box_{i}" for i in range(5)]
    finally:
        sleeper.kill()
        sleeper.wait()


def test_settings_change_refused(small_task, tmp_path):
    _prepare(small_task, tmp_path / "prep")
    with pytest.raises(ConfigError, match="normalisation"):
        _prepare(small_task, tmp_path / "prep", settings=PrepareSettings(normalisation="none"))


def test_ct_normalisation_uses_training_foreground(small_task, tmp_path):
    _prepare(small_task, tmp_path / "prep", settings=PrepareSettings(normalisation="ct"))
    stats = PreparedTask(tmp_path / "prep").preparation.ct_stats
    assert stats is not None and stats.low < stats.mean < stats.high and 200 < stats.mean < 400


def test_none_normalisation_keeps_raw_values(small_task, tmp_path):
    _prepare(small_task, tmp_path / "prep", settings=PrepareSettings(normalisation="none"))
    raw = np.asarray(nib.load(small_task / "imagesTr" / "box_0.nii.gz").dataobj)
    assert PreparedTask(tmp_path / "prep").case("box_0").array("full", "image").sum() == pytest.approx(raw.sum())


def assert_every_case_complete_or_absent(out):
    """Every case folder of a prepared task is complete (meta.json, arrays readable); no staging folder is left."""
    task = PreparedTask(out)
    for folder in (out / "cases").glob("*"):  # (none when preparation stopped before the first case)
        assert ".partial-" not in folder.name, folder.name
        case = task.case(folder.name)
        assert case.array("crop", "label").sum() == case.meta.organ_voxels > 0


@pytest.mark.slow
@pytest.mark.parametrize(
    "make_bad, problem",
    [
        (lambda: dict(image=np.zeros((24, 20, 12), np.int16), label=np.zeros((24, 20, 10), np.uint8)), "label shape"),
        (
            lambda: dict(
                image=np.zeros((24, 20, 12), np.int16),
                label=np.ones((24, 20, 12), np.uint8),
                label_affine=np.diag([-1.5, -1.5, 5.0, 1.0]),
            ),
            "affine differs",
        ),
        (
            lambda: dict(image=np.zeros((24, 20, 12), np.int16), label=np.full((24, 20, 12), 7, np.uint8)),
            "unexpected label values [7]",
        ),
        (
            lambda: dict(image=np.full((24, 20, 12), np.inf, np.float32), label=np.ones((24, 20, 12), np.uint8)),
            "NaN or infinite",
        ),
        (
            lambda: dict(image=np.zeros((24, 20, 12), np.int16), label=np.zeros((24, 20, 12), np.uint8)),
            "organ mask is empty",
        ),
    ],
)
def test_bad_case_is_one_line_at_the_default_workers_and_good_cases_are_complete(
    small_task, tmp_path, make_bad, problem
):
    write_case(small_task, "box_0", **make_bad())  # the first case fails while the next are in progress
    result = run_module("l2s_core.cli", "prepare", small_task, "--out", tmp_path / "prep")  # default workers
    assert_one_line_error(result, "l2s: error: ", "box_0.nii.gz: ", problem)
    assert "box_0" not in os.listdir(tmp_path / "prep" / "cases")
    assert_every_case_complete_or_absent(tmp_path / "prep")


@pytest.mark.slow
@pytest.mark.parametrize(
    "keep, problem", [(200, "not a readable NIfTI file"), (0.5, "truncated or corrupt image data")]
)
def test_truncated_image_is_one_line_at_the_default_workers(small_task, tmp_path, keep, problem):
    path = small_task / "imagesTr" / "box_1.nii.gz"
    data = path.read_bytes()
    path.write_bytes(data[: keep if isinstance(keep, int) else int(len(data) * keep)])  # the header, or half the file
    result = run_module("l2s_core.cli", "prepare", small_task, "--out", tmp_path / "prep")
    assert_one_line_error(result, f"l2s: error: {path}: {problem}")
    assert_every_case_complete_or_absent(tmp_path / "prep")


@pytest.mark.slow
def test_truncated_two_channel_image_is_one_line_at_the_default_workers(tmp_path):
    """A multi-channel image (the MSD prostate) is read channel by channel: a truncation found while
    slicing the channel out is the same one line."""
    from l2s_core.data.phantom.settings import PhantomSettings
    from l2s_core.data.phantom.task import generate_phantom_task

    task = generate_phantom_task(
        "prostate", tmp_path, settings=PhantomSettings(n_cases=4, profile="msd", scale=0.1), progress=False
    )
    path = task / "imagesTr" / "prostate_002.nii.gz"
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 4])  # inside channel 0 (T2), the one read
    result = run_module("l2s_core.cli", "prepare", task, "--out", tmp_path / "prep")
    assert_one_line_error(result, f"l2s: error: {path}: truncated or corrupt image data")
    assert_every_case_complete_or_absent(tmp_path / "prep")


def test_empty_organ_skipped_when_asked_and_recorded(small_task, tmp_path):
    write_case(small_task, "box_3", np.zeros((24, 20, 12), np.int16), np.zeros((24, 20, 12), np.uint8))
    with pytest.raises(EmptyOrganError, match="box_3"):
        _prepare(small_task, tmp_path / "strict")
    statuses = _prepare(small_task, tmp_path / "prep", skip_empty=True)
    assert statuses["box_3"].outcome == "excluded"
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
    assert full_label.sum() == case.meta.organ_voxels > 0
    assert case.array("crop", "label").sum() == full_label.sum()  # the crop holds every organ voxel
    assert case.array("lowres", "image").shape == (30 // 3, 101 // 2, 122 // 2)
    write_mask(full_label, case.meta.source, tmp_path / "back.nii.gz")
    source = np.asarray(nib.load(real_ct / "example_seg.nii.gz").dataobj)
    assert np.array_equal(np.asarray(nib.load(tmp_path / "back.nii.gz").dataobj), (source == value).astype(np.uint8))


def test_organ_absent_in_every_case(small_task, tmp_path):
    write_dataset_json(
        small_task,
        [f"box_{i}" for i in range(5)],
        labels={"0": "background", "1": "organ", "2": "tumour", "9": "other"},
    )
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
    assert {s.outcome for s in _prepare(small_task, tmp_path / "prep").values()} == {"prepared"}


_PEAK_SCRIPT = """
import json, sys
from pathlib import Path
from l2s_core.data.prepare import prepare_task

def status_bytes(field):  # VmRSS: resident now; VmHWM: its peak (getrusage's ru_maxrss would count the RSS of the
    line = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith(field + ":"))
    return int(line.split()[1]) * 1024  # process that started this one, from before exec)

before = status_bytes("VmRSS")
prepare_task(sys.argv[1], sys.argv[2], workers=1, progress=False)  # what one worker does, here in this process
print(json.dumps({"before": before, "peak": status_bytes("VmHWM")}))
"""


@pytest.mark.slow
def test_preparing_a_case_peaks_below_its_estimate_of_four_float32_copies(tmp_path):
    # (64, 384, 384) is 38 MB as float32, above glibc's largest mmap threshold (32 MB), so arrays
    # freed during preparation are returned to the system as they would be for a real CT
    shape = (64, 384, 384)
    label = np.zeros(shape, np.uint8)
    label[4:60, 16:368, 16:368] = 1  # an organ almost as large as the image: the largest crop
    image = (np.random.default_rng(0).normal(0, 100, shape) + 300.0 * label).astype(np.int16)
    write_case(tmp_path / "Task", "big", image.transpose(2, 1, 0), label.transpose(2, 1, 0))
    write_dataset_json(tmp_path / "Task", ["big"])
    result = subprocess.run(
        [sys.executable, "-c", _PEAK_SCRIPT, str(tmp_path / "Task"), str(tmp_path / "prep")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    measured = json.loads(result.stdout)
    float32_size = 4 * int(np.prod(shape))
    assert prepare_module.case_peak_bytes(read_task(tmp_path / "Task").cases[0]) == PEAK_FLOAT32_COPIES * float32_size
    assert measured["peak"] - measured["before"] < PEAK_FLOAT32_COPIES * float32_size, measured


def test_workers_are_bounded_by_cores_cases_and_memory(monkeypatch):
    gib = 2**30
    monkeypatch.setattr(prepare_module, "available_memory", lambda: 10 * gib)
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    assert worker_count(None, [gib] * 20) == 8  # all cores
    assert worker_count(None, [gib] * 3) == 3  # one per case
    assert worker_count(None, [3 * gib, gib, gib]) == 3  # 10 GiB hold three of the largest case
    assert worker_count(None, [4 * gib] * 20) == 2
    assert worker_count(16, [4 * gib] * 20) == 2  # also when more are asked for
    assert worker_count(None, [20 * gib] * 20) == 1  # one, even when memory seems too small


def test_prepare_warns_when_the_depth_axis_is_not_the_slice_axis(make_task, tmp_path):
    assert depth_axis_warning("a.nii.gz", (5.0, 0.8, 0.8)) is None  # axial: S is the slice axis
    assert depth_axis_warning("a.nii.gz", (1.0, 1.0, 1.0)) is None
    message = depth_axis_warning("a.nii.gz", (0.8, 0.8, 4.0))  # sagittal: R holds the slices
    assert message is not None and message.startswith("a.nii.gz: the largest voxel spacing (4 mm) is along R (x)")
    task = make_task(n_cases=2, affine=np.diag([1.0, 3.0, 1.0, 1.0]))  # y (A) spacing 3 mm, z 1 mm
    with pytest.warns(UserWarning, match=r"cube_0.nii.gz: the largest voxel spacing \(3 mm\) is along A \(y\)"):
        prepare_task(task, tmp_path / "prepared", workers=1, progress=False)


@pytest.mark.parametrize("case_id", ["..", ".", "", ".hidden", "back\\slash"])
def test_case_id_that_is_not_a_plain_name_is_refused_and_nothing_is_deleted(
    small_task, tmp_path, monkeypatch, capsys, case_id
):
    """A case file named ``...nii.gz`` gives the case id ``..``: ``out/cases/..`` is ``out`` itself,
    which prepare used to remove (with ``--out .``, every file of the current folder)."""
    from cli_runner import assert_one_line_error as assert_cli_one_line_error

    image = np.zeros((24, 20, 12), np.int16)
    label = np.zeros((24, 20, 12), np.uint8)
    label[4:12, 5:11, 2:7] = 1
    write_case(small_task, case_id, image, label)
    write_dataset_json(small_task, [f"box_{i}" for i in range(5)] + [case_id])
    here = tmp_path / "here"
    (here / "cases").mkdir(parents=True)
    (here / "precious.txt").write_text("keep me")
    (here / "cases" / "precious.txt").write_text("keep me too")
    monkeypatch.chdir(here)
    assert_cli_one_line_error(
        capsys,
        "prepare",
        small_task,
        "--out",
        ".",
        "--workers",
        1,
        names=small_task / "dataset.json",
        says=f"training[5] gives the case id {case_id!r}",
    )
    assert (here / "precious.txt").read_text() == "keep me"
    assert (here / "cases" / "precious.txt").read_text() == "keep me too"


def test_channel_the_task_lacks_is_refused_before_anything_is_written(small_task, tmp_path, capsys):
    """``--channel 999`` on a one-channel task wrote prep.json with it, so that every later run with
    the right channel was refused as "prepared with other settings"."""
    from cli_runner import assert_one_line_error as assert_cli_one_line_error

    assert_cli_one_line_error(
        capsys,
        "prepare",
        small_task,
        "--out",
        tmp_path / "prep",
        "--channel",
        999,
        names="channel",
        says="999 is not a channel of Task99_Box: its dataset.json declares 1 (0 = CT)",
    )
    assert not (tmp_path / "prep" / "prep.json").exists()


def test_max_cases_lowres_divisors_and_crop_label_flags_reach_prep_json(small_task, tmp_path, capsys):
    from cli_runner import run_l2s

    out = tmp_path / "prep"
    code, stdout, err = run_l2s(
        capsys,
        "prepare",
        small_task,
        "--out",
        out,
        "--max-cases",
        4,
        "--lowres-divisors",
        2,
        3,
        2,
        "--crop-label",
        "largest_component",
        "--workers",
        1,
    )
    assert code == 0, err
    assert "4 prepared" in stdout
    settings = json.loads((out / "prep.json").read_text())["settings"]
    assert (settings["max_cases"], settings["lowres_divisors"], settings["crop_label"]) == (
        4,
        [2, 3, 2],
        "largest_component",
    )
    assert PreparedTask(out).preparation.settings == PrepareSettings(
        max_cases=4, lowres_divisors=(2, 3, 2), crop_label="largest_component"
    )


@pytest.mark.parametrize(
    ("flag", "values", "names", "says"),
    [
        ("--lowres-divisors", (2, 0, 2), "lowres_divisors", "needs three positive (z, y, x) divisors, got (2, 0, 2)"),
        ("--crop-label", ("biggest",), "crop_label", "unknown value 'biggest'; expected one of all, largest_component"),
        ("--max-cases", (0,), "max_cases", "must be at least 1, got 0"),
        ("--normalisation", ("minmax",), "normalisation", "unknown value 'minmax'; expected one of zscore, ct, none"),
    ],
)
def test_a_bad_value_of_a_settings_flag_is_one_line_and_writes_nothing(
    small_task, tmp_path, capsys, flag, values, names, says
):
    from cli_runner import assert_one_line_error as assert_cli_one_line_error

    out = tmp_path / "prep"
    assert_cli_one_line_error(
        capsys, "prepare", small_task, "--out", out, flag, *values, "--workers", 1, names=names, says=says
    )
    assert not (out / "prep.json").exists()
