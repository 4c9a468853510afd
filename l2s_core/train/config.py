"""Settings of one training run (``config.json``) and the convergence rule; no torch.

:class:`TrainConfig` is what a study file's ``train`` section fills in for each run, what
:mod:`l2s_core.train.loop` trains by, and what evaluation reads back to predict with a run's
network through the window it trained with.
"""

from __future__ import annotations

__all__ = ["TrainConfig", "TrainSettings", "is_converged"]

import dataclasses
import json
from pathlib import Path
from typing import Any

from l2s_core.errors import ConfigError, check_choice
from l2s_core.files import NESTED_TOO_DEEPLY
from l2s_core.records import Record
from l2s_core.vocabulary import ARCHITECTURES, CONVERGENCE_RULES, DICE_FORMS, NETWORKS


@dataclasses.dataclass(frozen=True)
class TrainSettings:
    """The settings of a training run that a study's ``train`` section sets (for every run, a
    network or an organ); :class:`TrainConfig` adds those the study sets for each run.

    Attributes:
        base_channels: U-Net channels at full resolution.
        norm_groups: GroupNorm groups of every normalisation layer; ``None``: the architecture's
            default (4 for ``unet``, 32 for ``released_code``, as released and as Wu & He's).
        depth: U-Net poolings; image sides are padded to multiples of ``2**depth``.
        patch_size: ``(z, y, x)`` patch of every network (training, and the largest input it is
            given at validation and prediction; clipped where an image is smaller).
        batch_size: global batch, split evenly across the processes.
        samples_per_epoch: patches per epoch; ``None``: one per training image (the released
            code's epoch; the paper does not state it).
        foreground_probability: share of the baseline's patches that must contain organ (the
            localiser and the organ network draw plain random patches).
        lr: Adam learning rate.
        patience: stop after this many epochs without a higher validation Dice.
        max_epochs: stop after this many epochs at the latest.
        convergence_threshold: validation Dice a converged run must reach.
        convergence_rule: ``"best_over_run"`` (the paper's code: best validation Dice ≥
            threshold) or ``"after_patience_epochs"`` (the paper's text: validation Dice ≥
            threshold at some epoch ≥ ``convergence_epoch``).
        convergence_epoch: first epoch (counting from 1) that counts for
            ``"after_patience_epochs"``.
        dice_weight: weight of the soft Dice term of the loss.
        ce_weight: weight of the cross-entropy term of the loss (the released code: 0.3).
        dice_form: ``"per_sample"`` (soft Dice per patch, averaged) or ``"batch_if_foreground"``
            (pooled over the global batch of all processes, added only when it holds organ: the released code).
        architecture: ``"unet"`` (the text's U-Net with skip connections) or ``"released_code"``
            (:class:`~l2s_core.released_unet.ReleasedCodeUNet3D`, without them).
        sw_overlap: overlap of the baseline's sliding windows at validation.
        num_workers: DataLoader worker processes per training process.
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        amp: bfloat16 autocast (CUDA only; no effect on the CPU).
        compile: ``torch.compile`` the network for the training step and every prediction
            (validation, evaluation, the explorer); ``None``: on GPUs, not on the CPU
            (:mod:`l2s_core.compiling`; a failed compilation runs eagerly after one warning).
        deterministic: on the CPU, deterministic algorithms (bitwise reproducible runs); on
            GPUs, cuDNN's deterministic convolutions without autotuning (closer, not bitwise,
            reproducibility, at some speed cost; ``False`` lets cuDNN pick the fastest).
    """

    base_channels: int = 8
    depth: int = 3
    norm_groups: int | None = None
    patch_size: tuple[int, int, int] = (64, 256, 256)
    batch_size: int = 2
    samples_per_epoch: int | None = None
    foreground_probability: float = 0.8
    lr: float = 1e-4
    patience: int = 20
    max_epochs: int = 1000
    convergence_threshold: float = 0.1
    convergence_rule: str = "best_over_run"
    convergence_epoch: int = 20
    dice_weight: float = 1.0
    ce_weight: float = 1.0
    dice_form: str = "per_sample"
    architecture: str = "unet"
    sw_overlap: float = 0.25
    num_workers: int = 0
    device: str = "auto"
    amp: bool = False
    compile: bool | None = None
    deterministic: bool = True

    def settings(self) -> dict[str, Any]:
        """Field name → value of the :class:`TrainSettings` fields (of this or a derived record)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(TrainSettings)}


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainConfig(TrainSettings, Record):
    """Settings of one training run; saved as the run's ``config.json``: the
    :class:`TrainSettings` (see there) and those a study sets for each run.

    Attributes:
        prepared_dir: prepared task folder (:mod:`l2s_core.data.prepare`).
        run_dir: folder of this run (created).
        network: ``"baseline"``, ``"localiser"`` or ``"organ"``.
        seed: seed of the weight initialisation and of the training items.
        world_size: data-parallel processes :func:`~l2s_core.train.launch.train_run` starts
            (``torchrun`` sets its own).
    """

    prepared_dir: str
    run_dir: str
    network: str
    seed: int = 0
    world_size: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "patch_size", tuple(self.patch_size))
        check_choice("network", self.network, NETWORKS)
        check_choice("convergence_rule", self.convergence_rule, CONVERGENCE_RULES)
        check_choice("dice_form", self.dice_form, DICE_FORMS)
        check_choice("architecture", self.architecture, ARCHITECTURES)
        checks = [
            (
                "patch_size",
                len(self.patch_size) == 3 and all(s >= 1 and s % 2**self.depth == 0 for s in self.patch_size),
                f"needs three sides (z, y, x), each a positive multiple of 2**depth = {2**self.depth}",
            ),
            ("world_size", self.world_size >= 1, "must be at least 1"),
            (
                "device",
                self.world_size == 1 or not self.device.startswith("cuda:"),
                f"names one GPU, but {self.world_size} processes need one each; use 'cuda' or 'auto' "
                "(each process takes the GPU of its local rank)",
            ),
            (
                "batch_size",
                self.batch_size >= 1 and self.batch_size % self.world_size == 0,
                f"must be a positive multiple of world_size ({self.world_size}), the global batch is split "
                "across processes",
            ),
            ("lr", self.lr > 0, "must be positive"),
            ("sw_overlap", 0 <= self.sw_overlap < 1, "must lie in [0, 1)"),
            ("foreground_probability", 0 <= self.foreground_probability <= 1, "must lie in [0, 1]"),
        ]
        checks += [
            (name, getattr(self, name) >= 1, "must be at least 1")
            for name in ("base_channels", "depth", "patience", "max_epochs", "convergence_epoch")
        ]
        checks += [
            ("num_workers", self.num_workers >= 0, "must not be negative"),
            ("norm_groups", self.norm_groups is None or self.norm_groups >= 1, "must be at least 1 (or null)"),
            (
                "samples_per_epoch",
                self.samples_per_epoch is None or self.samples_per_epoch >= 1,
                "must be at least 1 (or null: one patch per training image)",
            ),
        ]
        for name, valid, problem in checks:
            if not valid:
                raise ConfigError(name, f"{problem}, got {getattr(self, name)!r}")

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        """Read a config from a JSON file (``format_version`` optional).

        Raises:
            ConfigError: unreadable JSON or an invalid config (the message names the file and key).
        """
        path = Path(path)
        try:
            values = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(path, f"cannot read the training config ({exc})") from None
        except RecursionError:
            raise ConfigError(path, NESTED_TOO_DEEPLY) from None
        if not isinstance(values, dict):
            raise ConfigError(path, "expected a JSON object")
        return cls.from_dict(values, source=str(path))


def is_converged(val_dices: list[float], threshold: float, rule: str, convergence_epoch: int = 20) -> bool:
    """Whether a run with these per-epoch validation Dice values has converged.

    Args:
        val_dices: validation Dice of epochs 1, 2, ...
        threshold: Dice to reach (0.1 in the paper).
        rule: ``"best_over_run"``: the best Dice of the run reaches ``threshold`` (the paper's
            code); ``"after_patience_epochs"``: the Dice reaches ``threshold`` at some epoch
            ``>= convergence_epoch`` (the paper's text, "at least 0.1 dice on the validation
            set after 20 epochs").
        convergence_epoch: first epoch counted by ``"after_patience_epochs"``.

    Returns:
        The verdict.

    Raises:
        ConfigError: an unknown rule.
    """
    if rule == "best_over_run":
        return any(d >= threshold for d in val_dices)
    if rule == "after_patience_epochs":
        return any(d >= threshold for d in val_dices[convergence_epoch - 1 :])
    check_choice("convergence_rule", rule, CONVERGENCE_RULES)
    raise AssertionError(rule)  # every rule is handled above
