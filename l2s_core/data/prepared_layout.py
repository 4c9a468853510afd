"""The prepared task folder (the output of ``l2s prepare``): its file names and its records.

Layout of a prepared task folder (``<organ dir>/prepared`` in a study)::

    prep.json                  TaskPreparation: the task, the PrepareSettings, CT statistics
    split.json                 train/val/test case ids (Table 1 rule), written once
    excluded.json              cases left out (e.g. empty organ with --skip-empty), and why
    cases/<case_id>/meta.json  CaseMeta; its presence marks the case as complete
    cases/<case_id>/{full,lowres,crop}_{image,label}.npy   (z, y, x) float32 / uint8

:mod:`l2s_core.data.prepare` writes this folder, :mod:`l2s_core.data.cache` reads it. Each record
is a :class:`~l2s_core.records.Record`: checked against its type hints when read.
"""

from __future__ import annotations

__all__ = [
    "CASES_DIR",
    "CASE_META_FILE",
    "CROP_MARGIN",
    "EXCLUDED_FILE",
    "LOWRES_DIVISORS",
    "PREPARED_DIR",
    "PREP_FILE",
    "SPLIT_FILE",
    "CaseMeta",
    "PrepareSettings",
    "Exclusions",
    "TaskPreparation",
    "array_file",
]

from dataclasses import dataclass, field
from pathlib import Path

from l2s_core.boxes import Box
from l2s_core.data.io import VolumeMeta
from l2s_core.data.normalise import CtStats
from l2s_core.errors import ConfigError, check_choice
from l2s_core.records import Record
from l2s_core.vocabulary import (
    CROP_LABELS,
    KINDS,
    LEVELS,
    NORMALISATIONS,
    SPLIT_ORDERS,
    CropLabel,
    Normalisation,
    SplitOrder,
)

#: The prepared task folder inside an organ's study folder.
PREPARED_DIR = "prepared"
PREP_FILE = "prep.json"
SPLIT_FILE = "split.json"
EXCLUDED_FILE = "excluded.json"
CASES_DIR = "cases"
CASE_META_FILE = "meta.json"

#: Voxels of context around the organ box (the paper's 15).
CROP_MARGIN = 15
#: ``(z, y, x)`` divisors of the low-resolution copy (the paper's text).
LOWRES_DIVISORS = (3, 2, 2)


def array_file(level: str, kind: str) -> str:
    """The file name of a case's array: ``level`` (full, lowres, crop) and ``kind`` (image, label).

    Raises:
        ValueError: an unknown level or kind.
    """
    if level not in LEVELS or kind not in KINDS:
        raise ValueError(f"level must be one of {LEVELS} and kind one of {KINDS}, got {level!r}, {kind!r}")
    return f"{level}_{kind}.npy"


@dataclass(frozen=True)
class Exclusions(Record):
    """Content of ``excluded.json``: the cases preparation left out.

    Attributes:
        cases: case id → why it was left out (e.g. an empty organ with ``--skip-empty``).
    """

    cases: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of_folder(cls, folder: Path) -> Exclusions:
        """The exclusions of a prepared task folder; none where it has no ``excluded.json``.

        Raises:
            InputDataError: an unreadable file or one of another shape, naming it.
        """
        path = folder / EXCLUDED_FILE
        return cls.read(path) if path.exists() else cls()


@dataclass(frozen=True)
class PrepareSettings(Record):
    """The options of preparation that determine the cache content.

    Attributes:
        normalisation: ``zscore``, ``ct`` or ``none``.
        channel: channel of multi-channel images (MSD prostate: 0 = T2, 1 = ADC).
        organ_labels: label values merged into the organ (``None``: every non-zero label).
        split_seed: seed of the train/val/test split (42 in the paper).
        split_order: ``table1`` or ``released_code``.
        crop_margin: voxels of context around the organ box.
        max_cases: only the first n case ids in string order (``liver_0, liver_1, liver_10,
            liver_100, ...``; ``None``: every case); the
            paper's Table 1 counts 69 liver cases of MSD's 131 without saying which.
        lowres_divisors: ``(z, y, x)`` divisors of the low-resolution copy (the paper's text:
            ``(3, 2, 2)``; its released code: ``(2, 3, 2)``).
        crop_label: the organ network's labels in the crop: ``all`` organ voxels, or only the
            ``largest_component`` (the released code).

    Raises:
        ConfigError: an unknown choice, a negative margin or divisors that are not three positive ints.
    """

    normalisation: Normalisation = "zscore"
    channel: int = 0
    organ_labels: tuple[int, ...] | None = None
    split_seed: int = 42
    split_order: SplitOrder = "table1"
    crop_margin: int = CROP_MARGIN
    max_cases: int | None = None
    lowres_divisors: tuple[int, int, int] = LOWRES_DIVISORS
    crop_label: CropLabel = "all"

    def __post_init__(self) -> None:
        object.__setattr__(self, "lowres_divisors", tuple(int(d) for d in self.lowres_divisors))
        if len(self.lowres_divisors) != 3 or min(self.lowres_divisors) < 1:
            raise ConfigError("lowres_divisors", f"needs three positive (z, y, x) divisors, got {self.lowres_divisors}")
        for name, value, choices in (
            ("normalisation", self.normalisation, NORMALISATIONS),
            ("split_order", self.split_order, SPLIT_ORDERS),
            ("crop_label", self.crop_label, CROP_LABELS),
        ):
            check_choice(name, value, choices)
        if self.crop_margin < 0:
            raise ConfigError("crop_margin", f"must not be negative, got {self.crop_margin}")


@dataclass(frozen=True)
class TaskPreparation(Record):
    """Content of ``prep.json``: which task was prepared, and how.

    Attributes:
        task_name: the task's name (``dataset.json``).
        task_dir: the task folder, absolute.
        settings: the preparation settings.
        modality: channel (as a string) → modality, from ``dataset.json``.
        labels: label value (as a string) → name, from ``dataset.json``.
        ct_stats: clip range, mean and sd of the ``ct`` normalisation over the training cases
            (``None`` for the other normalisations).
    """

    task_name: str
    task_dir: str
    settings: PrepareSettings
    modality: dict[str, str]
    labels: dict[str, str]
    ct_stats: CtStats | None = None

    @property
    def channel_modality(self) -> str:
        """The modality of the channel the networks read (``""`` when the task names none)."""
        return self.modality.get(str(self.settings.channel), "")


@dataclass(frozen=True)
class CaseMeta(Record):
    """Content of a prepared case's ``meta.json``.

    Attributes:
        case_id: the case id.
        image_path: the source image.
        label_path: the source label.
        source: where the full-resolution ``(z, y, x)`` arrays came from (for writing
            predictions on the source grid).
        original_shape: full-resolution ``(z, y, x)`` shape.
        lowres_shape: low-resolution ``(z, y, x)`` shape.
        organ_box: box of the organ's largest component, full-resolution voxel indices
            ``(z0, y0, x0, z1, y1, x1)`` (ends exclusive).
        crop_box: ``organ_box`` widened by ``crop_margin`` on every side (it may reach beyond
            the image; the crop is zero-filled there).
        crop_margin: voxels of context around the organ box.
        label_values: the label values present in the source label.
        organ_voxels: voxels of the organ mask.
        foreground_share: share of the image's voxels that are organ.
    """

    case_id: str
    image_path: str
    label_path: str
    source: VolumeMeta
    original_shape: tuple[int, int, int]
    lowres_shape: tuple[int, int, int]
    organ_box: Box
    crop_box: Box
    crop_margin: int
    label_values: tuple[int, ...]
    organ_voxels: int
    foreground_share: float

    @property
    def crop_shape(self) -> tuple[int, int, int]:
        """``(z, y, x)`` shape of the crop (of :attr:`crop_box`)."""
        return tuple(self.crop_box[3 + a] - self.crop_box[a] for a in range(3))  # type: ignore[return-value]

    def organ_box_in_crop(self) -> Box:
        """:attr:`organ_box` in the voxel indices of the crop."""
        start = self.crop_box[:3]
        return tuple(v - start[i % 3] for i, v in enumerate(self.organ_box))  # type: ignore[return-value]
