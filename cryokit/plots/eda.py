"""Exploratory figures: each function returns a matplotlib Figure and, given ``path``, saves it as PNG.

Organised by figure. Picks tables have the columns experiment,
particle_type, x, y, z in Angstrom; volumes are (Z, Y, X) arrays with ``voxel_spacing_angstrom_zyx``.
Particle colours are the catalog's (``Particle.color_float``). All unit conversions go through
``cryokit.coords``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.patches import Circle
from scipy.spatial import cKDTree

from cryokit.coords import angstrom_xyz_to_voxel_zyx, radius_angstrom_to_voxels, voxel_zyx_to_angstrom_xyz
from cryokit.particles import COMPETITION_CATALOG, ParticleCatalog
from cryokit.plots._common import finish, slice_extent_angstrom

__all__ = [
    "particle_counts_table",
    "plot_particle_counts",
    "plot_intensity_histograms",
    "plot_orthogonal_slices",
    "mean_subtomograms",
    "plot_mean_subtomograms",
    "nearest_neighbour_distances",
    "plot_nearest_neighbour_distances",
    "plot_depth_distribution",
]


def _class_handles(catalog: ParticleCatalog) -> list[Line2D]:
    return [
        Line2D(
            [],
            [],
            marker="o",
            linestyle="",
            markerfacecolor="none",
            markeredgewidth=2,
            markeredgecolor=catalog.get(n).color_float,
            markersize=9,
            label=n,
        )
        for n in catalog.names
    ]


# --- Particles per class and run -------------------------------------------------------------------


def particle_counts_table(picks: pd.DataFrame, catalog: ParticleCatalog = COMPETITION_CATALOG) -> pd.DataFrame:
    """Runs x particle types (catalog order) counts, with a ``total`` row and column."""
    table = pd.crosstab(picks["experiment"], picks["particle_type"]).reindex(columns=list(catalog.names), fill_value=0)
    table.loc["total"] = table.sum()
    table["total"] = table.sum(axis=1)
    return table


def plot_particle_counts(
    picks: pd.DataFrame, path: str | Path | None = None, catalog: ParticleCatalog = COMPETITION_CATALOG
) -> plt.Figure:
    """Grouped bars (seaborn): particles of each type in each run."""
    import seaborn as sns

    counts = particle_counts_table(picks, catalog).drop(index="total", columns="total")
    long = counts.reset_index(names="run").melt(id_vars="run", var_name="particle_type", value_name="particles")
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(counts) + 3), 4.2), layout="constrained")
    sns.barplot(
        long,
        x="run",
        y="particles",
        hue="particle_type",
        hue_order=catalog.names,
        ax=ax,
        palette={p.name: p.color_float for p in catalog},
        edgecolor="black",
        linewidth=0.4,
    )
    ax.tick_params(axis="x", rotation=20)
    ax.set(xlabel="", ylabel="particles per run", title="Particles per class and run")
    ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(axis="y", alpha=0.3)
    return finish(fig, path)


# --- Intensity histograms ----------------------------------------------------------------------------


def plot_intensity_histograms(
    volumes: Mapping[str, np.ndarray], path: str | Path | None = None, bins: int = 200
) -> plt.Figure:
    """One histogram per tomo type (raw values, every 2nd voxel per axis, log counts)."""
    fig, axes = plt.subplots(1, len(volumes), figsize=(4.6 * len(volumes), 3.6), squeeze=False)
    for ax, (tomo_type, volume) in zip(axes[0], volumes.items()):
        values = np.asarray(volume)[::2, ::2, ::2].ravel()
        low, high = np.percentile(values, [0.05, 99.95])
        ax.hist(values, bins=np.linspace(low, high, bins), color="0.35")
        ax.set_yscale("log")
        ax.set_title(f"{tomo_type}: mean {values.mean():.2e}, std {values.std():.2e}", fontsize=10)
        ax.set_xlabel("voxel intensity (raw units)")
        ax.ticklabel_format(axis="x", style="sci", scilimits=(-3, 3))
    axes[0, 0].set_ylabel("voxels (log scale)")
    fig.suptitle("Intensity histograms per tomogram type (0.05-99.95 percentile range)")
    fig.tight_layout()
    return finish(fig, path)


# --- Orthogonal slices with picks --------------------------------------------------------------------


def _plane_angstrom(index: int, axis: int, spacing_zyx) -> float:
    voxel = np.zeros(3)
    voxel[axis] = index
    return float(voxel_zyx_to_angstrom_xyz(voxel, spacing_zyx)[0][2 - axis])


def _draw_slice(ax, image, extent, picks, plane_column: str, plane_angstrom: float, h: str, v: str, catalog) -> None:
    low, high = np.percentile(image, [1, 99])
    ax.imshow(image, cmap="gray", vmin=low, vmax=high, extent=extent, interpolation="nearest")
    for row in picks.itertuples():
        radius = catalog.get(row.particle_type).radius_angstrom
        distance = abs(getattr(row, plane_column) - plane_angstrom)
        if distance < radius:  # the sphere's cross-section with the plane
            ax.add_patch(
                Circle(
                    (getattr(row, h), getattr(row, v)),
                    np.sqrt(radius**2 - distance**2),
                    fill=False,
                    edgecolor=catalog.get(row.particle_type).color_float,
                    linewidth=1.6,
                )
            )
    ax.set_xlabel(f"{h} (Å)")
    ax.set_ylabel(f"{v} (Å)")


def plot_orthogonal_slices(
    volume_zyx: np.ndarray,
    picks: pd.DataFrame,
    voxel_spacing_angstrom_zyx,
    centre_zyx: Sequence[int] | None = None,
    title: str = "",
    path: str | Path | None = None,
    catalog: ParticleCatalog = COMPETITION_CATALOG,
) -> plt.Figure:
    """xy, xz and yz slices through ``centre_zyx`` with each pick drawn as its sphere's cross-section.

    Args:
        volume_zyx: (Z, Y, X) tomogram.
        picks: the run's picks (Angstrom); only those whose sphere crosses a plane are drawn.
        voxel_spacing_angstrom_zyx: the volume's spacing.
        centre_zyx: slice indices (z, y, x); default: the median pick depth and the lateral centre.
        title: figure title.
    """
    shape = np.asarray(volume_zyx.shape)
    if centre_zyx is None:
        depth = (
            np.median(angstrom_xyz_to_voxel_zyx(picks[["x", "y", "z"]].to_numpy(), voxel_spacing_angstrom_zyx)[:, 0])
            if len(picks)
            else shape[0] / 2
        )
        centre_zyx = (int(round(depth)), int(shape[1] // 2), int(shape[2] // 2))
    z, y, x = (int(np.clip(c, 0, n - 1)) for c, n in zip(centre_zyx, shape))
    width = 12.0
    fig = plt.figure(figsize=(width, width * (shape[1] + shape[0]) / (shape[2] + shape[0])), layout="constrained")
    grid = fig.add_gridspec(2, 2, width_ratios=[shape[2], shape[0]], height_ratios=[shape[1], shape[0]])
    ax_xy, ax_yz, ax_xz = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1]), fig.add_subplot(grid[1, 0])
    spacing = voxel_spacing_angstrom_zyx
    # (axes, image, extent axes (horizontal, vertical), plane axis, plane voxel, axis names)
    planes = (
        (ax_xy, volume_zyx[z], (2, 1), 0, z, "x", "y"),
        (ax_xz, volume_zyx[:, y, :], (2, 0), 1, y, "x", "z"),
        (ax_yz, volume_zyx[:, :, x].T, (0, 1), 2, x, "z", "y"),
    )
    for ax, image, (h_axis, v_axis), axis, index, h, v in planes:
        plane = _plane_angstrom(index, axis, spacing)
        name = "zyx"[axis]
        _draw_slice(ax, image, slice_extent_angstrom(shape, spacing, h_axis, v_axis), picks, name, plane, h, v, catalog)
        ax.set_title(f"{h}{v} at {name} = {plane:.0f} Å (voxel {index})", fontsize=10)
    legend_ax = fig.add_subplot(grid[1, 1])
    legend_ax.axis("off")
    legend_ax.legend(
        handles=_class_handles(catalog), loc="center", fontsize=8, frameon=False, title="picks (catalog radius)"
    )
    fig.suptitle(title or "Orthogonal slices with picks")
    return finish(fig, path)


# --- Mean sub-tomograms ------------------------------------------------------------------------------


def mean_subtomograms(
    volumes_zyx: Sequence[np.ndarray],
    picks_per_volume: Sequence[pd.DataFrame],
    voxel_spacing_angstrom_zyx,
    half_width_voxels: int | None = None,
    catalog: ParticleCatalog = COMPETITION_CATALOG,
) -> dict[str, tuple[np.ndarray, int]]:
    """``{particle: (mean crop (2h+1)^3, number of crops)}`` around picks, volumes z-scored first.

    The crop half-width defaults to 1.3 times the largest catalog radius; crops that leave the volume
    are skipped.
    """
    if half_width_voxels is None:
        largest = max(p.radius_angstrom for p in catalog)
        half_width_voxels = int(np.ceil(1.3 * radius_angstrom_to_voxels(largest, voxel_spacing_angstrom_zyx)))
    h = half_width_voxels
    sums = {name: np.zeros((2 * h + 1,) * 3) for name in catalog.names}
    counts = dict.fromkeys(catalog.names, 0)
    for volume, picks in zip(volumes_zyx, picks_per_volume):
        scaled = (volume - volume.mean()) / (volume.std() or 1.0)
        centres = np.round(
            angstrom_xyz_to_voxel_zyx(picks[["x", "y", "z"]].to_numpy(), voxel_spacing_angstrom_zyx)
        ).astype(int)
        for name, (z, y, x) in zip(picks["particle_type"], centres.reshape(-1, 3)):
            if min(z, y, x) >= h and np.all(np.array([z, y, x]) + h < volume.shape):
                sums[name] += scaled[z - h : z + h + 1, y - h : y + h + 1, x - h : x + h + 1]
                counts[name] += 1
    return {name: (sums[name] / max(counts[name], 1), counts[name]) for name in catalog.names}


def plot_mean_subtomograms(
    means: Mapping[str, tuple[np.ndarray, int]],
    voxel_spacing_angstrom_zyx,
    path: str | Path | None = None,
    catalog: ParticleCatalog = COMPETITION_CATALOG,
) -> plt.Figure:
    """Central xy, xz, yz slices of each type's mean sub-tomogram, with its catalog radius as a circle."""
    fig, axes = plt.subplots(len(means), 3, figsize=(7.5, 2.5 * len(means)), squeeze=False)
    for row, (name, (mean, count)) in zip(axes, means.items()):
        h = mean.shape[0] // 2
        half_extent = h * float(np.mean(voxel_spacing_angstrom_zyx))
        extent = [-half_extent, half_extent, half_extent, -half_extent]
        limit = np.percentile(np.abs(mean), 99.5) or 1.0
        for ax, image, label in zip(row, (mean[h], mean[:, h, :], mean[:, :, h].T), ("xy", "xz", "zy")):
            ax.imshow(image, cmap="gray", vmin=-limit, vmax=limit, extent=extent)
            ax.add_patch(
                Circle(
                    (0, 0),
                    catalog.get(name).radius_angstrom,
                    fill=False,
                    linestyle="--",
                    edgecolor=catalog.get(name).color_float,
                    linewidth=1.2,
                )
            )
            ax.set_xticks(
                [-half_extent, 0, half_extent], [f"{-half_extent:.0f}", "0", f"{half_extent:.0f}"], fontsize=7
            )
            ax.set_yticks([])
            ax.set_title(f"{label}", fontsize=8)
        row[0].set_ylabel(f"{name}\n(n = {count})", fontsize=9, color="black" if count else "red")
    fig.suptitle("Mean sub-tomogram per class (central slices, Å from the pick;\ndashed: catalog radius)", fontsize=11)
    fig.tight_layout()
    return finish(fig, path)


# --- Nearest-neighbour distances ---------------------------------------------------------------------


def nearest_neighbour_distances(picks: pd.DataFrame) -> pd.DataFrame:
    """Per pick: distance (Angstrom) to the nearest other pick of any type and of the same type, per run."""
    rows = []
    for run, group in picks.groupby("experiment"):
        xyz = group[["x", "y", "z"]].to_numpy()
        names = group["particle_type"].to_numpy()
        if len(xyz) < 2:
            continue
        any_distance = cKDTree(xyz).query(xyz, k=2)[0][:, 1]
        same = np.full(len(xyz), np.nan)
        for name in np.unique(names):
            members = np.flatnonzero(names == name)
            if len(members) > 1:
                same[members] = cKDTree(xyz[members]).query(xyz[members], k=2)[0][:, 1]
        rows.append(
            pd.DataFrame({"experiment": run, "particle_type": names, "any_type": any_distance, "same_type": same})
        )
    return (
        pd.concat(rows, ignore_index=True)
        if rows
        else pd.DataFrame(columns=["experiment", "particle_type", "any_type", "same_type"])
    )


def plot_nearest_neighbour_distances(
    picks: pd.DataFrame, path: str | Path | None = None, catalog: ParticleCatalog = COMPETITION_CATALOG
) -> plt.Figure:
    """Per type: histograms of the distance to the nearest pick of any type and of the same type."""
    distances = nearest_neighbour_distances(picks)
    n_rows = max(1, -(-len(catalog) // 3))
    fig, axes = plt.subplots(n_rows, 3, figsize=(12, 3.25 * n_rows), sharex=True, squeeze=False)
    top = float(np.nanpercentile(distances[["any_type", "same_type"]].to_numpy(), 99)) if len(distances) else 1000.0
    bins = np.linspace(0, top, 30)
    for ax, name in zip(axes.ravel(), catalog.names):
        rows = distances[distances["particle_type"] == name]
        ax.hist(rows["any_type"].dropna(), bins=bins, color=catalog.get(name).color_float, alpha=0.8, label="any type")
        ax.hist(rows["same_type"].dropna(), bins=bins, histtype="step", color="black", linewidth=1.4, label="same type")
        ax.axvline(catalog.get(name).radius_angstrom, color="red", linestyle="--", linewidth=1, label="catalog radius")
        ax.set_title(f"{name} (n = {len(rows)})", fontsize=10)
        ax.grid(alpha=0.3)
    for ax in axes[-1]:
        ax.set_xlabel("nearest-neighbour distance (Å)")
    for ax in axes[:, 0]:
        ax.set_ylabel("picks")
    axes[0, 0].legend(fontsize=8, frameon=False)
    fig.suptitle("Nearest-neighbour distances between picks (within a run)")
    fig.tight_layout()
    return finish(fig, path)


# --- Depth distribution ------------------------------------------------------------------------------


def plot_depth_distribution(
    picks: pd.DataFrame, path: str | Path | None = None, catalog: ParticleCatalog = COMPETITION_CATALOG
) -> plt.Figure:
    """Pick depth z (Angstrom) per type (seaborn): violins with the individual picks on top."""
    import seaborn as sns

    fig, ax = plt.subplots(figsize=(10, 4.2))
    palette = {p.name: p.color_float for p in catalog}
    present = [n for n in catalog.names if (picks["particle_type"] == n).sum() > 1]
    if present:
        sns.violinplot(
            picks[picks["particle_type"].isin(present)],
            x="particle_type",
            y="z",
            order=catalog.names,
            hue="particle_type",
            palette=palette,
            inner="quartile",
            cut=0,
            alpha=0.6,
            ax=ax,
            legend=False,
        )
    sns.stripplot(
        picks, x="particle_type", y="z", order=catalog.names, color="black", size=2, alpha=0.5, jitter=0.15, ax=ax
    )
    ax.tick_params(axis="x", rotation=15)
    ax.set(xlabel="", ylabel="depth z (Å)", title="Depth of the picks per class")
    ax.grid(axis="y", alpha=0.3)
    return finish(fig, path)
