"""The Kaggle notebook: packed self-contained, run offline in a Kaggle-like process, robust, on budget.

The notebook runs with papermill in a separate process that cannot import the repository's cryokit
(nor the venv's editable install) and where monai and einops import only from the shipped wheels: a
``sitecustomize.py`` on that process's PYTHONPATH installs an import hook first in ``sys.meta_path``.
Packages Kaggle's image lacks and inference must not need (cc3d, mlflow, ...) raise ImportError there.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
from conftest import make_kaggle_layout

from cryokit.cli import main
from cryokit.config import (
    AugmentConfig,
    DataConfig,
    ModelConfig,
    PatchConfig,
    RunConfig,
    TrackingConfig,
    TrainConfig,
)
from cryokit.inference.predict import predict_runs
from cryokit.io.submission import SUBMISSION_COLUMNS, read_submission
from cryokit.kaggle.budget import InferencePlan, TimeBudget, degradation_ladder
from cryokit.kaggle.bundle import COMPETITION
from cryokit.kaggle.embedding import (
    ENTRY_MODULES,
    KAGGLE_IMAGE_MODULES,
    NOT_AT_IMPORT,
    WHEEL_DISTRIBUTIONS,
    collect_modules,
    third_party_imports,
)
from cryokit.kaggle.notebook import EMBED_TAG, build_notebook
from cryokit.kaggle.runtime import predict_submission
from cryokit.particles import PARTICLE_NAMES
from cryokit.thresholds import save_thresholds
from cryokit.training.loop import fit

REPO = Path(__file__).resolve().parents[1]
TEST_RUNS = ("TS_t1", "TS_t2", "TS_t3")
THRESHOLDS = {name: 0.12 for name in PARTICLE_NAMES}
DATASET_SLUG, KERNEL_SLUG = "tester/cryokit-test-models", "tester/cryokit-test-inference"

SITECUSTOMIZE = '''
"""Test only: make this interpreter look like Kaggle's image for cryokit's notebook test."""
import importlib.machinery, os, sys
from pathlib import Path

_BLOCKED = set(filter(None, os.environ.get("CRYOKIT_TEST_BLOCK", "").split(",")))
_ABSENT = set(filter(None, os.environ.get("CRYOKIT_TEST_ABSENT", "").split(",")))
_DENY = [Path(p).resolve() for p in os.environ.get("CRYOKIT_TEST_DENY", "").split(os.pathsep) if p]


def _allowed(entry):
    path = Path(entry or ".").resolve()
    return not any(path == d or d in path.parents for d in _DENY)


class _KaggleImage:
    """Top-level blocked names import only from sys.path entries outside the denied folders."""

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name.partition(".")[0] in _ABSENT:
            raise ImportError(f"{name} is not installed here (test sitecustomize)")
        if name in _BLOCKED:
            spec = importlib.machinery.PathFinder.find_spec(name, [p for p in sys.path if _allowed(p)])
            if spec is None:
                raise ImportError(f"{name} is not importable here (test sitecustomize)")
            return spec
        return None


sys.meta_path.insert(0, _KaggleImage)
'''


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A one-epoch U-Net checkpoint (the U-Net preset's network, DynUNet), low thresholds (so there are picks),
    and a 3-run test split."""
    base = tmp_path_factory.mktemp("kaggle")
    root = base / "data"
    make_kaggle_layout(root, runs=("TS_a",), tomo_types=("denoised",))
    make_kaggle_layout(root, runs=TEST_RUNS, split="test", tomo_types=("denoised",), seed=1)
    config = RunConfig(
        data=DataConfig(root=str(root)),
        patch=PatchConfig(size_zyx=(16, 32, 32), batch_size=2, patches_per_epoch=2, inference_batch_size=4),
        model=ModelConfig(name="dynunet", channels=(4, 8, 16), strides=(2, 2), num_res_units=0),
        augment=AugmentConfig(rotate_degrees=0, scale_fraction=0, elastic_p=0, noise_p=0, intensity_p=0),
        train=TrainConfig(epochs=1, out_dir=str(base / "run")),
        tracking=TrackingConfig(enabled=False),
    )
    checkpoint = fit(config, progress=False).best_checkpoint
    thresholds = save_thresholds(base / "thresholds.json", THRESHOLDS)
    return {"base": base, "root": root, "checkpoint": checkpoint, "thresholds": thresholds}


@pytest.fixture(scope="module")
def bundled(trained):
    out = trained["base"] / "bundle"
    assert (
        main(
            [
                "kaggle",
                "bundle",
                "--checkpoints",
                str(trained["checkpoint"]),
                "--thresholds",
                str(trained["thresholds"]),
                "--out",
                str(out),
                "--dataset-slug",
                DATASET_SLUG,
                "--kernel-slug",
                KERNEL_SLUG,
                "--tta",
                "none",
                "--wheel-source",
                "installed",
                # exact weights: the notebook's picks are compared with cryokit predict's on the checkpoint
                "--weights",
                "float32",
            ]
        )
        == 0
    )
    return out


def run_offline(notebook: Path, work: Path, parameters: dict) -> tuple[dict, str]:
    """Execute ``notebook`` with papermill in a Kaggle-like process; returns (report JSON, cell output)."""
    site = work / "site"
    site.mkdir(parents=True)
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    (work / "params.json").write_text(
        json.dumps(
            {
                "report_json": str(work / "report.json"),
                "device": "cpu",
                "output_csv": str(work / "submission.csv"),
                **parameters,
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "CRYOKIT_"))}
    env.update(
        PYTHONPATH=str(site),
        PYTHONNOUSERSITE="1",
        CRYOKIT_TEST_BLOCK="cryokit,monai,einops",
        CRYOKIT_TEST_ABSENT=",".join(sorted(NOT_AT_IMPORT)),
        CRYOKIT_TEST_DENY=os.pathsep.join([str(REPO), sysconfig.get_paths()["purelib"]]),
    )
    command = [
        sys.executable,
        "-m",
        "papermill",
        str(notebook),
        str(work / "executed.ipynb"),
        "-f",
        str(work / "params.json"),
        "--cwd",
        str(work),
        "-k",
        "python3",
        "--no-progress-bar",
    ]
    done = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=300)
    executed = nbformat.read(work / "executed.ipynb", as_version=4) if (work / "executed.ipynb").is_file() else None
    text = "\n".join(o.get("text", "") for c in (executed.cells if executed else []) for o in c.get("outputs", []))
    assert done.returncode == 0, f"papermill failed:\n{done.stderr[-4000:]}\n{text[-4000:]}"
    report = work / "report.json"
    return (json.loads(report.read_text()) if report.is_file() else {}), text


def sorted_picks(path: Path) -> pd.DataFrame:
    frame = read_submission(path).drop(columns="id")
    return frame.sort_values(["experiment", "particle_type", "x", "y", "z"]).reset_index(drop=True)


def test_packed_modules_need_only_kaggle_image_and_wheels():
    modules = collect_modules(ENTRY_MODULES)
    assert {
        "cryokit",
        "cryokit.kaggle.runtime",
        "cryokit.inference.predict",
        "cryokit.inference.sliding_window",
        "cryokit.training.checkpoint",
        "cryokit.models.build",
        "cryokit.io.submission",
        "cryokit.data.normalise",
        "cryokit.postprocess",
    } <= set(modules)
    # Nothing the notebook does not run: the builder, the packer, the bundle, the command line, training.
    unused = {
        "cryokit.kaggle.notebook",
        "cryokit.kaggle.embedding",
        "cryokit.kaggle.bundle",
        "cryokit.cli",
        "cryokit.training.loop",
        "cryokit.tuning.study",
    }
    assert not unused & set(modules)
    for name, path in modules.items():  # closed under imports: every cryokit module imported is packed
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("cryokit"):
                assert node.module in modules, f"{name} imports {node.module}, which is not packed"
    needed = set(third_party_imports(modules))
    wheels = {module for _, module in WHEEL_DISTRIBUTIONS}
    assert needed <= KAGGLE_IMAGE_MODULES | wheels, f"not in Kaggle's image: {needed - KAGGLE_IMAGE_MODULES - wheels}"
    assert not needed & NOT_AT_IMPORT


def test_build_writes_a_valid_notebook_with_cryokit_packed_in(tmp_path):
    out = tmp_path / "nb.ipynb"
    assert main(["kaggle", "build", "--out", str(out)]) == 0
    nb = nbformat.read(out, as_version=4)
    nbformat.validate(nb)
    packed = [c for c in nb.cells if EMBED_TAG in c.metadata.get("tags", [])]
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(packed) == 1 and "CRYOKIT_ZIP_B64 = (" in packed[0].source and len(params) == 1
    for statement in ast.parse(params[0].source).body:  # papermill parameters: plain literals only
        assert isinstance(statement, ast.Assign)
        ast.literal_eval(statement.value)
    with pytest.raises(ValueError, match="no_such_option"):
        build_notebook(tmp_path / "x.ipynb", {"no_such_option": 1})


def test_bundle_writes_kaggle_metadata(bundled):
    dataset, kernel = bundled / "dataset", bundled / "kernel"
    meta = json.loads((dataset / "dataset-metadata.json").read_text())
    assert meta["id"] == DATASET_SLUG and 6 <= len(meta["title"]) <= 50 and meta["licenses"][0]["name"]
    assert all(p.is_file() for p in dataset.iterdir()), "the Kaggle CLI skips sub-folders of a dataset"
    names = {p.name for p in dataset.iterdir()}
    assert {"best.pt", "thresholds.json", "cryokit_bundle.json"} <= names
    assert {d for d, _ in WHEEL_DISTRIBUTIONS} <= {n.split("-")[0] for n in names if n.endswith(".whl")}
    manifest = json.loads((dataset / "cryokit_bundle.json").read_text())
    assert manifest["checkpoints"][0]["file"] == "best.pt" and manifest["checkpoints"][0]["config"]["model"]
    kmeta = json.loads((kernel / "kernel-metadata.json").read_text())
    assert kmeta["id"] == KERNEL_SLUG and kmeta["title"].lower().replace(" ", "-") == KERNEL_SLUG.split("/")[1]
    assert (kernel / kmeta["code_file"]).is_file() and kmeta["language"] == "python"
    assert kmeta["kernel_type"] == "notebook" and kmeta["is_private"] is True
    assert kmeta["enable_gpu"] is True and kmeta["enable_internet"] is False  # the API's default is internet ON
    assert kmeta["dataset_sources"] == [DATASET_SLUG] and kmeta["competition_sources"] == [COMPETITION]
    cells = nbformat.read(kernel / kmeta["code_file"], as_version=4).cells
    params = [c for c in cells if "parameters" in c.metadata.get("tags", [])]
    assert 'model_dir = "/kaggle/input/cryokit-test-models"' in params[0].source.replace("'", '"')


def test_time_budget_guard_drops_tta_first_then_members():
    ladder = degradation_ladder("flips+rot90", 3)
    assert [(p.tta, len(p.members)) for p in ladder] == [
        ("flips+rot90", 3),
        ("flips", 3),
        ("none", 3),
        ("none", 2),
        ("none", 1),
    ]
    now = [100.0]
    budget = TimeBudget(1000, expected_tomograms=100, started_at=0, clock=lambda: now[0])
    assert budget.affordable(ladder, 0, done=0) == 0  # nothing measured yet: keep the plan
    budget.record(ladder[0], 96.0)  # 48 passes in 96 s: 2 s per pass
    assert budget.affordable(ladder, 0, done=1) == 2  # flips: 100 + 99 * 48 s > 1000; no TTA: 100 + 99 * 6 s
    tight = TimeBudget(300, expected_tomograms=100, started_at=0, clock=lambda: now[0])
    tight.record(ladder[0], 96.0)
    assert tight.affordable(ladder, 0, done=1) == 4  # only one model without TTA fits: 100 + 99 * 2 s
    roomy = TimeBudget(1e6, expected_tomograms=100, started_at=0, clock=lambda: now[0])
    roomy.record(ladder[0], 96.0)
    assert roomy.affordable(ladder, 0, done=1) == 0
    now[0] = 996.0
    assert budget.out_of_time(ladder[2]) and not budget.out_of_time(ladder[4])  # 996 + 6 > 1000 >= 996 + 2


def test_a_damaged_tomogram_is_skipped_and_the_csv_is_always_written(trained, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(trained["root"] / "test", root / "test")
    zarray = root / "test/static/ExperimentRuns/TS_t3/VoxelSpacing10.000/denoised.zarr/0/.zarray"
    zarray.write_text("{ not json")
    picks, seconds = predict_runs(
        [str(trained["checkpoint"])],
        str(root),
        "test",
        progress=False,
        thresholds=THRESHOLDS,
        device="cpu",
        on_error="skip",
    )
    assert list(picks.attrs["failed_runs"]) == ["TS_t3"] and len(seconds) == 3
    assert set(picks["experiment"]) == {"TS_t1", "TS_t2"}
    with pytest.raises(ValueError):  # the damaged .zarray
        predict_runs([str(trained["checkpoint"])], str(root), "test", progress=False, device="cpu")
    report = predict_submission([], tmp_path / "nowhere", tmp_path / "empty.csv")  # nothing works at all
    assert report.errors and report.n_picks == 0
    assert (tmp_path / "empty.csv").read_text().splitlines() == [",".join(SUBMISSION_COLUMNS)]


def test_offline_notebook_writes_what_cryokit_predict_writes(trained, bundled, tmp_path):
    report, text = run_offline(
        bundled / "kernel" / "cryokit-test-inference.ipynb",
        tmp_path / "work",
        {"data_root": str(trained["root"]), "model_dir": str(bundled / "dataset")},
    )
    assert "cryokit_embedded_" in text and "monai from monai-" in text and "einops from einops-" in text
    unpacked = Path(re.search(r"from (\S*cryokit_embedded_\S*?)/cryokit", text).group(1))
    assert unpacked.name.startswith("cryokit_embedded_") and not unpacked.exists()  # removed when the kernel exits
    assert "s per tomogram" in text and "projected" in text
    assert report["failed"] == {} and sorted(report["seconds"]) == list(TEST_RUNS) and not report["plan_changes"]
    assert (
        main(
            [
                "predict",
                "--checkpoint",
                str(trained["checkpoint"]),
                "--data",
                str(trained["root"]),
                "--thresholds",
                str(trained["thresholds"]),
                "--device",
                "cpu",
                "--out",
                str(tmp_path / "expected.csv"),
            ]
        )
        == 0
    )
    got, expected = sorted_picks(tmp_path / "work" / "submission.csv"), sorted_picks(tmp_path / "expected.csv")
    assert list(read_submission(tmp_path / "work" / "submission.csv").columns) == list(SUBMISSION_COLUMNS)
    assert len(got) == len(expected) > 0
    pd.testing.assert_frame_equal(got[["experiment", "particle_type"]], expected[["experiment", "particle_type"]])
    np.testing.assert_allclose(got[["x", "y", "z"]].to_numpy(), expected[["x", "y", "z"]].to_numpy(), atol=1e-3)


def test_offline_notebook_survives_a_corrupt_tomogram_and_a_tight_budget(trained, bundled, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(trained["root"] / "test", root / "test")
    level0 = root / "test/static/ExperimentRuns/TS_t2/VoxelSpacing10.000/denoised.zarr/0"
    chunk = next(p for p in sorted(level0.rglob("*")) if p.is_file() and not p.name.startswith("."))
    chunk.write_bytes(b"this is not a compressed chunk")
    report, text = run_offline(
        bundled / "kernel" / "cryokit-test-inference.ipynb",
        tmp_path / "work",
        {
            "data_root": str(root),
            "model_dir": str(bundled / "dataset"),
            "tta": "flips",
            "time_budget_hours": 0.05,
            "expected_tomograms": 100000,
        },
    )
    assert list(report["failed"]) == ["TS_t2"] and "FAILED TS_t2" in text
    assert sorted(report["seconds"]) == ["TS_t1", "TS_t3"]
    submission = read_submission(tmp_path / "work" / "submission.csv")
    assert set(submission["experiment"]) == {"TS_t1", "TS_t3"}
    change = report["plan_changes"][0]
    assert change["after_tomograms"] == 1
    assert change["from"].startswith("tta=flips") and change["to"].startswith("tta=none")
    assert report["final_plan"]["tta"] == "none" and not report["skipped_for_time"]


def test_offline_notebook_survives_a_broken_wheel(trained, bundled, tmp_path):
    dataset = tmp_path / "dataset"
    shutil.copytree(bundled / "dataset", dataset)
    (dataset / "aaa_broken-1.0-py3-none-any.whl").write_bytes(b"not a zip file")  # sorted first
    report, text = run_offline(
        bundled / "kernel" / "cryokit-test-inference.ipynb",
        tmp_path / "work",
        {"data_root": str(trained["root"]), "model_dir": str(dataset)},
    )
    assert "ERROR wheel aaa_broken-1.0-py3-none-any.whl skipped (BadZipFile" in text
    assert "monai from monai-" in text and sorted(report["seconds"]) == list(TEST_RUNS)
    assert len(read_submission(tmp_path / "work" / "submission.csv")) == sum(report["picks_per_run"].values())


def test_offline_notebook_without_cryokit_still_writes_an_empty_csv(bundled, tmp_path):
    notebook = nbformat.read(bundled / "kernel" / "cryokit-test-inference.ipynb", as_version=4)
    cell = next(c for c in notebook.cells if EMBED_TAG in c.metadata.get("tags", []))
    cell.source = cell.source.replace('"sha256": "', '"sha256": "0')  # the packed cryokit is damaged
    damaged = tmp_path / "damaged.ipynb"
    nbformat.write(notebook, damaged)
    report, text = run_offline(damaged, tmp_path / "work", {"model_dir": str(bundled / "dataset")})
    assert "ERROR setting up (RuntimeError: the packed cryokit is damaged" in text
    assert "ERROR cryokit cannot be imported" in text
    assert (tmp_path / "work" / "submission.csv").read_text().splitlines() == [",".join(SUBMISSION_COLUMNS)]


def test_offline_notebook_with_two_workers_writes_the_csv_of_one(trained, bundled, tmp_path):
    """Kaggle's 2 x T4 path, on two CPU workers: spawned from the notebook's kernel, each importing the
    packed cryokit, every second run each; one CSV, in run order, the same as one worker's."""
    parameters = {"data_root": str(trained["root"]), "model_dir": str(bundled / "dataset")}
    one, _ = run_offline(bundled / "kernel" / "cryokit-test-inference.ipynb", tmp_path / "one", parameters)
    two, text = run_offline(
        bundled / "kernel" / "cryokit-test-inference.ipynb", tmp_path / "two", {**parameters, "workers": 2}
    )
    assert two["device"] == "cpu, cpu" and list(two["seconds"]) == list(TEST_RUNS) and not two["errors"]
    # The same picks in the same order; coordinates to a thousandth of an Angstrom, since a worker's convolutions
    # run on fewer threads and sum in another order (last-digit differences in float32).
    by_two, by_one = (pd.read_csv(tmp_path / name / "submission.csv") for name in ("two", "one"))
    pd.testing.assert_frame_equal(by_two, by_one, check_exact=False, atol=1e-3, rtol=0)
    assert two["n_picks"] == one["n_picks"] > 0


def test_members_with_their_own_tta_are_capped_step_by_step():
    ladder = degradation_ladder("flips+rot90", 2, ("flips", "none"))  # a fitted ensemble: U-Net flips, detector none
    assert [(p.describe(), p.passes) for p in ladder] == [
        ("tta=flips, none, 2 model(s)", 9),  # starts at the most expensive member's TTA, not the cap above it
        ("tta=none, none, 2 model(s)", 2),
        ("tta=none, 1 model(s)", 1),
    ]
    capped = degradation_ladder("none", 2, ("flips", "none"))  # the notebook's tta caps every member
    assert [p.passes for p in capped] == [2, 1] and capped[0].tta_of(0) == "none"
    assert InferencePlan.from_dict(ladder[0].to_dict()) == ladder[0]
    with pytest.raises(ValueError, match="1 TTA choices"):
        degradation_ladder("flips", 2, ("flips",))
    with pytest.raises(ValueError, match="tta must be one of"):
        degradation_ladder("flips", 1, ("mirror",))


@pytest.fixture(scope="module")
def fitted_ensemble(trained):
    """A second checkpoint of another kind (output stride 2) and an ensemble of both, fitted with the U-Net
    flipped and the other not; thresholds at the candidate floor, so that the picks are many."""
    import dataclasses

    from cryokit.config import TargetConfig
    from cryokit.ensemble import fit_ensemble, save_ensemble
    from cryokit.inference.predict import group_candidates
    from cryokit.io import read_solution

    base, root = trained["base"], trained["root"]
    config = RunConfig(
        data=DataConfig(root=str(root)),
        patch=PatchConfig(size_zyx=(16, 32, 32), batch_size=2, patches_per_epoch=2, inference_batch_size=4),
        target=TargetConfig(stride=2),
        model=ModelConfig(channels=(4, 8), strides=(2,), num_res_units=0),
        augment=AugmentConfig(rotate_degrees=0, scale_fraction=0, elastic_p=0, noise_p=0, intensity_p=0),
        train=TrainConfig(epochs=1, out_dir=str(base / "run_s2")),
        tracking=TrackingConfig(enabled=False),
    )
    checkpoints = [str(trained["checkpoint"]), str(fit(config, progress=False).best_checkpoint)]
    names, candidates = group_candidates(checkpoints, str(root), "train", ["TS_a"], ["flips", "none"], "cpu", False)
    ensemble = fit_ensemble(candidates, read_solution(root, "train", ["TS_a"]), names)
    # Both members carry weight on every class (a member outside the vote would not be run at all).
    ensemble = dataclasses.replace(
        ensemble,
        weights={name: (0.5, 0.5) for name in ensemble.weights},
        thresholds={name: 0.0 for name in PARTICLE_NAMES},
    )
    return {"checkpoints": checkpoints, "path": save_ensemble(base / "ensemble.json", ensemble), "ensemble": ensemble}


def test_the_submission_applies_a_fitted_ensemble_with_each_members_tta(trained, fitted_ensemble, tmp_path):
    checkpoints, path = fitted_ensemble["checkpoints"], fitted_ensemble["path"]
    expected, _ = predict_runs(
        checkpoints, str(trained["root"]), "test", ensemble=fitted_ensemble["ensemble"], device="cpu", progress=False
    )
    report = predict_submission(
        checkpoints, trained["root"], tmp_path / "sub.csv", tta="flips+rot90", ensemble=path, device="cpu"
    )
    assert report.ensemble == "2 members, TTA flips, none" and not report.errors
    assert report.final_plan["describe"] == "tta=flips, none, 2 model(s)"  # the ensemble's own TTA, not the cap
    got = sorted_picks(tmp_path / "sub.csv")
    assert len(got) == len(expected) > 0
    want = expected.sort_values(["experiment", "particle_type", "x", "y", "z"]).reset_index(drop=True)
    np.testing.assert_allclose(got[["x", "y", "z"]].to_numpy(), want[["x", "y", "z"]].to_numpy(), atol=1e-3)
    raw, _ = predict_runs(checkpoints, str(trained["root"]), "test", tta="none", thresholds=THRESHOLDS, device="cpu")
    assert len(raw) != len(got)  # the ensemble's merge and thresholds, not the raw one

    # Short of time the guard drops the TTA, then the detector: the U-Net alone, with the thresholds given.
    tight = predict_submission(
        checkpoints,
        trained["root"],
        tmp_path / "tight.csv",
        ensemble=path,
        thresholds=THRESHOLDS,
        device="cpu",
        time_budget_hours=0.05,
        expected_tomograms=100000,
    )
    assert tight.plan_changes[0]["to"] == "tta=none, 1 model(s)" and not tight.skipped_for_time
    later = read_submission(tmp_path / "tight.csv").query("experiment != 'TS_t1'")
    alone, _ = predict_runs(checkpoints[:1], str(trained["root"]), "test", ["TS_t2", "TS_t3"], "none", THRESHOLDS)
    assert len(later) == len(alone) > 0

    # An ensemble that does not fit the checkpoints, or a damaged file: reported, the members merged raw.
    alone = predict_submission(checkpoints[:1], trained["root"], tmp_path / "alone.csv", ensemble=path, device="cpu")
    assert alone.ensemble == "" and "ensemble not used: it has 2 member(s)" in alone.errors[0]
    assert "1 group(s)" in alone.errors[0] and alone.n_picks > 0
    (tmp_path / "bad.json").write_text("{ not json")
    damaged = predict_submission(
        checkpoints, trained["root"], tmp_path / "bad.csv", ensemble=tmp_path / "bad.json", device="cpu"
    )
    assert (
        damaged.errors[0].startswith("ensemble not used (ValueError: ensemble file") and "bad.json" in damaged.errors[0]
    )
    assert damaged.n_picks == len(read_submission(tmp_path / "bad.csv")) > 0
    with pytest.raises(ValueError, match="the ensemble does not fit"):
        predict_submission(
            checkpoints[:1], trained["root"], tmp_path / "r.csv", ensemble=path, device="cpu", on_error="raise"
        )


def test_a_member_without_weight_in_the_ensemble_is_not_predicted(trained, fitted_ensemble, monkeypatch):
    import dataclasses

    import cryokit.inference.predict as predict_module
    from cryokit.postprocess import apply_thresholds

    checkpoints, ensemble = fitted_ensemble["checkpoints"], fitted_ensemble["ensemble"]
    first_only = dataclasses.replace(ensemble, weights={name: (1.0, 0.0) for name in ensemble.weights})
    calls = []
    real = predict_module.predict_volume_picks
    monkeypatch.setattr(
        predict_module,
        "predict_volume_picks",
        lambda models, task, *a, **k: calls.append(task) or real(models, task, *a, **k),
    )
    picks, _ = predict_runs(checkpoints, str(trained["root"]), "test", ["TS_t1"], ensemble=first_only, device="cpu")
    assert len(calls) == 1  # the second member (weight 0 on every class) was never run
    both = dataclasses.replace(ensemble, weights={name: (0.5, 0.5) for name in ensemble.weights})
    predict_runs(checkpoints, str(trained["root"]), "test", ["TS_t1"], ensemble=both, device="cpu")
    assert len(calls) == 3 and len(picks) > 0  # with weight, both are run
    # Its picks are the first member's, calibrated and thresholded by the ensemble.
    alone, _ = predict_runs(
        checkpoints[:1], str(trained["root"]), "test", ["TS_t1"], tta=ensemble.tta[0], keep_scores=True, device="cpu"
    )
    alone = alone[alone["particle_type"].isin(list(first_only.weights))]  # the classes the ensemble was fitted on
    expected = apply_thresholds(ensemble.calibrations[0](alone), ensemble.thresholds, 1.0)
    assert len(picks) == len(expected)
    np.testing.assert_allclose(
        picks.sort_values(["particle_type", "x", "y", "z"])[["x", "y", "z"]].to_numpy(),
        expected.sort_values(["particle_type", "x", "y", "z"])[["x", "y", "z"]].to_numpy(),
        atol=1e-6,
    )


def test_the_submission_neither_runs_nor_budgets_a_member_without_weight(trained, fitted_ensemble, tmp_path):
    import dataclasses

    from cryokit.ensemble import save_ensemble

    checkpoints, ensemble = fitted_ensemble["checkpoints"], fitted_ensemble["ensemble"]
    first_only = dataclasses.replace(ensemble, weights={name: (1.0, 0.0) for name in ensemble.weights})
    path = save_ensemble(tmp_path / "first_only.json", first_only)
    report = predict_submission(
        checkpoints, trained["root"], tmp_path / "sub.csv", tta="flips+rot90", ensemble=path, device="cpu"
    )
    assert not report.errors and f"not run (no weight in it): {checkpoints[1]}" in report.ensemble
    # The guard's plan holds the first member's 8 flipped passes alone, not the idle member's pass beside them.
    assert report.final_plan["describe"] == "tta=flips, 1 model(s)"
    expected, _ = predict_runs(checkpoints, str(trained["root"]), "test", ensemble=first_only, device="cpu")
    assert len(read_submission(tmp_path / "sub.csv")) == len(expected) > 0


def test_bundle_ships_the_ensemble_and_the_offline_notebook_applies_it(trained, fitted_ensemble, tmp_path, capsys):
    checkpoints, path = fitted_ensemble["checkpoints"], fitted_ensemble["path"]
    common = ["kaggle", "bundle", "--thresholds", str(trained["thresholds"]), "--wheel-source", "installed"]
    common += ["--dataset-slug", DATASET_SLUG, "--kernel-slug", KERNEL_SLUG, "--weights", "float32"]
    status = main([*common, "--checkpoints", checkpoints[0], "--ensemble", str(path), "--out", str(tmp_path / "x")])
    error = capsys.readouterr().err
    assert status == 2 and f"ensemble file {path} has 2 member(s)" in error and not (tmp_path / "x").exists()
    assert main([*common, "--checkpoints", *checkpoints, "--ensemble", str(path), "--out", str(tmp_path / "b")]) == 0
    dataset = tmp_path / "b" / "dataset"
    assert json.loads((dataset / "cryokit_bundle.json").read_text())["ensemble_file"] == "ensemble.json"
    notebook = tmp_path / "b" / "kernel" / "cryokit-test-inference.ipynb"
    params = next(c for c in nbformat.read(notebook, as_version=4).cells if "parameters" in c.metadata.get("tags", []))
    assert 'ensemble_file = "ensemble.json"' in params.source.replace("'", '"')
    assert 'tta = "flips"' in params.source.replace("'", '"')  # the most any member was fitted with
    report, text = run_offline(
        notebook, tmp_path / "work", {"data_root": str(trained["root"])} | {"model_dir": str(dataset)}
    )
    assert report["ensemble"] == "2 members, TTA flips, none" and not report["errors"], text[-2000:]
    assert "fitted ensemble of 2 members, TTA flips, none" in text  # the notebook prints the report's summary
    expected, _ = predict_runs(
        checkpoints, str(trained["root"]), "test", ensemble=fitted_ensemble["ensemble"], device="cpu", progress=False
    )
    got = sorted_picks(tmp_path / "work" / "submission.csv")
    assert len(got) == len(expected) > 0
