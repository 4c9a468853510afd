"""Reading a prepared task (the output of ``l2s prepare``) with memory-mapped arrays.

Layout of a prepared task folder::

    prep.json                  settings used (normalisation, channel, organ labels, CT stats)
    split.json                 train/val/test case ids (Table 1 rule), written once
    excluded.json              cases left out (e.g. empty organ with --skip-empty), and why
    cases/<case_id>/meta.json  case metadata; its presence marks the case as complete
    cases/<case_id>/{full,lowres,crop}_{image,label}.npy   (z, y, x) float32 / uint8

Each case folder is built under a temporary name and renamed into place when complete, so a
case folder that exists is never half-written.
"""

from __future__ import annotations

__all__ = ["PreparedCase", "PreparedTask"]

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from l2s_core.boxes import Box
from l2s_core.data.io import VolumeMeta
from l2s_core.data.split import load_split
from l2s_core.errors import InputDataError
from l2s_core.files import read_json
from l2s_core.vocabulary import KINDS, LEVELS, SPLIT_NAMES


@dataclass(frozen=True)
class PreparedCase:
    """One prepared case. ``meta`` is the content of its ``meta.json``."""

    folder: Path
    meta: dict[str, Any]

    @property
    def case_id(self) -> str:
        return str(self.meta["case_id"])

    def array(self, level: str, kind: str) -> np.ndarray:
        """Memory-mapped ``(z, y, x)`` array of ``level`` (full, lowres, crop) and ``kind`` (image, label)."""
        if level not in LEVELS or kind not in KINDS:
            raise ValueError(f"level must be one of {LEVELS} and kind one of {KINDS}, got {level!r}, {kind!r}")
        path = self.folder / f"{level}_{kind}.npy"
        try:
            return np.load(path, mmap_mode="r", allow_pickle=False)
        except FileNotFoundError:
            raise InputDataError(path, "cache file missing; run `l2s prepare` again") from None
        except ValueError as exc:
            raise InputDataError(
                path, f"corrupt cache file ({exc}); delete the case folder and prepare again"
            ) from None

    @property
    def crop_box(self) -> Box:
        """Organ box (label's largest component + margin) in full-resolution voxel indices."""
        return tuple(int(v) for v in self.meta["crop_box"])  # type: ignore[return-value]

    @property
    def volume_meta(self) -> VolumeMeta:
        """Metadata of the source image, for writing predictions on its grid."""
        return VolumeMeta.from_dict(self.meta["source"])

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Full-resolution voxel size in mm, ``(z, y, x)``."""
        return tuple(float(s) for s in self.meta["source"]["spacing"])  # type: ignore[return-value]


class PreparedTask:
    """A prepared task folder.

    Example:
        >>> task = PreparedTask("prepared/spleen")  # doctest: +SKIP
        >>> image = task.case(task.split["train"][0]).array("lowres", "image")  # doctest: +SKIP
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.settings = read_json(self.folder / "prep.json")

    @cached_property
    def excluded(self) -> dict[str, str]:
        """Case id → reason for cases that preparation left out."""
        path = self.folder / "excluded.json"
        return {str(k): str(v) for k, v in read_json(path)["cases"].items()} if path.exists() else {}

    @cached_property
    def split(self) -> dict[str, list[str]]:
        """``split.json`` without excluded cases."""
        split = load_split(self.folder / "split.json")
        return {name: [c for c in split[name] if c not in self.excluded] for name in SPLIT_NAMES}

    def case(self, case_id: str) -> PreparedCase:
        """The prepared case ``case_id``."""
        folder = self.folder / "cases" / case_id
        return PreparedCase(folder, read_json(folder / "meta.json"))

    def cases(self, split_name: str) -> list[PreparedCase]:
        """Prepared cases of one split (``train``, ``val`` or ``test``)."""
        return [self.case(c) for c in self.split[split_name]]
