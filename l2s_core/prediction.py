"""The two records of a prediction, without torch: how an organ box becomes the organ
network's input (:class:`Localisation`) and what a method predicted for one image
(:class:`Prediction`).

Every place that predicts takes and returns these: evaluation
(:func:`l2s_core.evaluate.evaluate_organ`), ``l2s predict``
(:func:`l2s_core.deploy.predict.segment`), the model card ``l2s export`` writes
(:meth:`l2s_core.deploy.model_folder.ModelCard.localisation`) and the slice explorer. The
defaults live here once; the study's ``evaluate`` options and the model card take theirs from
:class:`Localisation`.

Example:
    >>> localisation = Localisation(margin=15, fallback="empty")
    >>> localisation.box_mapping
    'scale'
"""

from __future__ import annotations

__all__ = ["Localisation", "Prediction"]

from dataclasses import dataclass

import numpy as np

from l2s_core.boxes import Box
from l2s_core.data.prepared_layout import LOWRES_DIVISORS, PrepareSettings
from l2s_core.errors import ConfigError, check_choice
from l2s_core.vocabulary import BOX_MAPPINGS, FALLBACKS, BoxMapping, Fallback


@dataclass(frozen=True)
class Localisation:
    """How an organ box, predicted or given, becomes the organ network's input.

    Attributes:
        margin: voxels added on each side of the box (the prepared task's crop margin; the
            paper's 15).
        fallback: when no box is found: ``"whole_image"`` segments the whole image with the
            organ network, ``"empty"`` predicts no organ.
        divisors: low-resolution divisors ``(z, y, x)`` the localiser was trained with (the
            prepared task's ``lowres_divisors``).
        box_mapping: ``"scale"`` (:func:`~l2s_core.boxes.scale_box`) or ``"upsample_nearest"``
            (the released code, :func:`~l2s_core.boxes.upsampled_organ_box`).
        guard_grows: the second-stage guard (an l2s addition, :mod:`l2s_core.box_guard`): at
            most this many times, when the organ mask touches a face of its box inside the
            image, that face moves out by the margin and the box is segmented again; 0 (the
            paper's method) never.

    Raises:
        ConfigError: an unknown ``fallback`` or ``box_mapping``, or a negative ``guard_grows``.
    """

    margin: int
    fallback: Fallback = "whole_image"
    divisors: tuple[int, int, int] = LOWRES_DIVISORS
    box_mapping: BoxMapping = "scale"
    guard_grows: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "divisors", tuple(int(d) for d in self.divisors))
        check_choice("fallback", self.fallback, FALLBACKS)
        check_choice("box_mapping", self.box_mapping, BOX_MAPPINGS)
        if self.guard_grows < 0:
            raise ConfigError("guard_grows", f"must be 0 (off) or more, got {self.guard_grows}")

    @classmethod
    def of_settings(
        cls,
        settings: PrepareSettings,
        fallback: Fallback = "whole_image",
        box_mapping: BoxMapping = "scale",
        guard_grows: int = 0,
    ) -> Localisation:
        """The localisation of a task prepared with ``settings`` (its margin and divisors)."""
        return cls(settings.crop_margin, fallback, settings.lowres_divisors, box_mapping, guard_grows)


@dataclass(frozen=True)
class Prediction:
    """What a method predicted for one image.

    Attributes:
        mask: the organ mask, uint8 ``(z, y, x)`` on the image's full-resolution grid.
        box: the full-resolution half-open box ``(z0, y0, x0, z1, y1, x1)`` the organ network
            segmented, margin and guard growths included (it may reach beyond the image);
            ``None`` for the baseline, a saved mask, or when nothing was localised.
        fallback_used: ``None``, or the fallback (``"whole_image"`` or ``"empty"``) applied
            because nothing was localised.
        box_grows: how many times the second-stage guard grew the box (0 without the guard).
        lowres_mask: the localiser's uint8 ``(z, y, x)`` low-resolution mask (two-stage
            prediction only, else ``None``).
        seconds: wall-clock time of the prediction where the predictor measured it, else
            ``None``.
    """

    mask: np.ndarray
    box: Box | None = None
    fallback_used: Fallback | None = None
    box_grows: int = 0
    lowres_mask: np.ndarray | None = None
    seconds: float | None = None

    def __post_init__(self) -> None:
        if self.box is not None:
            object.__setattr__(self, "box", tuple(int(v) for v in self.box))

    def segmented_box(self, shape: tuple[int, int, int]) -> Box | None:
        """The box the network segmented in an image of ``(z, y, x)`` ``shape``: the localised
        box, the whole image (baseline, or the ``whole_image`` fallback), or ``None`` where the
        ``empty`` fallback segmented nothing."""
        if self.box is not None:
            return self.box
        return None if self.fallback_used == "empty" else (0, 0, 0, *shape)
