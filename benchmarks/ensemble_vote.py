"""The ensemble's vote against the merges it replaced, over fitting runs, pairings of TTA and a weak member.

Each of the three runs the models of ``benchmarks/quality.py --domain DOMAIN`` never trained on fits the
thresholds and the ensemble in turn, the other two are scored (weighted F4). For each pairing of TTA of the
U-Net and the detector: each member alone; the vote of ``cryokit.ensemble.fit_ensemble`` (the default:
peers' scores divided by their own tuned thresholds, averaged, kept from 1); the same merge with thresholds
tuned on the merged scores of the fitting run (the start of the default before the vote); the choice per
class (``vote=False``: the lead alone unless a member alone or the isotonic-calibrated merge gains more than 2
references). For the demo's pairing the same at the shipped threshold scale (x0.8 for members and vote).
Then the DoG baseline (calibrated on the training runs as the demo does) as a weak member: with the
detector by default (outside the peer margin), forced into the vote (peer margin 1), and as a third member
beside the U-Net and the detector. Where a second training seed of the detector's preset is on disk
(``benchmarks/unet_experiments.py --family detector w32_p192_seed1``), with the demo's TTA: that detector
alone, both detectors averaged map by map (one group, as ``cryokit ensemble`` takes two checkpoints of a
kind), the vote of the U-Net and that group, and the vote of the three as members of their own.
All at the validation optimum (threshold scale 1) unless a row says x0.8. Writes the section "Ensemble vote
(DOMAIN simulator)" of docs/BENCHMARKS.md.

Run: ``.venv/bin/python benchmarks/ensemble_vote.py [--domain randomized] [--quality-out DIR]`` (minutes once
``benchmarks/ensemble_folds.py`` has predicted the candidates; about 40 without).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _candidates import candidates_by_run  # noqa: E402
from _report import report_header, update_section  # noqa: E402
from quality import experiments_folder, unseen_runs  # noqa: E402

from cryokit.baseline import BaselineConfig, _run_candidates, calibrate  # noqa: E402
from cryokit.demo.pipeline import DEMO_TTA  # noqa: E402
from cryokit.ensemble import ensemble_picks, fit_ensemble  # noqa: E402
from cryokit.io import KaggleSource, read_solution  # noqa: E402
from cryokit.metric import score_table  # noqa: E402
from cryokit.postprocess import apply_thresholds  # noqa: E402
from cryokit.thresholds import THRESHOLD_SCALE, best_thresholds  # noqa: E402

COMMAND = ".venv/bin/python benchmarks/ensemble_vote.py"
PAIRINGS = (("none", "none"), ("flips", "flips"), ("none", "flips"), ("flips", "none"))  # (U-Net, detector)
SECOND_SEED = "w32_p192_seed1"  # the detector preset's training seed 1 (benchmarks/unet_experiments.py)


def dog_candidates(root: Path, train_runs: list[str], runs: list[str]) -> dict[str, pd.DataFrame]:
    """Every DoG candidate of each run, at the blob radius per class calibrated on ``train_runs``."""
    source, config = KaggleSource(root, "train"), BaselineConfig()
    fractions = calibrate(source, train_runs, config).body_fractions
    return {run: _run_candidates(source, run, fractions, config).drop(columns="body_fraction") for run in runs}


class Fold:
    """The members' candidates on the fitting run and on the two scored runs, and how to score picks."""

    def __init__(self, members: list[dict[str, pd.DataFrame]], solutions: dict[str, pd.DataFrame], fit_run: str):
        scored_runs = [r for r in solutions if r != fit_run]
        self.solution = pd.concat([solutions[r] for r in scored_runs], ignore_index=True)
        self.fit_solution = solutions[fit_run]
        self.fit = [m[fit_run] for m in members]
        self.test = [pd.concat([m[r] for r in scored_runs], ignore_index=True) for m in members]

    def score(self, picks: pd.DataFrame) -> float:
        return float(score_table(self.solution, picks).attrs["score"])

    def alone(self, index: int, scale: float = 1.0) -> float:
        thresholds = best_thresholds(self.fit[index], self.fit_solution, scale=scale)
        return self.score(apply_thresholds(self.test[index], thresholds, 1.0))

    def ensemble(self, scale: float = 1.0, tune_on_merge: bool = False, **options) -> float:
        ensemble = fit_ensemble(self.fit, self.fit_solution, threshold_scale=scale, **options)
        thresholds = ensemble.thresholds
        if tune_on_merge:  # the vote's merge, thresholds tuned on the fitting run's merged scores
            thresholds = best_thresholds(ensemble_picks(ensemble, self.fit), self.fit_solution, scale=scale)
        return self.score(apply_thresholds(ensemble_picks(ensemble, self.test), thresholds, 1.0))


def rows_of_fold(unet, detector, dog, solutions, fit_run, second=None) -> dict[str, float]:
    """Every row's weighted F4 on the runs other than ``fit_run`` (the table's one column); ``second``: the
    second detector seed's candidates (``"alone"``) and both detectors' averaged (``"averaged"``), or None."""
    row = {}
    for tta_unet, tta_detector in PAIRINGS:
        fold = Fold([unet[tta_unet], detector[tta_detector]], solutions, fit_run)
        label = f"U-Net {tta_unet}, detector {tta_detector}"
        row[f"{label}: U-Net"] = fold.alone(0)
        row[f"{label}: detector"] = fold.alone(1)
        row[f"{label}: **vote** (default)"] = fold.ensemble()
        row[f"{label}: vote's merge, thresholds tuned on it"] = fold.ensemble(tune_on_merge=True)
        row[f"{label}: choice per class (no vote)"] = fold.ensemble(vote=False)
        if (tta_unet, tta_detector) == (DEMO_TTA["unet"], DEMO_TTA["yolo3d"]):
            shipped = f"{label}, x{THRESHOLD_SCALE:g}"
            row[f"{shipped}: U-Net"] = fold.alone(0, THRESHOLD_SCALE)
            row[f"{shipped}: detector"] = fold.alone(1, THRESHOLD_SCALE)
            row[f"{shipped}: **vote** (default)"] = fold.ensemble(THRESHOLD_SCALE)
    demo = [unet[DEMO_TTA["unet"]], detector[DEMO_TTA["yolo3d"]]]
    label = f"DoG baseline beside the demo's (U-Net {DEMO_TTA['unet']}, detector {DEMO_TTA['yolo3d']})"
    fold = Fold([demo[1], dog], solutions, fit_run)
    row[f"{label}: DoG alone"] = fold.alone(1)
    row[f"{label}: detector + DoG, default (DoG outside the peer margin)"] = fold.ensemble()
    row[f"{label}: detector + DoG forced into the vote (peer margin 1)"] = fold.ensemble(peer_margin=1.0)
    row[f"{label}: U-Net + detector + DoG, default"] = Fold([*demo, dog], solutions, fit_run).ensemble()
    if second is not None:
        label = f"Second detector seed (U-Net {DEMO_TTA['unet']}, detectors {DEMO_TTA['yolo3d']})"
        fold = Fold([*demo, second["alone"], second["averaged"]], solutions, fit_run)
        row[f"{label}: detector seed 1"] = fold.alone(2)
        row[f"{label}: detectors 0 + 1 averaged map by map"] = fold.alone(3)
        row[f"{label}: **vote** of the U-Net and the averaged detectors"] = Fold(
            [demo[0], second["averaged"]], solutions, fit_run
        ).ensemble()
        row[f"{label}: vote of the U-Net, detector 0 and detector 1"] = Fold(
            [*demo, second["alone"]], solutions, fit_run
        ).ensemble()
    return row


def vote_table(table: dict[str, dict[str, float]], runs: list[str]) -> list[str]:
    """Markdown lines: a row per member or merge, a column per fitting run (``table[run][row]``), then the mean."""
    lines = ["| member / merge | " + " | ".join(f"fitted on {r}" for r in runs) + " | mean |"]
    lines.append("|---|" + "---:|" * (len(runs) + 1))
    for row in table[runs[0]]:
        values = [table[run][row] for run in runs]
        mean = sum(values) / len(values)
        lines.append(f"| {row} | " + " | ".join(f"{v:.3f}" for v in values) + f" | **{mean:.3f}** |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domain", default="randomized", choices=["fixed", "randomized"])
    parser.add_argument("--quality-out", type=Path, default=Path("/tmp/cryokit_quality"))
    args = parser.parse_args(argv)
    root, runs = unseen_runs(args.quality_out, args.domain)
    train_runs = json.loads((root / "runs.json").read_text())["train"]
    unet_checkpoint, detector_checkpoint = (
        args.quality_out / f"{model}_{args.domain}" / "best.pt" for model in ("unet", "yolo3d")
    )
    unet = {tta: candidates_by_run([unet_checkpoint], root, runs, tta) for tta in ("none", "flips")}
    detector = {tta: candidates_by_run([detector_checkpoint], root, runs, tta) for tta in ("none", "flips")}
    dog = dog_candidates(root, train_runs, runs)
    second_checkpoint = args.quality_out / experiments_folder(args.domain, "detector") / SECOND_SEED
    second = None
    if (second_checkpoint / "best.pt").is_file():
        tta, pair = DEMO_TTA["yolo3d"], [detector_checkpoint, second_checkpoint / "best.pt"]
        second = {
            "alone": candidates_by_run(pair[1:], root, runs, tta),
            "averaged": candidates_by_run(pair, root, runs, tta),
        }
    solutions = {run: read_solution(root, "train", [run]) for run in runs}
    table = {run: rows_of_fold(unet, detector, dog, solutions, run, second) for run in runs}
    lines = [
        *report_header(f"{COMMAND} --domain {args.domain}"),
        "",
        f"The models of `benchmarks/quality.py --domain {args.domain}`; each of the runs they never trained on "
        f"({', '.join(runs)}) fits the thresholds and the ensemble in turn, the other two are scored. Weighted F4 "
        "at the validation optimum unless a row names the threshold scale; one row per member and merge:",
        "",
        *vote_table(table, runs),
    ]
    body = "\n".join(lines)
    print(body)
    update_section(f"Ensemble vote ({args.domain} simulator)", body, keep_notes=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
