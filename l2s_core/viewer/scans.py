"""The explorer on new scans: a model folder (``l2s export``) and NIfTI files or DICOM series.

A :class:`ScanCase` is read and normalised by the deploy code (:func:`~l2s_core.deploy.scan_input.read_scan`,
:func:`~l2s_core.deploy.scan_input.normalised_image`), exactly as ``l2s predict`` reads it, and
:func:`load_folder_models` turns the model's two-stage pairs and baselines into prediction
sources that call :func:`~l2s_core.deploy.predict.segment`, so the explorer shows what
``l2s predict`` writes (on the RAS ``(z, y, x)`` array of the scan). A scan has no label: the
explorer draws no ground truth and no label box for it.

Example:
    >>> models = load_folder_models("models/spleen")  # doctest: +SKIP
    >>> viewer = SliceViewer([ScanCase("ct.nii.gz", models.card)], sources=models.sources,
    ...                      organ_network=models.organ_network)  # doctest: +SKIP
"""

from __future__ import annotations

__all__ = [
    "FOLDER_METHODS",
    "FolderModels",
    "ScanCase",
    "ViewerCase",
    "case_volumes",
    "load_folder_models",
    "method_counts",
]

import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from l2s_core.box_guard import DEFAULT_BOX_GUARD
from l2s_core.data.cache import PreparedCase
from l2s_core.data.io import VolumeMeta
from l2s_core.deploy.loaded_model import LoadedModel, load_model_folder
from l2s_core.deploy.model_folder import ModelCard, open_model_folder
from l2s_core.deploy.predict import segment
from l2s_core.deploy.scan_input import normalised_image, read_scan
from l2s_core.errors import ConfigError
from l2s_core.infer import Segmenter
from l2s_core.prediction import Prediction
from l2s_core.viewer.display import TWO_STAGE

#: Methods of a model folder the explorer overlays, in drawing order.
FOLDER_METHODS = ("baseline", TWO_STAGE)


@dataclass(frozen=True, eq=False)
class ScanCase:
    """A NIfTI file or DICOM series folder, shown like a prepared case (without a label).

    The scan is read and normalised when its image is asked for. The case keeps its voxel
    spacing but only a weak reference to the image: while someone holds the image (the
    :class:`~l2s_core.viewer.slice_viewer.SliceViewer` holds the current case's) it is given
    again without a new read, and once nobody does it is freed, so paging through scans keeps
    one volume in memory, not every scan seen (a 512 x 512 x 900 CT is about 0.9 GB of float32).

    Attributes:
        path: the NIfTI file or DICOM series folder.
        card: the card of the model whose preprocessing (channel, normalisation) is applied.
    """

    path: Path
    card: ModelCard = field(repr=False)
    _image: weakref.ref[np.ndarray] | None = field(default=None, init=False, repr=False)
    _meta: VolumeMeta | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @property
    def case_id(self) -> str:
        """The scan's file or folder name."""
        return self.path.name

    @property
    def crop_box(self) -> None:
        """A scan has no label, hence no label box."""
        return None

    def _read(self) -> tuple[np.ndarray, VolumeMeta]:
        """Read and normalise the scan; keep its grid and a weak reference to the image."""
        scan = read_scan(self.path, self.card)
        image = normalised_image(scan, self.card)
        object.__setattr__(self, "_image", weakref.ref(image))
        object.__setattr__(self, "_meta", scan.meta)
        return image, scan.meta

    @property
    def image(self) -> np.ndarray:
        """Normalised RAS ``(z, y, x)`` float32 image (read again unless it is still held)."""
        image = self._image() if self._image is not None else None
        return image if image is not None else self._read()[0]

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm, ``(z, y, x)``."""
        meta = self._meta if self._meta is not None else self._read()[1]
        return meta.spacing


ViewerCase = PreparedCase | ScanCase


def case_volumes(case: ViewerCase) -> tuple[np.ndarray, np.ndarray | None]:
    """The full-resolution ``(z, y, x)`` image of a case and its label (``None`` for a scan)."""
    if isinstance(case, ScanCase):
        return case.image, None
    return case.array("full", "image"), case.array("full", "label")


@dataclass(frozen=True)
class FolderModels:
    """The networks of a model folder that the explorer uses.

    Attributes:
        card: the model card.
        sources: ``baseline`` and ``two_stage`` prediction sources on :class:`ScanCase`, as far
            as the model has their networks.
        organ_network: the organ network (the mean of the pairs' with ``runs=None``) for the
            manual box, or ``None`` without two-stage pairs.
        models: method → the loaded model behind its source.
    """

    card: ModelCard
    sources: dict[str, Callable[[ScanCase], Prediction]]
    organ_network: Segmenter | None
    models: dict[str, LoadedModel]


def method_counts(card: ModelCard) -> dict[str, int]:
    """Pairs (two-stage) and baselines of a model card, per method of :data:`FOLDER_METHODS`."""
    return {method: sum(p.method == method for p in card.pairs) for method in FOLDER_METHODS}


def _segment_source(model: LoadedModel) -> Callable[[ScanCase], Prediction]:
    """A prediction source running :func:`~l2s_core.deploy.predict.segment` on a scan, with
    ``l2s predict``'s default box guard."""

    def predict(case: ScanCase) -> Prediction:
        return segment(model, case.image, box_guard=DEFAULT_BOX_GUARD)

    return predict


def load_folder_models(model_dir: str | Path, runs: int | None = None, device: str = "cpu") -> FolderModels:
    """Open a model folder (its weights checked once) and load its two-stage pairs and baselines for the explorer.

    Args:
        model_dir: folder written by ``l2s export``.
        runs: pair (and baseline) position, or ``None`` to average all (as ``l2s predict --runs``);
            a method without that position is left out (e.g. the baseline of a model with one
            baseline and several pairs).
        device: where the networks run.

    Raises:
        ModelFolderError, FormatVersionError: the folder does not match its card or this l2s.
        ConfigError: ``runs`` is a position of neither the model's pairs nor its baselines.
    """
    card = open_model_folder(model_dir)
    counts = method_counts(card)
    methods = [m for m, n in counts.items() if n and (runs is None or runs < n)]
    if not methods:
        raise ConfigError("runs", f"{runs} is not a position of this model's pairs or baselines {counts}")
    models = {method: load_model_folder(model_dir, method, runs, device, card=card) for method in methods}
    sources = {method: _segment_source(model) for method, model in models.items()}
    organ = models[TWO_STAGE].networks["organ"] if TWO_STAGE in models else None
    return FolderModels(card, sources, organ, models)
