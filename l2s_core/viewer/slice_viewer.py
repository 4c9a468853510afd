"""The slice explorer widget: :class:`SliceViewer`.

It pages through the slices of prepared cases or of scans with ipywidgets controls and shows a
matplotlib figure: the image under a window, the ground truth and the predictions of each
method as coloured overlays, the localisation boxes as rectangles, a legend naming each colour,
and a manual box in which the organ network can be run. The viewer only wires the controls:
it loads cases and predictions, turns the controls' values into a frozen
:class:`~l2s_core.viewer.view_state.ViewState` (:meth:`SliceViewer.view_state`) and has
:func:`~l2s_core.viewer.drawing.draw` draw it. Every control's ``value`` is observed, so setting it
from code (a test, no kernel) redraws the figure exactly as a click in JupyterLab does; the
figure is shown as a PNG inside an ``ipywidgets.Output`` (works with the Agg backend, no ipympl).
The control rows wrap onto further lines in a narrow notebook instead of being cut off at its
right edge.

Window and level: prepared images are normalised unless the task was prepared with
``normalisation="none"``. For raw CT the default is the soft-tissue window W 400 / L 40 HU;
otherwise (z-scored images, MRI) the "auto window" checkbox sets them from the 1st and 99th
percentiles of each case (:func:`~l2s_core.viewer.display.auto_window`), recomputed whenever
the case changes.

Example:
    >>> viewer = SliceViewer(PreparedTask("runs/quick/spleen/prepared"))  # doctest: +SKIP
    >>> display(viewer.widget)  # doctest: +SKIP
"""

from __future__ import annotations

__all__ = ["SliceViewer"]

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import numpy as np
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from matplotlib.patches import Rectangle

from l2s_core.boxes import Box
from l2s_core.data.cache import PreparedTask
from l2s_core.data.split import SPLIT_NAMES
from l2s_core.errors import InputDataError, check_choice
from l2s_core.infer import Segmenter, box_predict
from l2s_core.prediction import Prediction
from l2s_core.viewer.display import (
    GROUND_TRUTH,
    LABEL_BOX,
    MANUAL,
    TWO_STAGE,
    VIEWS,
    LegendEntry,
    auto_window,
    overlay_styles,
    percentile_window,
    window_sample,
)
from l2s_core.viewer.drawing import draw, legend_entries, new_figure
from l2s_core.viewer.scans import ScanCase, ViewerCase, case_volumes
from l2s_core.viewer.sources import PredictionSource, as_prediction, raw_ct_window, saved_prediction_source
from l2s_core.viewer.view_state import Layer, Outline, ViewState


def _checkbox(value: bool, description: str) -> widgets.Checkbox:
    """A checkbox as wide as its label (the default 300 px puts one per line in a wrapped row)."""
    return widgets.Checkbox(value=value, description=description, indent=False, layout=widgets.Layout(width="auto"))


class SliceViewer:
    """Slice explorer with overlays, localisation boxes and a manual segmentation box.

    Args:
        cases: a prepared task (its cases in split order train, val, test, or only those of
            ``split``), or a sequence of prepared cases or of scans
            (:class:`~l2s_core.viewer.scans.ScanCase`: no ground truth, no label box; the slices
            and the manual box start on the two-stage box when there is one).
        sources: method name → prediction source: a callable ``case -> (z, y, x) mask`` (or a
            :class:`~l2s_core.prediction.Prediction`, whose box is drawn), or a folder of saved
            predictions (:func:`saved_prediction_source`). Names ``baseline``, ``two_stage`` and
            ``gt_localised`` get their usual labels. Predictions are computed when their
            overlay is shown and kept for the current case only.
        organ_network: network (with its window) run by the "segment in box" button
            (disabled without one).
        device: torch device of ``organ_network``.
        split: with a task, show only this split's cases.
        window_level: initial ``(window, level)``; default :func:`raw_ct_window` of the task,
            and otherwise the "auto window" percentiles of each case.

    Attributes:
        widgets: the controls by name: ``case``, ``view``, ``slice``, ``window``, ``level``,
            ``auto_window``, ``opacity``, ``show_boxes``, ``show_<overlay>`` per overlay,
            ``box_z``, ``box_y``, ``box_x`` (inclusive voxel ranges), ``segment``, ``status``,
            ``legend`` (HTML naming the colour of everything drawn, :meth:`legend_entries`) and
            ``display`` (the Output holding the figure).
        artists: the figure :func:`~l2s_core.viewer.drawing.draw` sets (also as ``figure``,
            ``image_artist``, ``overlay_artists``: overlay name → its image, ``ground_truth``
            for prepared cases, the sources, ``manual``; and ``box_artists``: ``crop`` (label
            box), ``two_stage`` (predicted box) and ``manual`` outlines).

    Raises:
        InputDataError: no cases to show.
        ConfigError: an unknown ``split``.
    """

    def __init__(
        self,
        cases: PreparedTask | Sequence[ViewerCase],
        sources: Mapping[str, PredictionSource] | None = None,
        organ_network: Segmenter | None = None,
        device: str = "cpu",
        split: str | None = None,
        window_level: tuple[float, float] | None = None,
    ) -> None:
        self.cases, labels, default_window = self._case_list(cases, split)
        self.labelled = not any(isinstance(c, ScanCase) for c in self.cases)
        self.sources = {
            name: saved_prediction_source(s) if isinstance(s, (str, Path)) else s for name, s in (sources or {}).items()
        }
        self.organ_network = organ_network
        self.device = device
        self._holding = False
        self._predictions: dict[str, Prediction] = {}
        self._manual: np.ndarray | None = None
        self._image = np.zeros((1, 1, 1), np.float32)
        self._label: np.ndarray | None = None
        self.widgets = self._build_widgets(labels, window_level or default_window)
        self.artists = new_figure(self.overlay_names)
        self._observe()
        with self._hold():
            self._load_case()
        self.render()

    # ----------------------------------------------------------------- construction
    @staticmethod
    def _case_list(
        cases: PreparedTask | Sequence[ViewerCase], split: str | None
    ) -> tuple[list[ViewerCase], list[str], tuple[float, float] | None]:
        """Cases, their dropdown labels and the task's default window."""
        if not isinstance(cases, PreparedTask):
            if not cases:
                raise InputDataError("SliceViewer cases", "no prepared cases or scans to show")
            return list(cases), [c.case_id for c in cases], None
        if split is not None:
            check_choice("split", split, SPLIT_NAMES, extra=" or None")
        names = [split] if split is not None else list(SPLIT_NAMES)
        chosen = [(cases.case(c), name) for name in names for c in cases.split[name]]
        if not chosen:
            raise InputDataError(
                cases.folder, f"no prepared cases in split {split!r}" if split else "no prepared cases"
            )
        return [c for c, _ in chosen], [f"{c.case_id} ({name})" for c, name in chosen], raw_ct_window(cases)

    @property
    def overlay_names(self) -> list[str]:
        """Overlays in drawing order: ground truth (prepared cases), the sources, the manual result."""
        return [GROUND_TRUTH] * self.labelled + [*self.sources, MANUAL]

    def _build_widgets(self, labels: list[str], window_level: tuple[float, float] | None) -> dict[str, widgets.Widget]:
        window, level = window_level or (1.0, 0.0)
        w: dict[str, widgets.Widget] = {
            "case": widgets.Dropdown(options=list(zip(labels, range(len(labels)))), value=0, description="case"),
            "view": widgets.ToggleButtons(
                options=list(VIEWS.items()), value=0, description="view", style={"button_width": "6em"}
            ),
            "slice": widgets.IntSlider(min=0, max=1, value=0, description="slice", continuous_update=False),
            "window": widgets.FloatSlider(
                min=min(window, 1e-6), max=window, value=window, description="window", continuous_update=False
            ),
            "level": widgets.FloatSlider(
                min=level - 1, max=level + 1, value=level, description="level", continuous_update=False
            ),
            "auto_window": _checkbox(window_level is None, "auto window"),
            "opacity": widgets.FloatSlider(
                min=0.0, max=1.0, step=0.05, value=0.4, description="opacity", continuous_update=False
            ),
            "show_boxes": _checkbox(True, "boxes"),
        }
        for name, (label, _) in overlay_styles(self.overlay_names).items():
            w[f"show_{name}"] = _checkbox(True, label)
        for axis_name in "zyx":
            w[f"box_{axis_name}"] = widgets.IntRangeSlider(
                min=0, max=1, value=(0, 1), description=f"box {axis_name}", continuous_update=False
            )
        w["segment"] = widgets.Button(
            description="segment in box",
            disabled=self.organ_network is None,
            tooltip="run the organ network inside the manual box",
        )
        w["status"] = widgets.HTML()
        w["legend"] = widgets.HTML()
        w["display"] = widgets.Output()
        return w

    def _observe(self) -> None:
        self.widgets["case"].observe(self._on_case, names="value")
        self.widgets["view"].observe(self._on_view, names="value")
        self.widgets["auto_window"].observe(self._on_auto_window, names="value")
        for name in (
            "slice",
            "window",
            "level",
            "opacity",
            "show_boxes",
            "box_z",
            "box_y",
            "box_x",
            *(f"show_{n}" for n in self.overlay_names),
        ):
            self.widgets[name].observe(self._changed, names="value")
        self.widgets["segment"].on_click(self._on_segment)

    # ----------------------------------------------------------------- public
    @property
    def figure(self) -> Figure:
        """The matplotlib figure."""
        return self.artists.figure

    @property
    def image_artist(self) -> AxesImage:
        """The image of the slice."""
        return self.artists.image

    @property
    def overlay_artists(self) -> Mapping[str, AxesImage]:
        """Overlay name → its image."""
        return self.artists.overlays

    @property
    def box_artists(self) -> Mapping[str, Rectangle]:
        """Box outline name → its rectangle."""
        return self.artists.boxes

    @property
    def case(self) -> ViewerCase:
        """The case shown."""
        return self.cases[self.widgets["case"].value]

    @property
    def axis(self) -> int:
        """The slicing axis (0 axial, 1 coronal, 2 sagittal)."""
        return int(self.widgets["view"].value)

    @property
    def manual_box(self) -> Box:
        """Half-open box of the manual range sliders."""
        (z0, z1), (y0, y1), (x0, x1) = (self.widgets[f"box_{a}"].value for a in "zyx")
        return (z0, y0, x0, z1 + 1, y1 + 1, x1 + 1)

    @property
    def widget(self) -> widgets.Widget:
        """The whole explorer (controls and figure) for ``display``."""
        w = self.widgets
        rows = [
            [w["case"], w["view"]],
            [w["slice"]],
            [w["window"], w["level"], w["auto_window"]],
            [*(w[f"show_{n}"] for n in self.overlay_names), w["opacity"], w["show_boxes"]],
            [w["box_z"], w["box_y"], w["box_x"], w["segment"]],
        ]
        controls = [widgets.HBox(row, layout=widgets.Layout(flex_flow="row wrap")) for row in rows]
        return widgets.VBox([*controls, w["status"], w["legend"], w["display"]])

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    def prediction(self, name: str) -> Prediction:
        """The prediction of source ``name`` on the current case (computed once per case).

        Raises:
            InputDataError: the source's mask does not have the image's shape.
        """
        if name not in self._predictions:
            prediction = as_prediction(self.sources[name](self.case))  # type: ignore[arg-type]  # a source takes the case kind it was made for
            shape = self._image.shape
            if prediction.mask.shape != shape:
                raise InputDataError(
                    f"prediction source {name!r}",
                    f"mask shape {prediction.mask.shape} differs from "
                    f"the image {shape} (z, y, x) of case {self.case.case_id}",
                )
            self._predictions[name] = prediction
        return self._predictions[name]

    def segment_manual_box(self) -> np.ndarray:
        """Run the organ network in the manual box and show its result as the ``manual`` overlay.

        Returns:
            The uint8 ``(z, y, x)`` mask.

        Raises:
            InputDataError: no organ network was given.
        """
        if self.organ_network is None:
            raise InputDataError("SliceViewer organ_network", "no organ network to segment with")
        self._manual = box_predict(self.organ_network, self._image, self.manual_box, self.device)
        with self._hold():
            self.widgets[f"show_{MANUAL}"].value = True
        self.render()
        return self._manual

    def view_state(self) -> ViewState:
        """The frame the controls' values ask for, on the current case (computing the predictions
        of the overlays switched on)."""
        w, case = self.widgets, self.case
        styles = overlay_styles(self.overlay_names)
        layers = tuple(
            Layer(name, *styles[name], self._overlay_mask(name) if w[f"show_{name}"].value else None)
            for name in self.overlay_names
        )
        shown = w["show_boxes"].value
        two_stage_shown = shown and TWO_STAGE in self.sources and w[f"show_{TWO_STAGE}"].value
        outlines = (
            Outline(LABEL_BOX, case.crop_box if shown else None),
            Outline(TWO_STAGE, self.prediction(TWO_STAGE).box if two_stage_shown else None),
            Outline(MANUAL, self.manual_box if shown and self.organ_network is not None else None),
        )
        notes = [("label", case.crop_box)] if case.crop_box is not None else []
        notes += [(styles[name][0], p.box) for name, p in self._predictions.items() if p.box is not None]
        return ViewState(
            case_id=case.case_id,
            image=self._image,
            spacing=case.spacing,
            axis=self.axis,
            index=int(w["slice"].value),
            window=float(w["window"].value),
            level=float(w["level"].value),
            opacity=float(w["opacity"].value),
            layers=layers,
            outlines=outlines,
            box_notes=tuple(notes),
        )

    def legend_entries(self) -> list[LegendEntry]:
        """What the figure draws on the current case, in drawing order: the overlays shown (those
        with a mask: the manual result once segmented) and the box outlines."""
        return legend_entries(self.view_state())

    def render(self) -> None:
        """Redraw the figure for the current widget values and show it in ``widgets["display"]``."""
        frame = draw(self.view_state(), self.artists)
        w = self.widgets
        w["status"].value, w["legend"].value = frame.status, frame.legend
        w["display"].outputs = (
            {
                "output_type": "display_data",
                "data": {"image/png": frame.png, "text/plain": "<slice figure>"},
                "metadata": {},
            },
        )

    # ----------------------------------------------------------------- internals
    @contextlib.contextmanager
    def _hold(self) -> Iterator[None]:
        """Set several widget values with a single redraw (by the caller) afterwards."""
        previous, self._holding = self._holding, True
        try:
            yield
        finally:
            self._holding = previous

    def _changed(self, change: Any = None) -> None:
        """Observer of the controls that only need a redraw."""
        if not self._holding:
            self.render()

    def _on_case(self, change: Any) -> None:
        with self._hold():
            self._load_case()
        self._changed()

    def _on_view(self, change: Any) -> None:
        with self._hold():
            self._reset_slice()
        self._changed()

    def _on_auto_window(self, change: Any) -> None:
        if self.widgets["auto_window"].value:
            with self._hold():
                self._set_window(*auto_window(self._image))
            self._changed()

    def _on_segment(self, button: widgets.Button) -> None:
        self.segment_manual_box()

    def _load_case(self) -> None:
        """Open the current case's arrays, drop the previous case's results, and set the
        slider ranges (window and level keep their values unless "auto window" is on)."""
        self._predictions.clear()
        self._manual = None
        self._image, self._label = case_volumes(self.case)
        image = self._image
        sample = window_sample(image)  # one partial read of a memory-mapped volume for both windows
        full_width, centre = percentile_window(sample, percentiles=(0.0, 100.0))
        if self.widgets["auto_window"].value:
            window, level = percentile_window(sample)
        else:
            window, level = self.widgets["window"].value, self.widgets["level"].value
        span = max(full_width, window)
        step = span / 200
        self._set_range(
            self.widgets["level"], min(centre - full_width / 2, level), max(centre + full_width / 2, level), level, step
        )
        self._set_range(self.widgets["window"], min(step, window), 2 * span, window, step)
        box = self._focus_box()
        for a, axis_name in enumerate("zyx"):
            last = image.shape[a] - 1
            lo, hi = min(max(box[a], 0), last), min(max(box[a + 3] - 1, 0), last)
            slider = self.widgets[f"box_{axis_name}"]
            slider.max = max(last, 1)
            slider.value = (lo, hi)
        self._reset_slice()

    def _focus_box(self) -> Box:
        """Where a case opens: its label box, else the two-stage box, else the whole image."""
        if self.case.crop_box is not None:
            return self.case.crop_box
        if TWO_STAGE in self.sources and (box := self.prediction(TWO_STAGE).box) is not None:
            return box
        return (0, 0, 0, *self._image.shape)

    def _reset_slice(self) -> None:
        """Slice slider range of the current view, at the middle of :meth:`_focus_box`."""
        axis, box = self.axis, self._focus_box()
        last = self._image.shape[axis] - 1
        middle = min(max((box[axis] + box[axis + 3] - 1) // 2, 0), last)
        self._set_range(self.widgets["slice"], 0, last, middle)

    def _set_window(self, window: float, level: float) -> None:
        for name, value in (("window", window), ("level", level)):
            slider = self.widgets[name]
            self._set_range(slider, min(slider.min, value), max(slider.max, value), value)

    @staticmethod
    def _set_range(slider: widgets.Widget, low: float, high: float, value: float, step: float | None = None) -> None:
        """Set a slider's range and value in an order its validation accepts."""
        if low > slider.max:
            slider.max, slider.min = high, low
        else:
            slider.min, slider.max = low, high
        if step is not None:
            slider.step = step
        slider.value = value

    def _overlay_mask(self, name: str) -> np.ndarray | None:
        if name == GROUND_TRUTH:
            return self._label
        if name == MANUAL:
            return self._manual
        return self.prediction(name).mask
