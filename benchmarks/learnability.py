"""A CPU proxy for "the simulator stays learnable": can shape tell the classes and the clutter apart?

The classical baseline fails on the simulator because blobs of a type's size are not only that type
(debris, other types). This checks, without a GPU, that the information a trained model needs is in the
data: crops centred on every object of held-out runs (six particle types, debris, and background
crops away from all objects) are classified from rotation-invariant shape features (radial profiles
of intensity and energy, second moments of the density at three radii) by gradient boosting trained
on other runs. High per-type precision and recall here mean shape separates the types from the
clutter; a 3D U-Net sees strictly more. It is a proxy: true centres are given, localisation is not
tested, and it is no substitute for training the U-Net (``cryokit train``) on a GPU.

Run: ``.venv/bin/python benchmarks/learnability.py`` (updates the "Simulator learnability proxy" section).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import precision_recall_fscore_support

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import report_header, update_section  # noqa: E402

from cryokit.coords import angstrom_xyz_to_voxel_zyx  # noqa: E402
from cryokit.particles import PARTICLE_NAMES  # noqa: E402
from cryokit.synth import config_for_difficulty, simulate_run  # noqa: E402

COMMAND = ".venv/bin/python benchmarks/learnability.py"
KINDS = list(PARTICLE_NAMES) + ["debris", "background"]
HALF = 18  # crop half-width, level-0 voxels (180 A: a ribosome fits)
N_BACKGROUND = 400


def _grid() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    offsets = np.stack(np.meshgrid(*[np.arange(-HALF, HALF + 1)] * 3, indexing="ij"), -1).astype(float)
    radius = np.linalg.norm(offsets, axis=-1)
    return offsets, radius, np.minimum(radius.astype(int), HALF + 1)


OFFSETS, RADIUS, RADIUS_BIN = _grid()


def shape_features(crop: np.ndarray) -> np.ndarray:
    """Radial profiles of intensity and energy, and second moments of the positive density at 3 radii."""
    counts = np.bincount(RADIUS_BIN.ravel(), minlength=HALF + 2)
    parts = [np.bincount(RADIUS_BIN.ravel(), w.ravel(), HALF + 2) / counts for w in (crop, crop**2)]
    for reach in (8, 12, 16):
        mass = np.clip(crop, 0, None) * (RADIUS <= reach)
        total = mass.sum() + 1e-9
        centre = (OFFSETS * mass[..., None]).sum(axis=(0, 1, 2)) / total
        spread = OFFSETS - centre
        moments = np.einsum("abci,abcj,abc->ij", spread, spread, mass) / total
        eigen = np.sort(np.linalg.eigvalsh(moments))
        parts.append(np.r_[eigen, eigen / eigen.sum(), moments[0, 0] / np.trace(moments), np.linalg.norm(centre)])
    return np.concatenate(parts)


def run_crops(difficulty: str, seed: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(features, labels) of the crops of one simulated full-size run (denoised, level 0)."""
    config = config_for_difficulty(difficulty, tomo_types=("denoised",))
    run = simulate_run(config, seed=seed)
    volume = run.volumes["denoised"]
    volume = -(volume - volume.mean()) / volume.std()  # particles bright
    spacing = config.voxel_spacing_angstrom_zyx
    objects = [o for o in run.scene.objects if o.kind in KINDS]
    centres = [angstrom_xyz_to_voxel_zyx(o.centre_angstrom_xyz, spacing)[0] for o in objects]
    labels = [KINDS.index(o.kind) for o in objects]
    rng = np.random.default_rng(list(seed) + [7])
    occupied = np.array(centres)
    while labels.count(KINDS.index("background")) < N_BACKGROUND:
        candidate = rng.uniform(HALF, np.array(volume.shape) - HALF - 1)
        if np.min(np.linalg.norm(occupied - candidate, axis=1)) > 12:
            centres.append(candidate)
            labels.append(KINDS.index("background"))
    features, kept = [], []
    for centre, label in zip(centres, labels):
        z, y, x = np.round(centre).astype(int)
        if min(z, y, x) >= HALF and np.all(np.array([z, y, x]) + HALF < volume.shape):
            features.append(
                shape_features(volume[z - HALF : z + HALF + 1, y - HALF : y + HALF + 1, x - HALF : x + HALF + 1])
            )
            kept.append(label)
    return np.array(features), np.array(kept)


def evaluate(difficulty: str, n_train: int, n_test: int) -> list[tuple[str, float, float, int]]:
    """Per kind (precision, recall, held-out count) of a classifier trained on seed-0 runs, tested on seed 1."""
    train = [run_crops(difficulty, (0, i)) for i in range(n_train)]
    test = [run_crops(difficulty, (1, i)) for i in range(n_test)]
    x_train, y_train = np.concatenate([f for f, _ in train]), np.concatenate([y for _, y in train])
    x_test, y_test = np.concatenate([f for f, _ in test]), np.concatenate([y for _, y in test])
    classifier = HistGradientBoostingClassifier(
        max_iter=300, learning_rate=0.05, class_weight="balanced", random_state=0
    ).fit(x_train, y_train)
    precision, recall, _, support = precision_recall_fscore_support(
        y_test, classifier.predict(x_test), labels=range(len(KINDS)), zero_division=0
    )
    return list(zip(KINDS, precision, recall, support))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--difficulty", default="default", choices=["easy", "default", "hard"])
    parser.add_argument("--train-runs", type=int, default=2)
    parser.add_argument("--test-runs", type=int, default=2)
    args = parser.parse_args(argv)
    rows = evaluate(args.difficulty, args.train_runs, args.test_runs)
    table = "\n".join(f"| {k} | {n} | {p:.2f} | {r:.2f} |" for k, p, r, n in rows)
    body = (
        "\n".join(report_header(f"{COMMAND} --difficulty {args.difficulty}")) + "\n\n"
        f"Crops (level 0, {2 * HALF + 1}^3 voxels) centred on every object of {args.test_runs} held-out "
        f"full-size runs (seed 1, difficulty `{args.difficulty}`), classified by gradient boosting on "
        f"rotation-invariant shape features trained on {args.train_runs} runs (seed 0). A proxy for "
        f"learnability (true centres given; no U-Net trained here: no GPU); see the script's docstring.\n\n"
        f"| kind | held-out crops | precision | recall |\n|---|---:|---:|---:|\n{table}\n"
    )
    print(body)
    update_section("Simulator learnability proxy", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
