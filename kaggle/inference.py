# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # CZII CryoET Object Identification: cryokit inference
#
# Finds the centres of the six particle types in every test tomogram and writes the submission CSV.
# The notebook is self-contained: `cryokit kaggle build` packs the cryokit code it needs into the cell
# "cryokit, packed in"; the checkpoints, `thresholds.json` and the wheels of packages missing from
# Kaggle's image (monai) come from an attached dataset written by `cryokit kaggle bundle`. It runs with
# the internet off. Every path and option is a papermill parameter, so the same notebook runs locally
# on a simulated layout.
#
# A tomogram that fails is logged and skipped; the CSV is always written; a time-budget guard lowers
# the TTA, then drops ensemble members, when the projected time for the hidden test set (~500
# tomograms) would exceed the limit. Every visible GPU works: on Kaggle's 2 x T4 one worker process
# per GPU takes every second tomogram (its guard counts both), and the picks are merged in run order
# into the one CSV. A bundle with a fitted ensemble (`cryokit kaggle bundle --ensemble`) merges its
# members on calibrated scores, each with the TTA it was fitted with.

# %%
import time

NOTEBOOK_STARTED = time.time()  # the time-budget guard counts from here

# %% tags=["parameters"]
data_root = "/kaggle/input/czii-cryo-et-object-identification"  # competition root (holds test/static)
split = "test"
runs = []  # only these runs; empty: every run of the split
model_dir = "/kaggle/input/cryokit-models"  # attached dataset: checkpoints, thresholds.json, wheels
checkpoints = []  # checkpoint files in model_dir, most important first; empty: the bundle's list
thresholds_file = "thresholds.json"  # in model_dir; "" uses the first checkpoint's tuned thresholds
ensemble_file = ""  # in model_dir: a fitted ensemble (cryokit ensemble; its own thresholds); "": none
output_csv = "/kaggle/working/submission.csv"
report_json = "/kaggle/working/cryokit_report.json"  # what happened, as JSON; "" writes none
tta = "flips"  # none | flips | flips+rot90, the guard may lower it (an ensemble: its TTAs up to this)
device = "auto"  # auto: every visible GPU, one worker process each (Kaggle's 2 x T4: two); else the CPU
workers = 0  # worker processes, each taking every n-th run; 0: one per device
amp = True  # mixed precision on CUDA (bf16 where native, else fp16)
precision = "auto"  # auto (as amp: fp16 on a T4, bf16 where native, on GPUs and CPUs; else fp32) | fp32 | bf16 | fp16
on_error = "skip"  # skip: log a failing tomogram or checkpoint and go on; raise: stop
time_budget_hours = 12.0  # Kaggle's limit for the whole notebook
budget_safety = 0.9  # keep the projected total under this share of the budget
expected_tomograms = 500  # the hidden test set the projection assumes

# %% [markdown]
# ## cryokit, packed in

# %% tags=["cryokit-embedded"]
# `cryokit kaggle build` replaces this cell with the cryokit modules the notebook needs (a base64 zip).
# Left empty, the notebook imports the installed cryokit, which is handy while developing.
CRYOKIT_MANIFEST = {}
CRYOKIT_ZIP_B64 = ""

# %% [markdown]
# ## Set up: model folder, offline wheels, cryokit

# %%
import atexit
import base64
import glob
import hashlib
import importlib
import io
import logging
import os
import shutil
import sys
import tempfile
import zipfile

logging.basicConfig(
    level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stdout, force=True
)


def find_model_dir(path):
    """``path`` if it exists, else the attached dataset that holds a cryokit bundle manifest."""
    if os.path.isdir(path):
        return path
    for depth in range(1, 5):
        hits = sorted(glob.glob(os.path.join("/kaggle/input", *["*"] * depth, "cryokit_bundle.json")))
        if hits:
            print(f"model_dir {path} not found; using {os.path.dirname(hits[0])}")
            return os.path.dirname(hits[0])
    print(f"WARNING: model_dir {path} not found and no attached dataset holds cryokit_bundle.json")
    return path


def importable(module):
    try:
        importlib.import_module(module)
        return True
    except ImportError:
        return False


def unpack_folder(prefix):
    """A new temporary folder for unpacked code, removed when the kernel exits (the code is imported
    until then; a notebook run again must not leave one more behind each time)."""
    target = tempfile.mkdtemp(prefix=prefix)
    atexit.register(shutil.rmtree, target, ignore_errors=True)
    return target


def add_wheels(folder):
    """Put each wheel whose packages are missing on sys.path: a pure-Python wheel imports straight
    from the zip; a platform wheel is unpacked first. A wheel that cannot be read is reported and
    left out (what it would have provided may then be missing: the CSV is still written)."""
    for wheel in sorted(glob.glob(os.path.join(folder, "*.whl"))):
        try:
            with zipfile.ZipFile(wheel) as archive:
                tops = {name.split("/")[0] for name in archive.namelist()}
                modules = sorted(t.removesuffix(".py") for t in tops if not t.endswith((".dist-info", ".data")))
                missing = [m for m in modules if not importable(m)]
                if not missing:
                    continue
                if wheel.endswith("-none-any.whl"):
                    sys.path.append(wheel)
                else:
                    target = unpack_folder("wheel_")
                    archive.extractall(target)
                    sys.path.append(target)
        except Exception as error:  # a damaged wheel must not stop the notebook before the CSV
            print(f"ERROR wheel {os.path.basename(wheel)} skipped ({type(error).__name__}: {error})")
            continue
        importlib.invalidate_caches()
        print(f"{', '.join(missing)} from {os.path.basename(wheel)}")


def write_empty_submission(path):
    """The header-only CSV, written without cryokit: the last resort when cryokit cannot be imported."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + ".tmp", "w") as handle:
        handle.write("id,experiment,particle_type,x,y,z\n")
    os.replace(path + ".tmp", path)
    print(f"ERROR an empty submission was written to {path}")


def install_embedded(payload_b64, manifest):
    """Unpack the packed cryokit into a temporary folder at the front of sys.path."""
    if not payload_b64:
        print("no packed cryokit in this notebook: using the installed one")
        return
    payload = base64.b64decode(payload_b64)
    if hashlib.sha256(payload).hexdigest() != manifest["sha256"]:
        raise RuntimeError("the packed cryokit is damaged (sha256 mismatch): rebuild the notebook")
    target = unpack_folder("cryokit_embedded_")
    zipfile.ZipFile(io.BytesIO(payload)).extractall(target)
    sys.path.insert(0, target)
    for name in [m for m in sys.modules if m == "cryokit" or m.startswith("cryokit.")]:
        del sys.modules[name]  # an installed cryokit imported earlier must not shadow the packed one
    importlib.invalidate_caches()


try:
    model_dir = find_model_dir(model_dir)
    add_wheels(model_dir)
    install_embedded(CRYOKIT_ZIP_B64, CRYOKIT_MANIFEST)
except Exception as error:  # the next cell writes an empty CSV if cryokit does not import
    if on_error == "raise":
        raise
    print(f"ERROR setting up ({type(error).__name__}: {error})")

# %%
try:
    import torch

    import cryokit
    from cryokit.kaggle.runtime import predict_submission, resolve_checkpoints, resolve_thresholds

    print(f"cryokit {cryokit.__version__} from {os.path.dirname(cryokit.__file__)}")
    print(
        f"python {sys.version.split()[0]}, torch {torch.__version__}, "
        f"GPU: {torch.cuda.get_device_name() if torch.cuda.is_available() else 'none'}"
    )
except Exception as error:  # without cryokit nothing predicts, but a CSV is still written
    if on_error == "raise":
        raise
    print(f"ERROR cryokit cannot be imported ({type(error).__name__}: {error})")
    predict_submission = None
    write_empty_submission(output_csv)

# %% [markdown]
# ## Predict every test tomogram

# %%
if predict_submission is not None:
    try:
        checkpoint_paths = resolve_checkpoints(model_dir, checkpoints)
        thresholds = resolve_thresholds(model_dir, thresholds_file)
    except Exception as error:  # without models the CSV is still written (empty) below
        if on_error == "raise":
            raise
        print(f"ERROR {type(error).__name__}: {error}")
        checkpoint_paths, thresholds = [], None

    report = predict_submission(
        checkpoint_paths,
        data_root,
        output_csv,
        split=split,
        runs=runs,
        tta=tta,
        thresholds=thresholds,
        device=device,
        amp=amp,
        precision=precision,
        workers=workers or None,
        on_error=on_error,
        ensemble=os.path.join(model_dir, ensemble_file) if ensemble_file else None,
        time_budget_hours=time_budget_hours,
        expected_tomograms=expected_tomograms,
        budget_safety=budget_safety,
        started_at=NOTEBOOK_STARTED,
        report_json=report_json or None,
    )
    print(report.summary())

# %% [markdown]
# ## Check the submission

# %%
import pandas as pd

submission = pd.read_csv(output_csv)
print(f"{output_csv}: {len(submission)} rows, {submission['experiment'].nunique()} experiment(s)")
print(submission.groupby("particle_type").size().to_string())
submission.head()
