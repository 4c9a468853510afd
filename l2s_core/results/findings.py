"""What a study found, set against the paper: its Tables 3 and 4 beside the paper's, and a
scorecard of the paper's claims (no torch).

Each claim of :func:`scorecard` is checked on the study's files (through
:mod:`l2s_core.results.analysis`) and given a verdict of :data:`l2s_core.vocabulary.VERDICTS` with the
numbers behind it. A claim about several organs (or splits, or methods) is checked on each of
the paper's organs; a study's other organs are shown in the evidence, not judged. An item is
"not testable" where its data are absent (an organ not in the study, fewer than two runs of a
method for a t-test, a network without finished runs, ...). A claimed difference is
"supported" when significant in the claimed direction; a claimed absence of difference is never
"supported" on p >= 0.05 alone (low power passes it): it is "consistent (not significant)",
with the difference of means and its 95 % interval shown; a rank correlation of the claimed sign
whose exact permutation p is not below 0.05 is "direction agrees". The claim's verdict is "not
testable" if no item is testable, "not supported" if a testable item contradicts it, else
"supported" if every testable item is, else the weaker kind its items hold; its evidence names
every item, the untestable ones with the reason. Significance is the paper's: two-sided Student
t-test over runs, p < :data:`l2s_core.results.analysis.ALPHA`, unadjusted.

Example:
    >>> data = load_study("runs/quick")  # doctest: +SKIP
    >>> scorecard_table(scorecard(data))  # doctest: +SKIP
"""

from __future__ import annotations

__all__ = [
    "SCORECARD_COLUMNS",
    "ClaimCheck",
    "findings_preamble",
    "findings_tables",
    "localisation_findings",
    "paper_comparison",
    "scorecard",
    "scorecard_table",
]

import itertools
import math
from dataclasses import astuple, dataclass, fields, replace

import pandas as pd
from scipy import stats

from l2s_core.paper_values import FOREGROUND_PERCENT, FOREGROUND_SOURCE, PAPER_DICE, TABLE2_MINUTES, TABLE2_SOURCE
from l2s_core.results import analysis
from l2s_core.results.study_results import StudyData
from l2s_core.vocabulary import METHOD_LABELS, METHODS, PAPER_ORGANS, SPLIT_LABELS, SPLITS, VERDICTS

SUPPORTED, NOT_SUPPORTED, NOT_TESTABLE, CONSISTENT, DIRECTION_AGREES = VERDICTS
#: Fewest organs a rank correlation over organs is computed on.
MIN_ORGANS_FOR_CORRELATION = 3
#: Localisation had little to gain where it raised the organ's foreground share less than this many times.
LITTLE_TO_GAIN_RATIO = 2.0
NOT_IN_STUDY = "not in the study"
NO_PAPER_VALUE = "no paper value"
NOT_JUDGED = "shown, not judged: not one of the paper's organs"


@dataclass(frozen=True)
class ClaimCheck:
    """One of the paper's claims, checked on a study.

    Attributes:
        key: short label (``"a"``, ``"b"``, ...).
        claim: the claim in words, with the test that checks it.
        source: where the paper makes it.
        verdict: one of :data:`~l2s_core.vocabulary.VERDICTS`.
        evidence: the numbers behind the verdict, item by item.
    """

    key: str
    claim: str
    source: str
    verdict: str
    evidence: str


SCORECARD_COLUMNS = tuple(f.name for f in fields(ClaimCheck))


@dataclass(frozen=True)
class _Item:
    """One organ (split, method) of a claim: its verdict, the numbers behind it, and whether it
    counts towards the claim's verdict (an organ the paper did not study does not)."""

    name: str
    verdict: str
    evidence: str
    judged: bool = True


def _claim(key: str, claim: str, source: str, items: list[_Item]) -> ClaimCheck:
    """The claim's verdict from its items' (see the module docstring) and their evidence."""
    judged = [item for item in items if item.judged]
    tested = {item.verdict for item in judged if item.verdict != NOT_TESTABLE}
    if not tested:
        verdict = NOT_TESTABLE
    elif NOT_SUPPORTED in tested:
        verdict = NOT_SUPPORTED
    else:
        verdict = next((v for v in (CONSISTENT, DIRECTION_AGREES) if v in tested), SUPPORTED)
    details = "; ".join(
        f"{item.name}: {item.evidence}"
        + (f" ({NOT_JUDGED})" if not item.judged else " (not testable)" if item.verdict == NOT_TESTABLE else "")
        for item in items
    )
    n_tested = sum(item.verdict != NOT_TESTABLE for item in judged)
    coverage = f"tested: {n_tested} of {len(judged)}. " if len(judged) > 1 else ""
    return ClaimCheck(key, claim, source, verdict, coverage + details)


def _verdict(holds: bool) -> str:
    return SUPPORTED if holds else NOT_SUPPORTED


def _study_organs(data: StudyData) -> list[tuple[str, bool]]:
    """The organs a claim covers, each with whether it is judged: the paper's, then the study's others."""
    return [(o, True) for o in PAPER_ORGANS] + [(o, False) for o in data.organs if o not in PAPER_ORGANS]


def _difference_interval(test: pd.Series) -> str:
    """Mean of method b minus method a with its 95 % Student interval (pooled sd, as the t-test)."""
    n_a, n_b = int(test["n_a"]), int(test["n_b"])
    df = n_a + n_b - 2
    pooled = ((n_a - 1) * test["sd_a"] ** 2 + (n_b - 1) * test["sd_b"] ** 2) / df
    difference = test["mean_b"] - test["mean_a"]
    half = float(stats.t.ppf(1 - analysis.ALPHA / 2, df)) * math.sqrt(pooled * (1 / n_a + 1 / n_b))
    return (
        f"difference {difference:+.4f} (95 % CI {difference - half:+.4f} to {difference + half:+.4f}), "
        f"Hedges' g {0.0 - test['hedges_g']:+.2f}"
    )


def _t_test_item(
    tests: pd.DataFrame,
    organs: tuple[str, ...],
    organ: str,
    split: str,
    pair: tuple[str, str],
    expect: str,
    name: str | None = None,
) -> _Item:
    """A t-test of the study checked against an expectation.

    Args:
        tests: :func:`l2s_core.results.analysis.ttests` of the study.
        organs: the study's organs.
        organ: the organ tested.
        split: the split tested.
        pair: ``(method_a, method_b)`` as in the tests' rows.
        expect: ``"b_higher"`` or ``"a_higher"`` (significantly, p < ALPHA), or ``"no_difference"``
            (p >= ALPHA: "consistent (not significant)", with the difference and its interval).
        name: the item's name in the evidence; the organ by default.
    """
    name = name or organ
    if organ not in organs:
        return _Item(name, NOT_TESTABLE, NOT_IN_STUDY)
    method_a, method_b = pair
    row = tests[
        (tests["organ"] == organ)
        & (tests["split"] == split)
        & (tests["method_a"] == method_a)
        & (tests["method_b"] == method_b)
    ]
    if row.empty:
        return _Item(name, NOT_TESTABLE, f"no {SPLIT_LABELS[split]} evaluation")
    test = row.iloc[0]
    labels = METHOD_LABELS
    if min(test["n_a"], test["n_b"]) < 2:
        return _Item(
            name,
            NOT_TESTABLE,
            f"{test['n_b']} {labels[method_b]} and {test['n_a']} {labels[method_a]} runs, a t-test needs 2 of each",
        )
    if not math.isfinite(test["p_student"]):
        return _Item(name, NOT_TESTABLE, f"no t-test p ({test['note']})")
    significant = test["p_student"] < analysis.ALPHA
    evidence = (
        f"{labels[method_b]} {test['mean_b']:.4f} vs {labels[method_a]} "
        f"{test['mean_a']:.4f}, p = {test['p_student']:.3g} "
        f"(runs {test['n_b']}, {test['n_a']})"
    )
    if expect == "no_difference":
        return _Item(name, NOT_SUPPORTED if significant else CONSISTENT, f"{evidence}, {_difference_interval(test)}")
    holds = significant and (
        test["mean_b"] > test["mean_a"] if expect == "b_higher" else test["mean_a"] > test["mean_b"]
    )
    return _Item(name, _verdict(holds), evidence)


def _organ_t_test_items(
    data: StudyData, tests: pd.DataFrame, splits: tuple[str, ...], pair: tuple[str, str], expect: str
) -> list[_Item]:
    """:func:`_t_test_item` for every organ of :func:`_study_organs` and split (named ``organ split``
    when there are several splits); organs the paper did not study are not judged."""
    return [
        replace(
            _t_test_item(
                tests, data.organs, organ, split, pair, expect, f"{organ} {split}" if len(splits) > 1 else organ
            ),
            judged=judged,
        )
        for organ, judged in _study_organs(data)
        for split in splits
    ]


def _claim_headline(data: StudyData, tests: pd.DataFrame) -> ClaimCheck:
    expected = {"spleen": "b_higher", "pancreas": "b_higher", "liver": "no_difference", "heart": "b_higher"}
    items = [
        _t_test_item(tests, data.organs, organ, "test", ("baseline", "two_stage"), expect)
        for organ, expect in expected.items()
    ]
    return _claim(
        "h",
        "The headline: on test, two stage beats the baseline significantly for the spleen, pancreas "
        "and heart; for the liver the difference is not significant",
        "Abstract; Results › Test, Table 4 (p < 0.001, p < 0.001, p < 0.05; liver p = 0.8)",
        items,
    )


def _claim_two_stage_on_validation(data: StudyData, tests: pd.DataFrame) -> ClaimCheck:
    expected = {
        "spleen": "b_higher",
        "pancreas": "b_higher",
        "prostate": "no_difference",
        "liver": "no_difference",
        "heart": "b_higher",
    }
    items = [
        _t_test_item(tests, data.organs, organ, "val", ("baseline", "two_stage"), expected[organ])
        for organ in PAPER_ORGANS
    ]
    return _claim(
        "a",
        "On validation, two stage beats the baseline significantly for the spleen, pancreas and "
        "heart, not for the liver and prostate (p >= 0.05 there)",
        "Results › Validation, Table 3 (p < 0.001; liver p = 0.11; prostate p = 0.44)",
        items,
    )


def _claim_baseline_on_prostate_test(data: StudyData, tests: pd.DataFrame) -> ClaimCheck:
    item = _t_test_item(tests, data.organs, "prostate", "test", ("baseline", "two_stage"), "a_higher")
    return _claim(
        "b",
        "On test, the baseline beats two stage significantly for the prostate",
        "Results › Test, Table 4 (p < 0.001)",
        [item],
    )


def _claim_gt_beats_baseline(data: StudyData, tests: pd.DataFrame) -> ClaimCheck:
    items = _organ_t_test_items(data, tests, SPLITS, ("baseline", "gt_localised"), "b_higher")
    return _claim(
        "c1",
        "Ground-truth localisation beats the baseline significantly for every organ, on validation and test",
        "Results › Validation and Test, Tables 3 and 4 (p < 0.05 for every organ)",
        items,
    )


def _claim_gt_beats_two_stage(data: StudyData, tests: pd.DataFrame) -> ClaimCheck:
    items = _organ_t_test_items(data, tests, ("test",), ("two_stage", "gt_localised"), "b_higher")
    return _claim(
        "c2",
        "Ground-truth localisation beats two stage significantly for every organ on test",
        "Results › Test, Table 4 (p < 0.05 for every organ; on validation all but the liver)",
        items,
    )


def _spearman(shares: list[float], gains: list[float]) -> tuple[float, float]:
    """Spearman's ρ and its exact two-sided permutation p: the share of the n! orderings of the
    gains whose |ρ| is at least the observed one (120 orderings for five organs); NaN where a
    side is constant."""
    if len(set(shares)) < 2 or len(set(gains)) < 2:
        return math.nan, math.nan
    share_ranks, gain_ranks = stats.rankdata(shares), stats.rankdata(gains)

    def rho_of(ranks: tuple[float, ...]) -> float:
        return float(stats.pearsonr(share_ranks, ranks).statistic)

    rho = rho_of(tuple(gain_ranks))
    orderings = [abs(rho_of(p)) >= abs(rho) - 1e-12 for p in itertools.permutations(gain_ranks)]
    return rho, sum(orderings) / len(orderings)


def _paper_gain_correlation(method: str) -> str:
    """ρ and p of the paper's own test-set gains (Table 4) against the released code's foreground shares."""
    table = PAPER_DICE["test"].values
    gains = [table[o][method].mean - table[o]["baseline"].mean for o in PAPER_ORGANS]
    rho, p = _spearman([FOREGROUND_PERCENT[o] for o in PAPER_ORGANS], gains)
    return f"paper: ρ = {rho:.2f}, exact p = {p:.2g}"


def _claim_gain_grows_as_share_shrinks(data: StudyData) -> ClaimCheck:
    gain = analysis.dice_gain(data)
    gain = gain[(gain["split"] == "test") & gain["foreground_percent"].notna()]
    others = sorted(set(gain["organ"]) - set(PAPER_ORGANS))
    gain = gain[gain["organ"].isin(PAPER_ORGANS)]
    not_judged = f"; {', '.join(others)}: {NOT_JUDGED}" if others else ""
    items = []
    for method in METHODS[1:]:
        rows = gain[gain["method"] == method]
        name, paper = METHOD_LABELS[method], _paper_gain_correlation(method)
        rho, p = _spearman(rows["foreground_percent"].tolist(), rows["gain"].tolist())
        if len(rows) < MIN_ORGANS_FOR_CORRELATION:
            items.append(
                _Item(
                    name,
                    NOT_TESTABLE,
                    f"{len(rows)} organs with a gain (at least {MIN_ORGANS_FOR_CORRELATION} needed); "
                    f"{paper}{not_judged}",
                )
            )
        elif not math.isfinite(rho):
            items.append(
                _Item(
                    name,
                    NOT_TESTABLE,
                    f"foreground shares or gains all equal over {len(rows)} organs; {paper}{not_judged}",
                )
            )
        else:
            verdict = NOT_SUPPORTED if rho >= 0 else SUPPORTED if p < analysis.ALPHA else DIRECTION_AGREES
            evidence = f"ρ = {rho:.2f}, exact p = {p:.2g} over {len(rows)} organs; {paper}{not_judged}"
            items.append(_Item(name, verdict, evidence))
    return _claim(
        "d",
        "The benefit of localisation (mean Dice gain over the baseline, test set) grows as the "
        "organ's foreground share shrinks: Spearman ρ < 0 over the paper's organs, supported at an "
        'exact permutation p < 0.05, else "direction agrees" (the paper observes a tendency over '
        "five organs and tests none)",
        f"Results › Test, Figure 4 (foreground shares of the paper: {FOREGROUND_SOURCE})",
        items,
    )


def _claim_baseline_trains_longest(data: StudyData) -> ClaimCheck:
    minutes = analysis.table2_training_minutes(data, runs="converged")  # as the paper's Table 2
    items = []
    for organ, judged in _study_organs(data):
        if organ not in data.organs:
            items.append(_Item(organ, NOT_TESTABLE, NOT_IN_STUDY))
            continue
        baseline, localiser, organ_net = (float(minutes.loc[organ, n]) for n in ("baseline", "localiser", "organ"))
        paper = TABLE2_MINUTES.get(organ)
        paper_text = f" (paper: {paper['baseline']} vs {paper['localiser']} + {paper['organ']})" if paper else ""
        if not all(math.isfinite(v) for v in (baseline, localiser, organ_net)):
            items.append(_Item(organ, NOT_TESTABLE, "a network without converged runs" + paper_text, judged))
        else:
            items.append(
                _Item(
                    organ,
                    _verdict(baseline > localiser + organ_net),
                    f"baseline {baseline:.2f} min vs localiser {localiser:.2f} + organ {organ_net:.2f} min{paper_text}",
                    judged,
                )
            )
    return _claim(
        "e",
        "The baseline takes longer to train than the localiser and the organ network together "
        "(mean minutes per converged run, as the paper's Table 2, every organ)",
        TABLE2_SOURCE,
        items,
    )


def _claim_organ_network_converges(data: StudyData) -> ClaimCheck:
    rates = analysis.convergence_rates(data)
    rates = rates[rates["network"] == "organ"].set_index("organ")
    items = []
    for organ, judged in _study_organs(data):
        if organ not in data.organs:
            items.append(_Item(organ, NOT_TESTABLE, NOT_IN_STUDY))
        elif organ not in rates.index:
            items.append(_Item(organ, NOT_TESTABLE, "no finished organ-network run", judged))
        else:
            converged, trained = int(rates.loc[organ, "converged"]), int(rates.loc[organ, "trained"])
            evidence = f"{converged} of {trained} runs converged"
            items.append(_Item(organ, _verdict(converged == trained), evidence, judged))
    return _claim("f", "The organ network always converges (every organ)", "Results › Training, Figure 3a", items)


def scorecard(data: StudyData) -> list[ClaimCheck]:
    """The paper's claims checked on a study.

    (h) the abstract's headline: on test two stage beats the baseline for spleen, pancreas
    and heart, not significantly for the liver; (a) two stage beats the baseline on validation
    for spleen, pancreas and heart, not for liver and prostate; (b) on test the baseline beats
    two stage for the prostate; (c1) ground-truth localisation beats the baseline for every
    organ on both splits and (c2) two stage on test; (d) the localisation gain grows as the
    foreground share shrinks (Spearman ρ on the test set with its exact permutation p, the
    paper's own ρ for reference); (e) the baseline trains longer than localiser and organ
    network together (converged runs, as Table 2); (f) the organ network always converges.
    Every claim judges the paper's organs; the study's other organs are shown in the evidence
    of (c)-(f), not judged.

    Args:
        data: the study.

    Returns:
        One :class:`ClaimCheck` per claim, in the order above.
    """
    tests = analysis.ttests(data)
    return [
        _claim_headline(data, tests),
        _claim_two_stage_on_validation(data, tests),
        _claim_baseline_on_prostate_test(data, tests),
        _claim_gt_beats_baseline(data, tests),
        _claim_gt_beats_two_stage(data, tests),
        _claim_gain_grows_as_share_shrinks(data),
        _claim_baseline_trains_longest(data),
        _claim_organ_network_converges(data),
    ]


def scorecard_table(claims: list[ClaimCheck]) -> pd.DataFrame:
    """Claims as a table: index ``key``; columns ``claim``, ``source``, ``verdict``, ``evidence``."""
    return pd.DataFrame([astuple(c) for c in claims], columns=list(SCORECARD_COLUMNS)).set_index("key")


def paper_comparison(data: StudyData, split: str) -> pd.DataFrame:
    """The paper's Table 3 (``split="val"``) or 4 (``"test"``) beside the study's.

    Returns:
        Index ``organ``: the paper's organs in its order, then the study's other organs; per
        method of :data:`~l2s_core.vocabulary.METHODS` (labelled as
        :data:`l2s_core.vocabulary.METHOD_LABELS`) the columns ``"<label> (paper)"`` (mean ± sd,
        or ``"no paper value"``) and ``"<label> (this study)"`` (as
        :func:`l2s_core.results.analysis.table_dice`, ``*`` where significantly above the baseline;
        ``"not in the study"`` for a paper organ the study lacks).
    """
    paper, ours = PAPER_DICE[split].values, analysis.table_dice(data, split)
    rows = []
    for organ in [*PAPER_ORGANS, *(o for o in data.organs if o not in PAPER_ORGANS)]:
        row = {"organ": organ}
        for method in METHODS:
            label = METHOD_LABELS[method]
            value = paper.get(organ, {}).get(method)
            row[f"{label} (paper)"] = f"{value.mean:.4f} ± {value.sd:.4f}" if value else NO_PAPER_VALUE
            row[f"{label} (this study)"] = ours.loc[organ, method] if organ in ours.index else NOT_IN_STUDY
        rows.append(row)
    return pd.DataFrame(rows).set_index("organ")


def findings_preamble(data: StudyData) -> str:
    """The sentences (Markdown) that frame the Findings: what the source tables are, on phantom
    data that the study checks the pipeline and not the paper, and failed steps if any."""
    sentences = [
        (
            f"The paper's values are transcribed from {PAPER_DICE['val'].source} and "
            f"{PAPER_DICE['test'].source} (`l2s_core.paper_values`)."
        )
    ]
    sentences.append(
        "The paper's ± is the population standard deviation over its runs (`np.std` in its released "
        "code); this study's ± is the sample standard deviation (n − 1)."
    )
    if data.study_params is not None and data.study_params.data == "phantom":
        sentences.append(
            "**This study ran on phantom data: it checks that the pipeline computes the paper's "
            "analysis end to end, not whether the paper's results hold.**"
        )
    if len(data.failures):
        sentences.append(
            f"{len(data.failures)} step(s) failed or were blocked (listed under *Steps that failed*); "
            "claims that need their results are not testable."
        )
    return " ".join(sentences)


def findings_tables(data: StudyData) -> dict[str, pd.DataFrame]:
    """The Findings as tables, by file stem: ``findings_table3_val``, ``findings_table4_test``,
    ``findings_scorecard``."""
    return {
        "findings_table3_val": paper_comparison(data, "val"),
        "findings_table4_test": paper_comparison(data, "test"),
        "findings_scorecard": scorecard_table(scorecard(data)),
    }


def _organ_localisation(organ: str, split: str, rows: pd.DataFrame) -> str:
    """One organ's sentences of :func:`localisation_findings` from its rows of
    :func:`l2s_core.results.analysis.localisation_context` on one split."""
    by_method = rows.set_index("method")
    localised = [m for m in METHODS[1:] if m in by_method.index]
    whole = by_method["foreground_percent"].get("baseline", math.nan)
    boxes = "; ".join(
        f"the {METHOD_LABELS[m]} box covers {row['box_percent']:.0f} % of the image and the organ fills "
        f"{row['foreground_percent']:.2g} % of it (×{row['foreground_ratio']:.2g}, "
        f"Dice gain over the baseline {row['dice_gain']:+.3f})"
        for m, row in ((m, by_method.loc[m]) for m in localised)
    )
    sentence = (
        f"**{organ}** ({SPLIT_LABELS[split]}): the organ fills {whole:.2g} % of the whole image that the "
        f"baseline segments; {boxes or 'no localised method was evaluated'}."
    )
    ratios = by_method.loc[localised, "foreground_ratio"]
    if len(ratios) and (ratios < LITTLE_TO_GAIN_RATIO).all():
        change = (
            "lowered the organ's share (the box with its margin reaches beyond the image, zero-filled)"
            if (ratios < 1).all()
            else f"raised the organ's share less than {LITTLE_TO_GAIN_RATIO:g}-fold"
        )
        sentence += (
            f" Localisation {change}: the box covers so much of the image that there was little background to "
            "remove, so little to gain from the class balance here; a Dice difference on this organ does not "
            "come from it."
        )
    return sentence


def localisation_findings(data: StudyData) -> str:
    """What localisation changed, per organ, in plain words (Markdown): the organ's share of the
    voxels each method's network segments (the class balance the paper's Discussion credits for
    the gain) beside the Dice gain, on the test split (validation where there is no test
    evaluation); an organ whose localised boxes raised that share less than
    :data:`LITTLE_TO_GAIN_RATIO`-fold is said to have had little to gain."""
    context = analysis.localisation_context(data)
    sentences = []
    for organ in data.organs:
        rows = context[context["organ"] == organ]
        split = next((s for s in ("test", "val") if s in set(rows["split"])), None)
        if split is not None:
            sentences.append(_organ_localisation(organ, split, rows[rows["split"] == split]))
    if not sentences:
        return (
            "No evaluation records the boxes the networks segmented (none has run yet, or it ran before l2s "
            "recorded them): what localisation changed is not known."
        )
    return "\n\n".join(sentences)
