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

from typing import Literal, get_args

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
    "METHOD_LABELS",
    "MSD_TASK_FOLDERS",
    "NETWORKS",
    "NETWORK_LABELS",
    "NORMALISATIONS",
    "PAPER_ORGANS",
    "PHANTOM_PROFILES",
    "SPLITS",
    "SPLIT_LABELS",
    "SPLIT_NAMES",
    "SPLIT_ORDERS",
    "STEP_STATES",
    "TRAINING_TIME_RUNS",
    "UNIT_STATES",
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
    "DATA_SOURCES",
    "DataSource",
    "EXECUTORS",
    "Executor",
    "StepState",
    "UnitState",
]

#: The three networks of the paper: full-resolution baseline, low-resolution localiser, organ network on crops.
Network = Literal["baseline", "localiser", "organ"]
NETWORKS: tuple[Network, ...] = get_args(Network)
#: Evaluated segmentation methods (see :mod:`l2s_core.evaluate`).
METHODS: tuple[str, ...] = ("baseline", "two_stage", "gt_localised")
#: Splits evaluated; ``SPLIT_NAMES`` adds the training split.
Split = Literal["val", "test"]
SPLITS: tuple[Split, ...] = get_args(Split)
SPLIT_NAMES: tuple[str, ...] = ("train", "val", "test")
#: Rules ordering the shuffled case ids into train/val/test (see :mod:`l2s_core.data.split`).
SplitOrder = Literal["table1", "released_code"]
SPLIT_ORDERS: tuple[SplitOrder, ...] = get_args(SplitOrder)
#: Resolution levels of the prepared cache and the two arrays of each.
LEVELS: tuple[str, ...] = ("full", "lowres", "crop")
KINDS: tuple[str, ...] = ("image", "label")
#: Cache level each network trains, validates and predicts on.
LEVEL_OF_NETWORK: dict[str, str] = {"baseline": "full", "localiser": "lowres", "organ": "crop"}
#: Intensity normalisations (see :mod:`l2s_core.data.normalise`).
Normalisation = Literal["zscore", "ct", "none"]
NORMALISATIONS: tuple[Normalisation, ...] = get_args(Normalisation)
#: What localised prediction does when no organ box is found.
Fallback = Literal["whole_image", "empty"]
FALLBACKS: tuple[Fallback, ...] = get_args(Fallback)
#: When a training run counts as converged (see :func:`l2s_core.train.config.is_converged`).
CONVERGENCE_RULES: tuple[str, ...] = ("best_over_run", "after_patience_epochs")
#: Network architectures: the paper's text (a U-Net with skip connections) or its released code (none).
ARCHITECTURES: tuple[str, ...] = ("unet", "released_code")
#: Soft Dice of the loss: per sample then averaged (the data-parallel-exact form), or pooled over the
#: batch and only when the batch holds organ (the released code).
DICE_FORMS: tuple[str, ...] = ("per_sample", "batch_if_foreground")
#: How the localiser's low-resolution box reaches full resolution: scaled (floor/ceil), or the mask
#: upsampled with nearest neighbour first (the released code).
BoxMapping = Literal["scale", "upsample_nearest"]
BOX_MAPPINGS: tuple[BoxMapping, ...] = get_args(BoxMapping)
#: Organ-network training labels inside the crop: every organ voxel, or only the largest component
#: (the released code).
CropLabel = Literal["all", "largest_component"]
CROP_LABELS: tuple[CropLabel, ...] = get_args(CropLabel)
#: Runs averaged for Table 2's training time: every finished run, or the converged ones (the released code).
TrainingTimeRuns = Literal["all", "converged"]
TRAINING_TIME_RUNS: tuple[TrainingTimeRuns, ...] = get_args(TrainingTimeRuns)
#: The paper's five organs, in its order, and their Medical Segmentation Decathlon task folders.
PAPER_ORGANS: tuple[str, ...] = ("spleen", "pancreas", "prostate", "liver", "heart")
MSD_TASK_FOLDERS: dict[str, str] = {
    "spleen": "Task09_Spleen",
    "pancreas": "Task07_Pancreas",
    "prostate": "Task05_Prostate",
    "liver": "Task03_Liver",
    "heart": "Task02_Heart",
}
#: Phantom task geometries (see :mod:`l2s_core.data.phantom.geometry`): ``fixed``, every volume of one
#: shape; ``msd``, the MSD tasks' case counts, shapes and spacings.
PhantomProfile = Literal["fixed", "msd"]
PHANTOM_PROFILES: tuple[PhantomProfile, ...] = get_args(PhantomProfile)
#: Verdicts of the report's scorecard of the paper's claims (see :mod:`l2s_core.results.findings`):
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
#: How the report and the figures name each network, method and split.
NETWORK_LABELS: dict[str, str] = {"baseline": "baseline", "localiser": "low res (localiser)", "organ": "organ"}
METHOD_LABELS: dict[str, str] = {
    "baseline": "baseline",
    "two_stage": "two stage",
    "gt_localised": "ground truth localised",
}
SPLIT_LABELS: dict[str, str] = {"train": "training", "val": "validation", "test": "test"}
#: Where a study's data comes from: the built-in phantoms or MSD-layout task folders under ``data_root``.
DataSource = Literal["phantom", "msd"]
DATA_SOURCES: tuple[DataSource, ...] = get_args(DataSource)
#: How ``l2s run`` executes steps: threads of this process, Slurm jobs, or submitit jobs on this machine.
Executor = Literal["local", "slurm", "submitit-local"]
EXECUTORS: tuple[Executor, ...] = get_args(Executor)
#: How a study step ended (its step record): done or failed.
StepState = Literal["done", "failed"]
STEP_STATES: tuple[StepState, ...] = get_args(StepState)
#: The state of a unit of a study's graph: waiting to run, running, ended (a step state), or
#: blocked because what it needs failed.
UnitState = Literal["pending", "running", "done", "failed", "blocked"]
UNIT_STATES: tuple[UnitState, ...] = get_args(UnitState)
