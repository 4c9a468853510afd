"""What a predicted organ is called in DICOM: its TG-263 structure name and its SNOMED CT concept.

A treatment-planning system matches structures by name, so the RTSTRUCT's ROI names follow AAPM
TG-263 for the paper's five organs (the heart task of the Medical Segmentation Decathlon labels
the left atrium, which TG-263 calls ``Atrium_L``); a DICOM-SEG codes each segment with a SNOMED CT
concept (the codes of DICOM's anatomic context groups, e.g. CID 7154 and CID 4031). Any other
organ keeps the name its model card gives, with a code the user gives (``--code``) or the generic
concept "Organ".

Example:
    >>> term = structure_term(card)  # doctest: +SKIP
    >>> term.name, term.code_value
    ('Spleen', '78961009')
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from l2s_core import __version__
from l2s_core.deploy.model_folder import ModelCard
from l2s_core.errors import ConfigError

__all__ = ["GENERIC_ORGAN", "ORGAN_TERMS", "StructureTerm", "algorithm_name", "parse_code", "structure_term"]


@dataclass(frozen=True)
class StructureTerm:
    """A structure's name and coded concept.

    Attributes:
        name: the ROI / segment name (TG-263 for the paper's organs).
        code_value: the concept's code (SNOMED CT for the paper's organs).
        code_scheme: the coding scheme designator (``SCT`` for SNOMED CT).
        code_meaning: the concept's meaning.
    """

    name: str
    code_value: str
    code_scheme: str
    code_meaning: str


#: Organ (or label) name, lower case → its term: TG-263 name and SNOMED CT concept.
ORGAN_TERMS: dict[str, StructureTerm] = {
    "spleen": StructureTerm("Spleen", "78961009", "SCT", "Spleen"),
    "pancreas": StructureTerm("Pancreas", "15776009", "SCT", "Pancreas"),
    "prostate": StructureTerm("Prostate", "41216001", "SCT", "Prostate"),
    "liver": StructureTerm("Liver", "10200004", "SCT", "Liver"),
    "heart": StructureTerm("Heart", "80891009", "SCT", "Heart"),
    "left atrium": StructureTerm("Atrium_L", "82471001", "SCT", "Left atrium"),
}
#: The concept of an organ l2s knows no code for: SNOMED CT "Organ".
GENERIC_ORGAN = ("91772007", "SCT", "Organ")


def _organ_label_names(card: ModelCard) -> list[str]:
    """Names of the training labels merged into the organ (every non-background one when the
    card merges all)."""
    values = card.organ_labels if card.organ_labels is not None else [int(v) for v in card.labels if int(v) != 0]
    return sorted({card.labels.get(str(v), "").strip().casefold() for v in values} - {""})


def structure_term(card: ModelCard, codes: Mapping[str, StructureTerm] | None = None) -> StructureTerm:
    """The term of a model's organ.

    The organ's single training label when TG-263 names it (``left atrium`` → ``Atrium_L``),
    else the card's organ when TG-263 names it, else the card's organ as given, with the user's
    code for it (``codes``, keyed by the card's organ, case ignored) or :data:`GENERIC_ORGAN`.
    """
    organ = card.organ.strip()
    given = {k.strip().casefold(): v for k, v in (codes or {}).items()}
    if organ.casefold() in given:
        return given[organ.casefold()]
    labels = _organ_label_names(card)
    if len(labels) == 1 and labels[0] in ORGAN_TERMS:
        return ORGAN_TERMS[labels[0]]
    if organ.casefold() in ORGAN_TERMS:
        return ORGAN_TERMS[organ.casefold()]
    return StructureTerm(organ, *GENERIC_ORGAN)


def parse_code(text: str) -> tuple[str, StructureTerm]:
    """A user's code ``ORGAN=NAME,SCHEME,VALUE,MEANING`` (e.g. ``kidney=Kidney_L,SCT,18639004,Left kidney``)
    as ``(organ, term)``.

    Raises:
        ConfigError: not of that form.
    """
    organ, _, rest = text.partition("=")
    parts = [p.strip() for p in rest.split(",", 3)]
    if not organ.strip() or len(parts) != 4 or not all(parts):
        raise ConfigError("--code", f"{text!r} is not ORGAN=NAME,SCHEME,VALUE,MEANING")
    name, scheme, value, meaning = parts
    return organ.strip(), StructureTerm(name, value, scheme, meaning)


def algorithm_name(card: ModelCard, card_sha256: str) -> str:
    """How a structure names what generated it: l2s, its version, the organ and the model card's hash."""
    return f"l2s {__version__} {card.organ} model {card_sha256[:16]}"
