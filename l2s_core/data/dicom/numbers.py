"""Decimal-string DICOM values read whatever VR the file gives them (``DS``, or ``UN``).

A writer in explicit VR cannot store a ``DS`` value above 64 kB (its length field has 16 bits),
and some (pydicom among them) then write the element as ``UN``: its value is the raw bytes of the
backslash-separated decimal string. A standard reader returns those bytes, so a reader that
iterates over them gets one number per byte. :func:`decimal_values` reads the element's raw
value (before pydicom converts it, which fails on a bad number deep inside pydicom) and decodes
either form.

Example:
    >>> decimal_values(contour, "ContourData", "rt.dcm", "ContourData", per_item=3)  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from l2s_core.errors import DicomError

__all__ = ["decimal_values"]


def _texts(value: Any) -> list[str]:
    """The decimal strings of an element value: raw bytes (``UN``) split at backslashes, a
    multi-value or a single value as they are."""
    if isinstance(value, bytes | bytearray):
        text = bytes(value).decode("ascii").strip(" \0")
        return text.split("\\") if text else []
    if value is None:
        return []
    if isinstance(value, str | int | float):
        return [str(value)]
    return [str(v) for v in value]


def decimal_values(dataset: Any, keyword: str, where: str | Path, what: str, per_item: int = 1) -> np.ndarray:
    """The numbers of a decimal-string element, whatever its VR, as float64 ``(n, per_item)``.

    Args:
        dataset: the pydicom dataset holding the element (``DS``, or ``UN`` holding a decimal string).
        keyword: the element's keyword (e.g. ``ContourData``).
        where: the file, named in errors.
        what: the element, named in errors (e.g. ``ContourData of structure 'Spleen'``).
        per_item: numbers per item (3 for points); the count must be a multiple of it.

    Raises:
        DicomError: the value is not a list of decimal numbers, holds a non-finite one, or its
            count is not a multiple of ``per_item``.
    """
    element = dataset.get_item(keyword)  # raw (bytes) as read from a file: not converted yet
    try:
        values = np.asarray([float(t) for t in _texts(element.value)], dtype=np.float64)
    except (UnicodeDecodeError, ValueError, TypeError) as exc:
        raise DicomError(
            where, f"{what} (VR {element.VR}) is not a backslash-separated list of decimal numbers ({exc})"
        ) from None
    if not np.isfinite(values).all():
        raise DicomError(where, f"{what} (VR {element.VR}) holds a value that is not a finite number")
    if len(values) % per_item:
        raise DicomError(where, f"{what} holds {len(values)} numbers, not a multiple of {per_item}")
    return values.reshape(-1, per_item)
