"""A training run's settings (config.json) and the convergence rule; no torch needed."""

import json
from pathlib import Path

import pytest

from l2s_core.errors import ConfigError
from l2s_core.files import atomic_write_json
from l2s_core.train.config import TrainConfig, is_converged


def test_every_network_trains_on_patches_and_null_means_one_per_image() -> None:
    config = TrainConfig(prepared_dir="p", run_dir="r", network="localiser", samples_per_epoch=None)
    assert TrainConfig.from_dict(config.to_dict()).samples_per_epoch is None
    with pytest.raises(ConfigError, match="patch_size"):  # the patch binds the localiser and organ network too
        TrainConfig(prepared_dir="p", run_dir="r", network="organ", depth=3, patch_size=(12, 16, 16))


def test_config_json_round_trip(tmp_path: Path) -> None:
    config = TrainConfig(prepared_dir="p", run_dir="r", network="organ", patch_size=(32, 64, 64), amp=True)
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    atomic_write_json(tmp_path / "config.json", config.to_dict())
    assert TrainConfig.load(tmp_path / "config.json") == config


@pytest.mark.parametrize(
    "change, where",
    [
        ({"learning_rate": 0.1}, "learning_rate"),
        ({"batch_size": "2"}, "batch_size"),
        ({"amp": 1}, "amp"),
        ({"patch_size": [64, 256]}, "patch_size"),
        ({"patch_size": [60, 256, 256]}, "patch_size"),
        ({"network": "twostage"}, "network"),
        ({"convergence_rule": "sometimes"}, "convergence_rule"),
        ({"batch_size": 3, "world_size": 2}, "batch_size"),
        ({"sw_overlap": 1.0}, "sw_overlap"),
        ({"samples_per_epoch": 0}, "samples_per_epoch"),
        ({"dice_form": "mean"}, "dice_form"),
        ({"architecture": "vnet"}, "architecture"),
        ({"norm_groups": 0}, "norm_groups"),
        ({"device": "cuda:1", "world_size": 2}, "device"),  # two processes cannot share one named GPU
    ],
)
def test_bad_config_values_are_named(change: dict, where: str) -> None:
    values = {**TrainConfig(prepared_dir="p", run_dir="r", network="baseline").to_dict(), **change}
    with pytest.raises(ConfigError, match=f"TrainConfig: {where}: "):
        TrainConfig.from_dict(values)


def test_missing_required_key_is_named(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"prepared_dir": "p", "network": "organ"}))
    with pytest.raises(ConfigError, match=r"config\.json: run_dir: required key missing"):
        TrainConfig.load(path)


@pytest.mark.parametrize(
    "rule, dices, converged",
    [
        ("best_over_run", [0.0, 0.12, 0.05], True),
        ("best_over_run", [0.0, 0.09], False),
        ("after_patience_epochs", [0.5] + [0.0] * 20, False),  # only epoch 1 reached 0.1
        ("after_patience_epochs", [0.0] * 19 + [0.1], True),  # epoch 20 counts
        ("after_patience_epochs", [0.0] * 25 + [0.3], True),
    ],
)
def test_convergence_rules(rule: str, dices: list[float], converged: bool) -> None:
    assert is_converged(dices, threshold=0.1, rule=rule, convergence_epoch=20) is converged
