import subprocess
import sys
import time
from pathlib import Path

import nbformat
import nibabel as nib
import numpy as np
import pandas as pd
import papermill
import pytest

from l2s_core.data.cache import PreparedTask
from l2s_core.notebook_files import notebooks_dir
from l2s_core.study.execute import KERNEL_NAME, step_request
from l2s_core.study.layout import Step, StudyPaths
from l2s_core.study.params import load_study_params
from l2s_core.study.runner import run_study

SMOKE_PARAMS = Path(__file__).resolve().parents[2] / "papermill_params" / "smoke.yaml"
STEP_OF_NOTEBOOK = {
    "prepare": Step("prepare", "spleen"),
    "train": Step("train", "spleen", "organ", run=0),
    "evaluate": Step("evaluate", "spleen", split="val"),
    "analysis": Step("analysis"),
}


@pytest.mark.parametrize("name", list(STEP_OF_NOTEBOOK))
def test_study_notebooks_are_clean_and_take_the_runner_parameters(name):
    path = notebooks_dir() / f"{name}.ipynb"
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    assert notebook.metadata.kernelspec.name == KERNEL_NAME
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.outputs == [] and cell.execution_count is None for cell in code_cells)
    assert code_cells[0].metadata.get("tags") == ["parameters"]
    request = step_request(
        STEP_OF_NOTEBOOK[name], StudyPaths(Path("/root"), "smoke"), notebooks_dir(), gpus="0", inputs={}
    )
    assert set(request.parameters) <= set(papermill.inspect_notebook(str(path)))


@pytest.mark.slow
def test_smoke_study_runs_end_to_end_through_papermill(tmp_path, l2s_kernel):
    started = time.monotonic()
    status = run_study(SMOKE_PARAMS, root=tmp_path, jobs=2, progress=False)
    assert status.failed == (), status.units
    assert all(unit.state == "done" for unit in status.units.values())
    paths = StudyPaths(tmp_path, "smoke")
    prostate = PreparedTask(paths.prepared_dir("prostate"))
    shapes = [tuple(prostate.case(c).meta.original_shape) for ids in prostate.split.values() for c in ids]
    patch = load_study_params(SMOKE_PARAMS).train_config("prostate", "baseline", 0, Path("."), Path(".")).patch_size
    assert all(z < patch[0] and y > patch[1] and x > patch[2] for z, y, x in shapes)  # thinner than the patch, wider
    assert len(set(shapes)) > 1 and any(y % 2 or x % 2 for _, y, x in shapes)
    for organ in ("prostate", "atrium"):  # the thin organ and the custom-named one, all methods evaluated
        runs = pd.read_csv(paths.evaluation_dir(organ) / "test_runs.csv")
        assert set(runs["method"]) == {"baseline", "two_stage", "gt_localised"}
    train_notebook = nbformat.read(paths.executed_notebook(Step("train", "spleen", "baseline", run=0)), as_version=4)
    assert any(
        "image/png" in output.get("data", {}) for cell in train_notebook.cells for output in cell.get("outputs", [])
    )  # the learning curves
    report = paths.report_path.read_text()
    for heading in ("Table 1", "Table 2", "Table 3", "Table 4", "Figure 2", "Figure 3", "Figure 4", "t-test", "Welch"):
        assert heading in report, heading
    assert report.index(">Findings<") < report.index(">Data and software<") < report.index(">Table 1")  # findings first
    for text in (
        "Scorecard of the paper",
        "Tables 3 and 4: the paper beside this study",
        "0.6491 ± 0.0997",
        "not in the study",
        "no paper value",
        "checks that the pipeline",
        "not testable",
        "supported",
        "Per-case paired tests",
        "p_wilcoxon",
        "p_wilcoxon_holm",
        "ci_low",
        "ci_high",
        "rank_biserial",
        "p_student_holm",
        "p_welch_holm",
        "hedges_g",
        "training-seed variability",
        "variability over patients",
    ):
        assert text in report, text
    assert report.count("data:image/png;base64,") >= 3  # Figures 2-4 embedded
    assert ">atrium<" in report  # the custom organ name in the tables
    assert "<pre" not in report or "import " not in report  # code hidden
    print(f"smoke study: {time.monotonic() - started:.0f} s")  # a figure to watch, not an assertion
    _export_and_predict(paths, tmp_path)


def _export_and_predict(paths: StudyPaths, tmp_path: Path) -> None:
    """The study's custom-named organ leaves as a model folder and segments a scan on its own grid."""
    model_dir, out_dir = tmp_path / "model_atrium", tmp_path / "predicted"
    cli = [sys.executable, "-m", "l2s_core.cli"]
    subprocess.run(
        [*cli, "export", str(paths.study_dir), "--organ", "atrium", "--out", str(model_dir)],
        check=True,
        capture_output=True,
    )
    scan = next((paths.phantom_dir / "Task02_Heart" / "imagesTr").glob("*.nii.gz"))
    result = subprocess.run(
        [*cli, "predict", str(model_dir), str(scan), "--out", str(out_dir)], capture_output=True, text=True
    )
    assert result.returncode == 0 and "Traceback" not in result.stdout + result.stderr, result.stderr
    mask, source = nib.load(next(out_dir.glob("*.nii.gz"))), nib.load(scan)
    assert mask.shape == source.shape and np.allclose(mask.affine, source.affine)
    assert len(pd.read_csv(out_dir / "predictions.csv")) == 1
