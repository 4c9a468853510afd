import pytest
import torch
import torch.nn.functional as F

from l2s_core import distributed
from l2s_core.errors import ConfigError
from l2s_core.losses import DiceCELoss, hard_dice_counts


def _logits_for(target: torch.Tensor, confidence: float) -> torch.Tensor:
    """Logits ``(N, 2, z, y, x)`` that predict ``target`` with the given logit margin."""
    return F.one_hot(target, 2).permute(0, 4, 1, 2, 3).float() * confidence


def _random_batch(n: int = 2, with_organ: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(n, 2, 4, 5, 6, generator=generator)
    target = torch.zeros(n, 4, 5, 6, dtype=torch.int64)
    if with_organ:
        target[:, 1:3, 1:4, 2:5] = 1
    return logits, target


@pytest.mark.parametrize("with_organ", [True, False])
def test_gradients_are_finite_with_and_without_organ(with_organ):
    logits, target = _random_batch(with_organ=with_organ)
    logits.requires_grad_(True)
    loss = DiceCELoss()(logits, target)
    loss.backward()
    assert torch.isfinite(loss) and loss > 0
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_perfect_prediction_gives_low_loss_and_bad_prediction_high():
    _, target = _random_batch()
    loss = DiceCELoss()
    assert loss(_logits_for(target, 20.0), target) < 1e-6
    assert loss(_logits_for(1 - target, 20.0), target) > 10


def test_all_background_prediction_on_empty_patch_has_near_zero_dice_term():
    _, target = _random_batch(with_organ=False)
    dice_only = DiceCELoss(dice_weight=1.0, ce_weight=0.0)
    assert dice_only(_logits_for(target, 20.0), target) < 1e-6
    # Predicting organ everywhere on an empty patch is penalised by the Dice term.
    assert dice_only(_logits_for(1 - target, 20.0), target) > 0.99


def test_batch_loss_and_gradient_equal_mean_of_single_sample_losses():
    logits, target = _random_batch()
    target[1] = 0  # one sample with organ, one without: per-sample Dice differs from pooled Dice
    loss = DiceCELoss()
    batch_logits = logits.clone().requires_grad_(True)
    loss(batch_logits, target).backward()
    single_logits = [logits[i : i + 1].clone().requires_grad_(True) for i in range(2)]
    single_losses = [loss(single_logits[i], target[i : i + 1]) for i in range(2)]
    (sum(single_losses) / 2).backward()
    assert torch.allclose(loss(logits, target), sum(single_losses) / 2, atol=1e-6)
    assert torch.allclose(batch_logits.grad, torch.cat([s.grad for s in single_logits]), atol=1e-7)


def test_soft_dice_against_hand_computed_value():
    target = torch.tensor([[[[1, 0]]]])  # (N=1, z=1, y=1, x=2)
    logits = torch.zeros(1, 2, 1, 1, 2)  # organ probability 0.5 everywhere
    # overlap 0.5, sum p 1, sum t 1, smooth 1: Dice (1 + 1) / (2 + 1) = 2/3.
    dice_only = DiceCELoss(dice_weight=1.0, ce_weight=0.0, smooth=1.0)
    assert torch.isclose(dice_only(logits, target), torch.tensor(1 / 3))
    ce_only = DiceCELoss(dice_weight=0.0, ce_weight=1.0)
    assert torch.isclose(ce_only(logits, target), torch.log(torch.tensor(2.0)))


def test_weights_scale_their_terms():
    logits, target = _random_batch()
    dice = DiceCELoss(dice_weight=1.0, ce_weight=0.0)(logits, target)
    ce = DiceCELoss(dice_weight=0.0, ce_weight=1.0)(logits, target)
    assert dice > 0 and ce > 0
    assert torch.isclose(DiceCELoss()(logits, target), dice + ce)
    assert torch.isclose(DiceCELoss(dice_weight=0.5, ce_weight=3.0)(logits, target), 0.5 * dice + 3.0 * ce)
    assert torch.isclose(ce, F.cross_entropy(logits, target))


def test_loss_is_float32_for_bfloat16_logits():
    logits, target = _random_batch()
    loss = DiceCELoss()(logits.bfloat16(), target)
    assert loss.dtype == torch.float32
    assert torch.isclose(loss, DiceCELoss()(logits.bfloat16().float(), target))


def test_hard_dice_counts_against_hand_computed_values():
    # Sample 0: prediction 1 1 0 0 vs target 1 0 1 0 -> TP 1, FP 1, FN 1.
    # Sample 1: prediction 1 1 1 1 vs target 0 0 1 1 -> TP 2, FP 2, FN 0.
    predicted = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]]).reshape(2, 1, 1, 4)
    target = torch.tensor([[1, 0, 1, 0], [0, 0, 1, 1]]).reshape(2, 1, 1, 4)
    logits = _logits_for(predicted, 3.0) + 0.5  # a shift common to both classes keeps the argmax
    tp, fp, fn = hard_dice_counts(logits, target)
    assert (tp.item(), fp.item(), fn.item()) == (3, 3, 1)
    assert tp.dtype == torch.int64


def test_batch_dice_form_pools_the_batch_and_needs_organ():
    torch.manual_seed(0)
    logits = torch.randn(2, 2, 4, 4, 4)
    target = torch.zeros(2, 4, 4, 4, dtype=torch.int64)
    target[0, 1:3, 1:3, 1:3] = 1  # organ in the first patch only
    batch = DiceCELoss(ce_weight=0.3, dice_form="batch_if_foreground")
    probability = torch.softmax(logits, dim=1)[:, 1]
    organ = (target == 1).float()
    pooled_dice = (2 * (probability * organ).sum() + 1) / (probability.sum() + organ.sum() + 1)
    cross_entropy = torch.nn.functional.cross_entropy(logits, target)
    assert torch.allclose(batch(logits, target), (1 - pooled_dice) + 0.3 * cross_entropy, atol=1e-6)
    empty = torch.zeros_like(target)
    assert torch.allclose(batch(logits, empty), 0.3 * torch.nn.functional.cross_entropy(logits, empty), atol=1e-6)
    assert not torch.allclose(batch(logits, target), DiceCELoss(ce_weight=0.3)(logits, target))
    with pytest.raises(ConfigError, match="dice_form"):
        DiceCELoss(dice_form="mean")


def _global_batch():
    """A global batch of four patches with organ in the first only, and a tiny network."""
    torch.manual_seed(0)
    images = torch.randn(4, 1, 4, 4, 4)
    target = torch.zeros(4, 4, 4, 4, dtype=torch.int64)
    target[0, 1:3, 1:3, 1:3] = 1
    return images, target, torch.nn.Conv3d(1, 2, 3, padding=1)


def _pooled_rank(rank: int, world_size: int, init_method: str, out: str) -> None:
    """One of two gloo processes: its half of the global batch under DistributedDataParallel."""
    context = distributed.join_process_group("cpu", rank, world_size, rank, init_method)
    try:
        images, target, net = _global_batch()
        model = distributed.wrap(net, context)
        share = slice(2 * rank, 2 * rank + 2)  # rank 1's patches hold no organ
        loss_fn = DiceCELoss(ce_weight=0.3, dice_form="batch_if_foreground", across_processes=True)
        loss = loss_fn(model(images[share]), target[share])
        loss.backward()
        losses = distributed.all_reduce(loss.detach().reshape(1), context) / world_size
        torch.save({"loss": losses, "grads": [p.grad for p in net.parameters()]}, f"{out}/rank{rank}.pt")
        distributed.barrier(context)  # no rank tears its gloo pairs down while the other still uses them
    finally:
        distributed.leave_process_group(context)


def test_batch_dice_form_pools_over_the_processes_global_batch(tmp_path):
    """Two gloo processes with two patches each: loss and averaged gradients equal one process's
    on the concatenated batch (the released DataParallel), the organ test included."""
    distributed.spawn(_pooled_rank, 2, str(tmp_path))
    images, target, net = _global_batch()
    loss = DiceCELoss(ce_weight=0.3, dice_form="batch_if_foreground")(net(images), target)
    loss.backward()
    for rank in range(2):
        result = torch.load(tmp_path / f"rank{rank}.pt")
        assert torch.allclose(result["loss"][0], loss.detach(), atol=1e-6)
        for got, expected in zip(result["grads"], net.parameters()):
            assert torch.allclose(got, expected.grad, atol=1e-6)
