"""Test-time augmentation per model: held-out weighted F4 without and with flips, thresholds tuned with each.

For each trained model of the quality benchmark (its U-Net and detector) and of the U-Net experiments
present in ``OUT/experiments_randomized``, predicts the validation run and the held-out runs without TTA
and with the 8 axis flips (``cryokit.inference.tta``), tunes per-class thresholds on the validation run's
candidates of that same TTA, and scores the held-out runs with the competition metric. Backs the demo's
per-family TTA (``cryokit.demo.pipeline.DEMO_TTA``). Writes the "Test-time augmentation" section of
docs/BENCHMARKS.md.

Run: ``.venv/bin/python benchmarks/tta.py [--out DIR] [--tta flips]`` after ``benchmarks/quality.py`` (minutes).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import report_header, update_section  # noqa: E402
from quality import scored, simulate_quality_data  # noqa: E402

from cryokit.io import read_solution  # noqa: E402
from cryokit.metric import score_table  # noqa: E402
from cryokit.particles import SCORED_PARTICLE_NAMES  # noqa: E402
from cryokit.thresholds import best_thresholds  # noqa: E402

COMMAND = ".venv/bin/python benchmarks/tta.py"


# U-Net experiments of today's preset (benchmarks/unet_experiments.py) beside the quality benchmark's U-Net, which
# is a run of `default_dynunet` (so not listed): another training seed, and deep supervision with each seed.
EXPERIMENTS = ("default_dynunet_seed1", "default_dynunet_ds2", "default_dynunet_ds2_seed1")


def models_present(out: Path, experiments=EXPERIMENTS) -> dict[str, Path]:
    """Label -> best checkpoint of every finished model the quality benchmark and the experiments left."""
    found = {
        "U-Net (quality benchmark)": out / "unet_randomized" / "best.pt",
        "YOLO3D detector (quality benchmark)": out / "yolo3d_randomized" / "best.pt",
    }
    for name in experiments:
        if (out / "experiments_randomized" / name / "history.json").is_file():
            found[f"U-Net experiment `{name}`"] = out / "experiments_randomized" / name / "best.pt"
    return {label: path for label, path in found.items() if path.is_file()}


def heldout_table(checkpoint: Path, root: Path, runs: dict, tta: str):
    """Held-out score table of one model with ``tta``, thresholds tuned on the validation run with it."""
    thresholds = best_thresholds(
        scored([checkpoint], root, runs["val"], tta=tta), read_solution(root, "train", runs["val"])
    )
    return score_table(
        read_solution(root, "train", runs["heldout"]), scored([checkpoint], root, runs["heldout"], thresholds, tta)
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/cryokit_quality"))
    parser.add_argument("--tta", default="flips", choices=["flips", "flips+rot90"])
    args = parser.parse_args(argv)
    start = time.perf_counter()
    root, runs = simulate_quality_data(args.out)
    lines = [
        f"| model | no TTA | {args.tta} | gain | " + " | ".join(_short(n) for n in SCORED_PARTICLE_NAMES) + " |",
        "|---|---:|---:|---:|" + "---:|" * len(SCORED_PARTICLE_NAMES),
    ]
    for label, checkpoint in models_present(args.out).items():
        plain, augmented = (heldout_table(checkpoint, root, runs, tta) for tta in ("none", args.tta))
        gain = augmented.attrs["score"] - plain.attrs["score"]
        per_class = augmented.set_index("particle_type")["fbeta"]
        row = (
            f"| {label} | {plain.attrs['score']:.3f} | {augmented.attrs['score']:.3f} | **{gain:+.3f}** | "
            + " | ".join(f"{per_class[n]:.3f}" for n in SCORED_PARTICLE_NAMES)
            + " |"
        )
        print(row, flush=True)
        lines.append(row)
    body = "\n".join(
        [
            *report_header(
                f"{COMMAND} --tta {args.tta}", date_note=f"{(time.perf_counter() - start) / 60:.0f} minutes in all"
            ),
            "",
            "The quality benchmark's randomized runs (`benchmarks/quality.py`): each model predicts the validation "
            f"run and the 2 held-out runs without TTA and with `{args.tta}`, thresholds are tuned on the "
            "validation run's candidates of the same TTA, the held-out runs are scored with the competition "
            f"metric. Weighted F4, and per class with `{args.tta}`:",
            "",
            *lines,
        ]
    )
    print(body)
    update_section("Test-time augmentation", body, keep_notes=True)
    return 0


def _short(name: str) -> str:
    """A column title for a particle name."""
    return {"apo-ferritin": "apo", "beta-galactosidase": "b-gal", "virus-like-particle": "VLP"}.get(name, name[:6])


if __name__ == "__main__":
    sys.exit(main())
