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
# # Per-class thresholds
#
# Scored candidate picks (from `cryokit predict ... --keep-scores`, or a validation run) are scored
# against the solution exactly, for every threshold of every class at once (`cryokit.thresholds`).
# The panel below shows one slider per class, an NMS radius slider, the live precision / recall / F4
# table with the weighted total, and the precision-recall curves with the current operating points.
# "Jump to optimum" sets the F4-optimal thresholds; "Save thresholds.json" writes them for
# `cryokit predict --thresholds out_dir/thresholds.json`.
#
# With `candidates_csv = None` the notebook makes demo candidates around a demo solution.
# Run headless (papermill), it writes the optimum's `thresholds.json` through the same panel methods.

# %% tags=["parameters"]
candidates_csv = None  # CSV with experiment, particle_type, x, y, z, score; None: demo candidates
solution = None  # competition root (picks JSON) or a solution CSV; None: the demo solution
split = "train"  # split of the root that holds the picks
nms_fraction = 0.0  # extra spherical NMS radius as a share of the class radius (0: off)
save_optimum = True  # write out_dir/thresholds.json at the optimum when the notebook runs
out_dir = "outputs/thresholds"

# %%
from pathlib import Path

from cryokit.demo.fixtures import demo_candidates, demo_solution
from cryokit.io import read_solution
from cryokit.io.candidates import read_candidates
from cryokit.io.submission import read_submission
from cryokit.widgets import ThresholdPanel

# %%
if solution is None:
    references = demo_solution(n_runs=3, seed=0)
elif Path(solution).is_dir():
    references = read_solution(solution, split)
else:
    references = read_submission(solution)
candidates = demo_candidates(references, seed=1) if candidates_csv is None else read_candidates(candidates_csv)
print(f"{len(references)} references, {len(candidates)} scored candidates in {references['experiment'].nunique()} runs")

# %% [markdown]
# ## The optimum

# %%
panel = ThresholdPanel(candidates, references, nms_fraction=nms_fraction, out_path=Path(out_dir) / "thresholds.json")
panel.optimise()
if save_optimum:
    print(f"wrote {panel.save()}")
print(f"score at the optimum: {panel.score():.4f}")
panel.table().round(4)

# %% [markdown]
# ## The panel

# %%
panel.widget()
