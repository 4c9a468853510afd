"""``predictions.csv`` of a predict output folder (``l2s_core.deploy.prediction_table``): each row
joins the table atomically, keeping the earlier rows and replacing those of the same mask; one
writer at a time, a second refused in one line naming the holder's pid, the lock freed when its
holder dies."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from process_tools import environment, kill_and_reap, wait_stopped

from l2s_core.deploy.prediction_table import LOCK_FILE, TABLE_FILE, output_lock, record_row
from l2s_core.errors import ConfigError, InputDataError

COLUMNS = ("scan", "mask", "volume_ml", "fallback")


def _row(mask: str, volume: str, fallback: str = "none") -> dict[str, str]:
    return {"scan": f"in/{mask}", "mask": mask, "volume_ml": volume, "fallback": fallback}


def _holder(out: Path, script: str, stop_at: str | None = None) -> subprocess.Popen:
    """A process that takes ``out``'s lock and runs ``script`` under it (``out``, ``COLUMNS`` and
    ``row`` in scope), held (SIGSTOPped) at ``stop_at`` or at the end of the script."""
    code = (
        "import os, signal, sys\nfrom pathlib import Path\n"
        "from l2s_core.deploy.prediction_table import output_lock, record_row\n"
        f"out, COLUMNS = Path(sys.argv[1]), {COLUMNS!r}\n"
        "row = {'scan': 'in/c.nii.gz', 'mask': 'c.nii.gz', 'volume_ml': '3.0', 'fallback': 'none'}\n"
        "with output_lock(out):\n"
        f"    {script}\n"
        "    os.kill(os.getpid(), signal.SIGSTOP)\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code, str(out)],
        env=environment(stop_at),
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    wait_stopped(process)
    return process


def test_rows_are_added_keeping_earlier_ones_verbatim_and_a_masks_row_is_replaced(tmp_path: Path) -> None:
    record_row(tmp_path, _row("a.nii.gz", "1.50"), COLUMNS)
    assert (tmp_path / TABLE_FILE).read_text() == "scan,mask,volume_ml,fallback\nin/a.nii.gz,a.nii.gz,1.50,none\n"
    record_row(tmp_path, _row("b.nii.gz", "", "whole_image"), COLUMNS)
    assert (tmp_path / TABLE_FILE).read_text().splitlines()[1] == "in/a.nii.gz,a.nii.gz,1.50,none"  # as written
    record_row(tmp_path, _row("a.nii.gz", "2.25"), COLUMNS)  # a later run's mask of the same name
    assert (tmp_path / TABLE_FILE).read_text().splitlines() == [
        "scan,mask,volume_ml,fallback",
        "in/b.nii.gz,b.nii.gz,,whole_image",  # kept as written: the empty cell stays empty, not NaN
        "in/a.nii.gz,a.nii.gz,2.25,none",  # replaced: one row per mask
    ]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("scan,mask\nin/a.nii.gz,a.nii.gz\n", "columns ['scan', 'mask'], expected"),
        ('scan,mask,volume_ml,fallback\n"unclosed\n', "not a predictions table"),
        ("", "not a predictions table"),
    ],
)
def test_a_table_of_other_columns_or_unreadable_is_refused_in_one_line_and_kept(
    tmp_path: Path, text: str, says: str
) -> None:
    table = tmp_path / TABLE_FILE
    table.write_text(text)
    with pytest.raises(InputDataError) as raised:
        record_row(tmp_path, _row("a.nii.gz", "1.0"), COLUMNS)
    assert str(raised.value).startswith(f"{table}: ") and says in str(raised.value)
    assert "\n" not in str(raised.value)
    assert table.read_text() == text


def test_a_writer_killed_while_writing_the_table_leaves_the_earlier_rows(tmp_path: Path) -> None:
    """The new table is written beside the old one and renamed into place: a kill in the middle
    of the write leaves the table as it was (and its lock free for the next run)."""
    record_row(tmp_path, _row("a.nii.gz", "1.0"), COLUMNS)
    before = (tmp_path / TABLE_FILE).read_text()
    writer = _holder(tmp_path, "record_row(out, row, COLUMNS)", stop_at=f"writing {TABLE_FILE}")
    kill_and_reap(writer)
    assert (tmp_path / TABLE_FILE).read_text() == before
    with output_lock(tmp_path):
        record_row(tmp_path, _row("b.nii.gz", "2.0"), COLUMNS)
    assert (tmp_path / TABLE_FILE).read_text() == before + "in/b.nii.gz,b.nii.gz,2.0,none\n"


def test_a_second_writer_is_refused_naming_the_holders_pid_until_the_holder_dies(tmp_path: Path) -> None:
    holder = _holder(tmp_path, "pass")
    try:
        with pytest.raises(ConfigError) as raised, output_lock(tmp_path):
            pytest.fail("the lock of a live holder was taken")
        message = str(raised.value)
        assert message.startswith(f"{tmp_path}: another `l2s predict` (pid {holder.pid} on ")
        assert "choose another --out" in message and "\n" not in message
    finally:
        kill_and_reap(holder)
    with output_lock(tmp_path):  # the operating system freed the dead holder's lock
        assert (tmp_path / LOCK_FILE).is_file()
