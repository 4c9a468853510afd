"""``l2s export``: the model folder, its card and the command (the refusal of altered folders is in
``test_model_folder.py``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import torch
from cli_runner import assert_one_line_error, run_l2s

from l2s_core.deploy.export import export_model
from l2s_core.deploy.model_folder import CARD_FILE, ModelCard, open_model_folder, sha256_of
from l2s_core.files import atomic_write_json
from l2s_core.study.params import EvaluateOptions, StudyParams


def test_model_folder_holds_plain_state_dicts_with_their_sha256(model_dir: Path) -> None:
    card = open_model_folder(model_dir)
    assert sorted((n.network, n.run) for n in card.networks) == [
        ("baseline", 0),
        ("localiser", 0),
        ("localiser", 1),
        ("organ", 0),
        ("organ", 1),
    ]
    for entry in card.networks:
        state = torch.load(model_dir / entry.file, weights_only=True)
        assert all(isinstance(v, torch.Tensor) for v in state.values())
        assert sha256_of(model_dir / entry.file) == entry.sha256
        assert entry.hparams["depth"] == 1 and entry.patch_size == (8, 16, 16)


def test_card_records_preprocessing_data_versions_and_round_trips(model_dir: Path) -> None:
    raw = json.loads((model_dir / CARD_FILE).read_text())
    card = ModelCard.from_dict(raw)
    assert ModelCard.from_dict(json.loads(json.dumps(card.to_dict()))) == card
    assert (card.organ, card.modality, card.n_channels, card.channel) == ("spleen", "CT", 1, 0)
    assert (card.normalisation, card.crop_margin, card.lowres_divisors) == ("zscore", 4, (3, 2, 2))
    assert card.training_data.cases == {"train": 6, "val": 2, "test": 2}
    assert {"l2s", "torch", "python", "numpy", "monai"} <= set(card.software)
    readme = (model_dir / "README.md").read_text()
    assert "# l2s model: spleen" in readme and "test Dice" in readme


def test_pair_dice_comes_from_the_study_evaluation(model_dir: Path, study_dir: Path) -> None:
    card = open_model_folder(model_dir)
    for split in ("val", "test"):
        runs = pd.read_csv(study_dir / "spleen" / "evaluation" / f"{split}_runs.csv")
        for pair in card.pairs:
            row = runs[(runs["method"] == pair.method) & (runs["run"] == pair.index)]
            assert pair.dice[split] == float(row["pooled_dice"].iloc[0])
    assert [(p.method, p.runs) for p in card.pairs] == [
        ("two_stage", {"localiser": 0, "organ": 0}),
        ("two_stage", {"localiser": 1, "organ": 1}),
        ("baseline", {"baseline": 0}),
    ]


def test_export_command(study_dir: Path, tmp_path: Path, capsys) -> None:
    code, out, _ = run_l2s(capsys, "export", study_dir, "--organ", "spleen", "--out", tmp_path / "m")
    assert code == 0 and "5 networks" in out
    assert_one_line_error(
        capsys,
        "export",
        study_dir,
        "--organ",
        "spleen",
        "--out",
        tmp_path / "m",
        names=tmp_path / "m",
        says="already exists",
    )
    assert_one_line_error(
        capsys,
        "export",
        study_dir,
        "--organ",
        "liver",
        "--out",
        tmp_path / "n",
        names=study_dir / "liver",
        says="organs: spleen",
    )


def test_card_carries_the_studys_evaluation_localisation(study_dir: Path, tmp_path: Path) -> None:
    card = export_model(study_dir, "spleen", tmp_path / "plain")
    assert (card.fallback, card.box_mapping) == ("whole_image", "scale")  # no parameter snapshot: the defaults
    copy = tmp_path / "runs" / "tiny"
    shutil.copytree(study_dir, copy)
    evaluate = EvaluateOptions(fallback="empty", box_mapping="upsample_nearest")
    atomic_write_json(
        copy / "study_params.json", StudyParams(data="phantom", study="tiny", evaluate=evaluate).to_dict()
    )
    card = export_model(copy, "spleen", tmp_path / "released")
    assert (card.fallback, card.box_mapping) == ("empty", "upsample_nearest")  # l2s predict localises as evaluation


def test_staging_folders_of_a_killed_export_are_removed(study_dir: Path, tmp_path: Path) -> None:
    """A killed ``l2s export`` left ``.<out>.partial-*`` (full weights) forever; the next export to
    that folder removes those of processes no longer running, and keeps the others."""
    import subprocess
    import sys

    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        names = [".m.partial-999999999-0a1b2c3d", f".m.partial-{sleeper.pid}-0a1b2c3d", ".n.partial-999999999-0a1b2c3d"]
        for name in names:
            (tmp_path / name / "weights").mkdir(parents=True)
            (tmp_path / name / "weights" / "organ_00.pt").write_bytes(b"full weights")
        export_model(study_dir, "spleen", tmp_path / "m")
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["m", *names[1:]])
    finally:
        sleeper.kill()
        sleeper.wait()
