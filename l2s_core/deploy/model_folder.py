"""The model folder written by ``l2s export``: its card (``model.json``) and its checks.

Layout of a model folder::

    model.json                    the :class:`ModelCard` (a :class:`~l2s_core.records.Record`)
    README.md                     the card in words (written from ``model.json``)
    weights/<network>_<ii>.pt     one state dict per network, ``torch.load(weights_only=True)``

The card records everything inference needs (architecture, patch, crop margin, low-res rule,
normalisation and its statistics, channel, organ labels), the validation and test Dice of each
network or pair in the study, the data it was trained on and the software versions. Opening a
folder (:func:`open_model_folder`) checks the format version and the sha256 of every weight
file, so a folder from another version of l2s or with an altered file is refused with one line.

Example:
    >>> card = open_model_folder("models/spleen")  # doctest: +SKIP
    >>> [n.file for n in card.networks]  # doctest: +SKIP
    ['weights/baseline_00.pt', 'weights/localiser_00.pt', 'weights/organ_00.pt']
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from l2s_core.data.normalise import CtStats
from l2s_core.errors import InputDataError, ModelFolderError
from l2s_core.files import read_json
from l2s_core.prediction import Localisation
from l2s_core.records import Record, plain
from l2s_core.vocabulary import BoxMapping, Fallback

__all__ = [
    "CARD_FILE",
    "METHODS",
    "README_FILE",
    "ModelCard",
    "NetworkEntry",
    "PairEntry",
    "TrainingData",
    "open_model_folder",
    "sha256_of",
]

CARD_FILE = "model.json"
#: Bounds of the card's numbers, checked when it is read: beyond them a card (from a stranger,
#: or altered) would ask for absurd memory (``crop_margin: 2000`` asked 242 GiB).
MAX_CROP_MARGIN = 256
MAX_LOWRES_DIVISOR = 16
MAX_CHANNELS = 16
MAX_PATCH_SIDE = 1024
MAX_PATCH_VOXELS = 2**26
#: The widest level of a network (``base_channels * 2 ** depth``) and its other sizes.
MAX_NETWORK_CHANNELS = 4096
MAX_NETWORK_DEPTH = 8
#: Prediction methods of a model folder (see :mod:`l2s_core.deploy.predict`).
METHODS = ("two_stage", "baseline", "box")
README_FILE = "README.md"


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class NetworkEntry(Record):
    """One exported network.

    Attributes:
        network: ``baseline``, ``localiser`` or ``organ``.
        run: the run index in the study.
        file: the state dict, relative to the model folder.
        sha256: hex sha256 of ``file``.
        network_class: class of the network (``UNet3D``).
        hparams: constructor arguments of the network.
        patch_size: ``(z, y, x)`` training patch of the run.
        amp: the run trained under bfloat16 autocast.
        best_val_dice: the run's best validation Dice during training.
    """

    network: str
    run: int
    file: str
    sha256: str
    network_class: str
    hparams: dict[str, Any]
    patch_size: tuple[int, int, int]
    amp: bool
    best_val_dice: float | None


@dataclass(frozen=True)
class PairEntry(Record):
    """A method run of the study: a two-stage pair (localiser, organ network) or a baseline.

    Attributes:
        method: ``two_stage`` or ``baseline``.
        index: position of the pair (two_stage) or the baseline's run index.
        runs: ``{"localiser": i, "organ": j}`` or ``{"baseline": i}``: run indices of the networks.
        dice: ``{"val": pooled Dice, "test": pooled Dice}`` from the study's evaluation CSVs
            (``None`` where the study has no such row).
    """

    method: str
    index: int
    runs: dict[str, int]
    dice: dict[str, float | None]


@dataclass(frozen=True)
class TrainingData:
    """What a model's networks were trained on.

    Attributes:
        task_name: the task's name (``dataset.json``).
        task_dir: the task folder, absolute, on the machine that prepared it.
        cases: split → number of cases.
        excluded: cases left out (no organ, or unreadable).
        study_dir: the study folder the networks come from.
    """

    task_name: str = ""
    task_dir: str = ""
    cases: dict[str, int] = field(default_factory=dict)
    excluded: int = 0
    study_dir: str = ""


@dataclass(frozen=True)
class ModelCard(Record):
    """Content of ``model.json``.

    Attributes:
        organ: the organ segmented.
        modality: modality of the channel the networks read (``dataset.json``), e.g. ``CT``.
        n_channels: channels of the training images (a scan must have as many).
        channel: the channel the networks read.
        organ_labels: label values merged into the organ (``None``: every non-zero label).
        labels: label value (as a string) → name, from the training task.
        normalisation: ``zscore``, ``ct`` or ``none``.
        ct_stats: statistics of the ``ct`` normalisation (else ``None``).
        crop_margin: voxels of context around the organ box.
        lowres_divisors: ``(z, y, x)`` divisors of the localiser's low-resolution grid.
        networks: the exported networks.
        pairs: the two-stage pairs and baselines with their Dice in the study.
        training_data: task name and folder, case counts per split, study folder.
        software: versions of l2s, Python, torch, numpy, MONAI at export.
        created: UTC time of the export (ISO 8601).
        fallback: what two-stage prediction does when the localiser finds nothing (the study's
            ``evaluate.fallback``).
        box_mapping: how the localiser's box reaches full resolution (the study's
            ``evaluate.box_mapping``), so that predictions match the Dice in ``pairs``.
    """

    organ: str
    modality: str
    n_channels: int
    channel: int
    organ_labels: tuple[int, ...] | None
    labels: dict[str, str]
    normalisation: str
    ct_stats: CtStats | None
    crop_margin: int
    lowres_divisors: tuple[int, int, int]
    networks: tuple[NetworkEntry, ...]
    pairs: tuple[PairEntry, ...]
    training_data: TrainingData = field(default_factory=TrainingData)
    software: dict[str, str] = field(default_factory=dict)
    created: str = ""
    fallback: Fallback = Localisation.fallback
    box_mapping: BoxMapping = Localisation.box_mapping

    def localisation(self, guard_grows: int = 0) -> Localisation:
        """How this model localises: the training task's margin and divisors, the study's
        fallback and box mapping, and ``guard_grows`` growths of the second-stage guard (0:
        the paper's method; ``l2s predict`` uses :data:`~l2s_core.box_guard.DEFAULT_BOX_GUARD`)."""
        return Localisation(self.crop_margin, self.fallback, self.lowres_divisors, self.box_mapping, guard_grows)


def _check_card_numbers(card: ModelCard, path: Path) -> None:
    """Refuse a card whose numbers lie outside the bounds above (the sizes predict allocates by).

    Raises:
        ModelFolderError: naming the card and the first number out of range.
    """
    bounds: list[tuple[str, float, float, float]] = [
        ("crop_margin", card.crop_margin, 0, MAX_CROP_MARGIN),
        ("n_channels", card.n_channels, 1, MAX_CHANNELS),
        ("channel", card.channel, 0, card.n_channels - 1),
        *(("lowres_divisors", d, 1, MAX_LOWRES_DIVISOR) for d in card.lowres_divisors),
        *(("organ_labels", v, 1, 255) for v in card.organ_labels or ()),
    ]
    for i, entry in enumerate(card.networks):
        key = f"networks[{i}]"
        bounds += [(f"{key}.patch_size", side, 1, MAX_PATCH_SIDE) for side in entry.patch_size]
        bounds.append((f"{key}.patch_size voxels", math.prod(entry.patch_size), 1, MAX_PATCH_VOXELS))
        hparams = {k: v for k, v in entry.hparams.items() if isinstance(v, int)}
        bounds += [(f"{key}.hparams.{k}", v, 1, MAX_NETWORK_CHANNELS) for k, v in hparams.items()]
        depth = hparams.get("depth", 1)
        bounds.append((f"{key}.hparams.depth", depth, 1, MAX_NETWORK_DEPTH))
        widest = hparams.get("base_channels", 1) * 2 ** min(depth, MAX_NETWORK_DEPTH)
        bounds.append((f"{key}.hparams base_channels × 2 ** depth", widest, 1, MAX_NETWORK_CHANNELS))
    bounds += [(f"ct_stats.{k}", v, -math.inf, math.inf) for k, v in (plain(card.ct_stats) or {}).items()]
    for key, value, low, high in bounds:
        if not (math.isfinite(value) and low <= value <= high):
            raise ModelFolderError(path, f"{key} is {value}, outside {low}..{high}; the card is damaged or altered")


def _check_contained(card: ModelCard, folder: Path) -> None:
    """Refuse a card naming a weight file outside its folder (``../``, an absolute path, a symbolic
    link leading out), before any such path is looked at, so that the errors never tell whether
    a path outside the folder exists.

    Raises:
        ModelFolderError: naming the card and the entry.
    """
    inside = folder.resolve()
    for i, entry in enumerate(card.networks):
        name = Path(entry.file)
        resolved = (folder / name).resolve()
        if name.is_absolute() or ".." in name.parts or inside not in resolved.parents:
            raise ModelFolderError(
                folder / CARD_FILE,
                f"networks[{i}] names the weight file {entry.file!r}, which lies outside the model folder; "
                "a model folder must hold its own files",
            )


def open_model_folder(folder: str | Path) -> ModelCard:
    """Read a model folder's card and check that its weight files are the ones it lists.

    Raises:
        InputDataError: ``model.json`` is missing or not JSON.
        FormatVersionError: the folder was written by an incompatible l2s version.
        ModelFolderError: the card is incomplete or has a number out of range, names a weight file
            outside the folder, or a weight file is missing or differs from the sha256 in the card.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputDataError(folder, "model folder not found")
    path = folder / CARD_FILE
    card = ModelCard.from_dict(read_json(path), str(path), ModelFolderError)
    _check_card_numbers(card, path)
    _check_contained(card, folder)
    for entry in card.networks:
        weights = folder / entry.file
        if not weights.is_file():
            raise ModelFolderError(weights, f"listed in {CARD_FILE} but missing")
        if sha256_of(weights) != entry.sha256:
            raise ModelFolderError(
                weights,
                f"sha256 differs from the one in {CARD_FILE}: the file was altered or replaced; export the model again",
            )
    return card
