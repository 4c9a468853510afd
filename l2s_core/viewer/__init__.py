"""Interactive slice explorer (``notebooks/explore.ipynb``).

Modules:

- :mod:`~l2s_core.viewer.display`: slicing, aspect, windowing, box outlines, colours and the legend.
- :mod:`~l2s_core.viewer.view_state`: :class:`ViewState`, everything one frame shows.
- :mod:`~l2s_core.viewer.drawing`: :func:`draw`, a matplotlib figure from a view state (no widgets).
- :mod:`~l2s_core.viewer.sources`: prediction sources of a study (converged networks, saved masks).
- :mod:`~l2s_core.viewer.scans`: scans (NIfTI, DICOM) with a model folder, read and segmented by
  the deploy code of ``l2s predict``.
- :mod:`~l2s_core.viewer.slice_viewer`: the :class:`SliceViewer` widget, wiring its controls to
  :func:`draw`.
- :mod:`~l2s_core.viewer.explorer`: what the notebook calls (:func:`open_explorer`).

Example:
    >>> viewer, notes = open_explorer(model_dir="models/spleen", scan="ct.nii.gz")  # doctest: +SKIP
    >>> display(viewer.widget)  # doctest: +SKIP
"""

from l2s_core.prediction import Prediction
from l2s_core.viewer.display import (
    BOX_STYLES,
    CT_SOFT_TISSUE,
    OVERLAY_STYLES,
    VIEWS,
    LegendEntry,
    auto_window,
    box_rectangle,
    ct_window,
    legend_html,
    pixel_aspect,
    slice_along,
    window_to_unit,
)
from l2s_core.viewer.drawing import FigureArtists, Frame, draw, new_figure
from l2s_core.viewer.explorer import open_explorer, scan_explorer, study_explorer
from l2s_core.viewer.scans import FolderModels, ScanCase, case_volumes, load_folder_models
from l2s_core.viewer.slice_viewer import SliceViewer
from l2s_core.viewer.sources import (
    StudyModels,
    as_prediction,
    load_study_models,
    raw_ct_window,
    saved_prediction_source,
)
from l2s_core.viewer.view_state import Layer, Outline, ViewState

__all__ = [
    "BOX_STYLES",
    "CT_SOFT_TISSUE",
    "OVERLAY_STYLES",
    "VIEWS",
    "FigureArtists",
    "FolderModels",
    "Frame",
    "Layer",
    "LegendEntry",
    "Outline",
    "Prediction",
    "ScanCase",
    "SliceViewer",
    "StudyModels",
    "ViewState",
    "as_prediction",
    "auto_window",
    "box_rectangle",
    "case_volumes",
    "ct_window",
    "draw",
    "legend_html",
    "load_folder_models",
    "load_study_models",
    "new_figure",
    "open_explorer",
    "pixel_aspect",
    "raw_ct_window",
    "saved_prediction_source",
    "scan_explorer",
    "slice_along",
    "study_explorer",
    "window_to_unit",
]
