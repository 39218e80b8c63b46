"""Why the U-Net lagged the detector: one change at a time against a default, on the quality benchmark's data.

``--family detector`` runs the detector's variants the same way (``DETECTOR_VARIANTS``, section "Detector
experiments (randomized simulator)").

Every variant trains the U-Net preset of the demo configuration (level 1, 20 A voxels, 4 training runs,
validation on 1 run, best epoch by validation F4) with some overrides, tunes per-class thresholds on the
validation run, and scores the 2 held-out runs (seed 1) with the competition metric. The runs are the
randomized simulator's unless ``--domain fixed``. Each variant's result is kept in
``OUT/experiments_randomized/NAME.json`` (``OUT/experiments`` for the fixed domain) as soon as it is done,
so an interrupted run resumes where it stopped and variants can run one at a time; the table is made from
every result present and written to the "U-Net experiments (randomized simulator)" section of
docs/BENCHMARKS.md ("U-Net experiments" for the fixed domain). Rows already there whose result files are not
(run elsewhere, or the scratch folder is gone) and the notes under the table are kept.

Run: ``.venv/bin/python benchmarks/unet_experiments.py [NAME ...] [--domain fixed] [--out DIR]`` (no names:
every variant; ``--list`` prints them). Training minutes are wall time on this shared 2-core machine: compare them
within one table only.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import (  # noqa: E402
    BENCHMARKS_PATH,
    notes_under_table,
    read_section,
    report_header,
    table_span,
    update_section,
)
from quality import (  # noqa: E402
    EXTRA_TRAINING_SEED,
    experiments_folder,
    more_runs,
    scored,
    simulate_quality_data,
    train_model,
)

from cryokit.io import read_solution  # noqa: E402
from cryokit.io.atomic import atomic_write_text  # noqa: E402
from cryokit.metric import score_table  # noqa: E402
from cryokit.particles import SCORED_PARTICLE_NAMES  # noqa: E402
from cryokit.thresholds import best_thresholds  # noqa: E402

COMMAND = ".venv/bin/python benchmarks/unet_experiments.py"

# Rows pin the defaults they were measured against so that they keep their meaning: before 2026-12-06 output
# stride 1 with 64 patches per epoch, then stride 2 with 192 (`stride2_p192`), both with every particle class
# weighted alike and unsmoothed maps; from 2026-12-06's second change `p192_volume_smooth40`; since 2026-12-07 the
# same on MONAI's DynUNet (`default_dynunet`). The network of the defaults until 2026-12-07 is MONAI's UNet.
_MONAI_UNET = {"model.name": "unet", "model.deep_supervision": 0}
_UNIFORM_RAW = {**_MONAI_UNET, "loss.particle_weighting": "uniform", "postprocess.smooth_sigma_angstrom": 0.0}
_P64 = {"patch.patches_per_epoch": 64, **_UNIFORM_RAW}
_P192 = {"target.stride": 2, "patch.patches_per_epoch": 192, **_UNIFORM_RAW}
_S1 = {"target.stride": 1, **_P64}
_S2 = {"target.stride": 2, **_P64}
_S2_EMA = {**_S2, "train.ema_decay": 0.99}
_S2_EMA_PW8 = {**_S2_EMA, "loss.particle_weight": 8.0}
# Intensity and imaging augmentation (cryokit.data.appearance), each family half the time.
APPEARANCE = {
    "augment.gamma_p": 0.5,
    "augment.blur_p": 0.3,
    "augment.bias_p": 0.3,
    "augment.bandpass_p": 0.3,
    "augment.wedge_p": 0.3,
}
# name -> (what changes, overrides on the U-Net preset of the demo configuration)
VARIANTS: dict[str, tuple[str, dict]] = {
    "default": (
        "today's default: MONAI DynUNet, stride 2, 192 patches per epoch, balls 0.5 r, CE weights by volume "
        "(mean 32), maps smoothed by 40 A, no EMA",
        {},
    ),
    "stride1": ("the default before 2026-12-06: output stride 1, 64 patches per epoch", _S1),
    "ema_pw8": (
        "EMA of the weights (decay 0.99) + CE particle weight 8 (from 32)",
        {**_S1, "train.ema_decay": 0.99, "loss.particle_weight": 8.0},
    ),
    "ema": ("EMA of the weights (decay 0.99)", {**_S1, "train.ema_decay": 0.99}),
    "pw8": ("CE particle weight 8 (from 32)", {**_S1, "loss.particle_weight": 8.0}),
    "stride2": ("output stride 2 (targets and maps at 40 A)", _S2),
    "stride2_ema": ("stride 2 + EMA of the weights (decay 0.99)", _S2_EMA),
    "stride2_ema_pw8": ("stride 2 + EMA + CE particle weight 8 (from 32)", _S2_EMA_PW8),
    "stride2_ema_pw8_e48": (
        "stride 2 + EMA + weight 8, 48 epochs (about the default's CPU time)",
        {**_S2_EMA_PW8, "train.epochs": 48},
    ),
    "stride2_ema_pw8_wide": (
        "stride 2 + EMA + weight 8, channels 32-64-128-256",
        {**_S2_EMA_PW8, "model.channels": [32, 64, 128, 256]},
    ),
    "stride2_ema_pw8_ball07": (
        "stride 2 + EMA + weight 8, balls of 0.7 r",
        {**_S2_EMA_PW8, "target.radius_fraction": 0.7},
    ),
    "stride2_ema_pw4": ("stride 2 + EMA + CE particle weight 4", {**_S2_EMA, "loss.particle_weight": 4.0}),
    "stride2_ema_pw8_pos04": (
        "stride 2 + EMA + weight 8, 40 % particle-centred patches (from 70 %)",
        {**_S2_EMA_PW8, "patch.positive_share": 0.4},
    ),
    "stride2_ema_pw8_e72": (
        "stride 2 + EMA + weight 8, 72 epochs (the default's CPU time)",
        {**_S2_EMA_PW8, "train.epochs": 72},
    ),
    "stride2_ema_pw8_appearance": (
        "stride 2 + EMA + weight 8 + intensity and imaging augmentation (gamma, blur, bias, band-pass, wedge)",
        {**_S2_EMA_PW8, **APPEARANCE},
    ),
    "stride2_ema_pw8_nms08": (
        "stride 2 + EMA + weight 8, NMS radius 0.8 r (from 0.5)",
        {**_S2_EMA_PW8, "postprocess.radius_fraction": 0.8},
    ),
    # The same CPU time spent differently: stride 2 trains about 3x faster per patch, so 3x the patches.
    "stride2_p192": (
        "output stride 2, 192 patches per epoch (from 64): about stride 1's CPU time (the default of the morning "
        "of 2026-12-06)",
        _P192,
    ),
    # One change each against `stride2_p192` (the default of the morning of 2026-12-06): the same CPU time.
    "p192_ema": ("`stride2_p192` + EMA of the weights (decay 0.99)", {**_P192, "train.ema_decay": 0.99}),
    "p192_pos04": (
        "`stride2_p192` + 40 % particle-centred patches (from 70 %): more background seen",
        {**_P192, "patch.positive_share": 0.4},
    ),
    "p192_pw8": ("`stride2_p192` + CE particle weight 8 (from 32)", {**_P192, "loss.particle_weight": 8.0}),
    "p192_volume": (
        "`stride2_p192` + particle classes' CE weights in proportion to radius^-3 (mean 32): each particle "
        "counts alike",
        {**_P192, "loss.particle_weighting": "volume"},
    ),
    "p192_volume_ball07": (
        "`p192_volume` + balls of 0.7 r (from 0.5; apo-ferritin's ball is about one 40 A cell at 0.5)",
        {**_P192, "loss.particle_weighting": "volume", "target.radius_fraction": 0.7},
    ),
    "p192_volume_wide": (
        "`p192_volume` + channels 32-64-128-256 (2.4 M parameters, from 0.6 M)",
        {**_P192, "loss.particle_weighting": "volume", "model.channels": [32, 64, 128, 256]},
    ),
    "p192_smooth40": (
        "`stride2_p192` + maps blurred by a Gaussian of sigma 40 A (one output cell) before peaks are found",
        {**_P192, "postprocess.smooth_sigma_angstrom": 40.0},
    ),
    "p192_volume_smooth40": (
        "`p192_volume` + maps blurred by a Gaussian of sigma 40 A (one output cell) before peaks are found "
        "(the default from 2026-12-06, second change, to 2026-12-07)",
        {**_P192, "loss.particle_weighting": "volume", "postprocess.smooth_sigma_angstrom": 40.0},
    ),
    # One change each against `p192_volume_smooth40` (the default from 2026-12-06 to 2026-12-07, MONAI's UNet).
    "default_ball07": (
        "`p192_volume_smooth40` + balls of 0.7 r (from 0.5): more cells per particle, apo-ferritin's ball about 3 "
        "cells across at 40 A",
        {**_MONAI_UNET, "target.radius_fraction": 0.7},
    ),
    "default_wide": (
        "`p192_volume_smooth40` + channels 32-64-128-256 (2.4 M parameters, from 0.6 M)",
        {**_MONAI_UNET, "model.channels": [32, 64, 128, 256]},
    ),
    "default_deep": (
        "`p192_volume_smooth40` + a fifth level (channels 16-32-64-128-256, strides 2-2-2-2): a receptive field "
        "twice as wide, for the shapes that tell beta-galactosidase from thyroglobulin and apo-ferritin",
        {**_MONAI_UNET, "model.channels": [16, 32, 64, 128, 256], "model.strides": [2, 2, 2, 2]},
    ),
    "default_bf16_e36": (
        "`p192_volume_smooth40` trained with bf16 autocast on the CPU (`train.cpu_bf16`, 1.6x the training steps per "
        "second on this CPU) for 36 epochs (from 24): about the same CPU time",
        {**_MONAI_UNET, "train.cpu_bf16": True, "train.epochs": 36},
    ),
    "default_runs8": (
        "`p192_volume_smooth40` trained on 8 simulated runs (4 more drawn alike, seed 3) for the same 24 epochs of 192 "
        "patches: the same CPU time, twice the data",
        {**_MONAI_UNET},
    ),
    "default_dice": (
        "`p192_volume_smooth40` + a Dice term (weight 1, the CE's class weights) beside the cross-entropy",
        {**_MONAI_UNET, "loss.dice_weight": 1.0},
    ),
    "default_tversky": (
        "`p192_volume_smooth40` + a Tversky term (weight 1; alpha 0.3 on false positives, beta 0.7 on misses: recall "
        "first, as F4 wants) beside the cross-entropy",
        {**_MONAI_UNET, "loss.name": "tversky_ce", "loss.dice_weight": 1.0},
    ),
    "default_lr1e3": (
        "`p192_volume_smooth40` at learning rate 1e-3 (from 2e-3; cosine decay after 20 warm-up steps either way): its "
        "validation F4 plateaus from about epoch 15",
        {**_MONAI_UNET, "train.lr": 1e-3},
    ),
    "default_seed1": (
        "`p192_volume_smooth40` again with training seed 1 (from 0): initial weights and patches drawn anew, how "
        "far one training run's score moves by chance",
        {**_MONAI_UNET, "train.seed": 1},
    ),
    "default_seed2": (
        "`p192_volume_smooth40` again with training seed 2 (from 0): a third draw of initial weights and patches",
        {**_MONAI_UNET, "train.seed": 2},
    ),
    "default_wide_seed1": (
        "`default_wide` again with training seed 1 (from 0): whether its lead over the default outlasts a new draw",
        {**_MONAI_UNET, "model.channels": [32, 64, 128, 256], "train.seed": 1},
    ),
    "default_ls01": (
        "`p192_volume_smooth40` + soft labels among the particle classes: a particle voxel's target keeps 0.9 on "
        "its class and spreads 0.1 over the other five (background one-hot), so the network is not pushed to "
        "certainty where beta-galactosidase and thyroglobulin look alike",
        {**_MONAI_UNET, "loss.label_smoothing": 0.1},
    ),
    "default_dynunet": (
        "`p192_volume_smooth40` on MONAI's DynUNet (the nnU-Net layout: two convolutions and a residual per level, "
        "the same widths 16-32-64-128; 1.4 M parameters, from 0.6 M; the default since 2026-12-07)",
        {"model.name": "dynunet"},
    ),
    "default_dynunet_ds2": (
        "`default_dynunet` + deep supervision: heads on the two deeper decoder levels, trained on the same balls "
        "with weights 1, 1/2, 1/4",
        {"model.name": "dynunet", "model.deep_supervision": 2},
    ),
    "default_dynunet_seed1": (
        "`default_dynunet` again with training seed 1 (from 0): whether its lead outlasts a new draw",
        {"model.name": "dynunet", "train.seed": 1},
    ),
    "default_dynunet_ds2_seed1": (
        "`default_dynunet_ds2` again with training seed 1 (from 0): whether its lead outlasts a new draw",
        {"model.name": "dynunet", "model.deep_supervision": 2, "train.seed": 1},
    ),
    "p192_wide": (
        "`stride2_p192` + channels 32-64-128-256 (2.4 M parameters, from 0.6 M)",
        {**_P192, "model.channels": [32, 64, 128, 256]},
    ),
    # The target the 4th place (and the 1st place's first baseline) used: a Gaussian per particle, sigmoid focal loss.
    "gaussian_s2": (
        "Gaussian heatmaps (sigma 0.5 r) with a sigmoid focal loss, output stride 2",
        {**_S2, "target.kind": "gaussian"},
    ),
    "gaussian_s2_p192": (
        "Gaussian heatmaps at stride 2, 192 patches per epoch: about the default's CPU time",
        {**_P192, "target.kind": "gaussian"},
    ),
    # Capacity: the detector that beats the U-Net has a 33.5 M-parameter ResNet-18 encoder, the U-Net 0.6 M.
    "wide": (
        "channels 32-64-128-256 (2.4 M parameters, from 0.6 M)",
        {**_S1, "model.channels": [32, 64, 128, 256]},
    ),
    "flexibleunet": (
        "MONAI FlexibleUNet with a ResNet-18 encoder (36 M parameters; the 1st place's family)",
        {**_S1, "model.name": "flexibleunet"},
    ),
}


# The detector's variants (``--family detector``): one change each against the detector preset of the demo
# configuration (stride 4, 64 patches of 32 x 96 x 96 per epoch). Its validation F4 still rose at epoch 24
# (0.758, best 0.771 at 21) and swung by 0.02 between epochs.
# The detector preset until 2026-12-07 (`own_cell`) trained each particle on its own cell only, on
# MedicalNet's full-width ResNet-18 with 64 patches per epoch; `centre1` added centre sampling; since the
# third change of 2026-12-07 the preset is `w32_p192`. Rows pin what they were measured against.
_FULL_WIDTH = {"model.backbone_width": 64, "patch.patches_per_epoch": 64}
_OWN_CELL = {**_FULL_WIDTH, "target.positive_radius_cells": 0.0}
_CENTRE1 = {**_FULL_WIDTH, "target.positive_radius_cells": 1.0}
_W32_P192 = {"target.positive_radius_cells": 1.0, "model.backbone_width": 32, "patch.patches_per_epoch": 192}
DETECTOR_VARIANTS: dict[str, tuple[str, dict]] = {
    "default": (
        "today's detector preset (`w32_p192`): stride 4, a ResNet-18 of width 32, 192 patches of 32 x 96 x 96 "
        "per epoch, no EMA, centre sampling within 1 cell",
        {},
    ),
    "own_cell": (
        "the preset until 2026-12-07: each particle a positive on its own cell only (no centre sampling)",
        _OWN_CELL,
    ),
    "ema": ("`own_cell` + EMA of the weights (decay 0.99)", {**_OWN_CELL, "train.ema_decay": 0.99}),
    "lr4e3": ("`own_cell` + learning rate 4e-3 (from 2e-3)", {**_OWN_CELL, "train.lr": 4e-3}),
    "bf16_e40": (
        "`own_cell` + bf16 autocast on the CPU (`train.cpu_bf16`, 1.8x the training steps per second on this "
        "CPU) for 40 epochs (from 24): about the same CPU time",
        {**_OWN_CELL, "train.cpu_bf16": True, "train.epochs": 40},
    ),
    "box10": (
        "`own_cell` + box loss weighted 10 (from 1): the offsets came out biased by -0.07 cells in z and x on the "
        "training patches themselves (their smooth L1 is quadratic below 1 cell, so its gradients are small)",
        {**_OWN_CELL, "loss.lambda_box": 10.0},
    ),
    "l1beta01": (
        "`own_cell` + box term's smooth L1 linear from 0.1 (from 1): ten times the pull on the small offset errors "
        "behind the bias, the same on large ones (where `box10` also weighed ten times)",
        {**_OWN_CELL, "loss.smooth_l1_beta": 0.1},
    ),
    "seed1": (
        "`own_cell` again with training seed 1 (from 0): initial weights and patches drawn anew, how far one "
        "training run's score moves by chance",
        {**_OWN_CELL, "train.seed": 1},
    ),
    "runs8": (
        "`own_cell` trained on 8 simulated runs (4 more drawn alike, seed 3) for the same 24 epochs of 64 "
        "patches: the same CPU time, twice the data",
        _OWN_CELL,
    ),
    "deep48": (
        "`own_cell` + patches and windows of 48 x 96 x 96 (from 32 deep), 43 per epoch: about the same voxels",
        {**_OWN_CELL, "patch.size_zyx": [48, 96, 96], "patch.patches_per_epoch": 43},
    ),
    "centre1": (
        "`own_cell` + centre sampling: every cell within 1 cell (80 A) of a particle's centre is a positive "
        "regressing its offset to that centre: up to 7 positives per particle in place of 1 (the preset until "
        "`w32_p192`)",
        _CENTRE1,
    ),
    "centre1_seed1": (
        "`centre1` again with training seed 1 (from 0): does its gain over `own_cell` hold for another draw",
        {**_CENTRE1, "train.seed": 1},
    ),
    "centre1_seed2": (
        "`centre1` again with training seed 2 (from 0): a third draw of that preset",
        {**_CENTRE1, "train.seed": 2},
    ),
    "one_anchor": (
        "`centre1` with one anchor for every class (from three by size): the class softmax of a positive cell "
        "chooses among all six, where each size group's objectness alone told beta-galactosidase from "
        "thyroglobulin",
        {**_CENTRE1, "target.anchors": "one"},
    ),
    "centre15": (
        "`centre1` with centre sampling within 1.5 cells (120 A at stride 4): about 19 positives per particle "
        "in place of 7",
        {**_FULL_WIDTH, "target.positive_radius_cells": 1.5},
    ),
    "stride2": (
        "`centre1` at output stride 2 (from 4; 40 A cells, as the 1st place's detection head) with centre sampling "
        "within 2 cells: the same 80 A around each centre, about 33 positives per particle",
        {**_FULL_WIDTH, "target.stride": 2, "target.positive_radius_cells": 2.0},
    ),
    "w32_p192": (
        "`centre1` on a ResNet-18 of half the width (`model.backbone_width` 32 from 64: 8.7 M parameters from 34 M, "
        "a training step a third of the time) with 192 patches per epoch (from 64): about the same CPU time",
        _W32_P192,
    ),
    "w32_p192_seed1": (
        "`w32_p192` again with training seed 1 (from 0): does its gain hold for another draw",
        {**_W32_P192, "train.seed": 1},
    ),
    "w32_p192_seed2": (
        "`w32_p192` again with training seed 2 (from 0): a third draw of that preset",
        {**_W32_P192, "train.seed": 2},
    ),
    "w16_p384": (
        "`w32_p192` at a quarter of MedicalNet's width (`model.backbone_width` 16: 2.5 M parameters, a step a sixth of "
        "width 64's time) with 384 patches per epoch: about the same CPU time again",
        {**_W32_P192, "model.backbone_width": 16, "patch.patches_per_epoch": 384},
    ),
    "w32": (
        "`centre1` on a ResNet-18 of half the width (`model.backbone_width` 32), 64 patches per epoch as the "
        "preset: a third of its CPU time",
        {**_CENTRE1, "model.backbone_width": 32},
    ),
}
# Variants that train on more simulated runs (this many beside the split's 4) for the same epochs and
# patches per epoch: the same CPU time, more data.
MORE_RUNS = {"default_runs8": 4, "runs8": 4}
# family -> (its variants, the preset they change, the section of docs/BENCHMARKS.md)
FAMILIES = {
    "unet": (VARIANTS, "unet", "U-Net experiments"),
    "detector": (DETECTOR_VARIANTS, "yolo3d", "Detector experiments"),
}


def run_variant(
    name: str,
    out: Path,
    root: Path,
    runs: dict,
    epochs: int,
    folder: str = "experiments",
    family: str = "unet",
    domain: str = "randomized",
) -> dict:
    """Train, tune and score one variant of ``family``; its result is written to ``out/FOLDER/NAME.json``.

    A finished training run already in ``out/FOLDER/NAME`` is reused (e.g. the quality benchmark's U-Net
    linked there as ``default``).
    """
    variants, preset, _ = FAMILIES[family]
    change, overrides = variants[name]
    start = time.perf_counter()
    train_runs = runs["train"] + (
        more_runs(root, MORE_RUNS[name], EXTRA_TRAINING_SEED, domain) if name in MORE_RUNS else []
    )
    checkpoint = train_model(name, preset, root, train_runs, runs["val"], out / folder, epochs, overrides, True)
    minutes = (time.perf_counter() - start) / 60
    thresholds = best_thresholds(scored([checkpoint], root, runs["val"]), read_solution(root, "train", runs["val"]))
    table = score_table(
        read_solution(root, "train", runs["heldout"]), scored([checkpoint], root, runs["heldout"], thresholds)
    )
    result = {
        "name": name,
        "change": change,
        "overrides": overrides,
        "score": float(table.attrs["score"]),
        "per_class": dict(zip(table["particle_type"], map(float, table["fbeta"]))),
        "train_minutes": minutes,
        "date": datetime.date.today().isoformat(),
    }
    atomic_write_text(out / folder / f"{name}.json", json.dumps(result, indent=1))
    return result


def time_variants(names: list[str], out: Path, root: Path, runs: dict, epochs: int = 2, repeats: int = 2) -> dict:
    """Seconds per epoch (training and its validation pass) of each variant, median of ``repeats`` short fits.

    The variants take turns (A, B, A, B, ...), so a machine shared with other jobs slows them alike and
    their ratio holds where the absolute seconds do not.
    """
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(repeats):
        for name in names:
            start = time.perf_counter()
            train_model(f"timing_{name}", "unet", root, runs["train"], runs["val"], out, epochs, VARIANTS[name][1])
            seconds[name].append((time.perf_counter() - start) / epochs)
    return {name: sorted(values)[len(values) // 2] for name, values in seconds.items()}


_TIMING_LEAD = "CPU time per epoch"


def kept_rows_and_notes(section: str, present: set[str], new_timing: bool = False) -> tuple[dict[str, str], str]:
    """From the section as it stands: the table rows of variants with no result file here, and the notes
    written under the table (the CPU-time paragraph too, unless ``new_timing`` replaces it).

    Results live in a scratch folder, so a variant re-run on another machine (or after that folder is
    gone) must neither drop the other variants' rows nor the prose that explains them.
    """
    lines = section.splitlines()
    span = table_span(lines)
    if span is None:
        return {}, ""
    start, end = span
    rows = {}
    for line in lines[start + 2 : end]:  # past the header and its rule
        name = line.split("`")[1] if line.startswith("| `") else None
        if name and name not in present:
            rows[name] = line
    paragraphs = notes_under_table(section).split("\n\n")
    notes = [p for p in paragraphs if p and not (new_timing and p.startswith(_TIMING_LEAD))]
    return rows, "\n\n".join(notes)


def report(
    results: list[dict],
    epochs: int,
    domain: str,
    timing: dict | None = None,
    family: str = "unet",
    kept_rows: dict[str, str] | None = None,
    notes: str = "",
) -> str:
    """The section's markdown: the rows of ``results`` and ``kept_rows`` (name -> row already in the docs) in
    the family's variant order, then ``notes``."""
    names = list(SCORED_PARTICLE_NAMES)
    lines = [
        "| variant | change | " + " | ".join(names) + " | weighted F4 | training minutes |",
        "|---|---|" + "---:|" * (len(names) + 2),
    ]
    rows = dict(kept_rows or {})
    variants = FAMILIES[family][0]
    for r in results:
        per_class = " | ".join(f"{r['per_class'][n]:.3f}" for n in names)
        # Today's wording of a variant's change (rows say what they changed against; the overrides are pinned).
        change = variants[r["name"]][0] if r["name"] in variants else r["change"]
        rows[r["name"]] = f"| `{r['name']}` | {change} | {per_class} | **{r['score']:.3f}** | " + (
            f"{r['train_minutes']:.1f} |" if r["train_minutes"] >= 0.05 else "reused |"
        )
    order = list(variants)
    lines += [rows[n] for n in sorted(rows, key=lambda n: order.index(n) if n in order else len(order))]
    return "\n".join(
        [
            *report_header(
                f"{COMMAND}{' --domain fixed' if domain == 'fixed' else ''}"
                f"{'' if family == 'unet' else f' --family {family}'}",
                command_note="(one variant: `... NAME`)",
                machine_note="(shared with other jobs while this ran: minutes are noisy)",
                date=max(r["date"] for r in results),
            ),
            "",
            f"The quality benchmark's data and budget ({epochs} epochs at level 1 unless a row says otherwise; "
            "4 training runs, thresholds tuned on 1 validation run, scored on the 2 held-out runs"
            + (
                ") of the randomized simulator (`benchmarks/quality.py --domain randomized`'s runs). "
                if domain != "fixed"
                else "). "
            )
            + "One row per variant, each a change against the row it names:",
            "",
            *lines,
            *(
                [
                    "",
                    f"{_TIMING_LEAD} (training and its validation pass, median of {timing['repeats']} fits of "
                    f"{timing['epochs']} epochs taking turns; `{COMMAND} --time {' '.join(timing['seconds'])}`, "
                    f"{timing['date']}): " + ", ".join(f"`{n}` {t:.1f} s" for n, t in timing["seconds"].items()) + ".",
                ]
                if timing
                else []
            ),
            *(["", notes] if notes else []),
        ]
    )


def write_report(
    results: list[dict],
    epochs: int,
    domain: str,
    timing: dict | None = None,
    family: str = "unet",
    path: Path = BENCHMARKS_PATH,
) -> str:
    """Rewrite the family's section of ``path`` (docs/BENCHMARKS.md) from ``results``, keeping the rows and
    notes already there that they cannot regenerate (``kept_rows_and_notes``); the section's new body."""
    section = FAMILIES[family][2] + ("" if domain == "fixed" else f" ({domain} simulator)")
    kept_rows, notes = kept_rows_and_notes(
        read_section(section, path), {r["name"] for r in results}, new_timing=timing is not None
    )
    body = report(results, epochs, domain, timing, family, kept_rows, notes)
    update_section(section, body, path)
    return body


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="variants to run (default: all not yet done)")
    parser.add_argument("--epochs", type=int, default=24)
    parser.add_argument("--out", type=Path, default=Path("/tmp/cryokit_quality"))
    parser.add_argument(
        "--domain",
        default="randomized",
        choices=["fixed", "randomized"],
        help="the simulator's domain (randomized: the default for training data)",
    )
    parser.add_argument("--family", default="unet", choices=list(FAMILIES), help="the model family's variants")
    parser.add_argument("--list", action="store_true", help="print the variants and exit")
    parser.add_argument("--report-only", action="store_true", help="write the table from the results there are")
    parser.add_argument("--time", nargs="+", metavar="NAME", help="time an epoch of these variants side by side")
    args = parser.parse_args(argv)
    variants = FAMILIES[args.family][0]
    if args.list:
        for name, (change, overrides) in variants.items():
            print(f"{name}: {change} {overrides}")
        return 0
    unknown = sorted(set(args.names + (args.time or [])) - set(variants))
    if unknown:
        parser.error(f"unknown variant(s) {unknown}; known: {', '.join(variants)}")
    if args.time and args.family != "unet":
        parser.error("--time times U-Net variants only")
    folder = experiments_folder(args.domain, args.family)
    root, runs = (None, None) if args.report_only else simulate_quality_data(args.out, domain=args.domain)
    timing_file = args.out / folder / "timing.json"
    if args.time:
        epochs, repeats = 2, 2
        seconds = time_variants(args.time, args.out / folder, root, runs, epochs, repeats)
        timing = {"seconds": seconds, "epochs": epochs, "repeats": repeats, "date": datetime.date.today().isoformat()}
        atomic_write_text(timing_file, json.dumps(timing, indent=1))
    done = {p.stem for p in (args.out / folder).glob("*.json")}
    for name in [] if args.report_only or args.time else args.names or [n for n in variants if n not in done]:
        result = run_variant(name, args.out, root, runs, args.epochs, folder, args.family, args.domain)
        print(f"{name}: weighted F4 {result['score']:.3f} ({result['train_minutes']:.1f} min)", flush=True)
    paths = [args.out / folder / f"{n}.json" for n in variants]
    results = [json.loads(p.read_text()) for p in paths if p.is_file()]
    if not results:
        print(f"no results in {args.out / folder}: docs/BENCHMARKS.md left as it is")
        return 0
    timing = json.loads(timing_file.read_text()) if timing_file.is_file() else None
    print(write_report(results, args.epochs, args.domain, timing, args.family))
    return 0


if __name__ == "__main__":
    sys.exit(main())
