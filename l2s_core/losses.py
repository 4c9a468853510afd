"""Training loss (soft Dice + cross-entropy) and hard Dice counts for the organ class.

By default both terms of :class:`DiceCELoss` are computed per sample and then averaged over
the batch, so that a batch of two patches on one process gives the same loss and gradient as
two data-parallel processes with one patch each whose gradients are averaged (the paper's
setting: global batch 2, one patch per GPU). ``dice_form="batch_if_foreground"`` is the
released code's form instead: one soft Dice pooled over the whole batch, added only when the
batch holds organ. Its ``DataParallel`` pooled over both GPUs' patches; here, with
``across_processes=True``, the Dice sums are all-reduced (differentiably) over the
data-parallel processes, so the loss and the averaged gradients are those of one process
holding the whole global batch.
"""

from __future__ import annotations

__all__ = ["DiceCELoss", "ORGAN_CLASS", "hard_dice_counts"]

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from l2s_core.errors import check_choice
from l2s_core.vocabulary import DICE_FORMS

ORGAN_CLASS = 1
"""Channel of the logits (and value of the target) that marks the organ."""


class _GlobalSums(torch.autograd.Function):
    """Sum a tensor over the data-parallel processes, differentiably, with no collective in backward.

    Every process forms the same Dice from the same global sums, so the gradient arriving at them is
    the same on every process, and the gradient of the global sum with respect to this process's
    share is that gradient summed over the processes: ``world_size`` times it, computed locally.
    (A collective issued inside backward, as ``torch.distributed.nn.functional.all_reduce`` does,
    competes with DistributedDataParallel's own gradient all-reduces; a test run of two gloo
    processes hung that way.) DistributedDataParallel then averages the parameters' gradients, so
    they equal one process's on the whole global batch.
    """

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, local: torch.Tensor) -> torch.Tensor:
        total = local.detach().clone()
        dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> torch.Tensor:
        return grad * dist.get_world_size()


class DiceCELoss(nn.Module):
    """Weighted sum of the organ's soft Dice loss and the voxel-wise cross-entropy.

    ``loss = dice_weight * mean_n(1 - soft_dice_n) + ce_weight * mean_n(mean_voxels(ce_n))``
    where ``soft_dice_n = (2 Σ p t + smooth) / (Σ p + Σ t + smooth)`` over the voxels of
    sample ``n``, with ``p`` the softmax probability of the organ channel and ``t`` the
    organ target. The smoothing makes the Dice term well defined on patches without organ:
    there, predicting background everywhere gives a Dice term near 0.

    The loss is computed in float32 even under autocast.

    Args:
        dice_weight: weight of the Dice term.
        ce_weight: weight of the cross-entropy term.
        smooth: added to the numerator and denominator of the soft Dice.
        dice_form: ``"per_sample"`` (above) or ``"batch_if_foreground"``: ``1 - soft_dice``
            with the sums taken over every voxel of the batch, and only when the target
            holds organ (otherwise the loss is the cross-entropy term alone).
        across_processes: with ``batch_if_foreground``, the batch is the global batch of the
            data-parallel processes (every process calls the loss at each step): the Dice
            sums and the organ test are summed over the processes by a differentiable
            all-reduce. Each process's batch must have the same size.

    Raises:
        ConfigError: an unknown ``dice_form``.
    """

    def __init__(
        self,
        dice_weight: float = 1.0,
        ce_weight: float = 1.0,
        smooth: float = 1.0,
        dice_form: str = "per_sample",
        across_processes: bool = False,
    ) -> None:
        super().__init__()
        check_choice("dice_form", dice_form, DICE_FORMS)
        self.dice_weight = dice_weight
        self.ce_weight = ce_weight
        self.smooth = smooth
        self.dice_form = dice_form
        self.across_processes = across_processes

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss of a batch.

        Args:
            logits: shape ``(N, 2, z, y, x)``, channel 1 is the organ.
            target: shape ``(N, z, y, x)``, integers 0 (background) and 1 (organ) (uint8 from
                the loader: an eighth of int64's bytes to move; widened here).

        Returns:
            Scalar loss tensor.
        """
        logits, target = logits.float(), target.long()
        per_sample = self.dice_form == "per_sample"
        summed_dims = tuple(range(1 if per_sample else 0, target.ndim))
        organ_probability = torch.softmax(logits, dim=1)[:, ORGAN_CLASS]
        organ_target = (target == ORGAN_CLASS).to(organ_probability.dtype)
        sums = torch.stack(
            [
                (organ_probability * organ_target).sum(dim=summed_dims),
                organ_probability.sum(dim=summed_dims),
                organ_target.sum(dim=summed_dims),
            ]
        )
        if self.across_processes and not per_sample:
            sums = _GlobalSums.apply(sums)
        overlap, probability_sum, target_sum = sums.unbind()
        soft_dice = (2 * overlap + self.smooth) / (probability_sum + target_sum + self.smooth)
        cross_entropy = F.cross_entropy(logits, target, reduction="none").mean(dim=tuple(range(1, target.ndim)))
        dice_term = (1 - soft_dice).mean()
        if not per_sample:  # the released code adds the Dice term only when the batch holds organ
            dice_term = dice_term * (target_sum > 0)  # a tensor, not a bool: no device sync per step
        return self.dice_weight * dice_term + self.ce_weight * cross_entropy.mean()


def hard_dice_counts(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """True positive, false positive and false negative voxel counts of the organ class.

    The prediction is the argmax over the class channel; counts are summed over the batch,
    so that Dice = 2 TP / (2 TP + FP + FN) can be pooled over batches.

    Args:
        logits: shape ``(N, C, z, y, x)``.
        target: shape ``(N, z, y, x)``, integer class labels.

    Returns:
        ``(tp, fp, fn)``, each a 0-d int64 tensor on the device of ``logits``.
    """
    predicted_organ = logits.argmax(dim=1) == ORGAN_CLASS
    target_organ = target == ORGAN_CLASS
    tp = (predicted_organ & target_organ).sum()
    fp = (predicted_organ & ~target_organ).sum()
    fn = (~predicted_organ & target_organ).sum()
    return tp, fp, fn
