import json
import os

import numpy as np
import pytest

from l2s_core.errors import FormatVersionError, InputDataError
from l2s_core.files import FORMAT_VERSION, atomic_open, atomic_save_npy, atomic_write_json, read_json


def test_failed_write_leaves_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "summary.json"
    atomic_write_json(target, {"a": 1})
    with pytest.raises(OSError, match="disk full"):
        with atomic_open(target) as handle:
            handle.write(b"{partial")
            raise OSError(28, "disk full")
    assert read_json(target) == {"format_version": FORMAT_VERSION, "a": 1}
    assert os.listdir(tmp_path) == ["summary.json"]


def test_npy_round_trip_memmap(tmp_path):
    atomic_save_npy(tmp_path / "a.npy", np.arange(6, dtype=np.float32).reshape(1, 2, 3))
    loaded = np.load(tmp_path / "a.npy", mmap_mode="r")
    assert loaded.shape == (1, 2, 3) and loaded[0, 1, 2] == 5


def test_read_json_errors(tmp_path):
    with pytest.raises(InputDataError, match="missing.json: file not found"):
        read_json(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(InputDataError, match="bad.json: not valid JSON"):
        read_json(tmp_path / "bad.json")
    (tmp_path / "future.json").write_text(json.dumps({"format_version": FORMAT_VERSION + 1}))
    with pytest.raises(FormatVersionError, match=f"future.json: format_version {FORMAT_VERSION + 1}"):
        read_json(tmp_path / "future.json")


def test_remove_staged_removes_only_inside_its_area(tmp_path):
    from l2s_core.errors import L2SError
    from l2s_core.files import remove_staged

    area = tmp_path / "out" / "cases"
    (area / "staged").mkdir(parents=True)
    (area / "staged" / "a.npy").write_bytes(b"x")
    (tmp_path / "precious").mkdir()
    (area / "link").symlink_to(tmp_path / "precious", target_is_directory=True)
    for target in (area / "..", area / ".", area, area / "link", tmp_path / "precious", area / "staged" / ".." / ".."):
        with pytest.raises(L2SError, match="refusing to remove"):
            remove_staged(target, area)
    assert (tmp_path / "precious").is_dir() and (area / "staged" / "a.npy").is_file()
    remove_staged(area / "staged", area)
    assert not (area / "staged").exists()
    remove_staged(area / "staged", area)  # absent: nothing to do


def test_a_full_disk_while_writing_names_the_file(tmp_path):
    """An error of a write into the open file names no file (``l2s: error: l2s: No space left on
    device``); it is raised again naming the file being written."""
    import errno

    with pytest.raises(OSError) as error, atomic_open(tmp_path / "mask.nii.gz") as handle:
        handle.write(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")
    assert error.value.errno == errno.ENOSPC and error.value.filename == str(tmp_path / "mask.nii.gz")
    assert os.listdir(tmp_path) == []
