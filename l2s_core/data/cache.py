"""Reading a prepared task (the output of ``l2s prepare``) with memory-mapped arrays.

The folder's layout and records: :mod:`l2s_core.data.prepared_layout`. Each case folder is built
under a temporary name and renamed into place when complete, so a case folder that exists is
never half-written.
"""

from __future__ import annotations

__all__ = ["PreparedCase", "PreparedTask"]

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from l2s_core.boxes import Box
from l2s_core.data.prepared_layout import (
    CASE_META_FILE,
    CASES_DIR,
    PREP_FILE,
    SPLIT_FILE,
    CaseMeta,
    Exclusions,
    TaskPreparation,
    array_file,
)
from l2s_core.data.split import load_split
from l2s_core.errors import InputDataError
from l2s_core.vocabulary import SPLIT_NAMES


@dataclass(frozen=True)
class PreparedCase:
    """One prepared case: its folder and its ``meta.json``."""

    folder: Path
    meta: CaseMeta

    @property
    def case_id(self) -> str:
        return self.meta.case_id

    def array(self, level: str, kind: str) -> np.ndarray:
        """Memory-mapped ``(z, y, x)`` array of ``level`` (full, lowres, crop) and ``kind`` (image, label)."""
        path = self.folder / array_file(level, kind)
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
        """The organ network's crop: organ box plus margin, full-resolution voxel indices."""
        return self.meta.crop_box

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Full-resolution voxel size in mm, ``(z, y, x)``."""
        return self.meta.source.spacing


class PreparedTask:
    """A prepared task folder.

    Example:
        >>> task = PreparedTask("prepared/spleen")  # doctest: +SKIP
        >>> image = task.case(task.split["train"][0]).array("lowres", "image")  # doctest: +SKIP
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.preparation = TaskPreparation.read(self.folder / PREP_FILE)

    @cached_property
    def excluded(self) -> dict[str, str]:
        """Case id → reason for cases that preparation left out."""
        return Exclusions.of_folder(self.folder).cases

    @cached_property
    def split(self) -> dict[str, list[str]]:
        """``split.json`` without excluded cases."""
        split = load_split(self.folder / SPLIT_FILE)
        return {name: [c for c in split[name] if c not in self.excluded] for name in SPLIT_NAMES}

    def case(self, case_id: str) -> PreparedCase:
        """The prepared case ``case_id``."""
        folder = self.folder / CASES_DIR / case_id
        return PreparedCase(folder, CaseMeta.read(folder / CASE_META_FILE))

    def cases(self, split_name: str) -> list[PreparedCase]:
        """Prepared cases of one split (``train``, ``val`` or ``test``)."""
        return [self.case(c) for c in self.split[split_name]]
