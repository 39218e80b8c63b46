# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Train the 3D U-Net
#
# A MONAI U-Net on ball label maps (background + six particle channels), validated on whole held-out
# runs with the competition metric at per-class thresholds tuned on those runs. Papermill parameters
# below; with `data_root = None` a small dataset is simulated into `out_dir/data`. The run is tracked in
# MLflow (a SQLite store in `out_dir` unless `mlflow_uri` is given).

# %% tags=["parameters"]
data_root = None  # competition root; None: simulate into out_dir/data (unless copick_config is set)
# Or any copick project (Data Portal, your own MRC tomograms): its config, voxel spacing, tomo type, picks
copick_config = None  # e.g. "portal.json"; its pickable particles become the model's classes
voxel_spacing = None  # Angstrom, as copick names it (e.g. 10.012)
tomo_type = "denoised"
pick_user = ""  # copick user_id of the training picks
pick_session = ""  # copick session_id ("" = all sessions of pick_user)
val_runs = None  # runs held out for validation; None: the last run
out_dir = "outputs/train_unet"
model = "unet"  # unet | basicunet | segresnet | flexibleunet
channels = [16, 32, 64, 128]  # feature widths, shallow to deep
level = 1  # 0: 10 A voxels (GPU), 1: 20 A voxels (CPU-friendly)
patch_size_zyx = [32, 96, 96]
epochs = 24
patches_per_epoch = 192  # the U-Net at output stride 2: 3x the patches of stride 1 in its CPU time
batch_size = 4
lr = 0.002
track = True
mlflow_uri = ""  # empty: sqlite:///<out_dir>/mlflow.db
sim_runs = 4
sim_shape_zyx = [184, 630, 630]
sim_difficulty = "default"
seed = 0

# %%
from IPython.display import Image, display

from cryokit.demo.notebooks import notebook_training_config, simulate_for_notebook, train_and_report

copick = None
if copick_config is not None:
    copick = {"config": copick_config, "voxel_spacing": voxel_spacing or 0.0, "tomo_type": tomo_type}
    copick.update({"pick_user": pick_user, "pick_session": pick_session})
elif data_root is None:
    data_root, _ = simulate_for_notebook(out_dir, sim_runs, sim_shape_zyx, sim_difficulty, seed)
config = notebook_training_config(
    model,
    data_root,
    out_dir,
    val_runs,
    copick=copick,
    level=level,
    patch_size_zyx=patch_size_zyx,
    batch_size=batch_size,
    patches_per_epoch=patches_per_epoch,
    epochs=epochs,
    lr=lr,
    seed=seed,
    track=track,
    mlflow_uri=mlflow_uri,
    overrides={"model.channels": channels, "model.strides": [2] * (len(channels) - 1)},
)

# %%
report = train_and_report(config)
print(
    f"validation F4: untrained {report.untrained_score:.3f} -> best {report.best_score:.3f} (epoch {report.best_epoch})"
)

# %% [markdown]
# ## Training curves

# %%
display(Image(filename=str(report.files["curves_png"])))

# %% [markdown]
# ## Validation runs: per-class table at the tuned thresholds

# %%
display(report.val_table)

# %% [markdown]
# ## Predicted against true picks on a validation slice

# %%
display(Image(filename=str(report.files["predictions_png"])))
