"""The command line ``python -m l2s_core.train CONFIG.json``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from process_tools import assert_output_is_one_error_line

from l2s_core.train.__main__ import main


def test_command_line_reports_a_bad_config(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"prepared_dir": "p", "run_dir": "r", "network": "organ", "epochs": 3}))
    assert main([str(path)]) == 2
    captured = capsys.readouterr()
    assert_output_is_one_error_line(captured.out, captured.err, "error: ", "config.json: epochs: unknown key")
