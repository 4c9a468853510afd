"""``l2s predict``: segment new scans (NIfTI files or DICOM series folders) with a model folder.

Each scan is read onto its own voxel grid and checked against the model
(:mod:`~l2s_core.deploy.scan_input`), normalised as the model's training data was, and
segmented by one of three methods with the model folder's networks
(:mod:`~l2s_core.deploy.loaded_model`):

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
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from l2s_core import __version__
from l2s_core.box_guard import DEFAULT_BOX_GUARD
from l2s_core.boxes import Box, expand_box
from l2s_core.data.dicom.rtstruct import Structure, write_rtstruct
from l2s_core.data.io import write_mask
from l2s_core.deploy.loaded_model import LoadedModel, load_model_folder
from l2s_core.deploy.model_folder import CARD_FILE, METHODS, sha256_of
from l2s_core.deploy.prediction_table import output_lock, record_row
from l2s_core.deploy.scan_input import (
    Scan,
    check_box_given,
    check_unique_names,
    chosen_box,
    normalisation_key,
    normalised_image,
    scans_of,
)
from l2s_core.deploy.structures import StructureTerm, algorithm_name, structure_term
from l2s_core.errors import ConfigError
from l2s_core.infer import box_predict, predict_volume, two_stage_predict
from l2s_core.prediction import Prediction

__all__ = [
    "DEFAULT_BOX_GUARD",
    "METHODS",
    "PREDICTION_COLUMNS",
    "predict_scans",
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
        ModelFolderError, InputDataError, DicomError: see
            :func:`~l2s_core.deploy.loaded_model.load_model_folder` and
            :func:`~l2s_core.deploy.scan_input.read_scan`.
    """
    check_box_given(method, box, box_mm)
    folders = [Path(model_dirs)] if isinstance(model_dirs, str | Path) else [Path(d) for d in model_dirs]
    paths, out_dir = [Path(p) for p in inputs], Path(out_dir)
    check_unique_names(paths)
    organs = _load_organs(folders, method, runs, device, codes)
    for path in paths:  # every input read and checked before anything is written
        for scan in scans_of(path, [o.model.card for o in organs]).values():
            chosen_box(scan, box, box_mm)
    out_dir.mkdir(parents=True, exist_ok=True)
    with output_lock(out_dir):
        return _predict_into(organs, paths, out_dir, box, box_mm, progress, box_guard, dicom_seg)


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
        scans = scans_of(path, [o.model.card for o in organs])
        images: dict[tuple[object, ...], np.ndarray] = {}  # normalisation → the image normalised once
        predictions = []
        for organ in organs:
            card = organ.model.card
            scan = scans[card.channel]
            scan_box = chosen_box(scan, box, box_mm)
            started = time.perf_counter()  # normalisation (when this organ's is new) and segmentation
            key = normalisation_key(card)
            if key not in images:
                images[key] = normalised_image(scan, card)
            prediction = segment(organ.model, images[key], scan_box, box_guard)
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
