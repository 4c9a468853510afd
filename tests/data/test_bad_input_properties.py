"""Property-based bad input: malformed dataset.json content and random bytes as NIfTI always give
the clean one-line InputDataError, never another exception or a hang."""

import gzip
import json

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from l2s_core.data.io import read_image, read_label
from l2s_core.data.msd import read_task
from l2s_core.errors import InputDataError

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=12,
)
DATASET_KEYS = st.sampled_from(["name", "modality", "labels", "training", "numTraining"])
MALFORMED_DATASET = st.one_of(
    st.binary(max_size=200),
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(DATASET_KEYS, JSON_VALUES, max_size=5).map(lambda d: json.dumps(d).encode()),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=MALFORMED_DATASET)
def test_malformed_dataset_json_gives_clean_error(tmp_path_factory, content):
    root = tmp_path_factory.mktemp("task")
    (root / "imagesTr").mkdir()
    (root / "labelsTr").mkdir()
    (root / "dataset.json").write_bytes(content)
    try:
        read_task(root)
    except InputDataError as exc:
        assert str(exc).startswith(str(root)) and "\n" not in str(exc)
    else:
        raise AssertionError("a task with no case files was accepted")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.binary(max_size=1024), compress=st.booleans(), as_label=st.booleans())
def test_random_bytes_as_nifti_give_clean_error(tmp_path_factory, content, compress, as_label):
    path = tmp_path_factory.mktemp("nii") / ("x.nii.gz" if compress else "x.nii")
    path.write_bytes(gzip.compress(content) if compress else content)
    try:
        (read_label if as_label else read_image)(path)
    except InputDataError as exc:
        assert str(path) in str(exc) and "\n" not in str(exc)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(min_value=0, max_value=2000), flip=st.integers(min_value=0, max_value=2000))
def test_damaged_real_nifti_gives_clean_error_or_reads(tmp_path_factory, cut, flip):
    import nibabel as nib

    folder = tmp_path_factory.mktemp("damaged")
    good = folder / "good.nii"
    nib.save(nib.Nifti1Image(np.arange(6 * 7 * 8, dtype=np.float32).reshape(6, 7, 8), np.eye(4)), good)
    data = bytearray(good.read_bytes())
    data[flip % len(data)] ^= 0xFF
    bad = folder / "bad.nii"
    bad.write_bytes(bytes(data[: len(data) - cut]))
    try:
        image, _ = read_image(bad)
    except InputDataError as exc:
        assert "bad.nii" in str(exc)
    else:
        assert image.dtype == np.float32 and image.ndim == 3
