"""Running ``l2s`` in-process for the tests, with its output captured."""

from __future__ import annotations

import pytest

from l2s_core.cli import main


def run_l2s(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    """``(exit status, stdout, stderr)`` of ``l2s args...``."""
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(capsys: pytest.CaptureFixture[str], *args: object, names: object, says: str) -> str:
    """``l2s args...`` fails with status 2 and one line naming ``names`` and saying ``says``, no traceback."""
    code, out, err = run_l2s(capsys, *args)
    assert code == 2, (out, err)
    assert "Traceback" not in out + err
    lines = [line.split("\r")[-1] for line in err.strip().splitlines()]
    lines = [line for line in lines if not line.endswith("/s]")]  # a progress bar closed by the error
    assert len(lines) == 1 and lines[0].startswith("l2s: error: "), err
    assert str(names) in lines[0] and says in lines[0], lines[0]
    return lines[0]
