# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Exploratory data analysis
#
# What the model must learn, from a competition-layout dataset: particles per class and run, intensity
# histograms per tomogram type, orthogonal slices with the picks drawn at their catalog radius, the mean
# sub-tomogram of each class, nearest-neighbour distances and the depth of the picks.
#
# With `data_root = None` the notebook first simulates a small dataset into `out_dir/data`
# (`cryokit.synth`). Every figure is also saved as a PNG in `out_dir`.

# %% tags=["parameters"]
data_root = None  # competition root (train/, test/); None: simulate into out_dir/data
split = "train"  # split to explore (needs picks: train)
runs = None  # list of run names; None: all runs of the split (at most max_runs)
max_runs = 4  # cap on the runs read when runs is None
tomo_type = "denoised"  # tomogram type for slices and mean sub-tomograms
out_dir = "outputs/eda"  # PNGs (and the simulated data) go here
sim_runs = 2  # simulated runs when data_root is None
sim_shape_zyx = [184, 630, 630]  # simulated level-0 shape (z, y, x)
sim_difficulty = "default"  # easy, default or hard
sim_seed = 0

# %%
from pathlib import Path

from IPython.display import display

from cryokit import plots
from cryokit.demo.notebooks import simulate_for_notebook
from cryokit.io import list_runs, open_run_tomogram, read_picks
from cryokit.io.layout import tomogram_path

out = Path(out_dir)
out.mkdir(parents=True, exist_ok=True)

# %%
if data_root is None:
    data_root, _ = simulate_for_notebook(
        out, sim_runs, sim_shape_zyx, sim_difficulty, sim_seed, tomo_types=("denoised", "wbp")
    )
    split = "train"
runs = list(runs) if runs is not None else list_runs(data_root, split)[:max_runs]
picks = read_picks(data_root, split, runs)
print(f"{len(runs)} runs from {data_root}/{split}: {', '.join(runs)}; {len(picks)} picks")

# %% [markdown]
# ## Particles per class and run

# %%
display(plots.particle_counts_table(picks))
plots.plot_particle_counts(picks, path=out / "particle_counts.png")
# %% [markdown]
# ## Intensity histograms per tomogram type (first run)
#
# Real tomograms hold tiny float32 values; models normalise each tomogram.

# %%
spacing_dir = tomogram_path(data_root, split, runs[0], tomo_type).parent
tomo_types = sorted(p.stem for p in spacing_dir.glob("*.zarr"))
volumes = {t: open_run_tomogram(data_root, split, runs[0], t, 0).read() for t in tomo_types}
plots.plot_intensity_histograms(volumes, path=out / "intensity_histograms.png")
# %% [markdown]
# ## Orthogonal slices with the picks (first run)
#
# Each circle is the cross-section of a pick's sphere (catalog radius) with the slice plane.

# %%
tomogram = open_run_tomogram(data_root, split, runs[0], tomo_type, 0)
volume = tomogram.read()
plots.plot_orthogonal_slices(
    volume,
    picks[picks["experiment"] == runs[0]],
    tomogram.voxel_spacing_angstrom_zyx,
    title=f"{runs[0]} ({tomo_type}, level 0)",
    path=out / "orthogonal_slices.png",
)
# %% [markdown]
# ## Mean sub-tomogram per class
#
# The average of crops centred on the picks (all runs read): what a model must recognise.

# %%
tomograms = [open_run_tomogram(data_root, split, run, tomo_type, 0) for run in runs]
means = plots.mean_subtomograms(
    [t.read() for t in tomograms],
    [picks[picks["experiment"] == r] for r in runs],
    tomograms[0].voxel_spacing_angstrom_zyx,
)
plots.plot_mean_subtomograms(means, tomograms[0].voxel_spacing_angstrom_zyx, path=out / "mean_subtomograms.png")
# %% [markdown]
# ## Nearest-neighbour distances and depth

# %%
plots.plot_nearest_neighbour_distances(picks, path=out / "nearest_neighbour_distances.png")
# %%
plots.plot_depth_distribution(picks, path=out / "depth_distribution.png")
# %%
print("figures:", ", ".join(sorted(p.name for p in out.glob("*.png"))))
