"""Transfer: does detection hold up on tomograms unlike the training data? Leave one domain out, and few-shot.

A *held-out family* of the randomized simulator (one reconstruction style, one defocus range and one
structural variant per particle type: ``HELD_OUT``) is never seen in pre-training. Every model is scored on
2 runs of that family with the competition metric, each with thresholds tuned on its own validation run:

- **fixed domain**: the U-Net trained on today's fixed simulator (what cryokit trained before domains);
- **leave-one-domain-out**: trained on randomized runs without the family;
- **few-shot, from scratch**: trained on 4 runs of the family, validated on a 5th (the Kaggle situation: a
  handful of labelled tomograms of a domain nobody tuned on);
- **few-shot, fine-tuned**: the same 5 runs, starting from the leave-one-domain-out checkpoint
  (``cryokit train --init-from``);
- the DoG baseline, calibrated on the 4 few-shot training runs, in the same table.

A second table gives the fixed-domain figure (fixed-trained U-Net on fixed held-out runs) for comparison.
Writes the "Transfer" section of docs/BENCHMARKS.md and docs/transfer.png (the first table as a heatmap).

Run: ``.venv/bin/python benchmarks/transfer.py [--epochs 24] [--models unet yolo3d] [--out DIR]``
(the U-Net alone: about half an hour on 2 CPU cores; each detector adds about an hour).
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

import matplotlib.pyplot as plt

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine_description, update_section  # noqa: E402
from quality import scored, train_model  # noqa: E402

from cryokit.baseline import BaselineConfig, calibrate, predict  # noqa: E402
from cryokit.demo.pipeline import MODEL_LABELS  # noqa: E402
from cryokit.io import read_solution  # noqa: E402
from cryokit.io.atomic import atomic_write_text  # noqa: E402
from cryokit.io.source import KaggleSource  # noqa: E402
from cryokit.metric import score_table  # noqa: E402
from cryokit.particles import PARTICLE_NAMES, SCORED_PARTICLE_NAMES  # noqa: E402
from cryokit.plots.training import plot_score_heatmap  # noqa: E402
from cryokit.synth import DomainRanges, config_for_difficulty, simulate_dataset  # noqa: E402
from cryokit.thresholds import best_thresholds  # noqa: E402

COMMAND = ".venv/bin/python benchmarks/transfer.py"
FIGURE = Path(__file__).resolve().parents[1] / "docs" / "transfer.png"
# One reconstruction style, one defocus range and one structural variant per class, held out together.
HELD_OUT = ("recon_style=median", "defocus_um=4:5", *(f"variant.{name}=2" for name in PARTICLE_NAMES))
SHAPE_ZYX = (184, 630, 630)


def _simulate(root: Path, domain: str, ranges: DomainRanges, n_fit: int, n_test: int, seed: int) -> dict[str, list]:
    """``n_fit`` runs (the last validates) and ``n_test`` runs of another seed, once (``root/runs.json``)."""
    split_file = root / "runs.json"
    if split_file.is_file():
        return json.loads(split_file.read_text())
    config = config_for_difficulty(
        "default", shape_zyx=SHAPE_ZYX, tomo_types=("denoised",), domain=domain, domain_ranges=ranges
    )
    fitted = simulate_dataset(root, n_fit, seed, "train", config) if n_fit else []
    test = simulate_dataset(root, n_test, seed + 1, "train", config) if n_test else []
    runs = {"train": fitted[:-1], "val": fitted[-1:], "test": test}
    atomic_write_text(split_file, json.dumps(runs))
    return runs


def _score_on(checkpoint: Path, fit_root: Path, val_runs, test_root: Path, test_runs):
    """Held-out table of a checkpoint, thresholds tuned on its own validation runs."""
    thresholds = best_thresholds(scored([checkpoint], fit_root, val_runs), read_solution(fit_root, "train", val_runs))
    return score_table(
        read_solution(test_root, "train", test_runs), scored([checkpoint], test_root, test_runs, thresholds)
    )


def _baseline(fit_root: Path, train_runs, test_root: Path, test_runs):
    calibration = calibrate(KaggleSource(fit_root), train_runs, BaselineConfig(), progress=False)
    picks = predict(KaggleSource(test_root), calibration, test_runs, BaselineConfig(), progress=False)
    return score_table(read_solution(test_root, "train", test_runs), picks)


def _markdown(tables) -> list[str]:
    names = list(SCORED_PARTICLE_NAMES)
    lines = ["| method | " + " | ".join(names) + " | weighted F4 |", "|---|" + "---:|" * (len(names) + 1)]
    for method, table in tables.items():
        f4 = table.set_index("particle_type")["fbeta"]
        lines.append(
            f"| {method} | " + " | ".join(f"{f4[n]:.3f}" for n in names) + f" | **{table.attrs['score']:.3f}** |"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=24)
    parser.add_argument("--models", nargs="+", default=["unet"], choices=sorted(MODEL_LABELS))
    parser.add_argument("--finetune-lr", type=float, default=1e-3, help="learning rate of the fine-tuning runs")
    parser.add_argument("--out", type=Path, default=Path("/tmp/cryokit_transfer"))
    args = parser.parse_args(argv)
    start = time.perf_counter()
    ranges = DomainRanges()
    fixed = _simulate(args.out / "fixed", "fixed", ranges, 5, 2, 0)
    pretrain = _simulate(args.out / "pretrain", "randomized", ranges.without(*HELD_OUT), 5, 0, 10)
    family = _simulate(args.out / "family", "randomized", ranges.only(*HELD_OUT), 5, 2, 20)
    roots = {k: args.out / k for k in ("fixed", "pretrain", "family")}
    on_family = {
        "DoG baseline (calibrated on the 4 few-shot runs)": _baseline(
            roots["family"], family["train"], roots["family"], family["test"]
        )
    }
    on_fixed = {"DoG baseline": _baseline(roots["fixed"], fixed["train"], roots["fixed"], fixed["test"])}
    models = args.out / "models"
    for model in args.models:
        label = MODEL_LABELS[model]

        def train(name, root, runs, extra=None, model=model):
            return train_model(f"{model}_{name}", model, root, runs["train"], runs["val"], models, args.epochs, extra)

        fixed_ckpt = train("fixed", roots["fixed"], fixed)
        on_fixed[f"{label}, trained on the fixed domain"] = _score_on(
            fixed_ckpt, roots["fixed"], fixed["val"], roots["fixed"], fixed["test"]
        )
        on_family[f"{label}, trained on the fixed domain"] = _score_on(
            fixed_ckpt, roots["fixed"], fixed["val"], roots["family"], family["test"]
        )
        lodo = train("lodo", roots["pretrain"], pretrain)
        on_family[f"{label}, leave-one-domain-out (randomized without the family)"] = _score_on(
            lodo, roots["pretrain"], pretrain["val"], roots["family"], family["test"]
        )
        scratch = train("fewshot_scratch", roots["family"], family)
        on_family[f"{label}, few-shot from scratch (4 + 1 runs of the family)"] = _score_on(
            scratch, roots["family"], family["val"], roots["family"], family["test"]
        )
        tuned = train(
            "fewshot_finetuned", roots["family"], family, [f"train.init_from={lodo}", f"train.lr={args.finetune_lr}"]
        )
        on_family[f"{label}, few-shot fine-tuned from the leave-one-domain-out model"] = _score_on(
            tuned, roots["family"], family["val"], roots["family"], family["test"]
        )
    plt.close(plot_score_heatmap(on_family, FIGURE, title="Held-out family of the randomized simulator: per-class F4"))
    body = "\n".join(
        [
            f"- Command: `{COMMAND} --epochs {args.epochs} --models {' '.join(args.models)}`",
            f"- Machine: {machine_description()}",
            f"- Date: {datetime.date.today().isoformat()}; {(time.perf_counter() - start) / 60:.0f} minutes in all",
            "",
            f"Held-out family: `{', '.join(HELD_OUT)}` (`cryokit.synth.DomainRanges.only`); pre-training runs are "
            "drawn from `DomainRanges().without(...)` of the same families, so they never share a draw with it. "
            f"Default difficulty, {' x '.join(map(str, SHAPE_ZYX))} voxels, models at level 1 (20 A voxels), "
            f"{args.epochs} epochs of the demo configuration; fine-tuning at lr {args.finetune_lr}. Each model's "
            "thresholds are tuned on its own validation run. Scored on 2 runs of the held-out family "
            f"({', '.join(family['test'])}):",
            "",
            *_markdown(on_family),
            "",
            "![transfer table](transfer.png)",
            "",
            f"For comparison, the fixed domain (trained on {len(fixed['train'])} fixed-domain runs, scored on 2 "
            "held-out fixed-domain runs):",
            "",
            *_markdown(on_fixed),
        ]
    )
    print(body)
    update_section("Transfer", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
