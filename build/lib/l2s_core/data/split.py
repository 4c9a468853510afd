"""Train/validation/test split by the rule of the paper's Table 1, saved once as ``split.json``."""

from __future__ import annotations

__all__ = ["load_split", "save_split", "split_cases"]

import random
from collections.abc import Iterable
from pathlib import Path

from l2s_core.errors import ConfigError, InputDataError
from l2s_core.files import atomic_write_json, read_json
from l2s_core.vocabulary import SPLIT_NAMES, SPLIT_ORDERS


def split_cases(case_ids: Iterable[str], seed: int = 42, order: str = "table1") -> dict[str, list[str]]:
    """Split case ids 60/20/20 the way the paper did.

    The ids are sorted, shuffled with ``random.Random(seed)``, then cut into train =
    round(0.6 n) and the rest. With ``order="table1"`` (default) test = round(0.2 n) and
    validation the remainder, which reproduces the paper's Table 1 (prostate 19/7/6); with
    ``order="released_code"`` validation = round(0.2 n) and test the remainder, as the paper's
    released code did (prostate 19/6/7).

    Returns:
        ``{"train": [...], "val": [...], "test": [...]}``.
    """
    if order not in SPLIT_ORDERS:
        raise ConfigError("split_order", f"{order!r} is not one of {SPLIT_ORDERS}")
    ids = sorted(case_ids)
    random.Random(seed).shuffle(ids)
    n = len(ids)
    n_train = round(0.6 * n)
    n_fixed = round(0.2 * n)
    rest = ids[n_train:]
    if order == "table1":
        test, val = rest[:n_fixed], rest[n_fixed:]
    else:
        val, test = rest[:n_fixed], rest[n_fixed:]
    return {"train": ids[:n_train], "val": val, "test": test}


def save_split(path: str | Path, split: dict[str, list[str]], seed: int, order: str) -> None:
    """Write ``split.json`` atomically."""
    atomic_write_json(path, {"seed": seed, "order": order, **{k: split[k] for k in SPLIT_NAMES}})


def load_split(path: str | Path) -> dict[str, list[str]]:
    """Read ``split.json`` written by :func:`save_split`."""
    obj = read_json(path)
    if not all(isinstance(obj.get(k), list) for k in SPLIT_NAMES):
        raise InputDataError(path, f"expected lists {SPLIT_NAMES}")
    return {k: [str(c) for c in obj[k]] for k in SPLIT_NAMES}
