"""DICOM Segmentation (SEG) out: masks on an image series' grid as one binary SEG (highdicom; the
``dicom`` extra).

Each :class:`SegSegment` becomes one segment: its label (the TG-263 name), its coded concept
(SNOMED CT for the paper's organs, category "Anatomical Structure"), the algorithm type
``AUTOMATIC`` and the algorithm's identification (name, version and the model card's sha256 as a
parameter). Frames reference the series' slices (``SourceImageSequence``), one frame per slice
and segment that holds organ (highdicom leaves out empty frames); segments may overlap.

Example:
    >>> write_seg([SegSegment("Spleen", ("78961009", "SCT", "Spleen"), mask, "l2s spleen", "0.1.0", sha)],
    ...           meta, series, "out/seg.dcm")  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from l2s_core import __version__
from l2s_core.data.dicom.series import SeriesInfo, dicom_headers, require_dicom_extra
from l2s_core.data.io import VolumeMeta, to_source_grid
from l2s_core.errors import DicomError
from l2s_core.files import atomic_open

__all__ = ["SegSegment", "write_seg"]

#: The segments' category: SNOMED CT "Anatomical Structure" (DICOM CID 7150).
_CATEGORY = ("91723000", "SCT", "Anatomical Structure")
#: Patient and study attributes a SEG must carry (type 2: present, possibly empty), filled in
#: empty where a series lacks them.
_TYPE2_KEYWORDS = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyID",
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "ReferringPhysicianName",
)
#: The algorithm family: DICOM "Artificial Intelligence" (CID 7162).
_FAMILY = ("123110", "DCM", "Artificial Intelligence")


@dataclass(frozen=True)
class SegSegment:
    """One segment to write.

    Attributes:
        label: the segment's label (the structure name).
        code: ``(value, scheme designator, meaning)`` of the segmented property type.
        mask: ``(z, y, x)`` RAS mask of the series, as returned alongside its
            :class:`VolumeMeta` by :func:`~l2s_core.data.dicom.series.read_series`.
        algorithm: the algorithm's name (e.g. ``l2s spleen model``).
        version: the algorithm's version (l2s's version).
        model_sha256: sha256 of the model card that made the mask.
    """

    label: str
    code: tuple[str, str, str]
    mask: np.ndarray
    algorithm: str
    version: str
    model_sha256: str


def _source_images(series: SeriesInfo) -> list[Any]:
    """The series' slice datasets (without pixel data) in slice order (source axis k), with the
    patient and study attributes a SEG must carry (empty where the series has none)."""
    by_uid = {
        str(ds.SOPInstanceUID): ds
        for _, ds in dicom_headers(sorted(Path(series.folder).iterdir()))
        if str(ds.get("SeriesInstanceUID", "")) == series.series_uid
    }
    missing = [uid for uid in series.sop_instance_uids if uid not in by_uid]
    if missing:
        raise DicomError(series.folder, f"{len(missing)} slices of series {series.series_uid} are no longer there")
    sources = [by_uid[uid] for uid in series.sop_instance_uids]
    for ds in sources:
        for keyword in _TYPE2_KEYWORDS:
            if keyword not in ds:
                setattr(ds, keyword, "")
    return sources


def write_seg(
    segments: list[SegSegment], meta: VolumeMeta, series: SeriesInfo, path: str | Path, description: str = "l2s"
) -> None:
    """Write ``(z, y, x)`` RAS masks of a series as one binary DICOM-SEG, atomically.

    Args:
        segments: the segments, numbered 1, 2, ... in order.
        meta: the series' :class:`VolumeMeta`.
        series: the series' :class:`SeriesInfo`; its folder must still hold the slices.
        path: the ``.dcm`` file to write.
        description: the SEG's content label and series description.

    Raises:
        DicomError: highdicom is missing, or the series' slices are gone.
    """
    hd = require_dicom_extra("highdicom", "DICOM-SEG")
    from pydicom.sr.coding import Code
    from pydicom.uid import generate_uid

    sources = _source_images(series)
    # (slice k, row j, column i, segment): the series' frames in slice order
    pixels = np.stack([to_source_grid(np.asarray(s.mask) > 0, meta).transpose(2, 1, 0) for s in segments], axis=-1)
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=segment.label,
            segmented_property_category=Code(*_CATEGORY),
            segmented_property_type=Code(*segment.code),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=hd.AlgorithmIdentificationSequence(
                name=segment.algorithm,
                family=Code(*_FAMILY),
                version=segment.version,
                parameters={"model card sha256": segment.model_sha256},
            ),
        )
        for number, segment in enumerate(segments, start=1)
    ]
    seg = hd.seg.Segmentation(
        source_images=sources,
        pixel_array=pixels.astype(np.uint8),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=generate_uid(),
        series_number=998,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="l2s",
        manufacturer_model_name="l2s predict",
        software_versions=__version__,
        device_serial_number="none",
        content_description="generated automatically by l2s",
        content_label=description.upper().replace(" ", "_")[:16],
        series_description=description,
    )
    with atomic_open(path) as handle:
        seg.save_as(handle)
