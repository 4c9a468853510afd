"""The prepared phantom that the training tests learn."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from l2s_core.data.cache import PreparedTask

SHAPE = (16, 32, 32)
#: One cuboid organ per case (z0, y0, x0, z1, y1, x1), placed differently in each case.
ORGANS = [(3 + i % 3, 6 + 2 * i, 8, 11 + i % 3, 18 + 2 * i, 20) for i in range(5)]


@pytest.fixture
def phantom(prepared_task: Callable[..., PreparedTask]) -> PreparedTask:
    """Five bright cuboids on noise, prepared (3 training, 1 validation, 1 test case)."""
    return prepared_task(n_cases=5, shape=SHAPE, organ=ORGANS, noise=0.3)
