"""Decimal-string DICOM values whatever VR the file gives them (``l2s_core.data.dicom.numbers``):
``DS`` values as pydicom holds them or reads them from a file, a long value pydicom itself writes as
``UN`` bytes, grouping into items, and bad values in one line naming the file and the element."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
from dicom_builder import pydicom  # skips without pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.tag import Tag
from pydicom.uid import ExplicitVRLittleEndian

from l2s_core.data.dicom.numbers import decimal_values
from l2s_core.errors import DicomError

WHERE = "rt.dcm"
WHAT = "ContourData of structure 'Spleen'"


def _read_back(dataset: Dataset) -> Dataset:
    """``dataset`` written in explicit VR little endian and read back by pydicom."""
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = "1.2.3", "1.2.3.4"
    dataset.file_meta = meta
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # pydicom warns when it stores a long DS as UN
        dataset.save_as(buffer, enforce_file_format=True)
    buffer.seek(0)
    return pydicom.dcmread(buffer)


def _raw(vr: str, value: bytes) -> Dataset:
    """A dataset holding ContourData as pydicom's reader leaves it: raw bytes of the VR given."""
    dataset = Dataset()
    tag = Tag("ContourData")
    dataset[tag] = RawDataElement(tag, vr, len(value), value, 0, False, True)
    return dataset


def test_ds_values_in_memory_and_read_from_a_file_grouped_per_item() -> None:
    dataset = Dataset()
    dataset.ContourData = [1.5, -2, 3.25, 4, 5, 6]
    dataset.SliceThickness = 2.5
    expected = np.array([[1.5, -2.0, 3.25], [4.0, 5.0, 6.0]])
    for source in (dataset, _read_back(dataset)):
        points = decimal_values(source, "ContourData", WHERE, WHAT, per_item=3)
        assert points.dtype == np.float64 and np.array_equal(points, expected)
        assert np.array_equal(decimal_values(source, "ContourData", WHERE, WHAT, per_item=2), expected.reshape(3, 2))
        assert np.array_equal(decimal_values(source, "SliceThickness", WHERE, "SliceThickness"), [[2.5]])


def test_a_long_contour_pydicom_wrote_as_un_reads_as_its_numbers() -> None:
    """Above 64 kB a DS cannot be stored in explicit VR: pydicom writes it as UN, and reading it
    back gives bytes (one "number" per byte to a reader that iterates)."""
    points = np.round(np.random.default_rng(0).uniform(-300, 300, (3000, 3)), 3)
    item = Dataset()
    item.ContourData = [float(v) for v in points.ravel()]
    contour = _read_back(item)
    assert contour.get_item("ContourData").VR == "UN"
    assert np.array_equal(decimal_values(contour, "ContourData", WHERE, WHAT, per_item=3), points)
    assert isinstance(contour.ContourData, bytes)  # pydicom's own access: the raw bytes, as they are
    assert np.array_equal(decimal_values(contour, "ContourData", WHERE, WHAT, per_item=3), points)


def test_un_bytes_padded_and_an_empty_value() -> None:
    assert np.array_equal(decimal_values(_raw("UN", b"1.5\\2\\-3 "), "ContourData", WHERE, WHAT, 3), [[1.5, 2, -3]])
    assert decimal_values(_raw("DS", b""), "ContourData", WHERE, WHAT, 3).shape == (0, 3)


@pytest.mark.parametrize("vr", ["DS", "UN"])
@pytest.mark.parametrize(
    ("value", "says"),
    [
        (b"1\\abc\\3 ", f"{WHAT} (VR {{vr}}) is not a backslash-separated list of decimal numbers"),
        (b"1\\\xff\\3 ", f"{WHAT} (VR {{vr}}) is not a backslash-separated list of decimal numbers"),
        (b"1\\NaN\\3 ", f"{WHAT} (VR {{vr}}) holds a value that is not a finite number"),
        (b"1\\inf\\3 ", f"{WHAT} (VR {{vr}}) holds a value that is not a finite number"),
        (b"1\\2\\3\\4 ", f"{WHAT} holds 4 numbers, not a multiple of 3"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_file_and_the_element(vr: str, value: bytes, says: str) -> None:
    with pytest.raises(DicomError) as raised:
        decimal_values(_raw(vr, value), "ContourData", WHERE, WHAT, per_item=3)
    message = str(raised.value)
    assert message.startswith(f"{WHERE}: {says.format(vr=vr)}"), message
    assert "\n" not in message
