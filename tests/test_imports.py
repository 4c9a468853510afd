"""Imports follow the data flow: reading tables, plans and parameters never loads torch."""

import subprocess
import sys

import pytest

#: Modules below the networks: vocabulary, file contracts, parameters, plans, tables, plots, the CLI.
TORCH_FREE = [
    "l2s_core.vocabulary",
    "l2s_core.records",
    "l2s_core.data.prepared_layout",
    "l2s_core.data.cache",
    "l2s_core.train.run_files",
    "l2s_core.train.config",
    "l2s_core.evaluation_tables",
    "l2s_core.fidelity",
    "l2s_core.stats",
    "l2s_core.paper_values",
    "l2s_core.study_results",
    "l2s_core.analysis",
    "l2s_core.findings",
    "l2s_core.plots",
    "l2s_core.study.params",
    "l2s_core.study.layout",
    "l2s_core.study.plan",
    "l2s_core.study.step_records",
    "l2s_core.study.status",
    "l2s_core.study.execute",
    "l2s_core.study.runner",
    "l2s_core.study.report",
    "l2s_core.data.prepare",
    "l2s_core.data.task_statistics",
    "l2s_core.cli",
]


@pytest.mark.parametrize("module", TORCH_FREE)
def test_module_loads_no_torch(module):
    code = (
        f"import sys\nimport {module}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'monai')"
        " or m in ('l2s_core.train.loop', 'l2s_core.train.launch', 'l2s_core.evaluate', 'l2s_core.infer',"
        " 'l2s_core.model')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]", result.stdout
