"""tests/ mirrors l2s_core/: every module ``l2s_core/<path>/<m>.py`` is tested by
``tests/<path>/test_<m>.py`` (a package's ``__init__.py`` aside; ``train/__main__.py`` by
``tests/train/test_main.py``)."""

from pathlib import Path

import l2s_core

PACKAGE = Path(l2s_core.__file__).parent
TESTS = Path(__file__).parent


def mirror_of(module: Path) -> Path:
    """The test file of a module of l2s_core (``__main__.py`` → ``test_main.py``)."""
    relative = module.relative_to(PACKAGE)
    return TESTS / relative.parent / f"test_{relative.stem.strip('_')}.py"


def test_every_module_has_its_mirroring_test_file() -> None:
    modules = sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py")
    assert any(p.name == "__main__.py" for p in modules) and len(modules) > 50  # the walk saw the package
    missing = [str(mirror_of(p).relative_to(TESTS.parent)) for p in modules if not mirror_of(p).is_file()]
    assert not missing, f"modules without their mirroring test file: {missing}"
