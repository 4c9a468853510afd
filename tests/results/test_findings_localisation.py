"""The Findings' sentences on what localisation changed (``findings.localisation_findings``), on
synthetic study folders whose localised boxes are small (much to gain) or cover most of the
image (little to gain, as on the pre-cropped hippocampus)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from study_folder import DATASETS, synthetic_study

from l2s_core.results import findings
from l2s_core.results.study_results import load_study


def _set_localised_box_share(study: Path, box_share: float, foreground_ratio: float | None = None) -> None:
    """Every localised case row of the study: a box of ``box_share`` of the image holding the whole
    organ, or, with ``foreground_ratio``, where the organ's share is that many times the image's."""
    for organ, (_, share) in DATASETS.items():
        for split in ("val", "test"):
            path = study / organ / "evaluation" / f"{split}_cases.csv"
            cases = pd.read_csv(path, dtype={"case_id": str})
            localised = cases["method"] != "baseline"
            cases.loc[localised, "box_share"] = box_share
            cases.loc[localised, "box_foreground_share"] = share * (foreground_ratio or 1 / box_share)
            cases.to_csv(path, index=False)


def test_small_boxes_give_the_raised_foreground_share_beside_the_dice_gain(tmp_path: Path) -> None:
    text = findings.localisation_findings(load_study(synthetic_study(tmp_path)))
    spleen, heart = text.split("\n\n")
    assert spleen.startswith("**spleen** (test): the organ fills 0.5 % of the whole image")
    assert "the two stage box covers 10 % of the image and the organ fills 5 % of it (×10" in spleen
    assert "Dice gain over the baseline +0.027" in spleen  # 0.4767 - 0.45
    assert heart.startswith("**heart** (test)")
    assert "little to gain" not in text


def test_boxes_covering_most_of_the_image_say_there_was_little_to_gain(tmp_path: Path) -> None:
    study = synthetic_study(tmp_path)
    _set_localised_box_share(study, 0.8)
    text = findings.localisation_findings(load_study(study))
    assert text.count("raised the organ's share less than 2-fold") == 2 and text.count("little to gain") == 2
    _set_localised_box_share(study, 1.0, foreground_ratio=0.4)  # the margin reaches beyond the image: zero-filled
    assert "Localisation lowered the organ's share" in findings.localisation_findings(load_study(study))


def test_a_study_without_evaluation_says_so(tmp_path: Path) -> None:
    study = synthetic_study(tmp_path)
    for organ in DATASETS:
        for path in (study / organ / "evaluation").iterdir():
            path.unlink()
    assert findings.localisation_findings(load_study(study)).startswith("No evaluation records the boxes")


def test_an_evaluation_written_before_the_boxes_were_recorded_says_so(tmp_path: Path) -> None:
    study = synthetic_study(tmp_path)
    for path in study.glob("*/evaluation/*.csv"):
        table = pd.read_csv(path, dtype={"case_id": str})
        table.drop(columns=[c for c in table.columns if "box_" in c]).to_csv(path, index=False)
    data = load_study(study)
    assert data.cases["box_share"].isna().all() and len(data.cases) > 0
    assert findings.localisation_findings(data).startswith("No evaluation records the boxes")
