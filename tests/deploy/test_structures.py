"""Structure names and codes of predicted organs (``l2s_core.deploy.structures``): TG-263 names and
SNOMED CT codes for the paper's organs, the MSD heart's left atrium as ``Atrium_L``, the card's name
and a user's or the generic code otherwise."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from l2s_core.deploy.model_folder import open_model_folder
from l2s_core.deploy.structures import GENERIC_ORGAN, StructureTerm, parse_code, structure_term
from l2s_core.errors import ConfigError


@pytest.fixture(scope="module")
def card(model_dir: Path):
    return open_model_folder(model_dir)


@pytest.mark.parametrize(
    ("organ", "labels", "organ_labels", "name", "code"),
    [
        ("spleen", {"0": "background", "1": "spleen"}, None, "Spleen", "78961009"),
        ("pancreas", {"0": "background", "1": "pancreas", "2": "cancer"}, None, "Pancreas", "15776009"),
        ("prostate", {"0": "background", "1": "PZ", "2": "TZ"}, None, "Prostate", "41216001"),
        ("liver", {"0": "background", "1": "liver", "2": "cancer"}, (1, 2), "Liver", "10200004"),
        ("heart", {"0": "background", "1": "left atrium"}, None, "Atrium_L", "82471001"),
        ("heart", {"0": "background", "1": "heart"}, None, "Heart", "80891009"),
        ("Kidney_L", {"0": "background", "1": "kidney"}, None, "Kidney_L", GENERIC_ORGAN[0]),
    ],
)
def test_terms_of_the_paper_organs_and_others(card, organ, labels, organ_labels, name, code) -> None:
    term = structure_term(dataclasses.replace(card, organ=organ, labels=labels, organ_labels=organ_labels))
    assert (term.name, term.code_value) == (name, code)
    assert term.code_scheme == "SCT"


def test_a_user_code_wins(card) -> None:
    organ, term = parse_code("kidney = Kidney_L, SCT, 18639004, Left kidney")
    assert organ == "kidney" and term == StructureTerm("Kidney_L", "18639004", "SCT", "Left kidney")
    assert structure_term(dataclasses.replace(card, organ="Kidney"), {organ: term}) == term


@pytest.mark.parametrize("text", ["kidney", "kidney=Kidney_L,SCT", "=A,B,C,D", "kidney=Kidney_L,,1,x"])
def test_a_malformed_code_is_refused(text: str) -> None:
    with pytest.raises(ConfigError, match="ORGAN=NAME,SCHEME,VALUE,MEANING"):
        parse_code(text)
