import subprocess
import sys

from msd_builder import write_small_task

from l2s_core.cli import main


def test_prepare_command(tmp_path, capsys):
    small_task = write_small_task(tmp_path / "Task99_Box")
    assert main(["prepare", str(small_task), "--out", str(tmp_path / "prep"), "--workers", "1"]) == 0
    assert "5 prepared" in capsys.readouterr().out
    assert main(["prepare", str(small_task), "--out", str(tmp_path / "prep"), "--workers", "1"]) == 0
    assert "5 already prepared" in capsys.readouterr().out


def test_bad_input_is_one_line_without_traceback(tmp_path):
    (tmp_path / "Task").mkdir()
    result = subprocess.run([sys.executable, "-m", "l2s_core.cli", "prepare", str(tmp_path / "Task"), "--out",
                             str(tmp_path / "prep")], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"l2s: error: {tmp_path / 'Task' / 'dataset.json'}: dataset.json not found; "
                                                  "an MSD task folder needs dataset.json, imagesTr/ and labelsTr/"]
