"""A model folder's networks built for prediction (``l2s_core.deploy.loaded_model``): each method
gets the networks it needs with their training patch, all pairs give the mean of their softmax
probabilities, and a pair position the model lacks is one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from l2s_core.deploy.loaded_model import load_model_folder
from l2s_core.deploy.model_folder import open_model_folder
from l2s_core.errors import ConfigError


@pytest.mark.parametrize(
    ("method", "kinds"), [("two_stage", ["localiser", "organ"]), ("baseline", ["baseline"]), ("box", ["organ"])]
)
def test_each_method_builds_the_networks_it_needs_with_their_patch(model_dir: Path, method: str, kinds: list) -> None:
    card = open_model_folder(model_dir)
    model = load_model_folder(model_dir, method, runs=0, card=card)
    assert (model.card, model.method, model.runs, model.device) == (card, method, 0, "cpu")
    assert sorted(model.networks) == sorted(model.entries) == kinds
    for kind, [entry] in model.entries.items():
        assert entry.network == kind and model.networks[kind].patch_size == entry.patch_size
        assert not model.networks[kind].model.training


def test_all_pairs_give_the_log_of_their_mean_softmax(model_dir: Path) -> None:
    averaged = load_model_folder(model_dir, "box", runs=None)
    entries = averaged.entries["organ"]
    assert len(entries) == 2 and entries[0].run != entries[1].run
    singles = [load_model_folder(model_dir, "box", runs=i).networks["organ"].model for i in range(len(entries))]
    images = torch.randn(1, 1, 8, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        mean = torch.stack([network(images).softmax(dim=1) for network in singles]).mean(dim=0)
        assert torch.allclose(averaged.networks["organ"].model(images).exp(), mean, atol=1e-6)


def test_a_pair_position_the_model_lacks_is_one_line(model_dir: Path) -> None:
    with pytest.raises(ConfigError) as error:
        load_model_folder(model_dir, "two_stage", runs=5)
    assert str(error.value) == "--runs: 5 is not a two_stage position of this model (0..1, or all)"
