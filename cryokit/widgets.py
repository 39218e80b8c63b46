"""``ThresholdPanel``: pick per-class thresholds on scored candidates with the metric live.

The panel's logic (``set_threshold``, ``set_nms_fraction``, ``optimise``, ``table``, ``score``, ``save``,
``figure``) is plain Python over ``cryokit.thresholds``' exact curves, so a notebook run headless
(papermill) exercises the same code the widgets call. ``widget()`` builds the ipywidgets front end:
a slider per class, one for the NMS radius, a live table of precision / recall / F4 and the weighted
total, precision-recall curves with the operating points, and buttons to jump to the optimum and to
save ``thresholds.json`` (for ``cryokit predict --thresholds``).
"""

from __future__ import annotations

import html
import io
import time
from pathlib import Path

import pandas as pd

from cryokit.particles import COMPETITION_CATALOG, ParticleCatalog
from cryokit.thresholds import nms_candidates, save_thresholds, threshold_curves, weighted_score

__all__ = ["ThresholdPanel"]

_CSS = """<style>
.cryokit-threshold-table table {border-collapse: collapse; font-size: 13px; font-family: sans-serif}
.cryokit-threshold-table th, .cryokit-threshold-table td {padding: 3px 9px; text-align: right;
  border-bottom: 1px solid #ddd}
.cryokit-threshold-table th {background: #f3f4f6} .cryokit-threshold-table td.name {text-align: left}
.cryokit-threshold-table tr.total td {font-weight: bold; border-top: 2px solid #666}
.cryokit-threshold-table tr.unscored td {color: #999}
</style>"""


class ThresholdPanel:
    """Per-class thresholds over scored candidates, scored exactly against a solution.

    Args:
        candidates: scored picks (experiment, particle_type, x, y, z in Angstrom, score).
        solution: reference picks (experiment, particle_type, x, y, z).
        nms_fraction: spherical NMS radius as a share of each class radius, applied to the candidates
            before scoring (0: as given; values under the decoder's ``postprocess.radius_fraction``
            change nothing).
        out_path: where ``save()`` writes ``thresholds.json``.

    Thresholds start at the optimum of every class present in the solution.
    """

    def __init__(
        self,
        candidates: pd.DataFrame,
        solution: pd.DataFrame,
        nms_fraction: float = 0.0,
        out_path: str | Path = "thresholds.json",
        catalog: ParticleCatalog = COMPETITION_CATALOG,
    ):
        self.raw_candidates, self.solution, self.out_path = candidates, solution, Path(out_path)
        self.catalog = catalog
        self.nms_fraction = -1.0
        self.set_nms_fraction(nms_fraction)
        self.thresholds: dict[str, float] = {}
        self.optimise()
        self._view = None

    # -- logic -----------------------------------------------------------------------------------
    def set_nms_fraction(self, fraction: float) -> None:
        """Re-apply spherical NMS with ``fraction`` x class radius and recompute the curves."""
        fraction = float(fraction)
        if fraction != self.nms_fraction:
            self.candidates = nms_candidates(self.raw_candidates, fraction, self.catalog)
            self.curves = threshold_curves(self.candidates, self.solution, catalog=self.catalog)
            self.nms_fraction = fraction

    def set_threshold(self, name: str, value: float) -> None:
        """Keep candidates of class ``name`` with ``score >= value``."""
        if name not in self.curves:
            raise ValueError(f"no curve for {name!r}: the classes of the solution are {', '.join(self.curves)}")
        self.thresholds[name] = float(value)

    def optimise(self) -> dict[str, float]:
        """Set every class to its F4-optimal threshold (exact, ``ThresholdCurve.best``) and return them."""
        self.thresholds = {name: curve.best()[0] for name, curve in self.curves.items()}
        return dict(self.thresholds)

    def score(self) -> float:
        """The competition score at the current thresholds."""
        return weighted_score(self.curves, self.thresholds, catalog=self.catalog)

    def best_score(self) -> float:
        return weighted_score(self.curves, {name: c.best()[0] for name, c in self.curves.items()}, catalog=self.catalog)

    def table(self) -> pd.DataFrame:
        """One row per class: weight, threshold, kept candidates, tp, fp, fn, precision, recall, F4."""
        rows = []
        for name, curve in self.curves.items():
            threshold = self.thresholds[name]
            tp, fp, fn, precision, recall, fbeta = curve.at(threshold)
            rows.append((name, self.catalog.get(name).weight, threshold, tp + fp, tp, fp, fn, precision, recall, fbeta))
        table = pd.DataFrame(
            rows,
            columns=["particle_type", "weight", "threshold", "kept", "tp", "fp", "fn", "precision", "recall", "fbeta"],
        )
        table.attrs["score"] = self.score()
        return table

    def save(self, path: str | Path | None = None) -> Path:
        """Write the current thresholds as JSON (atomically) for ``cryokit predict --thresholds``."""
        return save_thresholds(path or self.out_path, self.thresholds, self.catalog)

    def figure(self, fig=None):
        """Precision-recall and F4 curves with the current operating points (a matplotlib Figure)."""
        from matplotlib.figure import Figure

        from cryokit.plots.tuning import plot_threshold_curves

        return plot_threshold_curves(self.curves, self.thresholds, fig or Figure(figsize=(11, 4.2)), self.catalog)

    def table_html(self) -> str:
        """The table as HTML (the widget's live table)."""
        lines = [
            _CSS,
            "<table><tr><th>class</th><th>weight</th><th>threshold</th><th>kept</th><th>TP</th>"
            "<th>FP</th><th>FN</th><th>precision</th><th>recall</th><th>F4</th></tr>",
        ]
        for row in self.table().itertuples():
            unscored = ' class="unscored"' if row.weight == 0 else ""
            lines.append(
                f'<tr data-class="{html.escape(row.particle_type)}"{unscored}>'
                f'<td class="name">{html.escape(row.particle_type)}</td><td>{row.weight}</td>'
                f'<td class="threshold">{row.threshold:.4f}</td><td>{row.kept}</td><td>{row.tp}</td>'
                f'<td>{row.fp}</td><td>{row.fn}</td><td class="precision">{row.precision:.4f}</td>'
                f'<td class="recall">{row.recall:.4f}</td><td class="fbeta">{row.fbeta:.4f}</td></tr>'
            )
        lines.append(
            f'<tr class="total"><td class="name" colspan="9">weighted F4 (score; optimum '
            f'{self.best_score():.4f})</td><td class="cryokit-total">{self.score():.4f}</td></tr></table>'
        )
        return "\n".join(lines)

    # -- front end -------------------------------------------------------------------------------
    def widget(self):
        """The ipywidgets panel (built once, then reused)."""
        if self._view is None:
            self._view = _PanelView(self)
        return self._view.root

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget())


class _PanelView:
    """The widgets of a ``ThresholdPanel``; every change calls the panel's methods, then redraws."""

    def __init__(self, panel: ThresholdPanel):
        import ipywidgets as w

        self.panel, self._syncing = panel, False
        scores = panel.raw_candidates["score"].to_numpy(float)
        low, high = min(0.0, float(scores.min(initial=0.0))), max(1.0, float(scores.max(initial=1.0)))
        style, layout = {"description_width": "150px"}, w.Layout(width="440px")
        self.sliders = {
            name: w.FloatSlider(
                value=min(value, high),
                min=low,
                max=high,
                step=0.001,
                description=name,
                readout_format=".3f",
                continuous_update=False,
                style=style,
                layout=layout,
            )
            for name, value in panel.thresholds.items()
        }
        self.nms = w.FloatSlider(
            value=panel.nms_fraction,
            min=0.0,
            max=1.0,
            step=0.05,
            readout_format=".2f",
            description="NMS radius (x r)",
            continuous_update=False,
            style=style,
            layout=layout,
        )
        button = w.Layout(width="215px")
        self.optimum = w.Button(description="Jump to optimum", icon="bullseye", button_style="info", layout=button)
        self.save = w.Button(description="Save thresholds.json", icon="save", button_style="success", layout=button)
        self.status = w.HTML()
        self.table = w.HTML()
        # An Image widget, not an Output widget: redrawing it is one state update, with none of the
        # output capture that left headless (papermill) runs waiting for a reply now and then.
        self.plot = w.Image(format="png")
        for name, slider in self.sliders.items():
            slider.add_class(f"cryokit-slider-{name}")
            slider.observe(lambda change, name=name: self._on_threshold(name, change["new"]), names="value")
        self.nms.add_class("cryokit-slider-nms")
        self.nms.observe(lambda change: self._on_nms(change["new"]), names="value")
        self.optimum.add_class("cryokit-optimum")
        self.optimum.on_click(lambda _: self._on_optimum())
        self.save.add_class("cryokit-save")
        self.save.on_click(lambda _: self._on_save())
        self.table.add_class("cryokit-threshold-table")
        title = w.HTML(
            "<h3 style='margin:4px 0'>Per-class thresholds on the validation F4 (beta = 4)</h3>"
            "<div style='color:#555'>Keep a class's picks whose score is at least its threshold. "
            "Arrow keys move a focused slider by 0.001.</div>"
        )
        controls = w.VBox([*self.sliders.values(), self.nms, w.HBox([self.optimum, self.save]), self.status])
        self.root = w.VBox([title, w.HBox([controls, self.table]), self.plot])
        self.root.add_class("cryokit-threshold-panel")
        self.refresh()

    def refresh(self) -> None:
        self.table.value = self.panel.table_html()
        buffer = io.BytesIO()
        self.panel.figure().savefig(buffer, format="png", dpi=90, bbox_inches="tight")
        self.plot.value = buffer.getvalue()

    def _on_threshold(self, name: str, value: float) -> None:
        # The front end rounds values to the slider's step: keep the exact value unless the user moved it.
        if not self._syncing and abs(value - self.panel.thresholds[name]) >= 0.0005:
            self.panel.set_threshold(name, value)
            self.refresh()

    def _on_nms(self, value: float) -> None:
        self.panel.set_nms_fraction(value)
        self.refresh()

    def _on_optimum(self) -> None:
        self.panel.optimise()
        self._syncing = True
        try:
            for name, slider in self.sliders.items():
                slider.value = min(self.panel.thresholds[name], slider.max)
        finally:
            self._syncing = False
        self.refresh()

    def _on_save(self) -> None:
        path = self.panel.save()
        self.status.value = (
            f"<span class='cryokit-saved'>saved {html.escape(str(path))} at {time.strftime('%H:%M:%S')}</span>"
        )
