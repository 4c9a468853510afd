"""The study report: the executed analysis notebook as one self-contained HTML file.

``executed/<study>/analysis.ipynb`` is exported with nbconvert's ``HTMLExporter`` without
code cells or prompts, figures embedded as data URIs, to ``reports/<study>/report.html``
(written atomically). ``l2s report STUDY`` renders it again; ``l2s run`` renders it last.
"""

from __future__ import annotations

__all__ = ["render_report"]

from pathlib import Path

from l2s_core.errors import ConfigError, L2SError
from l2s_core.files import atomic_write_text, is_plain_name
from l2s_core.study.layout import Step, StudyPaths


def render_report(study: str, root: str | Path = ".") -> Path:
    """Render a study's executed analysis notebook to ``reports/<study>/report.html``.

    Args:
        study: the study name.
        root: the study root.

    Returns:
        The report file.

    Raises:
        ConfigError: ``study`` is not a plain name (``../../x`` would write outside ``reports/``).
        L2SError: the executed analysis notebook is missing or unreadable.
    """
    import nbformat
    from nbconvert import HTMLExporter

    if not is_plain_name(study):
        raise ConfigError(
            "study", f"{study!r} is not a plain study name (the folder runs/<study>); give one such as 'quick'"
        )
    paths = StudyPaths(Path(root), study)
    notebook_path = paths.executed_notebook(Step("analysis"))
    if not notebook_path.is_file():
        raise L2SError(
            notebook_path,
            f"executed analysis notebook not found; run the study first (l2s run papermill_params/{study}.yaml)",
        )
    try:
        notebook = nbformat.read(notebook_path, as_version=4)
    except (OSError, ValueError) as exc:
        raise L2SError(notebook_path, f"cannot read the executed analysis notebook ({exc})") from None
    exporter = HTMLExporter(
        exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True, embed_images=True
    )
    html, _ = exporter.from_notebook_node(notebook, resources={"metadata": {"name": f"l2s report: {study}"}})
    atomic_write_text(paths.report_path, html)
    return paths.report_path
