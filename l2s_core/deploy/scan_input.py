"""Scan input of ``l2s predict`` (and of the explorer's scans): reading a new scan and its box,
and checking both against a model card, without torch.

What is read:

* a NIfTI file (3-D, or 4-D with channels last) by :func:`~l2s_core.data.io.read_image`: the
  channel the model reads (``card.channel``) of a file with as many channels as the model's
  training images (``card.n_channels``);
* a DICOM series folder by :func:`~l2s_core.data.dicom.series.read_series`: one channel, of the
  modality of the model (CT for a model trained on ``CT``, MR for any other MSD modality).

Either becomes a :class:`Scan`: raw intensities as a RAS ``(z, y, x)`` float32 array on the
scan's own voxel grid (its :class:`~l2s_core.data.io.VolumeMeta`), named by the file or folder
(:func:`output_name`, the stem of the outputs). :func:`normalised_image` normalises it as the
model's training data was. A box for the ``box`` method is either voxels, half-open
``(z0, y0, x0, z1, y1, x1)`` in that ``(z, y, x)`` array, or two corners in patient (LPS) mm
(:func:`box_from_mm`); :func:`chosen_box` checks it against the scan.

What is checked, before ``l2s predict`` writes anything (it reads every input with
:func:`scans_of` and :func:`chosen_box` first): exactly one box for the ``box`` method and none
for the others (:func:`check_box_given`), distinct output names (:func:`check_unique_names`),
a readable scan (complete, one series per folder, evenly spaced slices), its channel count and
(DICOM) modality against every model's card, and the box inside the scan. Each refusal is one
line naming the file (or the option) and what is wrong: :class:`~l2s_core.errors.InputDataError`
or :class:`~l2s_core.errors.DicomError` for an unreadable scan,
:class:`~l2s_core.errors.ModelFolderError` for a scan the model cannot segment,
:class:`~l2s_core.errors.ConfigError` for a bad box or doubled output name.

Example:
    >>> scan = read_scan("ct.nii.gz", card)  # doctest: +SKIP
    >>> image = normalised_image(scan, card)  # (z, y, x), the input of deploy.predict.segment  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from l2s_core.boxes import Box
from l2s_core.data.dicom.series import SeriesInfo, read_series
from l2s_core.data.io import VolumeMeta, read_image
from l2s_core.data.normalise import normalise
from l2s_core.deploy.model_folder import ModelCard
from l2s_core.errors import ConfigError, InputDataError, ModelFolderError

__all__ = [
    "Scan",
    "box_from_mm",
    "check_box_given",
    "check_unique_names",
    "chosen_box",
    "normalisation_key",
    "normalised_image",
    "output_name",
    "read_scan",
    "scans_of",
]

#: DICOM modality of an MSD modality name (anything else is MR when it names an MR contrast).
_CT_NAMES = ("CT",)


@dataclass(frozen=True)
class Scan:
    """A scan read for prediction.

    Attributes:
        name: output file stem.
        image: raw intensities, RAS ``(z, y, x)`` float32.
        meta: its source grid.
        series: the DICOM series (``None`` for NIfTI input).
        channels: channels of the file (1 for a DICOM series); ``image`` is one of them.
    """

    name: str
    image: np.ndarray
    meta: VolumeMeta
    series: SeriesInfo | None
    channels: int = 1


def _dicom_modality(name: str) -> str:
    return "CT" if name.strip().upper() in _CT_NAMES else "MR"


def _check_fits(path: Path, channels: int, modality: str | None, card: ModelCard) -> None:
    """Refuse a scan of another channel count or (DICOM) modality than the model's."""
    if modality is not None:
        if card.n_channels != 1:
            raise ModelFolderError(
                path,
                f"a DICOM series is one channel; the model reads channel {card.channel} of "
                f"{card.n_channels}-channel images",
            )
        if _dicom_modality(card.modality) != modality.upper():
            raise ModelFolderError(
                path,
                f"modality {modality}, the model was trained on {card.modality} ({_dicom_modality(card.modality)})",
            )
    elif channels != card.n_channels:
        raise ModelFolderError(
            path,
            f"{channels} channel(s), the model was trained on {card.n_channels}-channel "
            f"images ({card.modality} = channel {card.channel})",
        )


def read_scan(path: str | Path, card: ModelCard) -> Scan:
    """Read a NIfTI file or a DICOM series folder for the model of ``card``.

    Raises:
        InputDataError, DicomError: an unreadable scan (see the readers).
        ModelFolderError: the scan's channel count or modality differs from the model's.
    """
    path = Path(path)
    if path.is_dir():
        image, meta, series = read_series(path)
        _check_fits(path, 1, series.modality, card)
        return Scan(output_name(path), image, meta, series)
    if not path.is_file():
        raise InputDataError(path, "no such NIfTI file or DICOM series folder")
    try:
        shape = tuple(nib.load(str(path)).shape)  # type: ignore[attr-defined]
    except Exception:  # unreadable: read_image names the problem
        shape = ()
    channels = shape[3] if len(shape) == 4 else 1
    if shape:
        _check_fits(path, channels, None, card)
    image, meta = read_image(path, channel=card.channel if channels > 1 else 0)
    return Scan(output_name(path), image, meta, None, channels)


def scans_of(path: Path, cards: Sequence[ModelCard]) -> dict[int, Scan]:
    """The scan at ``path`` read once per channel the models of ``cards`` read (channel → scan),
    checked against every model's channel count and modality.

    Raises:
        InputDataError, DicomError, ModelFolderError: see :func:`read_scan`.
    """
    scans: dict[int, Scan] = {}
    for card in cards:
        if card.channel in scans:
            scan = scans[card.channel]
            _check_fits(path, scan.channels, scan.series.modality if scan.series else None, card)
        else:
            scans[card.channel] = read_scan(path, card)
    return scans


def normalised_image(scan: Scan, card: ModelCard) -> np.ndarray:
    """The scan's ``(z, y, x)`` image normalised as the model's training data was (its card's
    normalisation and statistics): the input of :func:`~l2s_core.deploy.predict.segment`."""
    return normalise(scan.image, card.normalisation, card.ct_stats)


def normalisation_key(card: ModelCard) -> tuple[object, ...]:
    """What decides a normalised image: the channel read and the normalisation with its statistics
    (two cards of one key give one :func:`normalised_image` of a scan)."""
    return (card.channel, card.normalisation, card.ct_stats)


def output_name(path: Path) -> str:
    """Stem of a scan's output files: the series folder's name or the NIfTI file's name without suffix."""
    if path.is_dir() or not path.name.endswith((".nii.gz", ".nii")):
        return path.name
    return path.name[: -len(".nii.gz")] if path.name.endswith(".nii.gz") else path.stem


def check_unique_names(inputs: Sequence[Path]) -> None:
    """Refuse two inputs of the same :func:`output_name` (their outputs would overwrite each other).

    Raises:
        ConfigError: naming the second input and the first.
    """
    names: dict[str, Path] = {}
    for path in inputs:
        name = output_name(path)
        if name in names:
            raise ConfigError(
                path, f"gives the same output name '{name}' as {names[name]}; predict them into separate folders"
            )
        names[name] = path


def check_box_given(method: str, box: Sequence[int] | None, box_mm: Sequence[float] | None) -> None:
    """Refuse a ``box`` method without exactly one of ``box`` and ``box_mm``, or a box for another method.

    Raises:
        ConfigError: naming ``--box``.
    """
    if (method == "box") != (box is not None or box_mm is not None) or (box is not None and box_mm is not None):
        raise ConfigError("--box", "method box needs exactly one of --box or --box-mm; other methods take neither")


def box_from_mm(corners_lps: Sequence[float], meta: VolumeMeta, shape: tuple[int, int, int]) -> Box:
    """The voxels whose centres lie in a box given by two corners in patient coordinates.

    Args:
        corners_lps: ``(x0, y0, z0, x1, y1, z1)`` in mm, DICOM patient (LPS) coordinates.
        meta: the scan's grid.
        shape: the RAS ``(z, y, x)`` shape of the scan.

    Returns:
        Half-open ``(z0, y0, x0, z1, y1, x1)`` voxel box of the RAS array.

    Raises:
        ConfigError: the box holds no voxel centre of the scan.
    """
    corners = np.asarray(corners_lps, dtype=np.float64).reshape(2, 3) * np.array([-1.0, -1.0, 1.0])  # → RAS
    to_voxel = np.linalg.inv(np.asarray(meta.affine))
    ras_corners = np.array([[a, b, c] for a in corners[:, 0] for b in corners[:, 1] for c in corners[:, 2]])
    voxels = (np.column_stack([ras_corners, np.ones(8)]) @ to_voxel.T)[:, :3][:, ::-1]  # (z, y, x)
    low = np.maximum(np.ceil(voxels.min(axis=0) - 1e-6), 0).astype(int)
    high = np.minimum(np.floor(voxels.max(axis=0) + 1e-6) + 1, shape).astype(int)
    if np.any(high <= low):
        raise ConfigError("--box-mm", f"{list(corners_lps)} mm holds no voxel of the scan")
    return (*map(int, low), *map(int, high))  # type: ignore[return-value]


def _check_box(box: Sequence[int], shape: tuple[int, int, int]) -> Box:
    z0, y0, x0, z1, y1, x1 = (int(v) for v in box)
    if not (0 <= z0 < z1 <= shape[0] and 0 <= y0 < y1 <= shape[1] and 0 <= x0 < x1 <= shape[2]):
        raise ConfigError("--box", f"{list(box)} is not a non-empty box inside the scan's (z, y, x) shape {shape}")
    return (z0, y0, x0, z1, y1, x1)


def chosen_box(scan: Scan, box: Sequence[int] | None, box_mm: Sequence[float] | None) -> Box | None:
    """The checked ``--box`` or ``--box-mm`` of a scan (``None`` for the other methods).

    Args:
        scan: the scan the box is in.
        box: half-open ``(z0, y0, x0, z1, y1, x1)`` voxel box of the scan's RAS ``(z, y, x)`` array.
        box_mm: two corners ``(x0, y0, z0, x1, y1, z1)`` in patient (LPS) mm.

    Returns:
        The half-open ``(z0, y0, x0, z1, y1, x1)`` voxel box, or ``None`` when neither is given.

    Raises:
        ConfigError: the box is empty or leaves the scan (``--box``), or holds no voxel of it (``--box-mm``).
    """
    if box is not None:
        return _check_box(box, scan.image.shape)
    if box_mm is not None:
        return box_from_mm(box_mm, scan.meta, scan.image.shape)
    return None
