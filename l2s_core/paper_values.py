"""The paper's reported numbers, transcribed as data with their source (no torch, no numpy).

Smith et al., *Localise to segment: crop to improve organ at risk segmentation accuracy*
(Physics and Imaging in Radiation Oncology, 2023): Table 2 (mean training
minutes per organ and network, Results › Training), Tables 3 and 4 (mean ± sd over 10
converged runs of the validation and test Dice per organ and method, Results › Validation and
Results › Test). The paper's "heart" is the left atrium (MSD Task02_Heart). The foreground
shares are not in the paper's text: they are the values of its released code (used for its
Figures 3c and 4), as that code prints them.

Keys are the organ names of :data:`l2s_core.vocabulary.PAPER_ORGANS`, the method names of
:data:`~l2s_core.vocabulary.METHODS` and the network names of
:data:`~l2s_core.vocabulary.NETWORKS`; an organ of another name has no paper value.

Example:
    >>> from l2s_core.paper_values import PAPER_DICE
    >>> PAPER_DICE["val"].values["spleen"]["two_stage"]
    MeanSd(mean=0.8142, sd=0.0221)
"""

from __future__ import annotations

__all__ = [
    "FOREGROUND_PERCENT",
    "FOREGROUND_SOURCE",
    "PAPER_DICE",
    "TABLE2_MINUTES",
    "TABLE2_SOURCE",
    "MeanSd",
    "PaperTable",
]

from collections.abc import Mapping
from dataclasses import dataclass

from l2s_core.vocabulary import METHODS, NETWORKS


@dataclass(frozen=True)
class MeanSd:
    """A mean ± standard deviation as the paper prints it: the population standard deviation over
    runs (``np.std``, ddof 0, in its released code's ``compute_results.py``)."""

    mean: float
    sd: float


@dataclass(frozen=True)
class PaperTable:
    """One of the paper's Dice tables.

    Attributes:
        name: the paper's name of the table, e.g. ``"Table 3"``.
        source: where in the paper it is (section and caption).
        values: organ → method → :class:`MeanSd`.
    """

    name: str
    source: str
    values: Mapping[str, Mapping[str, MeanSd]]


def _table(rows: dict[str, tuple[tuple[float, float], ...]]) -> dict[str, dict[str, MeanSd]]:
    """organ → one ``(mean, sd)`` per method of :data:`METHODS` → organ → method → MeanSd."""
    return {organ: {m: MeanSd(*v) for m, v in zip(METHODS, values, strict=True)} for organ, values in rows.items()}


#: Tables 3 (``"val"``) and 4 (``"test"``): mean ± sd over runs of the Dice per organ and method
#: (of :data:`METHODS`, in the paper's column order).
PAPER_DICE: dict[str, PaperTable] = {
    "val": PaperTable(
        "Table 3",
        "Results › Validation, Table 3: average Dice on the validation set",
        _table(
            {
                "spleen": ((0.6491, 0.0997), (0.8142, 0.0221), (0.8619, 0.0092)),
                "pancreas": ((0.4372, 0.0148), (0.6674, 0.0146), (0.7564, 0.0096)),
                "prostate": ((0.7744, 0.0109), (0.7699, 0.0149), (0.8323, 0.0076)),
                "liver": ((0.6661, 0.0188), (0.7044, 0.0694), (0.7807, 0.1061)),
                "heart": ((0.6547, 0.0239), (0.7018, 0.0281), (0.7612, 0.0087)),
            }
        ),
    ),
    "test": PaperTable(
        "Table 4",
        "Results › Test, Table 4: average Dice on the test set",
        _table(
            {
                "spleen": ((0.4433, 0.1162), (0.6503, 0.0538), (0.8255, 0.0086)),
                "pancreas": ((0.4366, 0.0205), (0.6519, 0.0136), (0.7397, 0.0063)),
                "prostate": ((0.797, 0.0342), (0.7204, 0.0244), (0.8361, 0.0145)),
                "liver": ((0.6039, 0.0214), (0.6096, 0.0664), (0.7156, 0.1028)),
                "heart": ((0.5764, 0.0311), (0.623, 0.0523), (0.7508, 0.0178)),
            }
        ),
    ),
}

TABLE2_SOURCE = "Results › Training, Table 2: average training time (minutes) per network and organ"
#: Table 2: organ → network (of :data:`NETWORKS`) → mean training minutes.
TABLE2_MINUTES: dict[str, dict[str, float]] = {
    organ: dict(zip(NETWORKS, minutes, strict=True))
    for organ, minutes in {
        "spleen": (74.9, 10.8, 10.1),
        "pancreas": (477.6, 65.1, 91.2),
        "prostate": (6.4, 2.0, 2.2),
        "liver": (253.2, 42.8, 110.0),
        "heart": (22.2, 3.7, 2.5),
    }.items()
}

FOREGROUND_SOURCE = "the paper's released code (github.com/Abe404/localise_to_segment)"
#: organ → mean percentage of a scan's voxels that belong to the organ (Figures 3c and 4).
FOREGROUND_PERCENT: dict[str, float] = {"spleen": 0.44, "pancreas": 0.22, "prostate": 2.71, "liver": 2.3, "heart": 0.40}
