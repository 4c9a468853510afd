"""Imports follow the data flow: no module imports one of a later room (:data:`LAYERS`), and
reading tables, plans and parameters never loads torch."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import l2s_core

#: Modules below the networks: vocabulary, file contracts, parameters, plans, tables, plots, the CLI.
TORCH_FREE = [
    "l2s_core.vocabulary",
    "l2s_core.records",
    "l2s_core.prediction",
    "l2s_core.data.prepared_layout",
    "l2s_core.data.cache",
    "l2s_core.train.run_files",
    "l2s_core.train.config",
    "l2s_core.evaluation_tables",
    "l2s_core.results.fidelity",
    "l2s_core.results.stats",
    "l2s_core.paper_values",
    "l2s_core.results.study_results",
    "l2s_core.results.analysis",
    "l2s_core.results.findings",
    "l2s_core.results.plots",
    "l2s_core.study.params",
    "l2s_core.study.layout",
    "l2s_core.study.localisation",
    "l2s_core.study.plan",
    "l2s_core.study.step_records",
    "l2s_core.study.status",
    "l2s_core.study.execute",
    "l2s_core.study.runner",
    "l2s_core.study.report",
    "l2s_core.data.prepare",
    "l2s_core.data.task_statistics",
    "l2s_core.deploy.scan_input",
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


#: The rooms of l2s_core in the order data flows through them: a module may import its own room
#: and the rooms before it, never one after it (imports inside functions count too).
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("foundation", ("l2s_core", "vocabulary", "errors", "processes", "files", "records", "paper_values")),
    ("geometry", ("boxes", "box_guard")),
    ("data", ("data",)),
    ("prediction records", ("prediction",)),
    (
        "networks",
        (
            "model",
            "released_unet",
            "memory",
            "compiling",
            "losses",
            "metrics",
            "sampling",
            "checkpoint",
            "distributed",
            "infer",
        ),
    ),
    ("training", ("train",)),
    ("evaluation", ("evaluation_tables", "evaluate")),
    ("study", ("study",)),
    ("results", ("results",)),
    ("deploy", ("deploy",)),
    ("viewer", ("viewer",)),
    ("entry points", ("record_flags", "cli", "notebook_files")),
]


def _layer(module: str) -> int:
    """The index in :data:`LAYERS` of a dotted ``l2s_core`` module (its longest matching prefix)."""
    parts = module.split(".")[1:] or ["l2s_core"]
    for depth in range(len(parts), 0, -1):
        prefix = ".".join(parts[:depth])
        for index, (_, names) in enumerate(LAYERS):
            if prefix in names:
                return index
    raise AssertionError(f"{module} is in no room of LAYERS: add it")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.split(".")[0] == "l2s_core"}


def test_imports_follow_the_data_flow():
    package = Path(l2s_core.__file__).parent
    against = []
    for path in sorted(package.rglob("*.py")):
        module = ".".join(("l2s_core", *path.relative_to(package).with_suffix("").parts)).removesuffix(".__init__")
        for imported in sorted(_imports(path)):
            if _layer(imported) > _layer(module):
                against.append(
                    f"{module} ({LAYERS[_layer(module)][0]}) imports {imported} ({LAYERS[_layer(imported)][0]})"
                )
    assert not against, "\n".join(against)


def test_the_check_sees_an_arrow_against_the_flow():
    assert _layer("l2s_core.evaluate") > _layer("l2s_core.infer") > _layer("l2s_core.data.cache")
    assert _layer("l2s_core.study.layout") > _layer("l2s_core.evaluate")
    with pytest.raises(AssertionError, match="no room"):
        _layer("l2s_core.unplaced_module")
