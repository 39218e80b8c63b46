"""Figures of tuning: Optuna study plots and per-class precision-recall curves with operating points.

Every function returns a matplotlib ``Figure``; ``cryokit.plots.save_figure`` writes a PNG atomically. The
Optuna figures are ``optuna.visualization.matplotlib``'s, sized and titled for a notebook.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Mapping, Sequence

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from cryokit.particles import COMPETITION_CATALOG, ParticleCatalog
from cryokit.plots._common import save_figure

__all__ = [
    "plot_optimization_history",
    "plot_param_importances",
    "plot_parallel_coordinate",
    "save_study_figures",
    "plot_threshold_curves",
]

log = logging.getLogger(__name__)


def _optuna_figure(plot, *args, size: tuple[float, float], title: str, **kwargs) -> Figure:
    import optuna

    # optuna switches the global style to ggplot: keep that inside this figure
    with warnings.catch_warnings(), matplotlib.rc_context():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        axes = plot(*args, **kwargs)
        first = np.ravel(axes)[0] if isinstance(axes, np.ndarray) else axes
        fig = first.figure
        fig.set_size_inches(*size)
        first.set_title("", loc="left")
        first.set_title(title)
    return fig


def plot_optimization_history(study) -> Figure:
    """Validation F4 of every complete trial and the best so far."""
    from optuna.visualization.matplotlib import plot_optimization_history as plot

    return _optuna_figure(
        plot, study, target_name="validation F4", size=(8, 4.5), title=f"{study.study_name}: validation F4 per trial"
    )


def plot_param_importances(study) -> Figure:
    """fANOVA importance of each searched key for the validation F4 (needs >= 2 complete trials)."""
    from optuna.visualization.matplotlib import plot_param_importances as plot

    return _optuna_figure(
        plot, study, target_name="validation F4", size=(8, 5), title=f"{study.study_name}: hyperparameter importance"
    )


def plot_parallel_coordinate(study, params: Sequence[str] | None = None) -> Figure:
    """One line per complete trial across ``params`` (all searched keys if None), coloured by F4."""
    from optuna.visualization.matplotlib import plot_parallel_coordinate as plot

    return _optuna_figure(
        plot,
        study,
        params=list(params) if params else None,
        target_name="validation F4",
        size=(max(8, 1.4 * len(params or study.best_params)), 5),
        title=f"{study.study_name}: trials across the search space",
    )


def _top_params(study, k: int) -> list[str] | None:
    """The ``k`` most important searched keys (None when importances cannot be computed)."""
    import optuna

    try:
        return list(optuna.importance.get_param_importances(study))[:k]
    except (RuntimeError, ValueError) as error:
        log.info("no parameter importances for %s: %s", study.study_name, error)
        return None


def save_study_figures(study, out_dir: str | Path, top_params: int = 6) -> dict[str, Path]:
    """Optimisation history, parameter importances and a parallel coordinate plot of the ``top_params``
    most important keys, as PNGs in ``out_dir``. Importances need >= 2 complete trials; without them
    only the history is written."""
    import optuna

    out_dir = Path(out_dir)
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        raise ValueError(f"study {study.study_name!r} has no complete trial to plot")
    written = {"history": save_figure(plot_optimization_history(study), out_dir / "optuna_history.png")}
    top = _top_params(study, top_params) if len(complete) >= 2 else None
    if top:
        written["importances"] = save_figure(plot_param_importances(study), out_dir / "optuna_importances.png")
        written["parallel"] = save_figure(plot_parallel_coordinate(study, top), out_dir / "optuna_parallel.png")
    plt.close("all")
    return written


def plot_threshold_curves(
    curves: Mapping,
    thresholds: Mapping[str, float],
    fig: Figure | None = None,
    catalog: ParticleCatalog = COMPETITION_CATALOG,
) -> Figure:
    """Left: precision-recall curve of each class (``cryokit.thresholds.ThresholdCurve``) with the operating
    point at its threshold; right: F4 against the threshold with the chosen threshold marked.

    Args:
        curves: ``{particle: ThresholdCurve}``.
        thresholds: ``{particle: threshold}`` (classes not listed are drawn without an operating point).
        fig: a figure to draw into (cleared), e.g. to redraw inside a widget.
        catalog: the classes' colours (default the competition's six).
    """
    fig = fig or plt.figure(figsize=(11, 4.2))
    fig.clear()
    pr, fb = fig.subplots(1, 2)
    for name, curve in curves.items():
        colour = catalog.get(name).color_float
        if len(curve.thresholds):
            pr.plot(curve.recall, curve.precision, color=colour, lw=1.5, label=name)
            fb.plot(curve.thresholds, curve.fbeta, color=colour, lw=1.5, label=name)
        if name in thresholds:
            _, _, _, precision, recall, fbeta = curve.at(thresholds[name])
            pr.plot([recall], [precision], "o", color=colour, ms=8, mec="black")
            fb.plot([thresholds[name]], [fbeta], "o", color=colour, ms=8, mec="black")
    pr.set(
        xlabel="recall",
        ylabel="precision",
        xlim=(0, 1.02),
        ylim=(0, 1.02),
        title="precision-recall (dots: current thresholds)",
    )
    fb.set(xlabel="threshold (keep score >= threshold)", ylabel="F4", ylim=(0, 1.02), title="F4 per class")
    for ax in (pr, fb):
        ax.grid(alpha=0.3)
    fb.legend(loc="lower left", fontsize=8, frameon=True)
    fig.tight_layout()
    return fig
