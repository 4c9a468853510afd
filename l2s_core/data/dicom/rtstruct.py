"""RTSTRUCT in and out: masks on an image series' grid ↔ planar contours (pydicom, scikit-image).

Writing (:func:`write_rtstruct`): on each slice of the series each mask's outline is traced at
the 0.5 level between pixel centres (``skimage.measure.find_contours``), so a contour runs
half a pixel outside the outermost pixel centres, and stored as a ``CLOSED_PLANAR`` contour in
patient coordinates referencing that slice's SOP instance; the structure set references the
series and its frame of reference, with one named ROI per :class:`Structure` (interpreted type
``ORGAN``, generation algorithm ``AUTOMATIC`` with the model that made it, a distinct colour;
structures may overlap, as in radiotherapy).

Transfer syntax: RT objects are written in **Implicit VR Little Endian**, the DICOM default
transfer syntax every application must read and the one RT exports conventionally use. Its
elements carry 32-bit value lengths, so a ``ContourData`` of any length (a large organ, a
ragged prediction, a fine in-plane grid) stays a standard ``DS`` value. Explicit VR Little
Endian gives ``DS`` a 16-bit length (64 kB, about 2,400 points): pydicom then silently turns
a longer contour into ``UN``, which standard readers return as raw bytes.

Reading (:func:`read_rtstruct`, :func:`rasterise`): a pixel belongs to a contour when its centre
lies inside the polygon or on its edge (so contours drawn through pixel centres, as many
planning systems and rt-utils write them, keep their outermost pixels); contours of the same
slice are combined with exclusive or, so an inner contour cuts a hole. ``ContourData`` is read
whatever its VR: ``DS``, or ``UN`` as some writers leave a long one (its bytes decoded as the
backslash-separated decimal string they hold, :func:`~l2s_core.data.dicom.numbers.decimal_values`).

Example:
    >>> write_rtstruct([Structure("Spleen", mask, "l2s 0.1.0")], meta, series, "out/rtstruct.dcm")  # doctest: +SKIP
    >>> structures = read_rtstruct("rtstruct.dcm")  # doctest: +SKIP
    >>> label = rasterise(structures.contours("spleen"), meta, series, "rtstruct.dcm")  # doctest: +SKIP
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from skimage.draw import line, polygon
from skimage.measure import find_contours

from l2s_core import __version__ as _VERSION
from l2s_core.data.dicom.numbers import decimal_values
from l2s_core.data.dicom.series import SeriesInfo, require_pydicom
from l2s_core.data.io import VolumeMeta, orient_to_ras, to_source_grid
from l2s_core.errors import DicomError
from l2s_core.files import atomic_open

__all__ = [
    "ROI_COLOURS",
    "RTSTRUCT_SOP_CLASS",
    "Structure",
    "StructureSet",
    "rasterise",
    "read_rtstruct",
    "write_rtstruct",
]

RTSTRUCT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.481.3"
#: The SOP class conventionally named by an RTSTRUCT's referenced study (Detached Study Management).
_STUDY_SOP_CLASS = "1.2.840.10008.3.1.2.3.1"
#: A contour whose plane lies further than this share of a slice from every slice is refused.
_PLANE_TOLERANCE = 0.1
#: Pixel centres closer than this (in pixels) to a contour edge count as on it.
_EDGE_TOLERANCE = 1e-3
#: Display colours (RGB) of the ROIs of a structure set, in order (repeated beyond ten).
ROI_COLOURS: tuple[tuple[int, int, int], ...] = (
    (255, 0, 0),
    (0, 160, 255),
    (0, 200, 0),
    (255, 200, 0),
    (200, 0, 255),
    (255, 120, 0),
    (0, 220, 200),
    (255, 0, 150),
    (140, 90, 40),
    (120, 120, 255),
)


@dataclass(frozen=True)
class Structure:
    """One ROI to write: a mask on a series' grid and what made it.

    Attributes:
        name: the ROI's name (a TG-263 name for the paper's organs, see
            :func:`~l2s_core.vocabulary.structure_name`).
        mask: ``(z, y, x)`` RAS mask of the series, as returned alongside the series'
            :class:`VolumeMeta` by :func:`~l2s_core.data.dicom.series.read_series`.
        algorithm: the algorithm that generated it (name, version, model), written as the
            ROI's generation description.
    """

    name: str
    mask: np.ndarray
    algorithm: str


#: A contour point further outside the image than this share of its side is refused (a point
#: at 1e9 mm asked 5 GiB while rasterising).
_OUTSIDE_TOLERANCE = 0.1


def _sequence(*items: Any) -> Any:
    from pydicom.sequence import Sequence

    return Sequence(list(items))


def _dataset(**elements: Any) -> Any:
    from pydicom.dataset import Dataset

    ds = Dataset()
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    return ds


def _slice_contours(mask_2d: np.ndarray) -> list[np.ndarray]:
    """Closed outlines ``(n, 2)`` in (row, column) pixel coordinates of a ``(rows, columns)`` mask."""
    padded = np.pad(mask_2d.astype(np.float32), 1)
    return [c[:-1] - 1.0 for c in find_contours(padded, 0.5) if len(c) > 3]


def _roi_contours(mask: np.ndarray, meta: VolumeMeta, series: SeriesInfo) -> list[Any]:
    """The ``CLOSED_PLANAR`` contour items of a ``(z, y, x)`` RAS mask, slice by slice."""
    source = to_source_grid(np.asarray(mask) > 0, meta)  # (i = column, j = row, k = slice)
    lps = np.asarray(series.lps_affine)
    contours = []
    for k, uid in enumerate(series.sop_instance_uids):
        for outline in _slice_contours(source[:, :, k].T):
            voxels = np.column_stack([outline[:, 1], outline[:, 0], np.full(len(outline), k), np.ones(len(outline))])
            points = (voxels @ lps.T)[:, :3]
            contours.append(
                _dataset(
                    ContourImageSequence=_sequence(
                        _dataset(ReferencedSOPClassUID=series.sop_class_uid, ReferencedSOPInstanceUID=uid)
                    ),
                    ContourGeometricType="CLOSED_PLANAR",
                    NumberOfContourPoints=len(points),
                    ContourData=[f"{v:.3f}" for v in points.ravel()],
                )
            )
    return contours


def write_rtstruct(
    structures: list[Structure],
    meta: VolumeMeta,
    series: SeriesInfo,
    path: str | Path,
    description: str = "l2s prediction",
) -> None:
    """Write ``(z, y, x)`` RAS masks of a series as an RTSTRUCT with one named ROI each, atomically,
    in Implicit VR Little Endian (see the module's note on the transfer syntax).

    Args:
        structures: the ROIs, in order (ROI numbers 1, 2, ...; colours :data:`ROI_COLOURS`).
        meta: the series' :class:`VolumeMeta`.
        series: the series' :class:`SeriesInfo` (UIDs, slice instances, patient affine).
        path: the ``.dcm`` file to write.
        description: the structure set's label and the series description.
    """
    pydicom = require_pydicom()
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import UID, ImplicitVRLittleEndian, generate_uid

    image_refs = [
        _dataset(ReferencedSOPClassUID=series.sop_class_uid, ReferencedSOPInstanceUID=uid)
        for uid in series.sop_instance_uids
    ]
    now = datetime.datetime.now()
    file_meta = FileMetaDataset()
    file_meta.MediaStorageSOPClassUID = UID(RTSTRUCT_SOP_CLASS)
    file_meta.MediaStorageSOPInstanceUID = generate_uid()
    file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    ds = pydicom.dataset.FileDataset(str(path), {}, file_meta=file_meta, preamble=b"\0" * 128)
    for keyword, value in series.patient_study.items():
        setattr(ds, keyword, value)
    numbers = range(1, len(structures) + 1)
    rois = [
        _dataset(
            ROINumber=number,
            ReferencedFrameOfReferenceUID=series.frame_of_reference_uid,
            ROIName=structure.name,
            ROIGenerationAlgorithm="AUTOMATIC",
            ROIGenerationDescription=structure.algorithm[:64],
        )
        for number, structure in zip(numbers, structures)
    ]
    roi_contours = [
        _dataset(
            ReferencedROINumber=number,
            ROIDisplayColor=list(ROI_COLOURS[(number - 1) % len(ROI_COLOURS)]),
            ContourSequence=_sequence(*_roi_contours(structure.mask, meta, series)),
        )
        for number, structure in zip(numbers, structures)
    ]
    observations = [
        _dataset(ObservationNumber=number, ReferencedROINumber=number, RTROIInterpretedType="ORGAN", ROIInterpreter="")
        for number in numbers
    ]
    algorithms = "; ".join(dict.fromkeys(s.algorithm for s in structures))
    elements = dict(
        SOPClassUID=RTSTRUCT_SOP_CLASS,
        SOPInstanceUID=file_meta.MediaStorageSOPInstanceUID,
        Modality="RTSTRUCT",
        SeriesInstanceUID=generate_uid(),
        SeriesNumber=999,
        InstanceNumber=1,
        SeriesDescription=description,
        Manufacturer="l2s",
        SoftwareVersions=_VERSION,
        StructureSetLabel=description[:16],
        StructureSetDescription=f"generated automatically by {algorithms}"[:1024],
        StructureSetDate=now.strftime("%Y%m%d"),
        StructureSetTime=now.strftime("%H%M%S"),
        ContentDate=now.strftime("%Y%m%d"),
        ContentTime=now.strftime("%H%M%S"),
        ReferencedFrameOfReferenceSequence=_sequence(
            _dataset(
                FrameOfReferenceUID=series.frame_of_reference_uid,
                RTReferencedStudySequence=_sequence(
                    _dataset(
                        ReferencedSOPClassUID=_STUDY_SOP_CLASS,
                        ReferencedSOPInstanceUID=series.patient_study.get("StudyInstanceUID", ""),
                        RTReferencedSeriesSequence=_sequence(
                            _dataset(SeriesInstanceUID=series.series_uid, ContourImageSequence=_sequence(*image_refs))
                        ),
                    )
                ),
            )
        ),
        StructureSetROISequence=_sequence(*rois),
        ROIContourSequence=_sequence(*roi_contours),
        RTROIObservationsSequence=_sequence(*observations),
    )
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    with atomic_open(path) as handle:
        ds.save_as(handle, enforce_file_format=True)


@dataclass(frozen=True)
class StructureSet:
    """The ROIs of an RTSTRUCT file.

    Attributes:
        path: the file.
        series_uids: the image series it references.
        frame_of_reference_uids: the frames of reference it references.
        rois: ROI name → its contours, each an ``(n, 3)`` array of patient (LPS) points in mm.
    """

    path: str
    series_uids: tuple[str, ...]
    frame_of_reference_uids: tuple[str, ...]
    rois: dict[str, list[np.ndarray]]

    def find(self, names: list[str]) -> str | None:
        """The first ROI name equal to one of ``names``, ignoring case and surrounding spaces."""
        wanted = [n.strip().casefold() for n in names]
        by_key = {name.strip().casefold(): name for name in self.rois}
        return next((by_key[w] for w in wanted if w in by_key), None)

    def contours(self, name: str) -> list[np.ndarray]:
        """The contours of ROI ``name``.

        Raises:
            DicomError: the ROI has no contour (an empty structure).
        """
        contours = self.rois[name]
        if not contours:
            raise DicomError(self.path, f"structure '{name}' is empty: it has no contour")
        return contours


def read_rtstruct(path: str | Path) -> StructureSet:
    """Read an RTSTRUCT file's references and ROI contours.

    Raises:
        DicomError: not an RTSTRUCT, a ROI without a name, or a ``ContourData`` that is not a
            list of decimal numbers in threes.
    """
    pydicom = require_pydicom()
    path = Path(path)
    try:
        ds = pydicom.dcmread(path)
    except (pydicom.errors.InvalidDicomError, OSError, ValueError, EOFError) as exc:
        raise DicomError(path, f"not a readable DICOM file ({type(exc).__name__}: {exc})") from None
    if ds.get("Modality") != "RTSTRUCT" or "StructureSetROISequence" not in ds:
        raise DicomError(path, f"not an RTSTRUCT (Modality {ds.get('Modality')!r})")
    frames = tuple(str(f.FrameOfReferenceUID) for f in ds.get("ReferencedFrameOfReferenceSequence", []))
    series = tuple(
        str(s.SeriesInstanceUID)
        for f in ds.get("ReferencedFrameOfReferenceSequence", [])
        for st in f.get("RTReferencedStudySequence", [])
        for s in st.get("RTReferencedSeriesSequence", [])
    )
    names = _roi_names(ds.StructureSetROISequence, path)
    rois: dict[str, list[np.ndarray]] = {name: [] for name in names.values()}
    for item in ds.get("ROIContourSequence", []):
        if _integer(item, "ReferencedROINumber", path) not in names:
            continue
        name = names[_integer(item, "ReferencedROINumber", path)]
        for contour in item.get("ContourSequence", []):
            if "ContourData" not in contour:
                continue
            points = decimal_values(contour, "ContourData", path, f"ContourData of structure '{name}'", per_item=3)
            if len(points):
                rois[name].append(points)
    return StructureSet(str(path), series, frames, rois)


def _integer(item: Any, keyword: str, path: Path) -> int:
    """An integer attribute a structure set item must have."""
    try:
        return int(item.get(keyword))
    except (TypeError, ValueError):
        raise DicomError(path, f"an item without a valid {keyword} ({item.get(keyword)!r})") from None


def _roi_names(items: Any, path: Path) -> dict[int, str]:
    """ROI number → name of the ``StructureSetROISequence``; names that equal one another once case
    and spaces are ignored are refused: which of them was meant cannot be told (two ROIs of one
    name used to be merged by exclusive or)."""
    names: dict[int, str] = {}
    for roi in items:
        number = _integer(roi, "ROINumber", path)
        name = str(roi.get("ROIName", "") or "").strip()
        if not name:
            raise DicomError(path, f"structure (ROI number {number}) has no name")
        names[number] = name
    by_key: dict[str, list[str]] = {}
    for name in names.values():
        by_key.setdefault("".join(name.split()).casefold(), []).append(name)
    ambiguous = [same for same in by_key.values() if len(same) > 1]
    if ambiguous:
        listed = "; ".join(" and ".join(repr(n) for n in same) for same in ambiguous)
        raise DicomError(path, f"ambiguous structure names (equal ignoring case and spaces): {listed}; rename them")
    return names


def _check_inside(voxels: np.ndarray, n_i: int, n_j: int, where: str | Path) -> None:
    """Refuse a contour (``(n, 3)`` voxel coordinates i, j, k) with points far outside the slice."""
    for axis, side in ((0, n_i), (1, n_j)):
        margin = _OUTSIDE_TOLERANCE * side + 1
        if voxels[:, axis].min() < -margin or voxels[:, axis].max() > side - 1 + margin:
            raise DicomError(
                where,
                f"a contour reaches {'columns' if axis == 0 else 'rows'} "
                f"{voxels[:, axis].min():.4g} to {voxels[:, axis].max():.4g}, far outside the image's "
                f"0 to {side - 1}",
            )


def _edge_pixels(rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Pixels whose centres lie on the edges of the closed polygon ``(rows, cols)``."""
    found_r, found_c = [], []
    for r0, c0, r1, c1 in zip(rows, cols, np.roll(rows, -1), np.roll(cols, -1)):
        rr, cc = line(int(round(r0)), int(round(c0)), int(round(r1)), int(round(c1)))
        d = np.array([r1 - r0, c1 - c0])
        length2 = float(d @ d)
        t = np.clip(((rr - r0) * d[0] + (cc - c0) * d[1]) / length2, 0, 1) if length2 else np.zeros(len(rr))
        on_edge = np.hypot(rr - (r0 + t * d[0]), cc - (c0 + t * d[1])) < _EDGE_TOLERANCE
        keep = on_edge & (rr >= 0) & (rr < shape[0]) & (cc >= 0) & (cc < shape[1])
        found_r.append(rr[keep])
        found_c.append(cc[keep])
    return np.concatenate(found_r), np.concatenate(found_c)


def rasterise(contours: list[np.ndarray], meta: VolumeMeta, series: SeriesInfo, where: str | Path) -> np.ndarray:
    """Contours in patient coordinates as a uint8 RAS ``(z, y, x)`` mask on a series' grid.

    Args:
        contours: ``(n, 3)`` LPS points per contour (from :meth:`StructureSet.contours`).
        meta: the series' :class:`VolumeMeta`.
        series: the series' :class:`SeriesInfo`.
        where: named in error messages (the RTSTRUCT file).

    Raises:
        DicomError: a contour lies on no slice of the series.
    """
    n_i, n_j, n_k = (int(s) for s in meta.source_shape)
    to_voxel = np.linalg.inv(np.asarray(series.lps_affine))
    source = np.zeros((n_i, n_j, n_k), dtype=bool)
    for points in contours:
        voxels = (np.column_stack([points, np.ones(len(points))]) @ to_voxel.T)[:, :3]
        k = int(round(float(np.median(voxels[:, 2]))))
        if not 0 <= k < n_k or np.abs(voxels[:, 2] - k).max() > _PLANE_TOLERANCE:
            raise DicomError(
                where,
                f"a contour at slice position {np.median(voxels[:, 2]):.2f} lies on no slice of "
                f"series {series.series_uid} ({n_k} slices)",
            )
        _check_inside(voxels, n_i, n_j, where)
        cols, rows = voxels[:, 0], voxels[:, 1]
        filled = np.zeros((n_j, n_i), dtype=bool)
        filled[polygon(rows, cols, (n_j, n_i))] = True
        filled[_edge_pixels(rows, cols, (n_j, n_i))] = True
        source[:, :, k] ^= filled.T
    return orient_to_ras(source, np.asarray(meta.source_affine), where, np.uint8)[0]  # cast while reorienting: one copy
