"""The words l2s uses for its choices, in one place (no torch, no numpy).

Every module takes its choice lists from here instead of keeping its own tuple, so that a
parameter file, a table or a plot can be checked and labelled without importing the module
that trains or predicts.

Example:
    >>> from l2s_core.vocabulary import NETWORKS, LEVEL_OF_NETWORK
    >>> [LEVEL_OF_NETWORK[n] for n in NETWORKS]
    ['full', 'lowres', 'crop']
"""

from __future__ import annotations

from typing import Literal

__all__ = [
    "ARCHITECTURES",
    "BOX_MAPPINGS",
    "CONVERGENCE_RULES",
    "CROP_LABELS",
    "DICE_FORMS",
    "FALLBACKS",
    "KINDS",
    "LEVELS",
    "LEVEL_OF_NETWORK",
    "METHODS",
    "MSD_TASK_FOLDERS",
    "NETWORKS",
    "NORMALISATIONS",
    "PAPER_ORGANS",
    "PHANTOM_PROFILES",
    "SPLITS",
    "SPLIT_NAMES",
    "SPLIT_ORDERS",
    "TRAINING_TIME_RUNS",
    "VERDICTS",
    "BoxMapping",
    "CropLabel",
    "Fallback",
    "Network",
    "Normalisation",
    "PhantomProfile",
    "Split",
    "SplitOrder",
    "TrainingTimeRuns",
]

#: The three networks of the paper: full-resolution baseline, low-resolution localiser, organ network on crops.
NETWORKS: tuple[str, ...] = ("baseline", "localiser", "organ")
#: Evaluated segmentation methods (see :mod:`l2s_core.evaluate`).
METHODS: tuple[str, ...] = ("baseline", "two_stage", "gt_localised")
#: Splits evaluated; ``SPLIT_NAMES`` adds the training split.
SPLITS: tuple[str, ...] = ("val", "test")
SPLIT_NAMES: tuple[str, ...] = ("train", "val", "test")
#: Rules ordering the shuffled case ids into train/val/test (see :mod:`l2s_core.data.split`).
SPLIT_ORDERS: tuple[str, ...] = ("table1", "released_code")
#: Resolution levels of the prepared cache and the two arrays of each.
LEVELS: tuple[str, ...] = ("full", "lowres", "crop")
KINDS: tuple[str, ...] = ("image", "label")
#: Cache level each network trains, validates and predicts on.
LEVEL_OF_NETWORK: dict[str, str] = {"baseline": "full", "localiser": "lowres", "organ": "crop"}
#: Intensity normalisations (see :mod:`l2s_core.data.normalise`).
NORMALISATIONS: tuple[str, ...] = ("zscore", "ct", "none")
#: What localised prediction does when no organ box is found.
FALLBACKS: tuple[str, ...] = ("whole_image", "empty")
#: When a training run counts as converged (see :func:`l2s_core.train.config.is_converged`).
CONVERGENCE_RULES: tuple[str, ...] = ("best_over_run", "after_patience_epochs")
#: Network architectures: the paper's text (a U-Net with skip connections) or its released code (none).
ARCHITECTURES: tuple[str, ...] = ("unet", "released_code")
#: Soft Dice of the loss: per sample then averaged (the data-parallel-exact form), or pooled over the
#: batch and only when the batch holds organ (the released code).
DICE_FORMS: tuple[str, ...] = ("per_sample", "batch_if_foreground")
#: How the localiser's low-resolution box reaches full resolution: scaled (floor/ceil), or the mask
#: upsampled with nearest neighbour first (the released code).
BOX_MAPPINGS: tuple[str, ...] = ("scale", "upsample_nearest")
#: Organ-network training labels inside the crop: every organ voxel, or only the largest component
#: (the released code).
CROP_LABELS: tuple[str, ...] = ("all", "largest_component")
#: Runs averaged for Table 2's training time: every finished run, or the converged ones (the released code).
TRAINING_TIME_RUNS: tuple[str, ...] = ("all", "converged")
#: The paper's five organs, in its order, and their Medical Segmentation Decathlon task folders.
PAPER_ORGANS: tuple[str, ...] = ("spleen", "pancreas", "prostate", "liver", "heart")
MSD_TASK_FOLDERS: dict[str, str] = {
    "spleen": "Task09_Spleen",
    "pancreas": "Task07_Pancreas",
    "prostate": "Task05_Prostate",
    "liver": "Task03_Liver",
    "heart": "Task02_Heart",
}
#: Phantom task geometries (see :mod:`l2s_core.data.phantom_geometry`): ``fixed``, every volume of one
#: shape; ``msd``, the MSD tasks' case counts, shapes and spacings.
PHANTOM_PROFILES: tuple[str, ...] = ("fixed", "msd")
#: Verdicts of the report's scorecard of the paper's claims (see :mod:`l2s_core.findings`):
#: "consistent (not significant)" for a claimed absence of difference that the study does not
#: contradict (p >= 0.05 alone supports nothing), "direction agrees" for a correlation of the
#: claimed sign whose exact p is not below 0.05.
VERDICTS: tuple[str, ...] = (
    "supported",
    "not supported",
    "not testable",
    "consistent (not significant)",
    "direction agrees",
)

# The same choices as types, for the typed records and parameter files (checked by
# :class:`l2s_core.records.Checker`, which names the choices of a wrong value).
Network = Literal[NETWORKS]  # type: ignore[valid-type]
Split = Literal[SPLITS]  # type: ignore[valid-type]
Normalisation = Literal[NORMALISATIONS]  # type: ignore[valid-type]
SplitOrder = Literal[SPLIT_ORDERS]  # type: ignore[valid-type]
Fallback = Literal[FALLBACKS]  # type: ignore[valid-type]
BoxMapping = Literal[BOX_MAPPINGS]  # type: ignore[valid-type]
TrainingTimeRuns = Literal[TRAINING_TIME_RUNS]  # type: ignore[valid-type]
PhantomProfile = Literal[PHANTOM_PROFILES]  # type: ignore[valid-type]
CropLabel = Literal[CROP_LABELS]  # type: ignore[valid-type]
