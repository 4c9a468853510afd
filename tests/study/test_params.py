from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from l2s_core.errors import ConfigError
from l2s_core.files import atomic_write_json
from l2s_core.model import UNet3D
from l2s_core.records import Checker
from l2s_core.study.params import TrainOptions, _StudyChecker, load_study_params
from l2s_core.train.config import TrainSettings

SHIPPED = Path(__file__).resolve().parents[2] / "papermill_params"


def write_params(tmp_path: Path, values: dict, name: str = "quick.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump({"data": "phantom", **values}))
    return path


def config_error(path: Path, **kwargs) -> str:
    with pytest.raises(ConfigError) as caught:
        load_study_params(path, **kwargs)
    message = str(caught.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("name", ["paper", "paper_released_code", "quick", "quick_released_code", "smoke"])
def test_shipped_parameter_files_load(name):
    params = load_study_params(SHIPPED / f"{name}.yaml", data_root="/data/msd")
    assert params.study == name
    assert set(params.networks) == {"baseline", "localiser", "organ"}
    assert params.runs <= params.max_runs


def test_paper_parameters_follow_the_paper():
    params = load_study_params(SHIPPED / "paper.yaml", root="/somewhere")
    assert params.data == "msd" and params.data_root == Path("/somewhere/data/msd")
    assert params.organs == ("spleen", "pancreas", "prostate", "liver", "heart")
    assert (params.runs, params.gpus_per_run) == (10, 2)
    config = params.train_config("spleen", "baseline", 3, Path("p"), Path("r"), world_size=2)
    assert config.patch_size == (64, 256, 256) and config.batch_size == 2 and config.patience == 20
    assert config.lr == 1e-4 and config.seed == 3 and config.convergence_threshold == 0.1
    assert {"base_channels": config.base_channels, "depth": config.depth} == UNet3D.PAPER_CONFIG


def test_quick_study_has_five_phantom_organs_and_three_runs():
    params = load_study_params(SHIPPED / "quick.yaml")
    assert params.data == "phantom" and len(params.organs) == 5 and params.runs >= 3


def test_wrong_type_names_file_and_key_path(tmp_path):
    path = write_params(tmp_path, {"train": {"patience": "twenty"}})
    assert config_error(path) == f"{path}: train.patience: expected int, got str 'twenty'"


@pytest.mark.parametrize(
    "values, key",
    [
        ({"colour": "red"}, "colour"),
        ({"phantom": {"n_case": 3}}, "phantom.n_case"),
        ({"train": {"patiense": 3}}, "train.patiense"),
        ({"prepare": {"per_organ": {"spleen": {"chanel": 1}}}}, "prepare.per_organ.spleen.chanel"),
        ({"train": {"per_network": {"baseline": {"patch": [8, 8, 8]}}}}, "train.per_network.baseline.patch"),
    ],
)
def test_unknown_key_at_any_level(tmp_path, values, key):
    path = write_params(tmp_path, values)
    assert config_error(path).startswith(f"{path}: {key}: unknown key; known keys: ")


def test_an_organ_without_a_task_folder_is_refused(tmp_path):
    path = write_params(tmp_path, {"organs": ["spleen", "kidney"], "data": "msd", "data_root": "msd"})
    assert config_error(path) == (
        f"{path}: task_folders: no task folder for organ 'kidney'; "
        "add 'task_folders: {kidney: <folder under data_root>}'"
    )
    path = write_params(tmp_path, {"organs": ["spleen", "../up"], "data": "msd", "data_root": "msd"})
    assert config_error(path).startswith(f"{path}: organs: '../up' is not a plain name")
    path = write_params(tmp_path, {"organs": ["kidney"], "task_folders": {"kidney": "Task50_Kidney"}})
    assert config_error(path).startswith(f"{path}: task_folders.kidney: 'Task50_Kidney' is not a phantom task")
    path = write_params(tmp_path, {"organs": ["spleen"], "train": {"per_organ": {"liver": {"lr": 0.1}}}})
    assert config_error(path).startswith(f"{path}: train.per_organ.liver: not among the study's organs")


def test_any_task_is_a_study_organ(tmp_path):
    path = write_params(
        tmp_path,
        {
            "organs": ["spleen", "kidney"],
            "data": "msd",
            "data_root": "msd",
            "task_folders": {"kidney": "Task50_Kidney"},
            "prepare": {"per_organ": {"kidney": {"max_cases": 12, "crop_margin": 5}}},
            "train": {
                "depth": 2,
                "patch_size": [16, 16, 16],
                "per_network": {"baseline": {"patch_size": [8, 32, 32]}},
                "per_organ": {"kidney": {"patch_size": [8, 8, 8], "lr": 0.01}},
            },
        },
    )
    params = load_study_params(path, root=tmp_path)
    (tmp_path / "msd" / "Task50_Kidney").mkdir(parents=True)
    assert params.task_dir("kidney") == tmp_path / "msd" / "Task50_Kidney"
    assert params.prepare.settings("kidney").max_cases == 12 and params.prepare.settings("spleen").max_cases is None
    kidney = params.train_config("kidney", "baseline", 0, Path("p"), Path("r"))
    assert kidney.patch_size == (8, 8, 8) and kidney.lr == 0.01
    assert params.train_config("spleen", "baseline", 0, Path("p"), Path("r")).patch_size == (8, 32, 32)
    bad = write_params(
        tmp_path,
        {
            "organs": ["kidney"],
            "data": "msd",
            "data_root": "msd",
            "task_folders": {"kidney": "Task50_Kidney"},
            "train": {"depth": 2, "per_organ": {"kidney": {"patch_size": [8, 8, 6]}}},
        },
    )
    assert config_error(bad).startswith(f"{bad}: train.per_organ.kidney.patch_size: needs three sides")
    phantom = load_study_params(
        write_params(tmp_path, {"organs": ["left_spleen"], "task_folders": {"left_spleen": "Task09_Spleen"}})
    )
    assert phantom.phantom_organ("left_spleen") == "spleen"


def test_unknown_network(tmp_path):
    path = write_params(tmp_path, {"networks": ["baseline", "cascade"]})
    assert config_error(path).startswith(f"{path}: networks[1]: unknown value 'cascade'")
    path = write_params(tmp_path, {"train": {"per_network": {"cascade": {"lr": 0.1}}}})
    assert config_error(path).startswith(f"{path}: train.per_network: unknown value 'cascade'")


@pytest.mark.parametrize("study", ["../elsewhere", "a/b", "..", ".hidden", "/tmp/x"])
def test_study_folder_cannot_escape_runs(tmp_path, study):
    path = write_params(tmp_path, {"study": study})
    assert config_error(path).startswith(f"{path}: study: {study!r} would place the study folder")


def test_settings_the_study_makes_per_run_are_refused(tmp_path):
    path = write_params(tmp_path, {"train": {"seed": 3}})
    assert config_error(path) == f"{path}: train.seed: set by the study for each run, not in the parameter file"


def test_train_config_range_errors_name_the_key(tmp_path):
    path = write_params(tmp_path, {"train": {"depth": 3, "per_network": {"baseline": {"patch_size": [12, 16, 16]}}}})
    assert config_error(path).startswith(f"{path}: train.per_network.baseline.patch_size: needs three sides")
    path = write_params(tmp_path, {"gpus_per_run": 2, "train": {"batch_size": 3}})
    assert config_error(path).startswith(f"{path}: train.batch_size: must be a positive multiple of world_size (2)")


@pytest.mark.parametrize(
    "values, key, problem",
    [
        ({"runs": 0}, "runs", "must be at least 1, got 0"),
        ({"runs": 5, "max_runs": 3}, "max_runs", "3 is fewer than runs (5)"),
        ({"organs": ["spleen", "spleen"]}, "organs", "lists a value twice: ['spleen', 'spleen']"),
        ({"phantom": {"shape": [8, 8]}}, "phantom.shape", "expected a list of 3 items, got 2: [8, 8]"),
        (
            {"evaluate": {"fallback": "guess"}},
            "evaluate.fallback",
            "unknown value 'guess'; expected one of whole_image, empty",
        ),
        ({"data": "msd"}, "data_root", "required when data is msd (or pass --data-root)"),
        (
            {"organs": ["spleen"], "prepare": {"per_organ": {"liver": {"channel": 1}}}},
            "prepare.per_organ.liver",
            "not among the study's organs (spleen)",
        ),
        ({"train": {"lr": True}}, "train.lr", "expected float, got bool True"),
    ],
)
def test_bad_values(tmp_path, values, key, problem):
    path = write_params(tmp_path, values)
    assert config_error(path) == f"{path}: {key}: {problem}"


def test_unreadable_files(tmp_path):
    assert config_error(tmp_path / "missing.yaml") == f"{tmp_path / 'missing.yaml'}: parameter file not found"
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [phantom\n")
    assert config_error(bad).startswith(f"{bad}: not valid YAML")
    bad.write_text("- a list\n")
    assert config_error(bad) == f"{bad}: expected a mapping of keys to values at the top level"


def test_overrides_and_defaults(tmp_path):
    path = write_params(
        tmp_path,
        {
            "organs": ["spleen", "prostate"],
            "data": "msd",
            "data_root": "msd",
            "prepare": {"normalisation": "none", "per_organ": {"prostate": {"channel": 1, "normalisation": "zscore"}}},
            "train": {"depth": 2, "patch_size": [16, 16, 16], "per_network": {"baseline": {"patch_size": [8, 32, 32]}}},
        },
    )
    params = load_study_params(path, root=tmp_path, gpus_per_run=2)
    assert params.study == "quick" and params.gpus_per_run == 2 and params.data_root == tmp_path / "msd"
    assert (
        params.prepare.settings("prostate").channel == 1
        and params.prepare.settings("prostate").normalisation == "zscore"
    )
    assert params.prepare.settings("spleen").channel == 0 and params.prepare.settings("spleen").normalisation == "none"
    assert params.train_config("spleen", "baseline", 0, Path("p"), Path("r")).patch_size == (8, 32, 32)
    assert params.train_config("spleen", "organ", 0, Path("p"), Path("r")).patch_size == (16, 16, 16)
    assert load_study_params(path, root=tmp_path, data_root="/data/other").data_root == Path("/data/other")


def test_msd_task_folders_are_checked_when_used(tmp_path):
    params = load_study_params(
        write_params(tmp_path, {"data": "msd", "data_root": "msd", "organs": ["spleen"]}), root=tmp_path
    )
    with pytest.raises(ConfigError, match="Task09_Spleen not found"):
        params.task_dir("spleen")
    (tmp_path / "msd" / "Task09_Spleen").mkdir(parents=True)
    assert params.task_dir("spleen") == tmp_path / "msd" / "Task09_Spleen"


def test_snapshot_round_trip(tmp_path):
    params = load_study_params(SHIPPED / "quick.yaml")
    atomic_write_json(tmp_path / "study_params.json", params.to_dict())
    assert load_study_params(tmp_path / "study_params.json") == params


@dataclass(frozen=True)
class Section:
    """A parameter-file section with per-organ overrides of its own options."""

    epochs: int = 10
    lr: float = 0.1
    per_organ: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class Params:
    train: Section = field(default_factory=Section)


def test_per_organ_overrides_take_only_the_sections_own_options() -> None:
    checker = _StudyChecker("study.yaml")
    params = checker.dataclass({"train": {"epochs": 5, "per_organ": {"liver": {"lr": 1, "epochs": 2}}}}, Params, "")
    assert params == Params(Section(epochs=5, per_organ={"liver": {"lr": 1.0, "epochs": 2}}))
    assert type(params.train.per_organ["liver"]["lr"]) is float
    for overrides, problem in (
        ({"lr": "high"}, "train.per_organ.liver.lr: expected float, got str 'high'"),
        ({"batch": 2}, "train.per_organ.liver.batch: unknown key; known keys: epochs, lr"),
        ({"per_organ": {}}, "train.per_organ.liver.per_organ: unknown key; known keys: epochs, lr"),
    ):
        with pytest.raises(ConfigError) as caught:
            checker.dataclass({"train": {"per_organ": {"liver": overrides}}}, Params, "")
        assert str(caught.value) == f"study.yaml: {problem}"
    with pytest.raises(ConfigError, match=r"^study.yaml: train.per_organ: expected a mapping"):
        checker.dataclass({"train": {"per_organ": ["liver"]}}, Params, "")


def _leaf_lines(path: Path) -> dict[str, str]:
    """Key path (``train.lr``) → its line, for every ``key: value`` line of a parameter file."""
    lines, stack = {}, []
    for line in path.read_text().splitlines():
        content = line.split("#")[0].rstrip()
        if not content.strip() or ":" not in content:
            continue
        indent = len(content) - len(content.lstrip())
        stack = [(i, k) for i, k in stack if i < indent]
        key = content.strip().split(":")[0]
        stack.append((indent, key))
        lines[".".join(k for _, k in stack)] = line
    return lines


def _leaves(values: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(values, dict):
        return {prefix: values}
    return {k: v for key, value in values.items() for k, v in _leaves(value, f"{prefix}{key}.").items()} or {prefix: {}}


def test_hippocampus_study_marks_every_value_that_differs_from_the_paper_with_its_reason():
    paper = {k.rstrip("."): v for k, v in _leaves(yaml.safe_load((SHIPPED / "paper.yaml").read_text())).items()}
    path = SHIPPED / "hippocampus.yaml"
    values = {k.rstrip("."): v for k, v in _leaves(yaml.safe_load(path.read_text())).items()}
    lines = _leaf_lines(path)
    differing = [key for key, value in values.items() if key not in ("study", "data_root") and paper.get(key) != value]
    assert {"prepare.normalisation", "prepare.crop_margin", "train.lr", "task_folders.hippocampus"} <= set(differing)
    unmarked = [key for key in differing if "#" not in lines[key]]
    assert unmarked == [], unmarked
    params = load_study_params(path, data_root="/data")
    assert params.organs == ("hippocampus",) and params.task_folder("hippocampus") == "Task04_Hippocampus"
    assert params.runs >= 2  # a mean ± sd in every cell of Tables 3 and 4


def test_the_train_section_is_typed_settings_with_overrides(tmp_path):
    path = write_params(
        tmp_path,
        {
            "organs": ["spleen", "liver"],
            "train": {
                "lr": 1,
                "depth": 2,
                "per_network": {"baseline": {"lr": 0.5, "depth": 3}},
                "per_organ": {"liver": {"lr": 2}},
            },
        },
    )
    train = load_study_params(path).train
    assert isinstance(train, TrainSettings) and train.lr == 1.0 and type(train.lr) is float
    assert train.patience == TrainSettings().patience  # unset: TrainConfig's default
    assert train.for_run("spleen", "baseline") == TrainSettings(lr=0.5, depth=3)
    assert train.for_run("liver", "baseline") == TrainSettings(lr=2.0, depth=3)  # the organ's override wins
    assert train.for_run("liver", "organ") == TrainSettings(lr=2.0, depth=2)
    assert train.for_run(None, "localiser") == TrainSettings(lr=1.0, depth=2)
    assert type(train.per_organ["liver"]["lr"]) is float
    path = write_params(tmp_path, {"organs": ["liver"], "train": {"per_organ": {"liver": {"seed": 1}}}})
    assert config_error(path).startswith(f"{path}: train.per_organ.liver.seed: unknown key; known keys: ")


def test_the_train_section_is_checked_by_the_record_checker_alone():
    checker = Checker("study.yaml")
    assert checker.dataclass({"lr": 1, "patience": 3}, TrainOptions, "train") == TrainOptions(lr=1.0, patience=3)
    with pytest.raises(ConfigError) as caught:
        checker.dataclass({"world_size": 2}, TrainOptions, "train")
    assert str(caught.value) == "study.yaml: train.world_size: set by the study for each run, not in the parameter file"
