"""Intensity normalisation of ``(z, y, x)`` images.

``zscore`` (default): per image, subtract its mean and divide by its standard deviation.
``ct``: clip to the 0.5–99.5 percentiles of the training set's foreground (organ)
intensities, then z-score with the mean and sd of those clipped intensities (nnU-Net's CT
scheme). ``none``: raw intensities, as the paper's released code fed them to the network.
"""

from __future__ import annotations

__all__ = ["CtStats", "foreground_intensity_stats", "normalise"]

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from l2s_core.errors import ConfigError
from l2s_core.vocabulary import NORMALISATIONS


@dataclass(frozen=True)
class CtStats:
    """The ``ct`` normalisation's statistics of a training set's foreground intensities.

    Attributes:
        low: the 0.5th percentile, where intensities are clipped from below.
        high: the 99.5th percentile, where they are clipped from above.
        mean: mean of the clipped intensities.
        sd: standard deviation of the clipped intensities.
    """

    low: float
    high: float
    mean: float
    sd: float


def foreground_intensity_stats(samples: Iterable[tuple[np.ndarray, np.ndarray]]) -> CtStats:
    """Clip range, mean and sd of foreground intensities over ``(image, mask)`` pairs, each
    ``(z, y, x)``.

    Raises:
        ValueError: no mask has a foreground voxel.
    """
    values = np.concatenate([image[mask > 0].astype(np.float64) for image, mask in samples])
    if values.size == 0:
        raise ValueError("no foreground voxels in the training images")
    low, high = np.percentile(values, [0.5, 99.5])
    clipped = np.clip(values, low, high)
    return CtStats(float(low), float(high), float(clipped.mean()), float(clipped.std()))


def normalise(image: np.ndarray, method: str = "zscore", ct_stats: CtStats | None = None) -> np.ndarray:
    """Normalise a ``(z, y, x)`` image; returns float32 of the same shape.

    Args:
        image: the image.
        method: one of ``"zscore"``, ``"ct"``, ``"none"``.
        ct_stats: for ``"ct"``, the output of :func:`foreground_intensity_stats` on the
            training set.
    """
    if method not in NORMALISATIONS:
        raise ConfigError("normalisation", f"{method!r} is not one of {NORMALISATIONS}")
    image = image.astype(np.float32, copy=False)
    if method == "none":
        return image
    if method == "ct":
        if ct_stats is None:
            raise ConfigError("normalisation", "'ct' needs the training set's foreground statistics")
        normalised = np.clip(image, ct_stats.low, ct_stats.high)
        centre, sd = ct_stats.mean, ct_stats.sd
    else:
        centre, sd = float(image.mean()), float(image.std())  # before the copy: std needs a temporary copy too
        normalised = image.copy()
    normalised -= centre  # in place: one image-sized copy in all (a large CT is gigabytes)
    normalised /= max(sd, 1e-8)
    return normalised
