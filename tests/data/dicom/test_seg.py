"""DICOM-SEG out (``l2s_core.data.dicom.seg``): masks of a small synthetic series written as one
binary SEG and read back with pydicom and highdicom: its segments, labels and codes, one frame per
slice and segment holding organ on the right source slice, the referenced series; a series whose
slices are gone is refused in one line and nothing is written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from dicom_builder import pydicom, write_ct_series  # skips without pydicom

from l2s_core import __version__
from l2s_core.data.dicom.seg import SegSegment, write_seg
from l2s_core.data.dicom.series import read_series
from l2s_core.errors import DicomError

hd = pytest.importorskip("highdicom", reason="DICOM-SEG needs the dicom extra (highdicom)")

#: A nibabel ``(i, j, k)`` series of 7 columns, 5 rows and 4 slices, every voxel its own value,
#: stored as an axial DICOM series (flipped in x and y from RAS).
DATA = np.arange(7 * 5 * 4, dtype=np.int16).reshape(7, 5, 4)
AFFINE = np.array([[-0.8, 0, 0, 10.0], [0, -0.9, 0, -20.0], [0, 0, 2.5, 30.0], [0, 0, 0, 1]])
#: Per segment, the ``(i, j, k)`` voxels it holds: the spleen on slices 1 and 2, the liver on
#: slices 2 and 3, overlapping on slice 2; slice 0 holds neither.
SOURCE_MASKS = {"Spleen": np.zeros(DATA.shape, bool), "Liver": np.zeros(DATA.shape, bool)}
SOURCE_MASKS["Spleen"][1:4, 0:2, 1:3] = True
SOURCE_MASKS["Spleen"][6, 4, 1] = True
SOURCE_MASKS["Liver"][2:7, 1:5, 2:4] = True
CODES = {"Spleen": ("78961009", "SCT", "Spleen"), "Liver": ("10200004", "SCT", "Liver")}


@pytest.fixture
def written(tmp_path: Path) -> tuple[Path, str, dict[str, str]]:
    """The series, a SEG of both masks, the series UID and the slices' UIDs by slice k."""
    series_uid = write_ct_series(tmp_path / "ct", DATA, AFFINE)
    image, meta, series = read_series(tmp_path / "ct")
    segments = [
        # the RAS (z, y, x) mask of the voxels whose values the source mask holds
        SegSegment(name, CODES[name], np.isin(image, DATA[mask]), f"l2s {name.lower()} model", "9.9", f"sha-{name}")
        for name, mask in SOURCE_MASKS.items()
    ]
    write_seg(segments, meta, series, tmp_path / "out" / "seg.dcm", description="l2s organs")
    slices = [pydicom.dcmread(path) for path in (tmp_path / "ct").iterdir()]
    uids = {int(ds.InstanceNumber) - 1: str(ds.SOPInstanceUID) for ds in slices}
    return tmp_path / "out" / "seg.dcm", series_uid, uids


def test_the_seg_holds_a_segment_per_mask_with_its_label_code_and_algorithm(written) -> None:
    path, _, _ = written
    seg = hd.seg.segread(path)
    assert seg.SegmentationType == "BINARY" and seg.number_of_segments == 2
    for number, name in enumerate(SOURCE_MASKS, start=1):
        description = seg.get_segment_description(number)
        assert description.segment_label == name
        assert (description.segmented_property_type.value, description.segmented_property_type.meaning) == (
            CODES[name][0],
            name,
        )
        assert description.segmented_property_type.scheme_designator == "SCT"
        assert description.segmented_property_category.value == "91723000"  # Anatomical Structure
        assert description.algorithm_type.value == "AUTOMATIC"
        algorithm = description.algorithm_identification[0]
        assert algorithm.AlgorithmName == f"l2s {name.lower()} model" and algorithm.AlgorithmVersion == "9.9"
        assert f"sha-{name}" in algorithm.AlgorithmParameters
    assert seg.ContentLabel == "L2S_ORGANS" and seg.SeriesDescription == "l2s organs"
    assert seg.SoftwareVersions == __version__


def test_frames_lie_on_their_source_slices_one_per_slice_and_segment_holding_organ(written) -> None:
    path, series_uid, uids = written
    ds = pydicom.dcmread(path)
    frames = ds.pixel_array.reshape(-1, ds.Rows, ds.Columns)  # (frame, row j, column i)
    slice_of = {uid: k for k, uid in uids.items()}
    names = {int(s.SegmentNumber): str(s.SegmentLabel) for s in ds.SegmentSequence}
    rebuilt = {name: np.zeros(DATA.shape, bool) for name in SOURCE_MASKS}
    placed = []
    for frame, group in zip(frames, ds.PerFrameFunctionalGroupsSequence, strict=True):
        uid = str(group.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID)
        name = names[int(group.SegmentIdentificationSequence[0].ReferencedSegmentNumber)]
        rebuilt[name][:, :, slice_of[uid]] = frame.T > 0
        placed.append((name, slice_of[uid]))
    for name, mask in SOURCE_MASKS.items():
        assert np.array_equal(rebuilt[name], mask), name
    assert sorted(placed) == sorted([("Liver", 2), ("Liver", 3), ("Spleen", 1), ("Spleen", 2)])
    assert ds.Modality == "SEG" and str(ds.SeriesInstanceUID) != series_uid
    (referenced,) = ds.ReferencedSeriesSequence
    assert str(referenced.SeriesInstanceUID) == series_uid
    assert {str(i.ReferencedSOPInstanceUID) for i in referenced.ReferencedInstanceSequence} == set(uids.values())
    source = pydicom.dcmread(next((path.parent.parent / "ct").iterdir()))
    assert (ds.StudyInstanceUID, ds.FrameOfReferenceUID) == (source.StudyInstanceUID, source.FrameOfReferenceUID)
    assert ds.PatientName == "Test^Patient" and ds.PatientBirthDate == ""  # absent in the series: left empty


def test_a_series_whose_slices_are_gone_is_refused_in_one_line_and_nothing_written(tmp_path: Path) -> None:
    write_ct_series(tmp_path / "ct", DATA, AFFINE)
    image, meta, series = read_series(tmp_path / "ct")
    sorted((tmp_path / "ct").iterdir())[0].unlink()
    segment = SegSegment("Spleen", CODES["Spleen"], image > 0, "l2s spleen model", "9.9", "sha")
    with pytest.raises(DicomError) as raised:
        write_seg([segment], meta, series, tmp_path / "seg.dcm")
    message = str(raised.value)
    assert message == f"{tmp_path / 'ct'}: 1 slices of series {series.series_uid} are no longer there"
    assert not (tmp_path / "seg.dcm").exists()
