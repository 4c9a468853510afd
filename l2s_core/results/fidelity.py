"""The choices where the paper's text, its released code and l2s can differ, in one table.

Each :class:`Choice` names the study-file key that sets it, what the paper's text says (or that
it is silent), what the released code (github.com/Abe404/localise_to_segment) did, and the l2s
default. ``papermill_params/paper.yaml`` follows the text where it speaks and the code where it
is silent; ``paper_released_code.yaml`` follows the code throughout. Each :class:`Difference`
is a remaining difference that no option removes, declared. The README's fidelity tables and
the report's list of the choices a study used are made from :data:`CHOICES` and
:data:`DIFFERENCES` (a test checks the README against them).

Example:
    >>> [c.key for c in CHOICES][:2]
    ['train.architecture', 'train.base_channels, train.depth']
"""

from __future__ import annotations

__all__ = ["CHOICES", "DIFFERENCES", "Choice", "Difference", "study_choices"]

from dataclasses import dataclass
from typing import Any

import pandas as pd

from l2s_core.study.params import StudyParams


@dataclass(frozen=True)
class Choice:
    """One choice of the protocol.

    Attributes:
        name: what is chosen.
        key: the study-file key(s) that set it (comma-separated where two go together).
        text: what the paper's text says, or "silent".
        released_code: what the released code did.
        l2s_default: the default when a study file does not set it.
    """

    name: str
    key: str
    text: str
    released_code: str
    l2s_default: str


CHOICES: tuple[Choice, ...] = (
    Choice(
        "network architecture",
        "train.architecture",
        "3D U-Net, group normalisation after each layer, He initialisation",
        "no skip connections; ReLU before GroupNorm(32); bare 1×1 down-block convolutions; output ReLU; "
        "3,820,994 parameters (`released_code`)",
        "`unet` (skip connections, conv → GroupNorm → ReLU)",
    ),
    Choice(
        "GroupNorm groups",
        "train.norm_groups",
        "group normalisation after each layer (Wu & He, whose default is 32 groups)",
        "GroupNorm(32)",
        "`null`: 4 for `unet`, 32 for `released_code` (`paper.yaml`: 32)",
    ),
    Choice(
        "width and depth",
        "train.base_channels, train.depth",
        "silent",
        "64 channels (128 inside each down-block), 4 levels",
        "8 and 3 (`paper.yaml`: 32 and 4)",
    ),
    Choice(
        "loss form",
        "train.dice_form",
        '"a combination of dice and cross-entropy"',
        "soft Dice pooled over the global batch (both GPUs), only when it holds organ (`batch_if_foreground`)",
        "`per_sample` (soft Dice per patch, averaged)",
    ),
    Choice("cross-entropy weight", "train.ce_weight", "silent", "0.3", "1.0"),
    Choice(
        "epoch",
        "train.samples_per_epoch",
        "silent",
        "one patch per training image",
        "`null`: one patch per training image",
    ),
    Choice(
        "intensity normalisation", "prepare.normalisation", "silent", "raw intensities (`none`)", "`zscore` per image"
    ),
    Choice(
        "low-resolution factors and axes",
        "prepare.lowres_divisors",
        "half the width and height, a third of the depth: `[3, 2, 2]` (z, y, x)",
        "`(z, x, y)` arrays resized to `(z//2, x//2, y//3)`: `[2, 3, 2]` (z, y, x)",
        "`[3, 2, 2]`",
    ),
    Choice(
        "validation tiling",
        "train.sw_overlap",
        "silent",
        "non-overlapping 64×256×256 tiles, the last shifted to the edge (`0.0`)",
        "`0.25` overlap",
    ),
    Choice(
        "low-resolution box to full resolution",
        "evaluate.box_mapping",
        "silent",
        "the largest component of the low-res mask upsampled by skimage `resize(order=0)`, "
        "box [min − 15, max + 15) (`upsample_nearest`)",
        "`scale` (starts floored, ends ceiled)",
    ),
    Choice(
        "Table 2 averaging",
        "analysis.training_time_runs",
        "silent",
        "converged runs (`converged`)",
        "`all` finished runs",
    ),
    Choice(
        "convergence rule",
        "train.convergence_rule",
        '"at least 0.1 dice on the validation set after 20 epochs", read as: at some epoch from the 20th on '
        "(`after_patience_epochs`, one reading of the text)",
        "best validation Dice of the run > 0.1 (`best_over_run`)",
        "`best_over_run`",
    ),
    Choice(
        "split order",
        "prepare.split_order",
        "Table 1 (`table1`: prostate 19/7/6; the released sets, validation taking the prostate's extra case)",
        "train, validation round(0.2 n), test the rest (`released_code`: prostate 19/6/7)",
        "`table1`",
    ),
    Choice(
        "organ-network training labels",
        "prepare.crop_label",
        "silent",
        "the largest ground-truth component only (`largest_component`)",
        "`all` organ voxels",
    ),
    Choice(
        "second-stage box guard (L2S)",
        "evaluate.guard_grows",
        "none: the organ network segments the localised box + margin only",
        "none (`0`)",
        "`0`: a study evaluates the paper's three methods (N > 0 adds `two_stage_guarded`); "
        "`l2s predict`: up to 3 growths of a box face the organ touches",
    ),
)


@dataclass(frozen=True)
class Difference:
    """A remaining difference from the paper's text or its released code that no option removes.

    Attributes:
        name: what differs.
        text: what the paper's text says, or "silent".
        released_code: what the released code did.
        l2s: what l2s does.
    """

    name: str
    text: str
    released_code: str
    l2s: str


DIFFERENCES: tuple[Difference, ...] = (
    Difference(
        "low-resolution label",
        "annotations resized with scikit-image's `resize`",
        "the float mask resized with `resize`'s default anti-aliasing (a Gaussian of σ = (factor − 1)/2), then rounded",
        "linear resize without anti-aliasing, then rounded (the two can differ at structures a few voxels "
        "thin; on axis-aligned tubes of radius 1–4 voxels they were identical)",
    ),
    Difference(
        "padding for prediction",
        "zero padding in the convolutions",
        "every image padded, centred, by 16 − (side mod 16) per axis: to the next multiple of 16, "
        "plus 16 where the side already is one",
        "zero-padded at the end to the network's size multiple (nothing where the side already is one)",
    ),
    Difference(
        "depth axis",
        '"a third of their depth"; patch 64×256×256 (depth first)',
        "the file's third voxel axis (k) moved first, with no reorientation",
        "RAS S (superior) of the RAS-oriented array; `prepare` warns for an image whose largest voxel "
        "spacing is along another axis (a sagittal or coronal acquisition)",
    ),
    Difference(
        "± in Tables 3 and 4",
        "mean ± sd over 10 converged runs",
        "`np.std`: the population standard deviation",
        "the sample standard deviation (n − 1) in the study's tables; the Findings label both",
    ),
    Difference(
        "organ crop end",
        "15 voxels of padding on each side of the organ",
        "crop [min − 15, max + 15): 14 voxels after the organ's last one (training crops, ground-truth "
        "and two-stage boxes)",
        "[min − 15, max + 1 + 15) for training crops and ground-truth boxes; the released end under "
        "`evaluate.box_mapping: upsample_nearest` only",
    ),
)


def _value(params: StudyParams, key: str, network: str = "baseline") -> Any:
    """A setting of a study, ``section.name``; for ``train`` the network's value (its overrides
    applied, organ overrides not)."""
    section, _, name = key.partition(".")
    options = params.train.for_run(None, network) if section == "train" else getattr(params, section)
    return getattr(options, name)


def _shown(value: Any) -> str:
    """A setting as the study file writes it (a tuple as a list)."""
    return str(list(value)) if isinstance(value, tuple) else str(value)


def study_choices(study_params: StudyParams | None) -> pd.DataFrame:
    """The value of every choice in a study's parameters (as ``study_params.json`` keeps them),
    then the declared differences (:data:`DIFFERENCES`: key ``—``, "this study" what l2s does).

    Training settings are those of the baseline (per-network overrides applied); a key the
    snapshot lacks shows its default (loading fills it in); organ overrides are not shown.

    Returns:
        Columns ``choice``, ``key``, ``this study``, ``paper text``, ``released code``; empty
        without a snapshot.
    """
    rows = (
        [
            {
                "choice": c.name,
                "key": c.key,
                "this study": ", ".join(_shown(_value(study_params, k.strip())) for k in c.key.split(",")),
                "paper text": c.text,
                "released code": c.released_code,
            }
            for c in CHOICES
        ]
        + [
            {"choice": d.name, "key": "—", "this study": d.l2s, "paper text": d.text, "released code": d.released_code}
            for d in DIFFERENCES
        ]
        if study_params is not None
        else []
    )
    return pd.DataFrame(rows, columns=["choice", "key", "this study", "paper text", "released code"])
