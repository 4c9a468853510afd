import dataclasses
import subprocess
import sys

import pytest
from msd_builder import write_small_task
from process_tools import assert_one_line_error, assert_output_is_one_error_line

from l2s_core.cli import build_parser, main
from l2s_core.data.prepared_layout import PrepareSettings
from l2s_core.record_flags import attribute_docs
from l2s_core.study.params import PhantomOptions
from l2s_core.vocabulary import PAPER_ORGANS, PHANTOM_PROFILES


def test_prepare_command(tmp_path, capsys):
    small_task = write_small_task(tmp_path / "Task99_Box")
    assert main(["prepare", str(small_task), "--out", str(tmp_path / "prep"), "--workers", "1"]) == 0
    assert "5 prepared" in capsys.readouterr().out
    assert main(["prepare", str(small_task), "--out", str(tmp_path / "prep"), "--workers", "1"]) == 0
    assert "5 already prepared" in capsys.readouterr().out


def test_bad_input_is_one_line_without_traceback(tmp_path):
    (tmp_path / "Task").mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "l2s_core.cli", "prepare", str(tmp_path / "Task"), "--out", str(tmp_path / "prep")],
        capture_output=True,
        text=True,
    )
    assert_one_line_error(result)
    assert result.stderr.strip().splitlines() == [
        f"l2s: error: {tmp_path / 'Task' / 'dataset.json'}: dataset.json not found; "
        "an MSD task folder needs dataset.json, imagesTr/ and labelsTr/"
    ]


def test_full_disk_is_one_line(tmp_path, capsys, monkeypatch):
    import errno

    import l2s_core.data.prepare as prepare_module

    def disk_full(path, array):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(prepare_module, "atomic_save_npy", disk_full)
    task = write_small_task(tmp_path / "Task99_Box")
    assert main(["prepare", str(task), "--out", str(tmp_path / "prep"), "--workers", "1"]) == 2
    captured = capsys.readouterr()
    assert_output_is_one_error_line(
        captured.out,
        captured.err,
        "l2s: error: ",
        "full_image.npy: No space left on device; nothing partial was written",
    )


def test_phantom_command_defaults_to_the_paper_organs_and_offers_every_profile(tmp_path):
    parser = build_parser()
    assert parser.parse_args(["phantom", "--out", str(tmp_path)]).organs == list(PAPER_ORGANS)
    for profile in PHANTOM_PROFILES:
        assert parser.parse_args(["phantom", "--out", str(tmp_path), "--profile", profile]).profile == profile


def help_text(capsys, command):
    """``l2s COMMAND --help`` with its lines joined (argparse wraps the descriptions)."""
    with pytest.raises(SystemExit):
        main([command, "--help"])
    return " ".join(capsys.readouterr().out.split())


def test_prepare_help_lists_every_preparation_setting_with_its_description(capsys):
    text = help_text(capsys, "prepare")
    for f in dataclasses.fields(PrepareSettings):
        flag = "--seed" if f.name == "split_seed" else "--" + f.name.replace("_", "-")
        assert f" {flag} " in text, flag
        description = attribute_docs(PrepareSettings)[f.name].rstrip(".")
        assert "".join(description.split()) in "".join(text.split()), f.name  # argparse wraps at any space or dash
    assert "--lowres-divisors Z Y X" in text and "(default: 3 2 2)" in text


def test_phantom_help_lists_every_phantom_option_but_the_per_organ_overrides(capsys):
    text = help_text(capsys, "phantom")
    for f in dataclasses.fields(PhantomOptions):
        flag = "--cases" if f.name == "n_cases" else "--" + f.name.replace("_", "-")
        assert (f" {flag} " in text) == (f.name != "per_organ"), flag
    assert "--shape Z Y X" in text and "(default: 32 96 96)" in text


def test_phantom_command_writes_msd_tasks(tmp_path, capsys):
    assert (
        main(["phantom", "--out", str(tmp_path), "--organs", "heart", "--cases", "2", "--shape", "8", "32", "32"]) == 0
    )
    assert "heart:" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "Task02_Heart" / "imagesTr").iterdir()) == [
        "heart_001.nii.gz",
        "heart_002.nii.gz",
    ]
    assert main(["phantom", "--out", str(tmp_path), "--organs", "kidney"]) == 2
    captured = capsys.readouterr()
    assert_output_is_one_error_line(captured.out, captured.err, "l2s: error: ", "kidney")


def test_running_out_of_memory_is_one_line(tmp_path, capsys, monkeypatch):
    import numpy as np

    import l2s_core.data.prepare as prepare_module

    def no_memory(path, array):
        np.empty(2**62, dtype=np.uint8)  # numpy's _ArrayMemoryError, a MemoryError

    monkeypatch.setattr(prepare_module, "atomic_save_npy", no_memory)
    task = write_small_task(tmp_path / "Task99_Box")
    assert main(["prepare", str(task), "--out", str(tmp_path / "prep"), "--workers", "1"]) == 2
    captured = capsys.readouterr()
    assert_output_is_one_error_line(captured.out, captured.err, "l2s: error: l2s prepare: ran out of memory (")


def test_json_or_yaml_nested_too_deeply_is_one_line(tmp_path, capsys):
    """Nesting deep enough for Python's parsers to raise RecursionError was a traceback."""
    from cli_runner import assert_one_line_error as assert_cli_one_line_error

    task = write_small_task(tmp_path / "Task99_Box")
    (task / "dataset.json").write_text("[" * 200_000 + "]" * 200_000)
    assert_cli_one_line_error(
        capsys, "prepare", task, "--out", tmp_path / "prep", names=task / "dataset.json", says="nested too deeply"
    )
    params = tmp_path / "deep.yaml"
    params.write_text("study: " + "[" * 200_000 + "]" * 200_000 + "\n")
    assert_cli_one_line_error(capsys, "run", params, "--dry-run", names=params, says="nested too deeply")


def test_training_config_or_l2s_json_nested_too_deeply_is_one_line(tmp_path):
    import pytest

    from l2s_core.errors import ConfigError, InputDataError
    from l2s_core.files import read_json
    from l2s_core.train.config import TrainConfig

    deep = tmp_path / "deep.json"
    deep.write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(InputDataError, match="nested too deeply"):
        read_json(deep)
    with pytest.raises(ConfigError, match="nested too deeply"):
        TrainConfig.load(deep)
