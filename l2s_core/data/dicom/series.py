"""Reading DICOM CT/MR image series as ``(z, y, x)`` RAS arrays (pydicom; the ``dicom`` extra).

A series folder holds the single-frame images of one series (RTSTRUCT files beside them are
ignored here). :func:`read_series` checks that the folder holds exactly one series whose slices
share orientation, pixel spacing and size and are evenly spaced without gaps, sorts them along
the slice normal and returns the image (modality rescale applied) with the same
:class:`~l2s_core.data.io.VolumeMeta` a NIfTI file gives, so that
:func:`~l2s_core.data.io.write_mask` writes a mask on the series' grid. :class:`SeriesInfo`
keeps what an RTSTRUCT needs: the UIDs, the slices' SOP instances in slice order and the
voxel-to-patient (LPS) affine.

Example:
    >>> image, meta, series = read_series("patient_1/CT")  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from l2s_core.data.io import VolumeMeta, orient_to_ras
from l2s_core.errors import DicomError
from l2s_core.processes import require_memory

__all__ = [
    "LPS_TO_RAS",
    "SeriesInfo",
    "dicom_headers",
    "image_series",
    "read_series",
    "read_series_files",
    "require_dicom_extra",
    "require_pydicom",
]

#: World coordinates: DICOM patient (LPS) → NIfTI (RAS), and back (its own inverse).
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
#: Patient and study attributes copied from the images into an RTSTRUCT.
PATIENT_STUDY_KEYWORDS = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyInstanceUID",
    "StudyID",
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "ReferringPhysicianName",
)
#: Relative tolerance of the slice spacing (1 %), and a gap from this many spacings on is a missing slice.
SPACING_RTOL = 0.01
GAP_FACTOR = 1.5
#: The most rows or columns of a slice: larger is taken for a corrupt header (CT and MR slices
#: have 256 to 1024; 30000×30000 asked 33.5 GiB before a pixel was read).
MAX_SLICE_SIDE = 4096
#: A slice whose position lies further than this share of the smallest pixel spacing from the
#: line through the first and last slice positions is not part of one volume.
COLLINEAR_TOLERANCE = 0.5


def require_dicom_extra(module: str = "pydicom", purpose: str = "DICOM support") -> Any:
    """A module of the ``dicom`` extra (pydicom, highdicom), or a one-line DicomError saying how to
    install the extra."""
    try:
        return importlib.import_module(module)
    except ImportError:  # pragma: no cover - depends on the installation
        raise DicomError(module, f"{purpose} needs the dicom extra: pip install 'l2s[dicom]'") from None


def require_pydicom() -> Any:
    """The pydicom module, or a one-line DicomError saying how to install the dicom extra."""
    return require_dicom_extra("pydicom")


@dataclass(frozen=True)
class SeriesInfo:
    """What an RTSTRUCT needs to know about the image series it contours.

    Attributes:
        folder: where the series was read from.
        modality: DICOM ``Modality`` (``CT``, ``MR``, ...).
        series_uid: ``SeriesInstanceUID``.
        frame_of_reference_uid: ``FrameOfReferenceUID``.
        sop_class_uid: ``SOPClassUID`` of the images.
        sop_instance_uids: ``SOPInstanceUID`` of each slice, in slice order (source axis k).
        lps_affine: 4×4 affine from source voxel (i = column, j = row, k = slice) to patient LPS mm.
        patient_study: patient and study attributes (:data:`PATIENT_STUDY_KEYWORDS`) as strings.
    """

    folder: str
    modality: str
    series_uid: str
    frame_of_reference_uid: str
    sop_class_uid: str
    sop_instance_uids: tuple[str, ...]
    lps_affine: tuple[tuple[float, ...], ...]
    patient_study: dict[str, str]


def dicom_headers(paths: Iterable[Path]) -> list[tuple[Path, Any]]:
    """``(path, dataset without pixel data)`` of every readable DICOM file among ``paths``;
    other files are skipped."""
    pydicom = require_pydicom()
    headers = []
    for path in paths:
        if not path.is_file() or path.name.startswith("."):
            continue
        try:
            headers.append((path, pydicom.dcmread(path, stop_before_pixels=True)))
        except (pydicom.errors.InvalidDicomError, OSError, ValueError, EOFError):
            continue
    return headers


def image_series(headers: list[tuple[Path, Any]]) -> dict[str, list[Path]]:
    """``SeriesInstanceUID`` → files of the image series among ``headers`` (RTSTRUCTs and other
    objects without pixel geometry are left out)."""
    series: dict[str, list[Path]] = defaultdict(list)
    for path, ds in headers:
        if "ImagePositionPatient" in ds and "SeriesInstanceUID" in ds:
            series[str(ds.SeriesInstanceUID)].append(path)
    return dict(series)


def _vector(ds: Any, keyword: str, n: int, path: Path) -> np.ndarray:
    try:
        value = ds.get(keyword)
        numbers = np.asarray([float(v) for v in value], dtype=np.float64) if value is not None else None
    except (TypeError, ValueError, OverflowError):
        raise DicomError(path, f"{keyword} holds a value that is not a number: {value!r}") from None
    if numbers is None or len(numbers) != n:
        raise DicomError(path, f"{keyword} missing or not {n} numbers")
    if not np.all(np.isfinite(numbers)):
        raise DicomError(path, f"{keyword} is not finite: {list(numbers)}")
    return numbers


def _number(ds: Any, keyword: str, default: float, path: Path) -> float:
    """A finite number of the header (``default`` when absent)."""
    value = ds.get(keyword, default)
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise DicomError(path, f"{keyword} is not a number: {value!r}") from None
    if not np.isfinite(number):
        raise DicomError(path, f"{keyword} is not finite: {value!r}")
    return number


def _required(ds: Any, keyword: str, path: Path) -> Any:
    """An attribute every image slice must have."""
    value = ds.get(keyword)
    if value is None or value == "":
        raise DicomError(path, f"an image slice without {keyword}")
    return value


def _slice_shape(ds: Any, path: Path) -> tuple[int, int]:
    """``(Rows, Columns)`` of a slice, each from 1 to :data:`MAX_SLICE_SIDE`."""
    shape = (int(_number(ds, "Rows", 0, path)), int(_number(ds, "Columns", 0, path)))
    if not all(1 <= side <= MAX_SLICE_SIDE for side in shape):
        raise DicomError(
            path, f"Rows × Columns {shape[0]}×{shape[1]}: each must be 1 to {MAX_SLICE_SIDE} (a corrupt header?)"
        )
    return shape


def _check_collinear(datasets: list[tuple[Path, Any]], positions: np.ndarray, pixel: float, where: Path) -> None:
    """Refuse slices whose positions (sorted, ``(n, 3)`` mm) do not lie on one line: a volume's
    slices are stacked along one direction (the normal, or a gantry tilt's slanted axis)."""
    axis = positions[-1] - positions[0]
    offsets = positions - positions[0]
    off_line = np.linalg.norm(offsets - np.outer(offsets @ axis / (axis @ axis), axis), axis=1)
    if off_line.max() > COLLINEAR_TOLERANCE * pixel:
        i = int(np.argmax(off_line))
        raise DicomError(
            where,
            f"the slices are not stacked on one line: {datasets[i][0].name} lies {off_line[i]:.3g} mm beside "
            f"the line through {datasets[0][0].name} and {datasets[-1][0].name}",
        )


def _slice_order(datasets: list[tuple[Path, Any]], where: Path) -> tuple[list[tuple[Path, Any]], np.ndarray, float]:
    """Slices sorted along the normal, their position vectors, and the slice spacing in mm."""
    first_path, first = datasets[0]
    orientation = _vector(first, "ImageOrientationPatient", 6, first_path)
    spacing = _vector(first, "PixelSpacing", 2, first_path)
    for path, ds in datasets[1:]:
        if not np.allclose(_vector(ds, "ImageOrientationPatient", 6, path), orientation, atol=1e-4):
            raise DicomError(path, f"slice orientation differs from that of {first_path.name}")
        if not np.allclose(_vector(ds, "PixelSpacing", 2, path), spacing, rtol=1e-4):
            raise DicomError(path, f"pixel spacing differs from that of {first_path.name}")
        shape, first_shape = _slice_shape(ds, path), _slice_shape(first, first_path)
        if shape != first_shape:
            raise DicomError(
                path, f"{shape[0]}×{shape[1]} pixels, {first_path.name} has {first_shape[0]}×{first_shape[1]}"
            )
    normal = np.cross(orientation[:3], orientation[3:])
    positions = np.array([_vector(ds, "ImagePositionPatient", 3, path) for path, ds in datasets])
    order = np.argsort(positions @ normal, kind="stable")
    datasets, positions = [datasets[i] for i in order], positions[order]
    steps = np.diff(positions @ normal)
    if len(datasets) < 2:
        raise DicomError(where, "the series has a single slice; a volume needs at least two")
    if np.any(steps < 1e-3):
        i = int(np.argmin(steps))
        raise DicomError(where, f"two slices at the same position: {datasets[i][0].name} and {datasets[i + 1][0].name}")
    spacing_z = float(np.median(steps))
    if np.any(steps > GAP_FACTOR * spacing_z):
        i = int(np.argmax(steps))
        raise DicomError(
            where,
            f"missing slices: a gap of {steps[i]:.3g} mm between {datasets[i][0].name} and "
            f"{datasets[i + 1][0].name}, the slice spacing is {spacing_z:.3g} mm",
        )
    if np.any(np.abs(steps - spacing_z) > SPACING_RTOL * spacing_z):
        raise DicomError(where, f"unevenly spaced slices: spacings from {steps.min():.4g} to {steps.max():.4g} mm")
    _check_collinear(datasets, positions, float(spacing.min()), where)
    return datasets, positions, spacing_z


def _pixels(path: Path, ds: Any, shape: tuple[int, int]) -> np.ndarray:
    """The slice's ``(row, column)`` pixels as float32, modality rescale applied."""
    if int(ds.get("SamplesPerPixel", 1)) != 1 or int(ds.get("NumberOfFrames", 1)) != 1:
        raise DicomError(path, "expected single-frame greyscale images (SamplesPerPixel 1, one frame)")
    try:
        pixels = ds.pixel_array.astype(np.float32)
    except Exception as exc:  # pydicom raises many types for compressed or damaged pixel data
        raise DicomError(path, f"cannot decode the pixel data ({type(exc).__name__}: {exc})") from None
    if pixels.shape != shape:
        raise DicomError(path, f"pixel data of shape {pixels.shape}, the series' slices are {shape[0]}×{shape[1]}")
    pixels = pixels * _number(ds, "RescaleSlope", 1.0, path) + _number(ds, "RescaleIntercept", 0.0, path)
    if not np.all(np.isfinite(pixels)):
        raise DicomError(path, "the modality rescale (RescaleSlope, RescaleIntercept) makes pixels infinite")
    return pixels


def _dcmread(pydicom: Any, path: Path, headers_only: bool) -> Any:
    try:
        return pydicom.dcmread(path, stop_before_pixels=headers_only)
    except (pydicom.errors.InvalidDicomError, OSError, ValueError, EOFError) as exc:
        raise DicomError(path, f"not a readable DICOM file ({type(exc).__name__}: {exc})") from None


def read_series_files(
    paths: list[Path], where: Path, headers: Mapping[Path, Any] | None = None
) -> tuple[np.ndarray, VolumeMeta, SeriesInfo]:
    """Read the files of one image series as a RAS ``(z, y, x)`` float32 array.

    The slices are sorted by their headers, then each file's pixels are read (one file at a
    time) into one float32 volume, which is reoriented with one copy: the peak is about twice
    the volume.

    Args:
        paths: the series' files.
        where: the folder named in error messages and recorded as the source.
        headers: path → dataset without pixel data, as :func:`dicom_headers` read them;
            files not in it have their headers read here.

    Returns:
        ``(image, meta, series)``: the image, its :class:`VolumeMeta` (source grid: i = column,
        j = row, k = slice in slice order) and the :class:`SeriesInfo`.

    Raises:
        DicomError: differing orientation, spacing or size, duplicate, missing or unevenly
            spaced slices, undecodable pixel data.
    """
    pydicom = require_pydicom()
    known = headers or {}
    datasets = [(path, known[path] if path in known else _dcmread(pydicom, path, True)) for path in paths]
    datasets, positions, spacing_z = _slice_order(datasets, where)
    first = datasets[0][1]
    orientation = _vector(first, "ImageOrientationPatient", 6, datasets[0][0])
    row_spacing, column_spacing = _vector(first, "PixelSpacing", 2, datasets[0][0])
    step = (positions[-1] - positions[0]) / (len(positions) - 1)
    lps = np.eye(4)
    lps[:3, 0] = orientation[:3] * column_spacing  # i: along a row, column index grows
    lps[:3, 1] = orientation[3:] * row_spacing  # j: down a column, row index grows
    lps[:3, 2] = step
    lps[:3, 3] = positions[0]
    shape = _slice_shape(first, datasets[0][0])
    sop_class_uid = str(_required(first, "SOPClassUID", datasets[0][0]))
    instance_uids = tuple(str(_required(ds, "SOPInstanceUID", path)) for path, ds in datasets)
    volume_bytes = len(datasets) * shape[0] * shape[1] * np.dtype(np.float32).itemsize
    require_memory(where, 2 * volume_bytes, f"the {len(datasets)}×{shape[0]}×{shape[1]} float32 series", DicomError)
    volume = np.empty((len(datasets), *shape), dtype=np.float32)  # (k, j, i)
    for k, (path, _) in enumerate(datasets):
        volume[k] = _pixels(path, _dcmread(pydicom, path, False), shape)  # the full dataset is dropped here
    image, meta = orient_to_ras(volume.transpose(2, 1, 0), LPS_TO_RAS @ lps, where, np.float32)
    del volume
    series = SeriesInfo(
        folder=str(where),
        modality=str(first.get("Modality", "")),
        series_uid=str(first.SeriesInstanceUID),
        frame_of_reference_uid=str(first.get("FrameOfReferenceUID", "")),
        sop_class_uid=sop_class_uid,
        sop_instance_uids=instance_uids,
        lps_affine=tuple(tuple(float(v) for v in row) for row in lps),
        patient_study={k: str(first.get(k, "")) for k in PATIENT_STUDY_KEYWORDS},
    )
    return image, meta, series


def read_series(folder: str | Path) -> tuple[np.ndarray, VolumeMeta, SeriesInfo]:
    """Read the one image series of a folder (see :func:`read_series_files`).

    Raises:
        DicomError: the folder holds no image series or several.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DicomError(folder, "DICOM series folder not found")
    headers = dicom_headers(sorted(folder.iterdir()))
    series = image_series(headers)
    if not series:
        raise DicomError(folder, "no DICOM image series in this folder")
    if len(series) > 1:
        counts = ", ".join(f"{uid} ({len(files)} files)" for uid, files in series.items())
        raise DicomError(folder, f"holds {len(series)} image series ({counts}); give one series per folder")
    (files,) = series.values()
    return read_series_files(files, folder, dict(headers))
