"""The table of fidelity choices: complete, in the README, and read from a study snapshot."""

from pathlib import Path

import pytest
import yaml

from l2s_core.files import atomic_write_json
from l2s_core.results.fidelity import CHOICES, DIFFERENCES, study_choices
from l2s_core.study.params import load_study_params

ROOT = Path(__file__).resolve().parents[2]


def test_every_choice_has_a_study_key_and_is_in_the_readme_table():
    readme = (ROOT / "README.md").read_text()
    # the file as written, not the loaded parameters (which fill every default in): the released-code
    # profile must set every choice explicitly
    written = yaml.safe_load((ROOT / "papermill_params" / "paper_released_code.yaml").read_text())
    for choice in CHOICES:
        assert f"| {choice.name} | `{choice.key}` |" in readme, choice.name
        for key in choice.key.split(","):
            section, _, name = key.strip().partition(".")
            assert name in (written[section] if section else written), key


@pytest.mark.parametrize(
    "profile, expected",
    [
        (
            "paper",
            {
                "train.architecture": "unet",
                "prepare.split_order": "table1",
                "train.convergence_rule": "after_patience_epochs",
            },
        ),
        (
            "paper_released_code",
            {
                "train.architecture": "released_code",
                "prepare.split_order": "released_code",
                "train.convergence_rule": "best_over_run",
                "prepare.lowres_divisors": "[2, 3, 2]",
            },
        ),
    ],
)
def test_report_lists_the_choices_a_study_used(profile, expected):
    snapshot = load_study_params(ROOT / "papermill_params" / f"{profile}.yaml")
    table = study_choices(snapshot).set_index("key")
    assert len(table) == len(CHOICES) + len(DIFFERENCES)
    for key, value in expected.items():
        assert table.loc[key, "this study"] == value
    assert study_choices(None).empty


def test_every_declared_difference_is_in_the_readme_and_the_report_table():
    readme = (ROOT / "README.md").read_text()
    for difference in DIFFERENCES:
        assert f"| {difference.name} | {difference.text} | {difference.released_code} | {difference.l2s} |" in readme
    snapshot = load_study_params(ROOT / "papermill_params" / "paper.yaml")
    table = study_choices(snapshot)
    declared = table[table["key"] == "—"].set_index("choice")
    assert list(declared.index) == [d.name for d in DIFFERENCES]
    assert declared.loc["± in Tables 3 and 4", "released code"] == "`np.std`: the population standard deviation"


def test_a_key_missing_from_an_older_snapshot_shows_its_default_value(tmp_path):
    snapshot = load_study_params(ROOT / "papermill_params" / "quick.yaml").to_dict()
    for section, name in (
        ("prepare", "split_order"),
        ("evaluate", "box_mapping"),
        ("train", "ce_weight"),
        ("train", "norm_groups"),
    ):
        snapshot[section].pop(name, None)
    atomic_write_json(tmp_path / "study_params.json", snapshot)
    table = study_choices(load_study_params(tmp_path / "study_params.json")).set_index("key")
    assert table.loc["prepare.split_order", "this study"] == "table1"
    assert table.loc["evaluate.box_mapping", "this study"] == "scale"
    assert table.loc["train.ce_weight", "this study"] == "1.0"
    assert table.loc["train.norm_groups", "this study"] == "None"  # the architecture's default


def test_training_choices_are_the_baselines_with_its_overrides_and_without_organ_overrides(tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "data": "phantom",
                "organs": ["spleen"],
                "train": {
                    "ce_weight": 0.5,
                    "depth": 2,
                    "per_network": {"baseline": {"ce_weight": 0.3}, "organ": {"depth": 4}},
                    "per_organ": {"spleen": {"architecture": "released_code"}},
                },
            }
        )
    )
    table = study_choices(load_study_params(path)).set_index("key")
    assert table.loc["train.ce_weight", "this study"] == "0.3"
    assert table.loc["train.base_channels, train.depth", "this study"] == "8, 2"
    assert table.loc["train.architecture", "this study"] == "unet"
