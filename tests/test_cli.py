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


def test_full_disk_is_one_line(tmp_path, capsys, monkeypatch):
    import errno

    import l2s_core.data.prepare as prepare_module

    def disk_full(path, array):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(prepare_module, "atomic_save_npy", disk_full)
    task = write_small_task(tmp_path / "Task99_Box")
    assert main(["prepare", str(task), "--out", str(tmp_path / "prep"), "--workers", "1"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("l2s:")]  # (progress bar aside)
    assert len(err) == 1 and "No space left on device; nothing partial was written" in err[0]
    assert "full_image.npy" in err[0]


def test_phantom_command_writes_msd_tasks(tmp_path, capsys):
    assert main(["phantom", "--out", str(tmp_path), "--organs", "heart", "--cases", "2", "--shape", "8", "32", "32"]) == 0
    assert "heart:" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "Task02_Heart" / "imagesTr").iterdir()) == ["heart_001.nii.gz", "heart_002.nii.gz"]
    assert main(["phantom", "--out", str(tmp_path), "--organs", "kidney"]) == 2
    assert "kidney" in capsys.readouterr().err
