"""What ``explore.ipynb`` calls (``l2s_core.viewer.explorer``): a study's organ or scans with a
model folder, the parameter checks, and the notebook run headless in both modes."""

from __future__ import annotations

from pathlib import Path

import nbformat
import papermill
import pytest
from msd_builder import CUBE_ORGAN as ORGAN
from msd_builder import CUBE_SHAPE as SHAPE

from l2s_core.data.prepare import prepare_task
from l2s_core.errors import ConfigError, InputDataError
from l2s_core.viewer.explorer import open_explorer, scan_explorer

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "explore.ipynb"


def _execute_explore(tmp_path: Path, kernel: str, **parameters: str) -> tuple[list, str]:
    """``explore.ipynb`` executed headless in ``tmp_path`` with ``parameters``: its cells and what
    its code cells printed."""
    executed = tmp_path / "explore.ipynb"
    papermill.execute_notebook(
        NOTEBOOK, executed, parameters=parameters, kernel_name=kernel, cwd=str(tmp_path), progress_bar=False
    )
    cells = nbformat.read(executed, as_version=4).cells
    printed = "".join(o.get("text", "") for cell in cells if cell.cell_type == "code" for o in cell.outputs)
    return cells, printed


def test_scan_mode_errors(model_dir: Path, scan: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="give both"):
        open_explorer(model_dir=model_dir)
    with pytest.raises(ConfigError, match="give both"):
        open_explorer(scan=scan)
    with pytest.raises(ConfigError, match="study folder"):
        open_explorer()
    with pytest.raises(InputDataError, match="no such NIfTI file"):
        open_explorer(model_dir=model_dir, scan=tmp_path / "missing.nii.gz")
    with pytest.raises(ConfigError, match="5 is not a position"):
        scan_explorer(model_dir, scan, runs=5)


@pytest.mark.slow
def test_explore_notebook_runs_headless_without_networks(make_task, tmp_path, l2s_kernel):
    study_dir = tmp_path / "runs" / "tiny"
    prepare_task(
        make_task(n_cases=5, shape=SHAPE, organ=ORGAN), study_dir / "cube" / "prepared", progress=False, workers=1
    )
    source = NOTEBOOK.read_text()
    assert '"outputs": []' in source and '"execution_count": null' in source  # committed without outputs
    cells, printed = _execute_explore(tmp_path, l2s_kernel, study_dir=str(study_dir), organ="cube")
    assert "no converged network yet, only the ground truth is shown" in printed
    widget_outputs = [o for o in cells[-1].outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert widget_outputs


@pytest.mark.slow
def test_explore_notebook_on_a_model_folder_and_a_scan(
    model_dir: Path, scan: Path, tmp_path: Path, l2s_kernel: str
) -> None:
    cells, printed = _execute_explore(tmp_path, l2s_kernel, model_dir=str(model_dir), scan=str(scan))
    assert "spleen on CT" in printed
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in cells[-1].outputs)
