"""The Findings: the paper's Tables 3/4 beside a study's, and the scorecard of its claims on
synthetic study folders where each claim is supported, not supported or not testable (the
transcribed values themselves: ``test_paper_values.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from study_folder import Datasets, Dice, Runs, write_study

from l2s_core import analysis, findings
from l2s_core.paper_values import FOREGROUND_PERCENT, FOREGROUND_SOURCE
from l2s_core.study_results import load_study
from l2s_core.vocabulary import METHODS, PAPER_ORGANS, VERDICTS

SUPPORTED, NOT_SUPPORTED, NOT_TESTABLE = VERDICTS
#: Run offsets around a method's mean Dice: three runs with a small spread.
SPREAD = (-0.01, 0.0, 0.01)
#: organ → split → method → mean Dice, shaped as the paper's claims: two stage above the
#: baseline on validation for spleen, pancreas and heart only; on test the baseline above two
#: stage for the prostate; ground truth above both everywhere; the test gains shrink as the
#: foreground share grows (pancreas < heart < spleen < liver < prostate).
PAPER_LIKE = {
    "spleen": {"val": (0.60, 0.70, 0.80), "test": (0.60, 0.75, 0.85)},
    "pancreas": {"val": (0.50, 0.70, 0.80), "test": (0.50, 0.80, 0.90)},
    "prostate": {"val": (0.70, 0.70, 0.80), "test": (0.80, 0.70, 0.90)},
    "liver": {"val": (0.70, 0.70, 0.80), "test": (0.60, 0.65, 0.75)},
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
    assert [c.key for c in claims] == ["a", "b", "c1", "c2", "d", "e", "f"]
    assert {c.key: c.verdict for c in claims} == dict.fromkeys(["a", "b", "c1", "c2", "d", "e", "f"], SUPPORTED)
    by_key = {c.key: c for c in claims}
    assert "tested: 5 of 5" in by_key["a"].evidence
    assert "liver: two stage 0.7000 vs baseline 0.7000, p = 1" in by_key["a"].evidence
    assert "ρ = -1.00" in by_key["d"].evidence and "paper: ρ = -0.90" in by_key["d"].evidence
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
    means["heart"]["val"] = (0.80, 0.90, 0.70)  # (c1): ground truth below the baseline
    slow = {**TIMES, "baseline": [(True, 60.0)] * 3}  # (e): baseline 1 min < 1 + 1 min
    unstable = {**TIMES, "organ": [(True, 60.0), (False, 60.0), (True, 60.0)]}  # (f)
    runs = {organ: TIMES for organ in means} | {"spleen": slow, "liver": unstable}
    claims = {c.key: c for c in findings.scorecard(load_study(make_study(tmp_path, means, runs)))}
    assert {k: c.verdict for k, c in claims.items()} == dict.fromkeys(claims, NOT_SUPPORTED)
    assert "liver: two stage 0.7000 vs baseline 0.6000, p = " in claims["a"].evidence
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
    assert {k: c.verdict for k, c in claims.items() if k != "f"} == dict.fromkeys(
        ["a", "b", "c1", "c2", "d", "e"], NOT_TESTABLE
    )
    assert claims["f"].verdict == SUPPORTED  # its one organ-network run converged
    assert "spleen: not in the study (not testable)" in claims["a"].evidence
    assert claims["b"].evidence == "prostate: not in the study (not testable)"
    assert "atrium val: 1 ground truth localised and 1 baseline runs, a t-test needs 2 of each" in claims["c1"].evidence
    assert "1 organs with a gain (at least 3 needed)" in claims["d"].evidence
    assert "atrium: a network without finished runs" in claims["e"].evidence


def test_partial_studies_test_what_they_hold(tmp_path: Path) -> None:
    means = {organ: PAPER_LIKE[organ] for organ in ("spleen", "prostate")}
    shares = {"spleen": 0.005, "prostate": 0.005}  # equal shares: no rank correlation
    claims = {c.key: c for c in findings.scorecard(load_study(make_study(tmp_path, means, shares=shares)))}
    assert claims["a"].verdict == SUPPORTED and "tested: 2 of 5" in claims["a"].evidence
    assert "heart: not in the study (not testable)" in claims["a"].evidence
    assert claims["b"].verdict == SUPPORTED
    assert claims["d"].verdict == NOT_TESTABLE and "2 organs with a gain" in claims["d"].evidence


def test_paper_comparison_shows_missing_organs_and_custom_names(tmp_path: Path) -> None:
    means = {"spleen": PAPER_LIKE["spleen"], "atrium": PAPER_LIKE["heart"]}
    data = load_study(make_study(tmp_path, means))
    table = findings.paper_comparison(data, "test")
    assert list(table.index) == [*PAPER_ORGANS, "atrium"]
    assert list(table.columns) == [
        f"{analysis.METHOD_LABELS[m]} ({side})" for m in METHODS for side in ("paper", "this study")
    ]
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
