"""Transfer: does detection hold up on tomograms unlike the training data? Leave one domain out, and few-shot.

A *held-out family* of the randomized simulator (one reconstruction style, one defocus range and one
structural variant per particle type: ``HELD_OUT_FAMILY`` of benchmarks/quality.py) is never seen in
pre-training. Every model is scored on 2 runs of that family with the competition metric, each with
thresholds tuned on its own validation run:

- **fixed domain**: trained on today's fixed simulator (what cryokit trained before domains; the fixed
  quality benchmark's models, ``--skip-fixed`` leaves them out);
- **leave-one-domain-out**: trained on randomized runs without the family; these are the randomized quality
  benchmark's models (``benchmarks/quality.py --domain randomized``: same data, reused when it ran first),
  and the U-Net once more without the intensity and imaging augmentations (``NO_APPEARANCE``);
- **few-shot, from scratch**: trained on 4 runs of the family, validated on a 5th (the Kaggle situation: a
  handful of labelled tomograms of a domain nobody tuned on);
- **few-shot, fine-tuned**: the same 5 runs, starting from the leave-one-domain-out checkpoint
  (``cryokit train --init-from``);
- the DoG baseline, calibrated on the 4 few-shot training runs, in the same table.

A second table gives each model on its own domain's held-out runs (fixed and randomized) for comparison.
Writes the "Transfer" section of docs/BENCHMARKS.md and docs/transfer.png (the first table as a heatmap).

Run: ``.venv/bin/python benchmarks/transfer.py [--epochs 24] [--models unet yolo3d] [--out DIR]``
(the U-Net alone: about an hour on 2 CPU cores, less when the quality benchmarks' models are there).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import matplotlib.pyplot as plt

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import report_header, update_section  # noqa: E402
from quality import HELD_OUT_FAMILY, scored, simulate_quality_data, train_model  # noqa: E402

from cryokit.baseline import BaselineConfig, calibrate, predict  # noqa: E402
from cryokit.demo.pipeline import MODEL_LABELS  # noqa: E402
from cryokit.io import read_solution  # noqa: E402
from cryokit.io.atomic import atomic_write_text  # noqa: E402
from cryokit.io.source import KaggleSource  # noqa: E402
from cryokit.metric import score_table  # noqa: E402
from cryokit.particles import SCORED_PARTICLE_NAMES  # noqa: E402
from cryokit.plots.training import plot_score_heatmap  # noqa: E402
from cryokit.synth import DomainRanges, config_for_difficulty, simulate_dataset  # noqa: E402
from cryokit.thresholds import best_thresholds  # noqa: E402

COMMAND = ".venv/bin/python benchmarks/transfer.py"
FIGURE = Path(__file__).resolve().parents[1] / "docs" / "transfer.png"
# The intensity and imaging augmentations (cryokit.data.appearance) switched off: the contrast to the default
# recipe, which has them on.
NO_APPEARANCE = tuple(f"augment.{name}_p=0.0" for name in ("gamma", "blur", "bias", "bandpass", "wedge"))
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
    parser.add_argument("--finetune-epochs", type=int, default=0, help="epochs of the fine-tuning runs (0: --epochs)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/cryokit_transfer"))
    parser.add_argument(
        "--quality-out", type=Path, default=Path("/tmp/cryokit_quality"), help="the quality benchmarks' --out"
    )
    parser.add_argument("--skip-fixed", action="store_true", help="leave out the fixed-domain models")
    parser.add_argument(
        "--skip-contrast", action="store_true", help="leave out the U-Net without appearance augmentation"
    )
    args = parser.parse_args(argv)
    start = time.perf_counter()
    family_root = args.out / "family"
    family = _simulate(family_root, "randomized", DomainRanges().only(*HELD_OUT_FAMILY), 5, 2, 20)
    on_family = {
        "DoG baseline (calibrated on the 4 few-shot runs)": _baseline(
            family_root, family["train"], family_root, family["test"]
        )
    }
    in_domain = {}
    domains = ("randomized",) if args.skip_fixed else ("fixed", "randomized")
    data = {domain: simulate_quality_data(args.quality_out, 4, 2, domain) for domain in domains}
    for domain, (root, runs) in data.items():
        in_domain[f"DoG baseline ({domain} domain)"] = _baseline(root, runs["train"], root, runs["heldout"])
    models = args.out / "models"
    for model in args.models:
        label = MODEL_LABELS[model]
        pretrained = {}
        for domain, (root, runs) in data.items():  # the quality benchmarks' models (same names, reused)
            pretrained[domain] = train_model(
                f"{model}_{domain}", model, root, runs["train"], runs["val"], args.quality_out, args.epochs, reuse=True
            )
            in_domain[f"{label}, {domain} domain"] = _score_on(
                pretrained[domain], root, runs["val"], root, runs["heldout"]
            )
        for domain, checkpoint in pretrained.items():
            root, runs = data[domain]
            name = "fixed domain" if domain == "fixed" else "leave-one-domain-out (randomized without the family)"
            on_family[f"{label}, {name}"] = _score_on(checkpoint, root, runs["val"], family_root, family["test"])
        root, runs = data["randomized"]
        if model == "unet" and not args.skip_contrast:
            plain = train_model(
                f"{model}_randomized_no_appearance",
                model,
                root,
                runs["train"],
                runs["val"],
                models,
                args.epochs,
                list(NO_APPEARANCE),
                reuse=True,
            )
            in_domain[f"{label} without appearance augmentation, randomized domain"] = _score_on(
                plain, root, runs["val"], root, runs["heldout"]
            )
            on_family[f"{label}, leave-one-domain-out without appearance augmentation"] = _score_on(
                plain, root, runs["val"], family_root, family["test"]
            )

        def few_shot(name, epochs, extra=None, model=model):
            """Held-out table and epochs trained (from the run's history: a reused run keeps its own)."""
            checkpoint = train_model(
                f"{model}_{name}", model, family_root, family["train"], family["val"], models, epochs, extra, reuse=True
            )
            trained = len(json.loads((checkpoint.parent / "history.json").read_text()))
            return _score_on(checkpoint, family_root, family["val"], family_root, family["test"]), trained

        table, epochs = few_shot("fewshot_scratch", args.epochs)
        on_family[f"{label}, few-shot from scratch (4 + 1 runs of the family, {epochs} epochs)"] = table
        table, epochs = few_shot(
            "fewshot_finetuned",
            args.finetune_epochs or args.epochs,
            [f"train.init_from={pretrained['randomized']}", f"train.lr={args.finetune_lr}"],
        )
        on_family[f"{label}, few-shot fine-tuned from the leave-one-domain-out model ({epochs} epochs)"] = table
    plt.close(plot_score_heatmap(on_family, FIGURE, title="Held-out family of the randomized simulator: per-class F4"))
    body = "\n".join(
        [
            *report_header(
                f"{COMMAND} --epochs {args.epochs} --models {' '.join(args.models)}"
                + (f" --finetune-epochs {args.finetune_epochs}" if args.finetune_epochs else "")
                + (" --skip-fixed" if args.skip_fixed else "")
                + (" --skip-contrast" if args.skip_contrast else ""),
                date_note=f"{(time.perf_counter() - start) / 60:.0f} minutes in all (models the quality benchmarks "
                "had trained reused)",
            ),
            "",
            f"Held-out family: `{', '.join(HELD_OUT_FAMILY)}` (`cryokit.synth.DomainRanges.only`); pre-training runs "
            "are the randomized quality benchmark's, drawn from `DomainRanges().without(...)` of the same families, "
            f"so they never share a draw with it. Default difficulty, {' x '.join(map(str, SHAPE_ZYX))} voxels, "
            f"models at level 1 (20 A voxels), {args.epochs} epochs of the demo configuration (a few-shot row names "
            "its own); fine-tuning at lr "
            f"{args.finetune_lr}"
            + (
                ""
                if args.skip_contrast
                else f"; the contrast without appearance augmentation is `{' '.join(NO_APPEARANCE)}`"
            )
            + ". "
            "Each model's thresholds are "
            f"tuned on its own validation run. Scored on 2 runs of the held-out family ({', '.join(family['test'])}):",
            "",
            *_markdown(on_family),
            "",
            "![transfer table](transfer.png)",
            "",
            "For comparison, each model on 2 held-out runs of its own training domain (4 training runs, 1 validation "
            "run; the quality benchmarks' data):",
            "",
            *_markdown(in_domain),
        ]
    )
    print(body)
    update_section("Transfer", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
