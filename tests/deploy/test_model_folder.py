"""The model folder's card and checks (``l2s_core.deploy.model_folder``): sha256 of a file, the card
round trip through JSON, and the refusal of missing, incomplete, altered or other-version folders
(with one line through ``l2s predict``)."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from cli_runner import assert_one_line_error

from l2s_core.deploy.model_folder import (
    CARD_FILE,
    ModelCard,
    NetworkEntry,
    PairEntry,
    TrainingData,
    open_model_folder,
    sha256_of,
)
from l2s_core.errors import FormatVersionError, InputDataError, ModelFolderError
from l2s_core.files import FORMAT_VERSION


def _entry(network: str, run: int, file: str, sha256: str = "0" * 64) -> NetworkEntry:
    return NetworkEntry(
        network=network,
        run=run,
        file=file,
        sha256=sha256,
        network_class="UNet3D",
        hparams={"depth": 1, "base_channels": 4},
        patch_size=(8, 16, 16),
        amp=False,
        best_val_dice=None if run else 0.5,
    )


def _card(*networks: NetworkEntry) -> ModelCard:
    """A card of the given networks, with a CT z-score preprocessing and one two-stage pair."""
    return ModelCard(
        organ="spleen",
        modality="CT",
        n_channels=1,
        channel=0,
        organ_labels=(1, 3),
        labels={"0": "background", "1": "spleen"},
        normalisation="zscore",
        ct_stats=None,
        crop_margin=4,
        lowres_divisors=(3, 2, 2),
        networks=networks,
        pairs=(PairEntry("two_stage", 0, {"localiser": 0, "organ": 0}, {"val": 0.8, "test": None}),),
        training_data=TrainingData(cases={"train": 6, "val": 2, "test": 2}),
        software={"l2s": "0.1.0"},
        created="2025-01-01T00:00:00+00:00",
    )


def _folder(root: Path, weights: dict[str, bytes]) -> Path:
    """A model folder whose card lists ``weights`` (file relative to the folder → bytes) with their sha256."""
    root.mkdir()
    entries = []
    for i, (file, data) in enumerate(weights.items()):
        (root / file).parent.mkdir(parents=True, exist_ok=True)
        (root / file).write_bytes(data)
        entries.append(_entry("organ", i, file, hashlib.sha256(data).hexdigest()))
    card = _card(*entries)
    (root / CARD_FILE).write_text(json.dumps({"format_version": FORMAT_VERSION, **card.to_dict()}))
    return root


@pytest.mark.parametrize("size", [0, 5, (1 << 20) + 3], ids=["empty", "small", "over_one_block"])
def test_sha256_of_is_hashlibs_over_the_whole_file(tmp_path: Path, size: int) -> None:
    data = bytes(i % 251 for i in range(size))
    (tmp_path / "f").write_bytes(data)
    assert sha256_of(tmp_path / "f") == hashlib.sha256(data).hexdigest()


def test_card_round_trips_through_json_with_tuples_restored() -> None:
    card = _card(_entry("organ", 1, "weights/organ_01.pt"), _entry("localiser", 0, "weights/localiser_00.pt"))
    raw = json.loads(json.dumps({"format_version": FORMAT_VERSION, **card.to_dict()}))
    assert isinstance(raw["lowres_divisors"], list) and isinstance(raw["networks"][0]["patch_size"], list)
    back = ModelCard.from_dict(raw)  # format_version is ignored here
    assert back == card
    assert back.organ_labels == (1, 3) and back.lowres_divisors == (3, 2, 2)
    assert back.networks[0].patch_size == (8, 16, 16) and back.pairs[0].dice == {"val": 0.8, "test": None}
    assert ModelCard.from_dict({**raw, "organ_labels": None}).organ_labels is None


def test_open_model_folder_returns_the_card_of_matching_weights(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "m", {"weights/organ_00.pt": b"first", "weights/organ_01.pt": b"second"})
    card = open_model_folder(str(folder))
    assert [e.file for e in card.networks] == ["weights/organ_00.pt", "weights/organ_01.pt"]
    assert card.networks[1].sha256 == hashlib.sha256(b"second").hexdigest()


def test_open_model_folder_refuses_what_it_cannot_use(tmp_path: Path) -> None:
    with pytest.raises(InputDataError, match="model folder not found"):
        open_model_folder(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputDataError, match="file not found"):
        open_model_folder(tmp_path / "empty")
    folder = _folder(tmp_path / "m", {"weights/organ_00.pt": b"weights"})
    raw = json.loads((folder / CARD_FILE).read_text())
    (folder / CARD_FILE).write_text(json.dumps({k: v for k, v in raw.items() if k != "networks"}))
    with pytest.raises(ModelFolderError, match="model.json: networks: required key missing"):
        open_model_folder(folder)
    (folder / CARD_FILE).write_text(json.dumps({**raw, "format_version": FORMAT_VERSION + 1}))
    with pytest.raises(FormatVersionError, match=f"format_version {FORMAT_VERSION + 1}"):
        open_model_folder(folder)
    (folder / CARD_FILE).write_text(json.dumps(raw))
    (folder / "weights" / "organ_00.pt").write_bytes(b"weightz")
    with pytest.raises(ModelFolderError, match="sha256 differs"):
        open_model_folder(folder)
    (folder / "weights" / "organ_00.pt").unlink()
    with pytest.raises(ModelFolderError, match="missing"):
        open_model_folder(folder)


def test_tampered_weights_are_refused(model_dir: Path, tmp_path: Path, capsys) -> None:
    copy = shutil.copytree(model_dir, tmp_path / "model")
    weights = copy / "weights" / "organ_01.pt"
    state = torch.load(weights, weights_only=True)
    next(iter(state.values())).add_(1.0)
    torch.save(state, weights)
    assert_one_line_error(
        capsys, "predict", copy, "x.nii.gz", "--out", tmp_path / "out", names=weights, says="sha256 differs"
    )
    weights.unlink()
    assert_one_line_error(capsys, "predict", copy, "x.nii.gz", "--out", tmp_path / "out", names=weights, says="missing")


def test_folder_from_another_format_version_is_refused(model_dir: Path, tmp_path: Path, capsys) -> None:
    copy = shutil.copytree(model_dir, tmp_path / "model")
    card = json.loads((copy / CARD_FILE).read_text())
    (copy / CARD_FILE).write_text(json.dumps({**card, "format_version": 99}))
    assert_one_line_error(
        capsys, "predict", copy, "x.nii.gz", "--out", tmp_path / "out", names=copy / CARD_FILE, says="format_version 99"
    )


def _with_card(folder: Path, **changes) -> Path:
    raw = json.loads((folder / CARD_FILE).read_text())
    (folder / CARD_FILE).write_text(json.dumps({**raw, **changes}))
    return folder


@pytest.mark.parametrize("outside", ["../secret.pt", "/etc/hostname", "/nonexistent/x.pt", "weights/link.pt"])
def test_weight_file_outside_the_folder_is_refused_without_saying_whether_it_exists(
    tmp_path: Path, outside: str
) -> None:
    """A card from a stranger named files outside its folder, and the errors told whether a path
    on the machine exists (missing, or sha256 differs)."""
    folder = _folder(tmp_path / "m", {"weights/organ_00.pt": b"weights"})
    (tmp_path / "secret.pt").write_bytes(b"secret")
    (folder / "weights" / "link.pt").symlink_to(tmp_path / "secret.pt")
    raw = json.loads((folder / CARD_FILE).read_text())
    _with_card(folder, networks=[{**raw["networks"][0], "file": outside}])
    with pytest.raises(ModelFolderError) as error:
        open_model_folder(folder)
    assert str(error.value) == (
        f"{folder / CARD_FILE}: networks[0] names the weight file {outside!r}, which lies outside the model "
        "folder; a model folder must hold its own files"
    )


@pytest.mark.parametrize(
    "changes, says",
    [
        ({"crop_margin": 2000}, "crop_margin is 2000, outside 0..256"),
        ({"crop_margin": -1}, "crop_margin is -1"),
        ({"lowres_divisors": [3, 0, 2]}, "lowres_divisors is 0"),
        ({"channel": 3}, "channel is 3, outside 0..0"),
        ({"organ_labels": [1, 256]}, "organ_labels is 256"),
        ({"ct_stats": {"low": -100.0, "high": 300.0, "mean": float("nan"), "sd": 50.0}}, "ct_stats.mean is nan"),
        ({"networks.patch_size": [64, 4096, 4096]}, "networks[0].patch_size is 4096"),
        ({"networks.hparams": {"depth": 12, "base_channels": 4}}, "networks[0].hparams.depth is 12, outside 1..8"),
        ({"networks.hparams": {"depth": 6, "base_channels": 512}}, "hparams base_channels × 2 ** depth is 32768"),
    ],
)
def test_card_numbers_out_of_range_are_refused_when_read(tmp_path: Path, changes: dict, says: str) -> None:
    """``crop_margin: 2000`` asked 242 GiB at prediction; every number predict allocates by is
    range-checked when the card is read."""
    folder = _folder(tmp_path / "m", {"weights/organ_00.pt": b"weights"})
    raw = json.loads((folder / CARD_FILE).read_text())
    network = {**raw["networks"][0], **{k.split(".")[1]: v for k, v in changes.items() if k.startswith("networks.")}}
    _with_card(folder, networks=[network], **{k: v for k, v in changes.items() if not k.startswith("networks.")})
    with pytest.raises(ModelFolderError, match=re.escape(f"{folder / CARD_FILE}: ") + ".*" + re.escape(says)):
        open_model_folder(folder)


def test_weights_holding_other_objects_are_one_line_without_advising_unsafe_loading(tmp_path: Path, capsys) -> None:
    """``torch.load(weights_only=True)`` refuses a file holding other objects; its message advised
    ``weights_only=False`` in a traceback."""
    import io

    from l2s_core.deploy.loaded_model import load_model_folder

    buffer = io.BytesIO()
    torch.save({"weight": Path("not a tensor")}, buffer)
    folder = _folder(tmp_path / "m", {"weights/organ_00.pt": buffer.getvalue()})
    with pytest.raises(ModelFolderError) as error:
        load_model_folder(folder, "box")
    message = str(error.value)
    assert message.startswith(f"{folder / 'weights' / 'organ_00.pt'}: holds objects other than tensors")
    assert "weights_only" not in message and "\n" not in message
