"""``l2s predict``: segment new scans (NIfTI files or DICOM series folders) with a model folder.

Each scan is read onto its own voxel grid (:func:`~l2s_core.data.io.read_image` or
:func:`~l2s_core.data.dicom.series.read_series`), normalised as the model's training data was, and
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

Several model folders (one organ each) segment every scan: each scan is read once per channel
and normalised once per distinct normalisation, whatever the number of organs. ``two_stage``
runs with the second-stage guard (:mod:`l2s_core.box_guard`, ``box_guard`` growths at most, an
l2s addition; 0 gives the paper's method).

Written per scan into the output folder (``<name>``: the file or series folder's name):

* ``<name>.nii.gz``: the label map on the exact grid of the input (same shape and affine):
  organ i of the models given is label i (where organs overlap, the first given keeps the
  voxel); with one model it is that organ's mask;
* with several models ``<name>_<structure>.nii.gz``: each organ's own mask (characters other
  than letters, digits, ``_.-`` of the name as ``_``);
* for a DICOM series ``<name>_rtstruct.dcm``: one ROI per organ (TG-263 names,
  :mod:`l2s_core.deploy.structures`), referencing the series, and with ``dicom_seg``
  ``<name>_seg.dcm``: one DICOM-SEG segment per organ (:mod:`l2s_core.data.dicom.seg`);
* one row per scan and organ of ``predictions.csv`` (:data:`PREDICTION_COLUMNS`).

Example:
    >>> rows = predict_scans(["models/spleen", "models/liver"], ["dicom/patient_1"], "out")  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import math
import pickle
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from l2s_core import __version__
from l2s_core.box_guard import DEFAULT_BOX_GUARD
from l2s_core.boxes import Box, expand_box
from l2s_core.data.dicom.rtstruct import Structure, write_rtstruct
from l2s_core.data.dicom.series import SeriesInfo, read_series
from l2s_core.data.io import VolumeMeta, read_image, write_mask
from l2s_core.data.normalise import normalise
from l2s_core.deploy.model_folder import CARD_FILE, METHODS, ModelCard, NetworkEntry, open_model_folder, sha256_of
from l2s_core.deploy.prediction_table import output_lock, record_row
from l2s_core.deploy.structures import StructureTerm, algorithm_name, structure_term
from l2s_core.errors import ConfigError, InputDataError, ModelFolderError, check_choice
from l2s_core.infer import Segmenter, box_predict, predict_volume, two_stage_predict
from l2s_core.model import NETWORK_CLASSES
from l2s_core.prediction import Prediction

__all__ = [
    "DEFAULT_BOX_GUARD",
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

PREDICTION_COLUMNS = (
    "input",
    "structure",
    "label",
    "mask",
    "label_map",
    "rtstruct",
    "seg",
    "method",
    "runs",
    "volume_ml",
    "box",
    "seconds",
    "fallback",
    "box_grows",
)
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
        channels: channels of the file (1 for a DICOM series); ``image`` is one of them.
    """

    name: str
    image: np.ndarray
    meta: VolumeMeta
    series: SeriesInfo | None
    channels: int = 1


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
    except pickle.UnpicklingError:  # torch's own text advises weights_only=False, which l2s never does
        raise ModelFolderError(
            path, "holds objects other than tensors, which l2s never unpickles because that could run code"
        ) from None
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
    check_choice("--method", method, METHODS)
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


def segment(model: LoadedModel, image: np.ndarray, box: Box | None = None, box_guard: int = 0) -> Prediction:
    """The model's prediction of one normalised image: the one place that calls :mod:`l2s_core.infer`.

    Args:
        model: the loaded model (its method decides the path).
        image: normalised RAS ``(z, y, x)`` image.
        box: for ``box``: half-open ``(z0, y0, x0, z1, y1, x1)`` voxel box of the organ.
        box_guard: ``two_stage``: growths of the organ box the second-stage guard may make
            (0: the paper's method).

    Returns:
        The :class:`~l2s_core.prediction.Prediction`: uint8 ``(z, y, x)`` mask, the box the
        organ network segmented (margin and growths included; ``None`` for the baseline or
        when nothing was localised), the fallback used (``None``, or the card's fallback when
        nothing was localised) and how often the guard grew the box.
    """
    card, nets, device = model.card, model.networks, model.device
    if model.method == "baseline":
        return Prediction(predict_volume(nets["baseline"], image, device))
    if model.method == "box":
        assert box is not None
        segmented = expand_box(box, card.crop_margin)  # the organ network's context, as in training
        return Prediction(box_predict(nets["organ"], image, segmented, device), segmented)
    return two_stage_predict(nets["localiser"], nets["organ"], image, card.localisation(box_guard), device=device)


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
        return Scan(_output_name(path), image, meta, series)
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
    return Scan(_output_name(path), image, meta, None, channels)


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


@dataclass(frozen=True)
class _Organ:
    """A model folder ready to segment: its networks, term and what made it."""

    folder: Path
    model: LoadedModel
    term: StructureTerm
    card_sha256: str

    @property
    def algorithm(self) -> str:
        return algorithm_name(self.model.card, self.card_sha256)


def _load_organs(
    model_dirs: Sequence[Path], method: str, runs: int | None, device: str, codes: Mapping[str, StructureTerm] | None
) -> list[_Organ]:
    organs = []
    for folder in model_dirs:
        model = load_model_folder(folder, method, runs, device)
        organs.append(_Organ(folder, model, structure_term(model.card, codes), sha256_of(folder / CARD_FILE)))
    names = [o.term.name.casefold() for o in organs]
    for organ in organs:
        if names.count(organ.term.name.casefold()) > 1:
            raise ConfigError(
                organ.folder, f"segments '{organ.term.name}' like another model given; give each organ once"
            )
    return organs


def _normalisation_key(card: ModelCard) -> tuple[object, ...]:
    """What decides a normalised image: the channel read and the normalisation with its statistics."""
    return (card.channel, card.normalisation, card.ct_stats)


def _write_dicom(
    scan: Scan, organs: Sequence[_Organ], masks: list[np.ndarray], out_dir: Path, dicom_seg: bool
) -> tuple[str, str]:
    """The scan's RTSTRUCT (and SEG) of every organ; returns their paths ('' where none)."""
    if scan.series is None:
        return "", ""
    rtstruct_path = out_dir / f"{scan.name}_rtstruct.dcm"
    structures = [Structure(o.term.name, m, o.algorithm) for o, m in zip(organs, masks)]
    write_rtstruct(structures, scan.meta, scan.series, rtstruct_path)
    if not dicom_seg:
        return str(rtstruct_path), ""
    from l2s_core.data.dicom.seg import SegSegment, write_seg

    seg_path = out_dir / f"{scan.name}_seg.dcm"
    segments = [
        SegSegment(
            o.term.name,
            (o.term.code_value, o.term.code_scheme, o.term.code_meaning),
            m,
            f"l2s {o.model.card.organ} model",
            __version__,
            o.card_sha256,
        )
        for o, m in zip(organs, masks)
    ]
    write_seg(segments, scan.meta, scan.series, seg_path)
    return str(rtstruct_path), str(seg_path)


def predict_scans(
    model_dirs: str | Path | Sequence[str | Path],
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    method: str = "two_stage",
    runs: int | None = None,
    box: Sequence[int] | None = None,
    box_mm: Sequence[float] | None = None,
    device: str = "cpu",
    progress: bool = True,
    box_guard: int = DEFAULT_BOX_GUARD,
    dicom_seg: bool = False,
    codes: Mapping[str, StructureTerm] | None = None,
) -> pd.DataFrame:
    """Segment scans with one or several model folders and write masks, RTSTRUCTs (SEGs) and
    ``predictions.csv`` (see the module's list of files).

    Args:
        model_dirs: folders written by ``l2s export`` (one organ each), or one folder.
        inputs: NIfTI files and DICOM series folders.
        out_dir: output folder (created).
        method: ``two_stage``, ``baseline`` or ``box``.
        runs: pair (or baseline) position, or ``None`` to average all.
        box: for ``box``: ``(z0, y0, x0, z1, y1, x1)`` half-open voxel box in the scan's RAS
            ``(z, y, x)`` array (the convention of ``predictions.csv``).
        box_mm: for ``box``: two corners ``(x0, y0, z0, x1, y1, z1)`` in patient (LPS) mm.
        device: where the networks run.
        progress: a progress bar over the scans.
        box_guard: ``two_stage``: growths of the organ box the second-stage guard may make
            (0: the paper's method).
        dicom_seg: also write a DICOM-SEG per DICOM series (needs highdicom).
        codes: organ (as its card names it) → the name and code to use for it.

    Returns:
        The rows of ``predictions.csv`` (:data:`PREDICTION_COLUMNS`), one per scan and organ.

    Raises:
        ConfigError: a missing, doubled or bad box, two inputs with the same output name, or
            two models of the same structure.
        ModelFolderError, InputDataError, DicomError: see :func:`load_model_folder`, :func:`read_scan`.
    """
    if (method == "box") != (box is not None or box_mm is not None) or (box is not None and box_mm is not None):
        raise ConfigError("--box", "method box needs exactly one of --box or --box-mm; other methods take neither")
    folders = [Path(model_dirs)] if isinstance(model_dirs, str | Path) else [Path(d) for d in model_dirs]
    paths, out_dir = [Path(p) for p in inputs], Path(out_dir)
    _unique_names(paths)
    organs = _load_organs(folders, method, runs, device, codes)
    for path in paths:  # every input read and checked before anything is written
        for scan in _scans_of(path, organs).values():
            _chosen_box(scan, box, box_mm)
    out_dir.mkdir(parents=True, exist_ok=True)
    with output_lock(out_dir):
        return _predict_into(organs, paths, out_dir, box, box_mm, progress, box_guard, dicom_seg)


def _scans_of(path: Path, organs: Sequence[_Organ]) -> dict[int, Scan]:
    """The scan at ``path`` read once per channel the organs' models read (channel → scan), checked
    against every model's channel count and modality."""
    scans: dict[int, Scan] = {}
    for organ in organs:
        card = organ.model.card
        if card.channel in scans:
            scan = scans[card.channel]
            _check_fits(path, scan.channels, scan.series.modality if scan.series else None, card)
        else:
            scans[card.channel] = read_scan(path, card)
    return scans


def _chosen_box(scan: Scan, box: Sequence[int] | None, box_mm: Sequence[float] | None) -> Box | None:
    """The checked ``--box`` or ``--box-mm`` of a scan (``None`` for the other methods)."""
    if box is not None:
        return _check_box(box, scan.image.shape)
    if box_mm is not None:
        return box_from_mm(box_mm, scan.meta, scan.image.shape)
    return None


def _predict_into(
    organs: Sequence[_Organ],
    paths: Sequence[Path],
    out_dir: Path,
    box: Sequence[int] | None,
    box_mm: Sequence[float] | None,
    progress: bool,
    box_guard: int,
    dicom_seg: bool,
) -> pd.DataFrame:
    """Segment each scan with every organ's model and write its files and its rows of
    ``predictions.csv`` (under the output folder's lock)."""
    method, runs = organs[0].model.method, organs[0].model.runs
    rows = []
    names = ", ".join(o.term.name for o in organs)
    for path in tqdm(paths, desc=f"predict {names}", unit="scan", disable=not progress):
        scans = _scans_of(path, organs)
        images: dict[tuple[object, ...], np.ndarray] = {}  # normalisation → the image normalised once
        predictions = []
        for organ in organs:
            card = organ.model.card
            scan = scans[card.channel]
            chosen_box = _chosen_box(scan, box, box_mm)
            started = time.perf_counter()  # normalisation (when this organ's is new) and segmentation
            key = _normalisation_key(card)
            if key not in images:
                images[key] = normalised_image(scan, card)
            prediction = segment(organ.model, images[key], chosen_box, box_guard)
            predictions.append(dataclasses.replace(prediction, seconds=time.perf_counter() - started))
        del images
        masks = [p.mask for p in predictions]
        label_map = np.zeros_like(masks[0])
        for label, mask in reversed(list(enumerate(masks, start=1))):  # the first organ given keeps overlaps
            label_map[mask > 0] = label
        label_map_path = out_dir / f"{scan.name}.nii.gz"
        write_mask(label_map, scan.meta, label_map_path)
        mask_paths = [label_map_path] if len(organs) == 1 else []
        for organ, mask in zip(organs if len(organs) > 1 else [], masks):
            mask_paths.append(out_dir / f"{scan.name}_{re.sub(r'[^A-Za-z0-9_.-]', '_', organ.term.name)}.nii.gz")
            write_mask(mask, scan.meta, mask_paths[-1])
        rtstruct, seg = _write_dicom(scan, organs, masks, out_dir, dicom_seg)
        for label, (organ, prediction, mask_path) in enumerate(zip(organs, predictions, mask_paths), start=1):
            row = {
                "input": str(path),
                "structure": organ.term.name,
                "label": label,
                "mask": str(mask_path),
                "label_map": str(label_map_path),
                "rtstruct": rtstruct,
                "seg": seg,
                "method": method,
                "runs": "all" if runs is None else runs,
                "volume_ml": np.count_nonzero(prediction.mask) * math.prod(scan.meta.spacing) / 1000.0,
                "box": "" if prediction.box is None else " ".join(map(str, prediction.box)),
                "seconds": prediction.seconds,
                "fallback": prediction.fallback_used or "none",
                "box_grows": prediction.box_grows,
            }
            record_row(out_dir, row, PREDICTION_COLUMNS)
            rows.append(row)
    return pd.DataFrame(rows, columns=list(PREDICTION_COLUMNS))
