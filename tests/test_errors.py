"""Every l2s error crosses a process boundary (pickle) as an equal error."""

from __future__ import annotations

import importlib
import pickle
import pkgutil

import l2s_core
from l2s_core.errors import L2SError


def all_subclasses(cls: type) -> set[type]:
    """``cls`` and every class derived from it, at any depth."""
    found = {cls}
    for sub in cls.__subclasses__():
        found |= all_subclasses(sub)
    return found


def test_every_error_pickles_to_an_equal_error() -> None:
    for module in pkgutil.walk_packages(l2s_core.__path__, "l2s_core."):  # errors defined anywhere in l2s_core
        importlib.import_module(module.name)
    kinds = all_subclasses(L2SError)
    assert {k.__name__ for k in kinds} >= {
        "L2SError",
        "InputDataError",
        "EmptyOrganError",
        "ConfigError",
        "CheckpointError",
        "FormatVersionError",
        "StudyLockedError",
    }
    for kind in kinds:
        error = kind("/data/case_1.nii.gz", "a problem\nquoted over\ttwo lines")
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is kind
        assert (copy.where, copy.problem, str(copy), copy.args) == (error.where, error.problem, str(error), error.args)
        assert str(copy) == "/data/case_1.nii.gz: a problem quoted over two lines"
