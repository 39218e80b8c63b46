"""Figures of training and evaluation: curves, per-class scores side by side, predictions on a slice.

Every function returns a matplotlib Figure and, given ``path``, saves it as PNG.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from cryokit.coords import angstrom_xyz_to_voxel_zyx, voxel_zyx_to_angstrom_xyz
from cryokit.particles import COMPETITION_CATALOG, ParticleCatalog
from cryokit.plots._common import finish, slice_extent_angstrom

__all__ = ["plot_training_curves", "plot_score_comparison", "plot_score_heatmap", "plot_predictions_on_slice"]


def plot_training_curves(
    history: Sequence[Mapping[str, float]],
    path: str | Path | None = None,
    catalog: ParticleCatalog = COMPETITION_CATALOG,
) -> plt.Figure:
    """Training loss (and its terms) and validation F4 (weighted and per scored class of ``catalog``)."""
    frame = pd.DataFrame(list(history))
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(13, 4.5))
    for column in [c for c in frame.columns if c.startswith("train_")]:
        ax_loss.plot(frame["epoch"], frame[column], marker="o", markersize=3, label=column.removeprefix("train_"))
    terms = frame[[c for c in frame.columns if c.startswith("train_")]]
    if len(terms) and (terms.to_numpy() > 0).all():  # terms differ by orders of magnitude
        ax_loss.set_yscale("log")
    ax_loss.set(
        xlabel="epoch",
        ylabel="loss (log scale)" if ax_loss.get_yscale() == "log" else "loss",
        title="Training loss and its terms per epoch (mean over steps)",
    )
    ax_loss.legend(fontsize=8)
    validated = frame.dropna(subset=["val_score"]) if "val_score" in frame else frame.iloc[:0]
    for name in catalog.scored_names:
        column = f"val_f4/{name}"
        if column in validated:
            ax_val.plot(
                validated["epoch"],
                validated[column],
                color=catalog.get(name).color_float,
                linewidth=1,
                alpha=0.8,
                label=name,
            )
    if len(validated):
        ax_val.plot(
            validated["epoch"], validated["val_score"], color="black", linewidth=2.5, label="weighted F4 (score)"
        )
    ax_val.set(
        xlabel="epoch",
        ylabel="F4 on validation runs",
        ylim=(0, 1.02),
        title="Validation F4 at tuned per-class thresholds",
    )
    if len(validated):
        ax_val.legend(fontsize=8, loc="lower right")
    else:
        ax_val.text(0.5, 0.5, "no validation runs", ha="center", va="center", transform=ax_val.transAxes)
    for ax in (ax_loss, ax_val):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    return finish(fig, path)


def plot_score_comparison(
    tables: Mapping[str, pd.DataFrame],
    path: str | Path | None = None,
    title: str = "Per-class F4 on held-out runs",
    catalog: ParticleCatalog = COMPETITION_CATALOG,
) -> plt.Figure:
    """Grouped bars (seaborn) of per-class F4 for several methods (``cryokit.metric.score_table`` outputs)."""
    import seaborn as sns

    names = list(catalog.scored_names)
    labels = {m: f"{m} (score {t.attrs.get('score', float('nan')):.3f})" for m, t in tables.items()}
    long = pd.concat([t[t["particle_type"].isin(names)].assign(method=labels[m]) for m, t in tables.items()])
    fig, ax = plt.subplots(figsize=(11, 4.5))
    sns.barplot(long, x="particle_type", y="fbeta", hue="method", order=names, ax=ax)
    for container in ax.containers:
        ax.bar_label(container, fmt="%.2f", fontsize=7, padding=1)
    ax.set_xticks(range(len(names)), [f"{n}\n(weight {catalog.get(n).weight:g})" for n in names], fontsize=8)
    ax.set(xlabel="", ylabel="F4", ylim=(0, 1.22), title=title)
    ax.legend(fontsize=9, loc="upper center", ncol=min(4, len(tables)), frameon=False)
    fig.tight_layout()
    return finish(fig, path)


def _wrap(name: str, width: int = 12) -> str:
    return name.replace("-", "-\n", 1) if len(name) > width and "-" in name else name


def plot_score_heatmap(
    tables: Mapping[str, pd.DataFrame],
    path: str | Path | None = None,
    title: str = "Per-class F4",
    catalog: ParticleCatalog = COMPETITION_CATALOG,
) -> plt.Figure:
    """A table as a heatmap (seaborn): one row per method, per-class F4 and the weighted score, annotated."""
    import seaborn as sns

    names = list(catalog.scored_names)
    grid = pd.DataFrame(
        {
            method: [*table.set_index("particle_type")["fbeta"].reindex(names).fillna(0.0), table.attrs["score"]]
            for method, table in tables.items()
        },
        # Long names break after their first hyphen so that neighbouring column labels do not run together.
        index=[*(f"{_wrap(n)}\n(w {catalog.get(n).weight:g})" for n in names), "weighted F4"],
    ).T
    width = 2.5 + 0.075 * max(len(method) for method in tables) + 1.3 * grid.shape[1]  # row labels + columns
    fig, ax = plt.subplots(figsize=(max(12.0, width), 0.55 * len(grid) + 1.8))
    sns.heatmap(grid, annot=True, fmt=".3f", vmin=0, vmax=1, cmap="viridis", cbar_kws={"label": "F4"}, ax=ax)
    ax.axvline(len(names), color="white", lw=3)  # the weighted score apart from the classes
    ax.set(xlabel="", ylabel="", title=title)
    ax.tick_params(axis="x", labelsize=8, labelrotation=0)
    fig.tight_layout()
    return finish(fig, path)


def plot_predictions_on_slice(
    volume_zyx: np.ndarray,
    truth: pd.DataFrame,
    predicted: pd.DataFrame,
    voxel_spacing_angstrom_zyx,
    z_index: int | None = None,
    title: str = "",
    path: str | Path | None = None,
    catalog: ParticleCatalog = COMPETITION_CATALOG,
) -> plt.Figure:
    """An xy slice (mean of 3 planes) with true picks as circles and predictions as crosses.

    Both are drawn when their centre lies within half the class radius of the slice; colours are the
    catalog's. Picks tables are in Angstrom (experiment, particle_type, x, y, z).
    """
    shape = np.asarray(volume_zyx.shape)
    if z_index is None:
        depths = angstrom_xyz_to_voxel_zyx(truth[["x", "y", "z"]].to_numpy(), voxel_spacing_angstrom_zyx)[:, 0]
        z_index = int(np.median(depths)) if len(depths) else int(shape[0] // 2)
    z_index = int(np.clip(z_index, 1, shape[0] - 2))
    plane_angstrom = voxel_zyx_to_angstrom_xyz(np.array([[z_index, 0, 0]]), voxel_spacing_angstrom_zyx)[0, 2]
    image = volume_zyx[z_index - 1 : z_index + 2].mean(axis=0)
    fig, ax = plt.subplots(figsize=(9, 9 * shape[1] / shape[2] + 0.6))
    low, high = np.percentile(image, [1, 99])
    ax.imshow(
        image, cmap="gray", vmin=low, vmax=high, extent=slice_extent_angstrom(shape, voxel_spacing_angstrom_zyx, 2, 1)
    )
    for frame, style in ((truth, "truth"), (predicted, "predicted")):
        for row in frame.itertuples():
            radius = catalog.get(row.particle_type).radius_angstrom
            if abs(row.z - plane_angstrom) > 0.5 * radius:
                continue
            colour = catalog.get(row.particle_type).color_float
            if style == "truth":
                ax.add_patch(plt.Circle((row.x, row.y), radius, fill=False, edgecolor=colour, linewidth=1.5))
            else:
                ax.plot(row.x, row.y, marker="x", color=colour, markersize=7, markeredgewidth=2)
    handles = [
        Line2D(
            [],
            [],
            marker="o",
            linestyle="",
            markerfacecolor="none",
            markeredgecolor="grey",
            markersize=10,
            label="true pick (catalog radius)",
        ),
        Line2D([], [], marker="x", linestyle="", color="grey", markersize=8, label="predicted pick"),
    ]
    handles += [Line2D([], [], color=p.color_float, linewidth=4, label=p.name) for p in catalog]
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.set(xlabel="x (Å)", ylabel="y (Å)", title=title or f"Predicted vs true picks, xy at z = {plane_angstrom:.0f} Å")
    fig.tight_layout()
    return finish(fig, path)
