"""Writers of DICOM CT series (pydicom) and of RTSTRUCTs made by an independent library (rt-utils)
for the tests, from NIfTI volumes; an independent RTSTRUCT reader; the real CT example's file names,
its spleen and the Dice of two masks."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom", reason="DICOM tests need the dicom extra: pip install 'l2s[dicom]'")
from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid  # noqa: E402

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
#: File names of the real CT example (``msd_builder.REAL_CT``): the image and its label (spleen = 1, liver = 5).
CT, SEG = "example_ct_sm.nii.gz", "example_seg.nii.gz"


def mask_dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two masks (non-zero voxels); 0 when both are empty."""
    a, b = a > 0, b > 0
    return 2.0 * float((a & b).sum()) / max(float(a.sum() + b.sum()), 1.0)


def real_spleen(real_ct: Path) -> np.ndarray:
    """The spleen of the real CT example as a nibabel ``(i, j, k)`` bool array."""
    return np.asarray(nib.load(str(real_ct / SEG)).dataobj) == 1


def write_ct_series(
    folder: Path,
    data: np.ndarray,
    affine: np.ndarray,
    series_uid: str | None = None,
    study_uid: str | None = None,
    frame_uid: str | None = None,
    modality: str = "CT",
    skip_slices: tuple[int, ...] = (),
    shift_mm: dict[int, float] | None = None,
) -> str:
    """Write a nibabel ``(i, j, k)`` volume with RAS ``affine`` as one file per slice k
    (row = j, column = i); returns the series UID.

    Args:
        skip_slices: slices left out (a missing slice).
        shift_mm: slice k → mm added to its position along the slice axis (uneven spacing).
    """
    folder.mkdir(parents=True, exist_ok=True)
    lps = LPS_TO_RAS @ affine
    col_step, row_step, slice_step = lps[:3, 0], lps[:3, 1], lps[:3, 2]
    series_uid, study_uid, frame_uid = (
        series_uid or generate_uid(),
        study_uid or generate_uid(),
        frame_uid or generate_uid(),
    )
    for k in range(data.shape[2]):
        if k in skip_slices:
            continue
        position = lps[:3, 3] + k * slice_step + (shift_mm or {}).get(k, 0.0) * slice_step / np.linalg.norm(slice_step)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.PatientName, ds.PatientID = modality, "Test^Patient", "TEST01"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.SeriesNumber, ds.InstanceNumber = "20240101", "120000", "1", 1, k + 1
        ds.ImageOrientationPatient = [*(col_step / np.linalg.norm(col_step)), *(row_step / np.linalg.norm(row_step))]
        ds.ImagePositionPatient = [float(v) for v in position]
        ds.PixelSpacing = [float(np.linalg.norm(row_step)), float(np.linalg.norm(col_step))]
        ds.SliceThickness = float(np.linalg.norm(slice_step))
        pixels = np.ascontiguousarray(data[:, :, k].T.astype(np.int16))
        ds.Rows, ds.Columns = pixels.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope = 0, 1
        ds.PixelData = pixels.tobytes()
        ds.save_as(folder / f"slice_{k:03d}.dcm", enforce_file_format=True)
    return series_uid


def write_nifti_as_series(folder: Path, nifti: Path, **kwargs) -> str:
    """:func:`write_ct_series` of a NIfTI file."""
    img = nib.load(str(nifti))
    return write_ct_series(folder, np.asarray(img.dataobj), img.affine, **kwargs)


def rt_utils_rtstruct(series_dir: Path, masks: dict[str, np.ndarray], path: Path) -> None:
    """An RTSTRUCT of ``series_dir`` written by rt-utils; masks as nibabel ``(i, j, k)`` arrays
    (rt-utils wants (row, column, slice) in its own slice order, which is the files' sorted order here)."""
    rt_utils = pytest.importorskip("rt_utils", reason="rt-utils (the independent RTSTRUCT library) is not installed")
    rtstruct = rt_utils.RTStructBuilder.create_new(dicom_series_path=str(series_dir))
    for name, mask in masks.items():
        rtstruct.add_roi(mask=np.ascontiguousarray(mask.transpose(1, 0, 2) > 0), name=name)
    rtstruct.save(str(path))


def independent_mask(series_dir: Path, rtstruct_path: Path, name: str) -> np.ndarray:
    """ROI ``name`` of an RTSTRUCT read without l2s: pydicom parses it, each contour goes to the
    slice its ContourImageSequence names, its points become pixel coordinates through that slice's
    own position, orientation and spacing, and matplotlib fills the pixel centres inside (even-odd
    across a slice's contours). Returns a nibabel ``(i, j, k)`` bool array, k in InstanceNumber order.

    (rt-utils 1.2.7 cannot be the reader: it fills a (columns, rows) array as if it were (rows,
    columns), which truncates non-square images such as the example CT; dicompyler-core 0.5.6
    does not import with pydicom 3.)
    """
    from matplotlib.path import Path as Polygon

    slices = {}
    for path in series_dir.iterdir():
        ds = pydicom.dcmread(path)
        if ds.Modality != "RTSTRUCT":
            slices[ds.SOPInstanceUID] = ds
    order = sorted(slices, key=lambda uid: int(slices[uid].InstanceNumber))
    first = slices[order[0]]
    mask = np.zeros((first.Columns, first.Rows, len(order)), dtype=bool)
    rt = pydicom.dcmread(rtstruct_path)
    number = next(int(r.ROINumber) for r in rt.StructureSetROISequence if r.ROIName == name)
    roi = next(r for r in rt.ROIContourSequence if int(r.ReferencedROINumber) == number)
    centres = np.stack(np.meshgrid(np.arange(first.Columns), np.arange(first.Rows), indexing="ij"), -1).reshape(-1, 2)
    for contour in roi.ContourSequence:
        uid = contour.ContourImageSequence[0].ReferencedSOPInstanceUID
        ds = slices[uid]
        points = np.asarray(contour.ContourData, dtype=float).reshape(-1, 3) - np.asarray(
            ds.ImagePositionPatient, float
        )
        orientation = np.asarray(ds.ImageOrientationPatient, float)
        column = points @ orientation[:3] / float(ds.PixelSpacing[1])
        row = points @ orientation[3:] / float(ds.PixelSpacing[0])
        inside = Polygon(np.column_stack([column, row])).contains_points(centres).reshape(first.Columns, first.Rows)
        mask[:, :, order.index(uid)] ^= inside
    return mask
