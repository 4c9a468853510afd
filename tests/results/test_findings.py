"""The Findings: the paper's Tables 3/4 beside a study's, and the scorecard of its claims on
synthetic study folders where each claim is supported, not supported or not testable (the
transcribed values themselves: ``test_paper_values.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from study_folder import Datasets, Dice, Runs, write_study

from l2s_core.paper_values import FOREGROUND_PERCENT, FOREGROUND_SOURCE
from l2s_core.results import analysis, findings
from l2s_core.results.study_results import load_study
from l2s_core.vocabulary import METHOD_LABELS, METHODS, PAPER_ORGANS, VERDICTS

SUPPORTED, NOT_SUPPORTED, NOT_TESTABLE, CONSISTENT, DIRECTION_AGREES = VERDICTS
#: Run offsets around a method's mean Dice: three runs with a small spread.
SPREAD = (-0.01, 0.0, 0.01)
#: organ → split → method → mean Dice, shaped as the paper's claims: two stage above the
#: baseline on validation for spleen, pancreas and heart only; on test the baseline above two
#: stage for the prostate and equal for the liver; ground truth above both everywhere; the test
#: gains shrink as the foreground share grows (pancreas < heart < spleen < liver < prostate).
PAPER_LIKE = {
    "spleen": {"val": (0.60, 0.70, 0.80), "test": (0.60, 0.75, 0.85)},
    "pancreas": {"val": (0.50, 0.70, 0.80), "test": (0.50, 0.80, 0.90)},
    "prostate": {"val": (0.70, 0.70, 0.80), "test": (0.80, 0.70, 0.90)},
    "liver": {"val": (0.70, 0.70, 0.80), "test": (0.60, 0.60, 0.75)},
    "heart": {"val": (0.60, 0.70, 0.80), "test": (0.50, 0.70, 0.80)},
}
#: network → (converged, seconds) of each run: the baseline slowest, every run converged.
TIMES = {"baseline": [(True, 600.0)] * 3, "localiser": [(True, 60.0)] * 3, "organ": [(True, 60.0)] * 3}


def runs_dice(means: dict[str, tuple[float, float, float]]) -> dict[str, dict[str, list[float]]]:
    """split → method → three runs' Dice around each mean (rounded to whole TP counts)."""
    return {
        split: {m: [round(mean + d, 2) for d in SPREAD] for m, mean in zip(METHODS, values)}
        for split, values in means.items()
    }


def make_study(
    tmp_path: Path,
    means: dict[str, dict[str, tuple[float, float, float]]],
    runs: Runs | None = None,
    shares: dict[str, float] | None = None,
    data: str = "phantom",
) -> Path:
    shares = shares or {organ: FOREGROUND_PERCENT.get(organ, 1.0) / 100 for organ in means}
    datasets: Datasets = {organ: ((6, 2, 2), shares[organ]) for organ in means}
    dice: Dice = {organ: runs_dice(values) for organ, values in means.items()}
    return write_study(tmp_path / "runs" / "synth", datasets, runs or {organ: TIMES for organ in means}, dice, data)


def verdicts(study: Path) -> dict[str, str]:
    return {claim.key: claim.verdict for claim in findings.scorecard(load_study(study))}


def test_a_study_shaped_as_the_paper_supports_every_claim(tmp_path: Path) -> None:
    claims = findings.scorecard(load_study(make_study(tmp_path, PAPER_LIKE)))
    assert [c.key for c in claims] == ["h", "a", "b", "c1", "c2", "d", "e", "f"]
    # A claimed absence of difference is at best "consistent (not significant)", never "supported".
    assert {c.key: c.verdict for c in claims} == {
        **dict.fromkeys(["b", "c1", "c2", "d", "e", "f"], SUPPORTED),
        "h": CONSISTENT,
        "a": CONSISTENT,
    }
    by_key = {c.key: c for c in claims}
    assert "tested: 5 of 5" in by_key["a"].evidence and "tested: 4 of 4" in by_key["h"].evidence
    assert "liver: two stage 0.7000 vs baseline 0.7000, p = 1" in by_key["a"].evidence
    # the effect and its 95 % Student interval: sd 0.01 over 3 runs each, t(4) = 2.776
    assert "difference +0.0000 (95 % CI -0.0227 to +0.0227), Hedges' g +0.00" in by_key["a"].evidence
    assert "spleen: two stage 0.7500 vs baseline 0.6000" in by_key["h"].evidence
    assert "ρ = -1.00, exact p = 0.017 over 5 organs" in by_key["d"].evidence  # 2 of 120 orderings
    assert "paper: ρ = -0.90, exact p = 0.083" in by_key["d"].evidence  # 10 of 120
    assert FOREGROUND_SOURCE in by_key["d"].source  # the foreground shares' source, named once
    assert "paper: 74.9 vs 10.8 + 10.1" in by_key["e"].evidence
    assert "3 of 3 runs converged" in by_key["f"].evidence
    assert all(c.source and c.claim for c in claims)
    table = findings.scorecard_table(claims)
    assert list(table.columns) == ["claim", "source", "verdict", "evidence"] and table.index.name == "key"


def test_contradicting_numbers_give_not_supported_with_the_numbers(tmp_path: Path) -> None:
    means = {organ: dict(splits) for organ, splits in PAPER_LIKE.items()}
    means["liver"]["val"] = (0.60, 0.70, 0.80)  # (a): two stage significantly above the baseline for the liver
    means["prostate"]["test"] = (0.60, 0.70, 0.90)  # (b): the baseline below two stage
    means["heart"]["test"] = (0.50, 0.80, 0.80)  # (c2): ground truth not above two stage
    means["pancreas"]["test"] = (0.50, 0.55, 0.60)  # (d): the smallest organ gains least
    means["spleen"]["test"] = (0.75, 0.60, 0.85)  # (h): two stage below the baseline
    means["heart"]["val"] = (0.80, 0.90, 0.70)  # (c1): ground truth below the baseline
    slow = {**TIMES, "baseline": [(True, 60.0)] * 3}  # (e): baseline 1 min < 1 + 1 min
    unstable = {**TIMES, "organ": [(True, 60.0), (False, 60.0), (True, 60.0)]}  # (f)
    runs = {organ: TIMES for organ in means} | {"spleen": slow, "liver": unstable}
    claims = {c.key: c for c in findings.scorecard(load_study(make_study(tmp_path, means, runs)))}
    assert {k: c.verdict for k, c in claims.items()} == dict.fromkeys(claims, NOT_SUPPORTED)
    assert "liver: two stage 0.7000 vs baseline 0.6000, p = " in claims["a"].evidence
    assert "spleen: two stage 0.6000 vs baseline 0.7500" in claims["h"].evidence
    assert "prostate: two stage 0.7000 vs baseline 0.6000" in claims["b"].evidence
    assert "heart val: ground truth localised 0.7000 vs baseline 0.8000" in claims["c1"].evidence
    assert "spleen: baseline 1.00 min vs localiser 1.00 + organ 1.00 min" in claims["e"].evidence
    assert "liver: 2 of 3 runs converged" in claims["f"].evidence


def test_missing_organs_and_single_runs_are_not_testable_with_the_reason(tmp_path: Path) -> None:
    single = {"baseline": [(True, 60.0)], "organ": [(True, 60.0)]}  # no localiser run
    study = write_study(
        tmp_path / "runs" / "custom",
        {"atrium": ((3, 1, 1), 0.004)},
        {"atrium": single},
        {"atrium": {"val": {m: [0.5] for m in METHODS}, "test": {m: [0.6] for m in METHODS}}},
    )
    claims = {c.key: c for c in findings.scorecard(load_study(study))}
    # The paper's claims judge the paper's organs: an organ of the user's is shown, not judged.
    assert {k: c.verdict for k, c in claims.items()} == dict.fromkeys(
        ["h", "a", "b", "c1", "c2", "d", "e", "f"], NOT_TESTABLE
    )
    assert "atrium: 1 of 1 runs converged (shown, not judged: not one of the paper's organs)" in claims["f"].evidence
    assert "tested: 0 of 5" in claims["f"].evidence and "heart: not in the study (not testable)" in claims["f"].evidence
    assert "spleen: not in the study (not testable)" in claims["a"].evidence
    assert claims["b"].evidence == "prostate: not in the study (not testable)"
    assert "atrium val: 1 ground truth localised and 1 baseline runs, a t-test needs 2 of each" in claims["c1"].evidence
    assert "0 organs with a gain (at least 3 needed)" in claims["d"].evidence
    assert "atrium: shown, not judged" in claims["d"].evidence
    assert "atrium: a network without converged runs" in claims["e"].evidence


def test_partial_studies_test_what_they_hold(tmp_path: Path) -> None:
    means = {organ: PAPER_LIKE[organ] for organ in ("spleen", "prostate")}
    shares = {"spleen": 0.005, "prostate": 0.005}  # equal shares: no rank correlation
    claims = {c.key: c for c in findings.scorecard(load_study(make_study(tmp_path, means, shares=shares)))}
    assert claims["a"].verdict == CONSISTENT and "tested: 2 of 5" in claims["a"].evidence  # prostate: p >= 0.05
    assert "heart: not in the study (not testable)" in claims["a"].evidence
    assert claims["b"].verdict == SUPPORTED
    assert claims["d"].verdict == NOT_TESTABLE and "2 organs with a gain" in claims["d"].evidence


def test_paper_comparison_shows_missing_organs_and_custom_names(tmp_path: Path) -> None:
    means = {"spleen": PAPER_LIKE["spleen"], "atrium": PAPER_LIKE["heart"]}
    data = load_study(make_study(tmp_path, means))
    table = findings.paper_comparison(data, "test")
    assert list(table.index) == [*PAPER_ORGANS, "atrium"]
    assert list(table.columns) == [f"{METHOD_LABELS[m]} ({side})" for m in METHODS for side in ("paper", "this study")]
    assert table.loc["spleen", "baseline (paper)"] == "0.4433 ± 0.1162"
    assert table.loc["spleen", "baseline (this study)"] == "0.6000 ± 0.0100"
    assert table.loc["spleen", "two stage (this study)"] == "0.7500 ± 0.0100 *"
    assert table.loc["liver", "two stage (this study)"] == findings.NOT_IN_STUDY
    assert table.loc["atrium", "ground truth localised (paper)"] == findings.NO_PAPER_VALUE
    assert findings.paper_comparison(data, "val").loc["heart", "baseline (paper)"] == "0.6547 ± 0.0239"
    assert set(findings.findings_tables(data)) == {"findings_table3_val", "findings_table4_test", "findings_scorecard"}


@pytest.mark.parametrize("source, phantom", [("phantom", True), ("msd", False)])
def test_preamble_says_phantom_data_check_the_pipeline(tmp_path: Path, source: str, phantom: bool) -> None:
    data = load_study(make_study(tmp_path, {"spleen": PAPER_LIKE["spleen"]}, data=source))
    text = findings.findings_preamble(data)
    assert ("checks that the pipeline" in text) is phantom
    assert "Table 3" in text and "Table 4" in text


def test_runs_without_spread_are_not_testable_with_the_t_tests_note(tmp_path: Path) -> None:
    flat = {split: {m: [0.5, 0.5] for m in METHODS} for split in ("val", "test")}
    study = write_study(tmp_path / "runs" / "flat", {"spleen": ((3, 1, 1), 0.004)}, {"spleen": TIMES}, {"spleen": flat})
    claims = {c.key: c for c in findings.scorecard(load_study(study))}
    assert claims["c1"].verdict == NOT_TESTABLE
    assert "spleen val: no t-test p (no spread in either group" in claims["c1"].evidence


def test_a_weak_correlation_only_agrees_in_direction(tmp_path: Path) -> None:
    """ρ = -0.9 over five organs has an exact permutation p of 10/120: "direction agrees"."""
    means = {organ: dict(splits) for organ, splits in PAPER_LIKE.items()}
    means["heart"]["test"] = (0.50, 0.64, 0.80)  # two stage gains: heart 0.14 < spleen 0.15, one swap
    claim = {c.key: c for c in findings.scorecard(load_study(make_study(tmp_path, means)))}["d"]
    assert claim.verdict == DIRECTION_AGREES
    assert "two stage: ρ = -0.90, exact p = 0.083 over 5 organs" in claim.evidence


def test_training_time_claim_uses_converged_runs_as_table_2(tmp_path: Path) -> None:
    """Slow unconverged baseline runs count in an ``all`` Table 2 but not in the claim, as in the paper's."""
    stalled = {**TIMES, "baseline": [(True, 60.0), (False, 60000.0), (True, 60.0)]}
    study = make_study(tmp_path, PAPER_LIKE, {organ: stalled for organ in PAPER_LIKE})
    data = load_study(study)
    assert analysis.training_time_runs(data) == "all"
    claim = {c.key: c for c in findings.scorecard(data)}["e"]
    assert claim.verdict == NOT_SUPPORTED
    assert "spleen: baseline 1.00 min vs localiser 1.00 + organ 1.00 min" in claim.evidence


def test_preamble_labels_both_standard_deviations(tmp_path: Path) -> None:
    text = findings.findings_preamble(load_study(make_study(tmp_path, {"spleen": PAPER_LIKE["spleen"]})))
    assert "population standard deviation" in text and "sample standard deviation" in text
