"""``l2s predict``: segment new scans (NIfTI files or DICOM series folders) with a model folder.

Each scan is read onto its own voxel grid (:func:`~l2s_core.data.io.read_image` or
:func:`~l2s_core.data.dicom.read_series`), normalised as the model's training data was, and
segmented by one of three methods:

==========  ================================================================================
method      prediction
==========  ================================================================================
two_stage   localiser on the low-resolution image → organ box + crop margin → organ network
baseline    sliding window over the whole image with the baseline's training patch
box         the organ network on a box you give (the paper's manual localisation), grown by
            the crop margin as in training
==========  ================================================================================

``runs``: one pair (or baseline) of the model card by position, or ``None`` for all: then every
stage averages the softmax foreground probabilities of its networks (the localisers' mean gives
one box, the organ networks' mean segments it; the baselines' mean for ``baseline``).

Written per scan into the output folder: ``<name>.nii.gz`` (the mask on the exact grid of the
input, same shape and affine), for a DICOM series also ``<name>_rtstruct.dcm`` (the organ as a
named ROI referencing the series), and one row of ``predictions.csv``
(:data:`PREDICTION_COLUMNS`).

Example:
    >>> rows = predict_scans("models/spleen", ["ct.nii.gz", "dicom/patient_1"], "out")  # doctest: +SKIP
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from l2s_core.boxes import Box, expand_box
from l2s_core.data.dicom import SeriesInfo, read_series
from l2s_core.data.io import VolumeMeta, read_image, write_mask
from l2s_core.data.normalise import normalise
from l2s_core.data.rtstruct import write_rtstruct
from l2s_core.deploy.model_folder import METHODS, ModelCard, NetworkEntry, open_model_folder
from l2s_core.errors import ConfigError, InputDataError, ModelFolderError
from l2s_core.files import atomic_write_text
from l2s_core.infer import Localisation, Segmenter, box_predict, predict_volume, two_stage_predict
from l2s_core.model import NETWORK_CLASSES

__all__ = [
    "METHODS",
    "PREDICTION_COLUMNS",
    "LoadedModel",
    "Scan",
    "box_from_mm",
    "load_model_folder",
    "normalised_image",
    "predict_scans",
    "read_scan",
    "segment",
]

PREDICTION_COLUMNS = ("input", "mask", "rtstruct", "method", "runs", "volume_ml", "box", "seconds", "fallback")
#: Networks each method needs.
_NETWORKS_OF = {"two_stage": ("localiser", "organ"), "baseline": ("baseline",), "box": ("organ",)}
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
    """

    name: str
    image: np.ndarray
    meta: VolumeMeta
    series: SeriesInfo | None


class _MeanProbability(nn.Module):
    """Networks averaged: log of the mean softmax, so that the argmax is the class of highest mean probability."""

    def __init__(self, networks: Sequence[nn.Module]) -> None:
        super().__init__()
        self.networks = nn.ModuleList(networks)
        self.size_multiple = max(int(getattr(n, "size_multiple", 1)) for n in networks)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        mean = torch.stack([n(images).float().softmax(dim=1) for n in self.networks]).mean(dim=0)
        return mean.clamp_min(1e-7).log()


@dataclass(frozen=True)
class LoadedModel:
    """A model folder's card and the networks of one method, ready to predict.

    Attributes:
        card: the model card.
        method: ``two_stage``, ``baseline`` or ``box``.
        runs: the pair (or baseline) position used, or ``None`` for all.
        networks: network kind → the network (one, or the mean of several) with its training
            patch as the largest input it is given.
        entries: network kind → the card entries of the networks used.
        device: where the networks run.
    """

    card: ModelCard
    method: str
    runs: int | None
    networks: dict[str, Segmenter]
    entries: dict[str, list[NetworkEntry]]
    device: str


def _build(folder: Path, entry: NetworkEntry) -> nn.Module:
    path = folder / entry.file
    if entry.network_class not in NETWORK_CLASSES:
        raise ModelFolderError(
            path, f"network class {entry.network_class!r}; this l2s builds {', '.join(NETWORK_CLASSES)}"
        )
    try:
        network = NETWORK_CLASSES[entry.network_class](**entry.hparams)
        network.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ModelFolderError(
            path, f"weights do not fit {entry.network_class}({entry.hparams}) ({' '.join(str(exc).split())[:200]})"
        ) from None
    return network.eval()


def _selected(card: ModelCard, method: str, runs: int | None) -> dict[str, list[NetworkEntry]]:
    """Card entries of each network kind the method uses."""
    kind = "baseline" if method == "baseline" else "two_stage"
    pairs = [p for p in card.pairs if p.method == kind]
    if not pairs:
        raise ModelFolderError(card.organ, f"the model has no {kind.replace('_', '-')} networks for method {method}")
    if runs is not None and not 0 <= runs < len(pairs):
        raise ConfigError("--runs", f"{runs} is not a {kind} position of this model (0..{len(pairs) - 1}, or all)")
    chosen = pairs if runs is None else [pairs[runs]]
    by_run = {(n.network, n.run): n for n in card.networks}
    return {network: [by_run[(network, p.runs[network])] for p in chosen] for network in _NETWORKS_OF[method]}


def load_model_folder(
    folder: str | Path,
    method: str = "two_stage",
    runs: int | None = None,
    device: str = "cpu",
    card: ModelCard | None = None,
    compile: bool | None = None,
) -> LoadedModel:
    """Open and check a model folder and build the networks of ``method``.

    Args:
        folder: folder written by ``l2s export``.
        method: ``two_stage``, ``baseline`` or ``box``.
        runs: pair (or baseline) position, or ``None`` for the mean of all.
        device: where the networks run.
        card: the folder's card as :func:`~l2s_core.deploy.model_folder.open_model_folder`
            returned it (already checked: its weights are not hashed again, e.g. when several
            methods of one folder are built); ``None``: open and check the folder here.
        compile: compile the networks (:mod:`l2s_core.compiling`); ``None``: on GPUs only.

    Raises:
        ConfigError: an unknown method or a pair position the model lacks.
        ModelFolderError, FormatVersionError: the folder does not match its card or this l2s.
    """
    if method not in METHODS:
        raise ConfigError("--method", f"must be one of {', '.join(METHODS)}, got {method!r}")
    folder = Path(folder)
    card = card if card is not None else open_model_folder(folder)
    entries = _selected(card, method, runs)
    networks = {}
    for kind, chosen in entries.items():
        built = [_build(folder, e).to(device) for e in chosen]
        network = built[0] if len(built) == 1 else _MeanProbability(built).eval()
        networks[kind] = Segmenter(
            network, chosen[0].patch_size, sw_batch_size=None, amp=chosen[0].amp, compile=compile
        )
    return LoadedModel(card, method, runs, networks, entries, device)


def segment(model: LoadedModel, image: np.ndarray, box: Box | None = None) -> tuple[np.ndarray, Box | None, str | None]:
    """The model's mask of one normalised image: the one place that calls :mod:`l2s_core.infer`.

    Args:
        model: the loaded model (its method decides the path).
        image: normalised RAS ``(z, y, x)`` image.
        box: for ``box``: half-open ``(z0, y0, x0, z1, y1, x1)`` voxel box of the organ.

    Returns:
        ``(mask, box, fallback)``: uint8 ``(z, y, x)`` mask, the box the organ network segmented
        (margin included; ``None`` for the baseline or when nothing was localised) and the
        fallback used (``None``, or the card's fallback when nothing was localised).
    """
    card, nets, device = model.card, model.networks, model.device
    localisation = Localisation(card.crop_margin, card.fallback, card.lowres_divisors, card.box_mapping)
    if model.method == "baseline":
        return predict_volume(nets["baseline"], image, device), None, None
    if model.method == "box":
        assert box is not None
        segmented = expand_box(box, card.crop_margin)  # the organ network's context, as in training
        return box_predict(nets["organ"], image, segmented, device), segmented, None
    result = two_stage_predict(nets["localiser"], nets["organ"], image, localisation, device=device)
    return result.mask, result.box, result.fallback_used


def _dicom_modality(name: str) -> str:
    return "CT" if name.strip().upper() in _CT_NAMES else "MR"


def read_scan(path: str | Path, card: ModelCard) -> Scan:
    """Read a NIfTI file or a DICOM series folder for the model of ``card``.

    Raises:
        InputDataError, DicomError: an unreadable scan (see the readers).
        ModelFolderError: the scan's channel count or modality differs from the model's.
    """
    path = Path(path)
    if path.is_dir():
        image, meta, series = read_series(path)
        if card.n_channels != 1:
            raise ModelFolderError(
                path,
                f"a DICOM series is one channel; the model reads channel {card.channel} of "
                f"{card.n_channels}-channel images",
            )
        if _dicom_modality(card.modality) != series.modality.upper():
            raise ModelFolderError(
                path,
                f"modality {series.modality}, the model was trained on {card.modality} "
                f"({_dicom_modality(card.modality)})",
            )
        return Scan(_output_name(path), image, meta, series)
    if not path.is_file():
        raise InputDataError(path, "no such NIfTI file or DICOM series folder")
    try:
        shape = tuple(nib.load(str(path)).shape)  # type: ignore[attr-defined]
    except Exception:  # unreadable: read_image names the problem
        shape = ()
    channels = shape[3] if len(shape) == 4 else 1
    if shape and channels != card.n_channels:
        raise ModelFolderError(
            path,
            f"{channels} channel(s), the model was trained on {card.n_channels}-channel "
            f"images ({card.modality} = channel {card.channel})",
        )
    image, meta = read_image(path, channel=card.channel if channels > 1 else 0)
    return Scan(_output_name(path), image, meta, None)


def normalised_image(scan: Scan, card: ModelCard) -> np.ndarray:
    """The scan's ``(z, y, x)`` image normalised as the model's training data was (its card's
    normalisation and statistics): the input of :func:`segment`."""
    return normalise(scan.image, card.normalisation, card.ct_stats)


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


def _output_name(path: Path) -> str:
    """Stem of a scan's output files: the series folder's name or the NIfTI file's name without suffix."""
    if path.is_dir() or not path.name.endswith((".nii.gz", ".nii")):
        return path.name
    return path.name[: -len(".nii.gz")] if path.name.endswith(".nii.gz") else path.stem


def _unique_names(inputs: Sequence[Path]) -> None:
    names: dict[str, Path] = {}
    for path in inputs:
        name = _output_name(path)
        if name in names:
            raise ConfigError(
                path, f"gives the same output name '{name}' as {names[name]}; predict them into separate folders"
            )
        names[name] = path


def predict_scans(
    model_dir: str | Path,
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    method: str = "two_stage",
    runs: int | None = None,
    box: Sequence[int] | None = None,
    box_mm: Sequence[float] | None = None,
    device: str = "cpu",
    progress: bool = True,
) -> pd.DataFrame:
    """Segment scans with a model folder and write masks, RTSTRUCTs and ``predictions.csv``.

    Args:
        model_dir: folder written by ``l2s export``.
        inputs: NIfTI files and DICOM series folders.
        out_dir: output folder (created).
        method: ``two_stage``, ``baseline`` or ``box``.
        runs: pair (or baseline) position, or ``None`` to average all.
        box: for ``box``: ``(z0, y0, x0, z1, y1, x1)`` half-open voxel box in the scan's RAS
            ``(z, y, x)`` array (the convention of ``predictions.csv``).
        box_mm: for ``box``: two corners ``(x0, y0, z0, x1, y1, z1)`` in patient (LPS) mm.
        device: where the networks run.
        progress: a progress bar over the scans.

    Returns:
        The rows of ``predictions.csv`` (:data:`PREDICTION_COLUMNS`).

    Raises:
        ConfigError: a missing, doubled or bad box, or two inputs with the same output name.
        ModelFolderError, InputDataError, DicomError: see :func:`load_model_folder`, :func:`read_scan`.
    """
    if (method == "box") != (box is not None or box_mm is not None) or (box is not None and box_mm is not None):
        raise ConfigError("--box", "method box needs exactly one of --box or --box-mm; other methods take neither")
    paths, out_dir = [Path(p) for p in inputs], Path(out_dir)
    _unique_names(paths)
    model = load_model_folder(model_dir, method, runs, device)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for path in tqdm(paths, desc=f"predict {model.card.organ}", unit="scan", disable=not progress):
        scan = read_scan(path, model.card)
        chosen_box = None
        if box is not None:
            chosen_box = _check_box(box, scan.image.shape)
        elif box_mm is not None:
            chosen_box = box_from_mm(box_mm, scan.meta, scan.image.shape)
        started = time.perf_counter()
        image = normalised_image(scan, model.card)
        mask, used_box, fallback = segment(model, image, chosen_box)
        seconds = time.perf_counter() - started
        mask_path = out_dir / f"{scan.name}.nii.gz"
        write_mask(mask, scan.meta, mask_path)
        rtstruct_path = None
        if scan.series is not None:
            rtstruct_path = out_dir / f"{scan.name}_rtstruct.dcm"
            write_rtstruct(mask, scan.meta, scan.series, model.card.organ, rtstruct_path)
        rows.append(
            {
                "input": str(path),
                "mask": str(mask_path),
                "rtstruct": str(rtstruct_path or ""),
                "method": method,
                "runs": "all" if runs is None else runs,
                "volume_ml": np.count_nonzero(mask) * math.prod(scan.meta.spacing) / 1000.0,
                "box": "" if used_box is None else " ".join(map(str, used_box)),
                "seconds": seconds,
                "fallback": fallback or "none",
            }
        )
    table = pd.DataFrame(rows, columns=list(PREDICTION_COLUMNS))
    buffer = io.StringIO()
    table.to_csv(buffer, index=False)
    atomic_write_text(out_dir / "predictions.csv", buffer.getvalue())
    return table
