"""The README's architecture section names every module of l2s_core, and no module that is gone."""

import re
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]


def _architecture() -> str:
    readme = (PROJECT / "README.md").read_text()
    start = readme.index("## Architecture\n")
    return readme[start : readme.index("\n## ", start + 1)]


def test_the_architecture_section_names_every_module_and_folder():
    section = _architecture()
    package = PROJECT / "l2s_core"
    missing = [
        str(path.relative_to(package))
        for path in sorted(package.rglob("*.py"))
        if path.name != "__init__.py" and path.name not in section
    ]
    missing += [
        f"{path.relative_to(package)}/"
        for path in sorted(package.rglob("*"))
        if path.is_dir() and path.name != "__pycache__" and f"{path.name}/" not in section
    ]
    assert not missing, f"README architecture lacks {missing}"


def test_every_module_the_architecture_section_names_exists():
    names = set(re.findall(r"\b([a-z_]+\.py)\b", _architecture()))
    existing = {path.name for path in (PROJECT / "l2s_core").rglob("*.py")} | {
        path.name for path in (PROJECT / "tests").glob("*.py")
    }
    assert names <= existing, f"README architecture names modules that do not exist: {sorted(names - existing)}"
