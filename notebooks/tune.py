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
# # Hyperparameter search on the validation F4
#
# An Optuna study over `cryokit.tuning.space.SEARCH_SPACE` (learning rate, weight decay, model width and
# depth, patch size, augmentation strengths, loss weights, post-processing). Every trial trains with
# `cryokit.training.fit` and reports its validation F4 after each epoch, so bad trials are pruned early.
# The study lives in `storage` (SQLite in `out_dir` by default; a `journal:PATH` file or a PostgreSQL
# URL lets several workers, e.g. `cryokit tune --study NAME --storage URL --trials N`, join it).
#
# With `data_root = None` a tiny simulated dataset is written and a tiny space is searched, so the
# notebook runs in a minute on a CPU. For real runs set `data_root`, `space_file`, `epochs` and `trials`.

# %% tags=["parameters"]
trials = 3  # trials this notebook runs (added to those already in the study)
storage = None  # None: sqlite in out_dir; "journal:/path/study.log"; "postgresql://user:pw@host/db"
study_name = "tune-demo"
budget = None  # seconds: stop starting new trials after this long (None: no limit)
data_root = None  # competition root; None: simulate a tiny dataset into out_dir/data
val_runs = None  # list of validation runs; None: the last run of the data
space_file = None  # YAML/JSON narrowing the search space; None: the tiny space on tiny data
config_file = None  # base config (YAML/JSON); None: a tiny U-Net that trains in seconds
epochs = 1
pruner = "median"
seed = 0
tracking = True  # MLflow: the study's run and one nested run per trial (in out_dir/mlflow.db)
out_dir = "outputs/tune"

# %%
import logging
from pathlib import Path

import pandas as pd
from IPython.display import Image, display

from cryokit.config import apply_overrides, load_config
from cryokit.demo.fixtures import TINY_SPACE, tiny_config, tiny_dataset
from cryokit.io import list_runs
from cryokit.plots.tuning import save_study_figures
from cryokit.tuning.space import load_space
from cryokit.tuning.study import run_study

logging.basicConfig(level=logging.WARNING)
out = Path(out_dir)

# %% [markdown]
# ## Data, base config and search space

# %%
if data_root is None:
    root = out / "data"
    runs = list_runs(root, "train") if (root / "train").is_dir() else tiny_dataset(root, n_runs=3, seed=seed)
    space = load_space(space_file, narrowing=None if space_file else TINY_SPACE)
else:
    root, runs = Path(data_root), list_runs(data_root, "train")
    space = load_space(space_file)
if config_file:
    base = apply_overrides(
        load_config(config_file), {"data.root": str(root), "train.epochs": epochs, "tracking.enabled": tracking}
    )
else:
    base = tiny_config(root, runs, out / "unused", epochs=epochs, tracking=tracking)
if val_runs:
    base = apply_overrides(base, {"data.val_runs": list(val_runs)})
print(f"{len(runs)} runs, validating on {list(base.data.val_runs)}; searching {len(space.keys)} keys")
pd.DataFrame(space.describe()).T.fillna("")

# %% [markdown]
# ## Run the study

# %%
study = run_study(
    study_name, base, trials, space=space, storage=storage, out_dir=out, timeout=budget, pruner=pruner, seed=seed
)
display(study.trials_dataframe(attrs=("number", "value", "state", "duration")))

# %% [markdown]
# ## Optimisation history, parameter importances, parallel coordinates

# %%
figures = save_study_figures(study, out)
for name, path in figures.items():
    print(name, path)
    display(Image(filename=str(path)))

# %% [markdown]
# ## The best trial
#
# `best_config.yaml` retrains it: `cryokit train --config <out_dir>/best_config.yaml`.

# %%
print(f"best trial {study.best_trial.number}: validation F4 {study.best_value:.4f}")
print((out / "best_config.yaml").read_text()[:1500])
