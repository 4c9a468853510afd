"""Reading a prepared task: memory-mapped arrays, the split without excluded cases, clear errors."""

import numpy as np
import pytest

from l2s_core.errors import InputDataError
from l2s_core.files import atomic_write_json


def test_arrays_are_memory_maps_and_excluded_cases_leave_the_split(prepared_task):
    task = prepared_task(n_cases=5)
    case_id = task.split["train"][0]
    case = task.case(case_id)
    assert isinstance(case.array("crop", "image"), np.memmap) and case.case_id == case_id
    assert case.spacing == (2.0, 1.0, 1.0) and len(case.crop_box) == 6
    atomic_write_json(task.folder / "excluded.json", {"cases": {case_id: "empty organ"}})
    reread = type(task)(task.folder)
    assert case_id not in reread.split["train"] and reread.excluded == {case_id: "empty organ"}


def test_missing_or_corrupt_cache_files_name_the_file(prepared_task):
    task = prepared_task(n_cases=5)
    case = task.case(task.split["train"][0])
    (case.folder / "lowres_label.npy").unlink()
    with pytest.raises(InputDataError, match="lowres_label.npy: cache file missing"):
        case.array("lowres", "label")
    (case.folder / "crop_image.npy").write_bytes(b"not numpy")
    with pytest.raises(InputDataError, match="crop_image.npy: corrupt cache file"):
        case.array("crop", "image")
    with pytest.raises(ValueError):
        case.array("highres", "image")
