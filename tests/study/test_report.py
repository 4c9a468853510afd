"""The HTML report: the executed analysis notebook without its code, figures embedded."""

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from l2s_core.errors import L2SError
from l2s_core.study.layout import Step, StudyPaths
from l2s_core.study.report import render_report


def test_report_hides_code_and_keeps_outputs(tmp_path):
    paths = StudyPaths(tmp_path, "tiny")
    with pytest.raises(L2SError, match="executed analysis notebook not found"):
        render_report("tiny", tmp_path)
    cell = new_code_cell("secret_code = 42\nprint('Table 9 is here')")
    cell.outputs = [new_output("stream", name="stdout", text="Table 9 is here\n")]
    notebook = new_notebook(cells=[new_markdown_cell("# Findings"), cell])
    path = paths.executed_notebook(Step("analysis"))
    path.parent.mkdir(parents=True)
    nbformat.write(notebook, path)
    report = render_report("tiny", tmp_path)
    html = report.read_text()
    assert report == paths.report_path and "Findings" in html and "Table 9 is here" in html
    assert "secret_code" not in html


@pytest.mark.parametrize("study", ["../../x", "..", "a/b", ""])
def test_a_study_name_that_is_not_plain_is_refused(tmp_path, capsys, study):
    """``l2s report ../../x`` wrote outside ``reports/``."""
    from cli_runner import assert_one_line_error

    (tmp_path / "root").mkdir()
    assert_one_line_error(
        capsys, "report", study, "--root", tmp_path / "root", names="study", says="is not a plain study name"
    )
    assert [p.name for p in tmp_path.iterdir()] == ["root"] and not any((tmp_path / "root").iterdir())
