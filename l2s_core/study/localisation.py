"""The localisation a study evaluates an organ with: the prepared task's margin and divisors
with the study's ``evaluate`` options (fallback, box mapping, guard), so that evaluation, the
explorer and ``l2s export``'s model card localise alike.

Example:
    >>> localisation = evaluation_localisation(Path("runs/quick/spleen"))  # doctest: +SKIP
"""

from __future__ import annotations

__all__ = ["evaluation_localisation", "organ_localisation"]

from pathlib import Path

from l2s_core.data.cache import PreparedTask
from l2s_core.data.prepared_layout import PREPARED_DIR
from l2s_core.prediction import Localisation
from l2s_core.study.layout import PARAMS_SNAPSHOT_FILE
from l2s_core.study.params import EvaluateOptions, load_study_params


def organ_localisation(organ_dir: Path, options: EvaluateOptions) -> Localisation:
    """The localisation of ``organ_dir`` under the ``evaluate`` ``options``: its prepared task's
    margin and divisors with the options' fallback, box mapping and guard.

    Raises:
        InputDataError: an unreadable prepared task.
    """
    return options.localisation(PreparedTask(organ_dir / PREPARED_DIR).preparation.settings)


def evaluation_localisation(organ_dir: Path) -> Localisation:
    """The localisation a study evaluates ``organ_dir`` (``runs/<study>/<organ>``) with: the
    prepared task's margin and divisors, the study's ``evaluate.fallback``,
    ``evaluate.box_mapping`` and ``evaluate.guard_grows`` from its parameter snapshot
    (:class:`~l2s_core.prediction.Localisation`'s defaults where there is none).

    Raises:
        InputDataError: an unreadable prepared task.
        ConfigError: an invalid parameter snapshot.
    """
    snapshot = organ_dir.parent / PARAMS_SNAPSHOT_FILE
    options = load_study_params(snapshot).evaluate if snapshot.is_file() else EvaluateOptions()
    return organ_localisation(organ_dir, options)
