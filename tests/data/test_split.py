import pytest

from l2s_core.data.split import load_split, save_split, split_cases
from l2s_core.errors import ConfigError, FormatVersionError

TABLE_1 = {
    "spleen": (41, 25, 8, 8),
    "pancreas": (281, 169, 56, 56),
    "prostate": (32, 19, 7, 6),
    "liver": (69, 41, 14, 14),
    "heart": (20, 12, 4, 4),
}


@pytest.mark.parametrize("organ", TABLE_1)
def test_table_1_sizes(organ):
    n, n_train, n_val, n_test = TABLE_1[organ]
    split = split_cases([f"{organ}_{i}" for i in range(n)])
    assert (len(split["train"]), len(split["val"]), len(split["test"])) == (n_train, n_val, n_test)
    assert sorted(split["train"] + split["val"] + split["test"]) == sorted(f"{organ}_{i}" for i in range(n))


def test_released_code_order_swaps_prostate():
    split = split_cases([f"p{i}" for i in range(32)], order="released_code")
    assert (len(split["train"]), len(split["val"]), len(split["test"])) == (19, 6, 7)


def test_deterministic_and_input_order_free():
    ids = [f"c{i}" for i in range(20)]
    assert split_cases(ids) == split_cases(list(reversed(ids)))
    assert split_cases(ids, seed=1) != split_cases(ids, seed=42)


def test_unknown_order():
    with pytest.raises(ConfigError, match="split_order"):
        split_cases(["a"], order="random")


def test_save_load(tmp_path):
    split = split_cases([f"c{i}" for i in range(10)])
    save_split(tmp_path / "split.json", split, 42, "table1")
    assert load_split(tmp_path / "split.json") == split
    (tmp_path / "old.json").write_text('{"format_version": 0, "train": [], "val": [], "test": []}')
    with pytest.raises(FormatVersionError, match="old.json"):
        load_split(tmp_path / "old.json")
