"""The paper's reported numbers as data (``l2s_core.paper_values``): Tables 2-4 and the released
code's foreground shares, keyed by the vocabulary's organ, method and network names."""

from __future__ import annotations

from l2s_core.paper_values import FOREGROUND_PERCENT, PAPER_DICE, TABLE2_MINUTES
from l2s_core.vocabulary import METHODS, NETWORKS, PAPER_ORGANS


def test_paper_values_are_the_papers_tables() -> None:
    assert set(PAPER_DICE) == {"val", "test"}
    for table in PAPER_DICE.values():
        assert list(table.values) == list(PAPER_ORGANS)
        assert all(list(row) == list(METHODS) for row in table.values.values())
    assert (PAPER_DICE["val"].name, PAPER_DICE["test"].name) == ("Table 3", "Table 4")
    assert PAPER_DICE["val"].values["spleen"]["baseline"].mean == 0.6491
    assert PAPER_DICE["val"].values["liver"]["gt_localised"].sd == 0.1061
    assert PAPER_DICE["test"].values["prostate"]["baseline"].mean == 0.797
    assert PAPER_DICE["test"].values["heart"]["two_stage"].sd == 0.0523
    assert TABLE2_MINUTES["pancreas"] == dict(zip(NETWORKS, (477.6, 65.1, 91.2)))
    assert all(m["baseline"] > m["localiser"] + m["organ"] for m in TABLE2_MINUTES.values())  # the paper's claim (e)
    assert FOREGROUND_PERCENT == {"spleen": 0.44, "pancreas": 0.22, "prostate": 2.71, "liver": 2.3, "heart": 0.40}
