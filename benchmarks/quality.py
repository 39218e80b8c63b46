"""Quality on simulated data: the U-Net, the YOLO-style detector, their ensemble and the DoG baseline.

Simulates training runs and one validation run (seed 0) and held-out runs (seed 1) at the default
difficulty, trains both model tracks with the CPU-friendly demo configuration (level 1, 20 A voxels),
tunes per-class thresholds on the validation run (each model's own, and the ensemble's on its merged
scores), and scores the held-out runs with the competition metric next to the classical baseline
calibrated on the training runs. The runs are the randomized simulator's (the default for training data)
unless ``--domain fixed``. Writes the "Quality (randomized simulator)" section of docs/BENCHMARKS.md
("Quality" for the fixed domain).

Run: ``.venv/bin/python benchmarks/quality.py [--epochs N] [--domain fixed|randomized] [--out DIR]`` (about an
hour on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _candidates import runs_candidates  # noqa: E402
from _report import report_header, update_section  # noqa: E402

from cryokit.config import apply_overrides  # noqa: E402
from cryokit.demo.pipeline import DEMO_TTA, DemoConfig, _baseline, demo_training_config  # noqa: E402
from cryokit.ensemble import ensemble_picks, fit_ensemble  # noqa: E402
from cryokit.inference.predict import predict_runs  # noqa: E402
from cryokit.io import read_solution  # noqa: E402
from cryokit.io.atomic import atomic_write_text  # noqa: E402
from cryokit.metric import score_table  # noqa: E402
from cryokit.particles import PARTICLE_NAMES  # noqa: E402
from cryokit.postprocess import apply_thresholds  # noqa: E402
from cryokit.synth import DomainRanges, config_for_difficulty, simulate_dataset  # noqa: E402
from cryokit.thresholds import best_thresholds  # noqa: E402
from cryokit.training.loop import fit  # noqa: E402

COMMAND = ".venv/bin/python benchmarks/quality.py"
# The transfer benchmark's held-out family (one reconstruction style, one defocus range and one structural
# variant per class): randomized runs here never draw from it, so the randomized models double as the
# transfer benchmark's leave-one-domain-out models.
LAYOUT = ("static", "overlay")  # a simulated run's folders in the Kaggle layout
# Seeds of runs beyond the split (seed 0: training and validation, 1: held out): more threshold-tuning runs
# (benchmarks/threshold_transfer.py) and more training runs (data-budget experiments).
TUNING_SEED, EXTRA_TRAINING_SEED = 2, 3
HELD_OUT_FAMILY = ("recon_style=median", "defocus_um=4:5", *(f"variant.{name}=2" for name in PARTICLE_NAMES))


def domain_folder(stem: str, domain: str) -> str:
    """The folder of a domain's benchmark outputs under ``--out`` (``data``, ``experiments``): the stem for the
    fixed domain (its folders predate the randomized one), ``{stem}_{domain}`` otherwise."""
    return stem if domain == "fixed" else f"{stem}_{domain}"


def experiments_folder(domain: str, family: str = "unet") -> str:
    """The folder under ``--out`` of ``benchmarks/unet_experiments.py``'s variants of ``family`` on ``domain``
    (each in a subfolder of its name): ``experiments[_randomized]``, then ``_detector`` for the detector's."""
    return domain_folder("experiments", domain) + ("" if family == "unet" else f"_{family}")


def unseen_runs(out: Path, domain: str) -> tuple[Path, list[str]]:
    """The quality data's root for ``domain`` under ``out`` and the runs no model trained on (the validation
    run, then the held-out runs), from the ``runs.json`` that ``simulate_quality_data`` wrote."""
    root = out / domain_folder("data", domain)
    split = json.loads((root / "runs.json").read_text())
    return root, split["val"] + split["heldout"]


def simulate_quality_data(
    out: Path, train_runs: int = 4, heldout_runs: int = 2, domain: str = "randomized"
) -> tuple[Path, dict[str, list[str]]]:
    """The benchmark's runs under ``out/data`` (``out/data_randomized`` for that domain; simulated once,
    ``runs.json`` there names the split): training runs and one validation run of seed 0, held-out runs of
    seed 1, at the demo's size and difficulty. Randomized runs leave out ``HELD_OUT_FAMILY``."""
    root = out / domain_folder("data", domain)
    split_file = root / "runs.json"
    if split_file.is_file():
        runs = json.loads(split_file.read_text())
        if len(runs["train"]) == train_runs and len(runs["heldout"]) == heldout_runs:
            return root, runs
    demo, simulation = DemoConfig(), _simulation(domain)
    fitted = simulate_dataset(root, train_runs + 1, demo.seed, "train", simulation)
    heldout = simulate_dataset(root, heldout_runs, demo.seed + 1, "train", simulation)
    runs = {"train": fitted[:train_runs], "val": fitted[train_runs:], "heldout": heldout}
    atomic_write_text(split_file, json.dumps(runs))
    return root, runs


def more_runs(root: Path, n_runs: int, seed: int, domain: str = "randomized") -> list[str]:
    """``n_runs`` more runs of ``seed`` beside the benchmark's in ``root``, drawn like them (simulated once;
    seeds 0 and 1 are the split's)."""
    if seed in (0, 1):
        raise ValueError(f"seeds 0 and 1 are the benchmark split's runs, got seed {seed}")
    names = [f"TS_sim_{seed}_{i}" for i in range(n_runs)]
    if not all((root / "train" / kind / "ExperimentRuns" / name).is_dir() for name in names for kind in LAYOUT):
        names = simulate_dataset(root, n_runs, seed, "train", _simulation(domain))
    return names


def _simulation(domain: str):
    """The benchmark's simulator settings: the demo's size and difficulty, randomized runs without
    ``HELD_OUT_FAMILY``."""
    demo = DemoConfig()
    ranges = DomainRanges().without(*HELD_OUT_FAMILY) if domain == "randomized" else DomainRanges()
    return config_for_difficulty(
        demo.difficulty, shape_zyx=tuple(demo.shape_zyx), tomo_types=("denoised",), domain=domain, domain_ranges=ranges
    )


def domains_main(argv, description: str, domain_rows, report, section: str) -> int:
    """The command line of a benchmark over the quality benchmark's domains: ``domain_rows(out, domain)``
    gives each domain's rows, ``report(rows, domains, seconds)`` the section's body."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--domain", nargs="+", default=["randomized", "fixed"], choices=["randomized", "fixed"])
    parser.add_argument("--out", type=Path, default=Path("/tmp/cryokit_quality"))
    args = parser.parse_args(argv)
    start = time.perf_counter()
    rows = [row for domain in args.domain for row in domain_rows(args.out, domain)]
    body = report(rows, args.domain, time.perf_counter() - start)
    print(body)
    update_section(section, body)
    return 0


def train_model(
    name: str, preset: str, root: Path, train_runs, val_runs, out: Path, epochs: int, overrides=None, reuse=False
) -> Path:
    """Train ``preset`` of the demo configuration (plus ``overrides``) into ``out/name``; the best checkpoint.

    ``reuse``: return ``out/name/best.pt`` untouched when a finished run left one (``history.json`` is
    written when a run ends).
    """
    if reuse and (out / name / "best.pt").is_file() and (out / name / "history.json").is_file():
        return out / name / "best.pt"
    config = apply_overrides(
        demo_training_config(model=preset),
        {
            "data.root": str(root),
            "data.train_runs": list(train_runs),
            "data.val_runs": list(val_runs),
            "train.epochs": epochs,
            "train.out_dir": str(out / name),
            "tracking.enabled": False,
        },
    )
    config = apply_overrides(config, overrides or {})
    return fit(config, overwrite=True).best_checkpoint  # a benchmark re-run retrains from scratch


def scored(checkpoints: list[Path], root: Path, runs, thresholds=None, tta: str = "none") -> pd.DataFrame:
    picks, _ = predict_runs([str(c) for c in checkpoints], str(root), "train", list(runs), tta, keep_scores=True)
    return picks if thresholds is None else apply_thresholds(picks, thresholds, 1.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=24)
    parser.add_argument("--out", type=Path, default=Path("/tmp/cryokit_quality"))
    parser.add_argument("--train-runs", type=int, default=4)
    parser.add_argument("--heldout-runs", type=int, default=2)
    parser.add_argument(
        "--domain",
        default="randomized",
        choices=["fixed", "randomized"],
        help="the simulator's domain (randomized: the default for training data)",
    )
    parser.add_argument("--unet", action="append", default=[], metavar="KEY=VALUE", help="U-Net override (repeat)")
    parser.add_argument("--reuse", action="store_true", help="keep models a finished earlier run left in --out")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    root, runs = simulate_quality_data(args.out, args.train_runs, args.heldout_runs, args.domain)
    train_runs, val_runs, heldout = runs["train"], runs["val"], runs["heldout"]
    solution, val_solution = read_solution(root, "train", heldout), read_solution(root, "train", val_runs)
    picks = {"DoG baseline": _baseline(root, train_runs, heldout, args.out)}
    unet = list(args.unet)
    checkpoints = {
        label: train_model(
            f"{preset}_{args.domain}", preset, root, train_runs, val_runs, args.out, args.epochs, extra, args.reuse
        )
        for label, preset, extra in (("U-Net", "unet", unet), ("YOLO3D detector", "yolo3d", None))
    }
    both = [str(c) for c in checkpoints.values()]  # different tasks: merged pick by pick
    # Each member's candidates on the validation and held-out runs, predicted once (benchmarks/_candidates.py)
    val_candidates = [runs_candidates([c], root, val_runs, "none") for c in both]
    heldout_candidates = [runs_candidates([c], root, heldout, "none") for c in both]
    for name, val, held in zip(checkpoints, val_candidates, heldout_candidates):
        picks[name] = apply_thresholds(held, best_thresholds(val, val_solution), 1.0)
    picks["ensemble, raw scores averaged"] = scored(
        both, root, heldout, best_thresholds(scored(both, root, val_runs), val_solution)
    )
    # The members' picks merged by cryokit.ensemble (the vote of peers, cryokit ensemble's default).
    names = [f"{Path(c).parent.name}/{Path(c).name}" for c in checkpoints.values()]
    ensemble = fit_ensemble(val_candidates, val_solution, names, threshold_scale=1.0)
    picks["cryokit ensemble, no TTA"] = apply_thresholds(
        ensemble_picks(ensemble, heldout_candidates), ensemble.thresholds, 1.0
    )
    # The same with each member's demo TTA (`cryokit ensemble --tta flips flips`); its candidates give each
    # member's own row with that TTA, thresholds tuned with it.
    ttas = [DEMO_TTA["unet"], DEMO_TTA["yolo3d"]]
    val_candidates = [runs_candidates([c], root, val_runs, tta) for c, tta in zip(both, ttas)]
    heldout_candidates = [runs_candidates([c], root, heldout, tta) for c, tta in zip(both, ttas)]
    for label, tta, val, held in zip(checkpoints, ttas, val_candidates, heldout_candidates):
        if tta != "none":
            picks[f"{label}, {tta} TTA"] = apply_thresholds(held, best_thresholds(val, val_solution), 1.0)
    ensemble = fit_ensemble(val_candidates, val_solution, names, threshold_scale=1.0)
    picks[f"cryokit ensemble, the demo's TTA (U-Net {ttas[0]}, detector {ttas[1]})"] = apply_thresholds(
        ensemble_picks(ensemble, heldout_candidates), ensemble.thresholds, 1.0
    )
    tables = {name: score_table(solution, frame) for name, frame in picks.items()}
    body = _report(tables, args, time.perf_counter() - start, train_runs, val_runs, heldout)
    print(body)
    update_section("Quality" if args.domain == "fixed" else f"Quality ({args.domain} simulator)", body, keep_notes=True)
    return 0


def _report(tables, args, seconds, train_runs, val_runs, heldout) -> str:
    names = [n for n in tables[next(iter(tables))]["particle_type"] if n != "beta-amylase"]
    lines = ["| method | " + " | ".join(names) + " | weighted F4 |", "|---|" + "---:|" * (len(names) + 1)]
    for method, table in tables.items():
        f4 = table.set_index("particle_type")["fbeta"]
        lines.append(
            f"| {method} | " + " | ".join(f"{f4[n]:.3f}" for n in names) + f" | **{table.attrs['score']:.3f}** |"
        )
    return "\n".join(
        [
            *report_header(
                f"{COMMAND} --epochs {args.epochs} --domain {args.domain}",
                date_note=f"{seconds / 60:.0f} minutes in all",
            ),
            "",
            f"Simulated default difficulty, 184 x 630 x 630 voxels: trained on {len(train_runs)} runs, thresholds "
            f"tuned on {len(val_runs)} validation run, scored on {len(heldout)} held-out runs ({', '.join(heldout)}) "
            "with the competition metric (no TTA unless a row names it; thresholds tuned with the row's TTA). "
            f"Both networks at level 1 (20 A voxels), {args.epochs} epochs of the demo "
            "configuration on CPU (`demo_training_config(model=...)`: the U-Net at output stride 2 with 192 "
            "patches per epoch, the detector at stride 4 on a half-width ResNet-18 with 192)."
            + (
                " Every run draws its own imaging, clutter and particle variants from `DomainRanges().without("
                "HELD_OUT_FAMILY)` (benchmarks/quality.py), the transfer benchmark's held-out family left out."
                if args.domain == "randomized"
                else ""
            )
            + " Per-class F4 (beta-amylase is unscored):",
            "",
            *lines,
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
