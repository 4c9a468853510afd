"""The records of a prediction: one Localisation whose defaults every place that localises shares,
one Prediction whatever the method."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from l2s_core.data.prepared_layout import PrepareSettings
from l2s_core.deploy.model_folder import ModelCard
from l2s_core.errors import ConfigError
from l2s_core.prediction import Localisation, Prediction
from l2s_core.study.params import EvaluateOptions


def test_localisation_of_prepare_settings_takes_their_margin_and_divisors() -> None:
    settings = PrepareSettings(crop_margin=7, lowres_divisors=(2, 4, 4))
    localisation = Localisation.of_settings(settings, "empty", "upsample_nearest", 2)
    assert localisation == Localisation(7, "empty", (2, 4, 4), "upsample_nearest", 2)


def test_the_study_options_and_the_model_card_default_to_the_records_defaults() -> None:
    record = {f.name: f.default for f in dataclasses.fields(Localisation)}
    options = EvaluateOptions()
    assert (options.fallback, options.box_mapping, options.guard_grows) == (
        record["fallback"],
        record["box_mapping"],
        record["guard_grows"],
    )
    card = {f.name: f.default for f in dataclasses.fields(ModelCard)}
    assert (card["fallback"], card["box_mapping"]) == (record["fallback"], record["box_mapping"])


def test_evaluate_options_localise_a_prepared_task_with_their_choices() -> None:
    options = EvaluateOptions(fallback="empty", box_mapping="upsample_nearest", guard_grows=3)
    settings = PrepareSettings(crop_margin=5)
    assert options.localisation(settings) == Localisation(5, "empty", settings.lowres_divisors, "upsample_nearest", 3)


@pytest.mark.parametrize(
    "changes, says",
    [
        ({"fallback": "nearest_organ"}, "fallback"),
        ({"box_mapping": "linear"}, "box_mapping"),
        ({"guard_grows": -1}, "guard_grows"),
    ],
)
def test_a_bad_choice_is_one_config_error_naming_it(changes: dict, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        Localisation(15, **changes)


def test_divisors_and_box_become_ints() -> None:
    assert Localisation(3, divisors=[np.int64(2), 2.0, 2]).divisors == (2, 2, 2)  # type: ignore[arg-type]
    box = Prediction(np.zeros((2, 2, 2), np.uint8), box=tuple(np.array([0, 0, 0, 2, 2, 2]))).box  # type: ignore[arg-type]
    assert box == (0, 0, 0, 2, 2, 2) and all(type(v) is int for v in box)


@pytest.mark.parametrize(
    "prediction, segmented",
    [
        (Prediction(np.zeros((4, 5, 6), np.uint8)), (0, 0, 0, 4, 5, 6)),  # baseline: the whole image
        (Prediction(np.zeros((4, 5, 6), np.uint8), (1, 1, 1, 3, 3, 3)), (1, 1, 1, 3, 3, 3)),
        (Prediction(np.zeros((4, 5, 6), np.uint8), fallback_used="whole_image"), (0, 0, 0, 4, 5, 6)),
        (Prediction(np.zeros((4, 5, 6), np.uint8), fallback_used="empty"), None),  # nothing segmented
    ],
)
def test_segmented_box_is_what_the_network_saw(prediction: Prediction, segmented: tuple | None) -> None:
    assert prediction.segmented_box(prediction.mask.shape) == segmented
