"""Intensity normalisation of ``(z, y, x)`` images.

``zscore`` (default): per image, subtract its mean and divide by its standard deviation.
``ct``: clip to the 0.5–99.5 percentiles of the training set's foreground (organ)
intensities, then z-score with the mean and sd of those clipped intensities (nnU-Net's CT
scheme). ``none``: raw intensities, as the paper's released code fed them to the network.
"""

from __future__ import annotations

__all__ = ["foreground_intensity_stats", "normalise"]

from collections.abc import Iterable

import numpy as np

from l2s_core.errors import ConfigError
from l2s_core.vocabulary import NORMALISATIONS


def foreground_intensity_stats(samples: Iterable[tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """Clip range, mean and sd of foreground intensities over ``(image, mask)`` pairs.

    Returns:
        ``{"low": p0.5, "high": p99.5, "mean": ..., "sd": ...}`` of the clipped values.
    """
    values = np.concatenate([image[mask > 0].astype(np.float64) for image, mask in samples])
    if values.size == 0:
        raise ValueError("no foreground voxels in the training images")
    low, high = np.percentile(values, [0.5, 99.5])
    clipped = np.clip(values, low, high)
    return {"low": float(low), "high": float(high), "mean": float(clipped.mean()), "sd": float(clipped.std())}


def normalise(image: np.ndarray, method: str = "zscore", ct_stats: dict[str, float] | None = None) -> np.ndarray:
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
        normalised = np.clip(image, ct_stats["low"], ct_stats["high"])
        centre, sd = ct_stats["mean"], ct_stats["sd"]
    else:
        centre, sd = float(image.mean()), float(image.std())  # before the copy: std needs a temporary copy too
        normalised = image.copy()
    normalised -= centre  # in place: one image-sized copy in all (a large CT is gigabytes)
    normalised /= max(sd, 1e-8)
    return normalised
