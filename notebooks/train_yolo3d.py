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
# # Train the YOLO-style 3D detector
#
# A single-stage detector on a MedicalNet 3D ResNet-18 backbone: per grid cell (stride 4) and anchor it
# predicts objectness, class, centre offset and radius, trained with the composite loss (focal + soft
# F-beta + smooth L1). Load MedicalNet's released weights with `backbone_weights` (a local file;
# nothing is downloaded; with `backbone_width = 64`, theirs) or train from scratch. Validation,
# thresholds and MLflow tracking as in the U-Net notebook; with `data_root = None` a small dataset is
# simulated into `out_dir/data`.

# %% tags=["parameters"]
data_root = None  # competition root; None: simulate into out_dir/data (unless copick_config is set)
# Or a copick project (e.g. the competition's data on the Data Portal); the detector's anchors need the six
copick_config = None  # e.g. "portal.json"
voxel_spacing = None  # Angstrom, as copick names it (e.g. 10.012)
tomo_type = "denoised"
pick_user = ""  # copick user_id of the training picks
pick_session = ""  # copick session_id ("" = all sessions of pick_user)
val_runs = None  # runs held out for validation; None: the last run
out_dir = "outputs/train_yolo3d"
backbone_weights = ""  # MedicalNet checkpoint (e.g. resnet_18_23dataset.pth); empty: from scratch
backbone_width = 32  # ResNet-18 width: 32 the preset (trains 3x faster a step); MedicalNet's weights need 64
neck_channels = 64  # width of the detector's neck and head
lambda_focal = 1.0  # composite loss weights
lambda_fbeta = 1.0
lambda_box = 1.0
level = 1  # 0: 10 A voxels (GPU), 1: 20 A voxels (CPU-friendly)
patch_size_zyx = [32, 96, 96]  # multiples of 8 (the backbone's stride)
epochs = 24
patches_per_epoch = 64
batch_size = 4
lr = 0.002
appearance = True  # intensity and imaging augmentations (gamma, blur, bias field, band-pass, missing wedge)
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
    "yolo3d",
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
    appearance=appearance,
    overrides={
        "model.backbone_weights": backbone_weights,
        "model.backbone_width": backbone_width,
        "model.neck_channels": neck_channels,
        "loss.lambda_focal": lambda_focal,
        "loss.lambda_fbeta": lambda_fbeta,
        "loss.lambda_box": lambda_box,
    },
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
