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

    The ids are sorted, shuffled with ``random.Random(seed)`` (the permutation the released code's
    ``random.seed(42); random.shuffle`` gives), then sliced in the released code's order: train =
    the first round(0.6 n), validation next, test last. With ``order="released_code"`` validation =
    round(0.2 n) and test the rest, the released sets exactly (prostate 19/6/7). With
    ``order="table1"`` (default) test = the last round(0.2 n) and validation the cases between,
    which gives Table 1's counts (prostate 19/7/6): the released sets for every organ whose n
    leaves no extra case (spleen, pancreas, liver, heart), and for the prostate a test set inside
    the released one (its first test case moves to validation).

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
    val_end = n - n_fixed if order == "table1" else n_train + n_fixed
    return {"train": ids[:n_train], "val": ids[n_train:val_end], "test": ids[val_end:]}


def save_split(path: str | Path, split: dict[str, list[str]], seed: int, order: str) -> None:
    """Write ``split.json`` atomically."""
    atomic_write_json(path, {"seed": seed, "order": order, **{k: split[k] for k in SPLIT_NAMES}})


def load_split(path: str | Path) -> dict[str, list[str]]:
    """Read ``split.json`` written by :func:`save_split`."""
    obj = read_json(path)
    if not all(isinstance(obj.get(k), list) for k in SPLIT_NAMES):
        raise InputDataError(path, f"expected lists {SPLIT_NAMES}")
    return {k: [str(c) for c in obj[k]] for k in SPLIT_NAMES}
