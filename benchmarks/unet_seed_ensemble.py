"""Do several U-Nets averaged at the map level beat the best one, alone and beside the detector?

The U-Nets of ``benchmarks/unet_experiments.py`` (the DynUNet preset with training seeds 0 and 1, and the
same with deep supervision) are averaged map by map (one ensemble group, as ``cryokit predict`` does with
several checkpoints of one kind), decoded once and predicted with flips TTA (the demo's); the detector of
``benchmarks/quality.py`` joins as the second group through ``cryokit.ensemble.fit_ensemble`` (its
defaults). Each of the three runs the models never trained on fits the thresholds and the ensemble in
turn, the other two are scored (as in "Ensemble across fitting runs"). Writes the section "U-Net seeds
averaged (DOMAIN simulator)" of docs/BENCHMARKS.md.

Run: ``.venv/bin/python benchmarks/unet_seed_ensemble.py [--domain randomized]`` after those benchmarks
(about 15 minutes on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _candidates import candidates_by_run  # noqa: E402
from _report import report_header, update_section  # noqa: E402
from ensemble_folds import fold_table  # noqa: E402
from quality import experiments_folder, unseen_runs  # noqa: E402

from cryokit.demo.pipeline import DEMO_TTA  # noqa: E402
from cryokit.ensemble import ensemble_picks, fit_ensemble  # noqa: E402
from cryokit.io import read_solution  # noqa: E402
from cryokit.metric import score_table  # noqa: E402
from cryokit.postprocess import apply_thresholds  # noqa: E402
from cryokit.thresholds import best_thresholds  # noqa: E402

COMMAND = ".venv/bin/python benchmarks/unet_seed_ensemble.py"
# Each U-Net group: its label and the experiment variants (benchmarks/unet_experiments.py) averaged in it.
UNET_GROUPS = {
    "seed 0": ("default_dynunet",),
    "seed 1": ("default_dynunet_seed1",),
    "seeds 0 + 1": ("default_dynunet", "default_dynunet_seed1"),
    "seeds 0 + 1, deep supervision 0 + 1": (
        "default_dynunet",
        "default_dynunet_seed1",
        "default_dynunet_ds2",
        "default_dynunet_ds2_seed1",
    ),
}
DETECTOR = "detector"


def experiment_candidates(
    groups: dict[str, tuple[str, ...]], experiments: Path, root: Path, runs: list[str], tta: str
) -> dict[str, dict[str, pd.DataFrame]]:
    """``candidates_by_run`` of each group of experiments (``experiments/NAME/best.pt``) averaged map by map."""
    missing = sorted({v for vs in groups.values() for v in vs if not (experiments / v / "best.pt").is_file()})
    if missing:
        raise SystemExit(f"no checkpoint for {missing} under {experiments}: run benchmarks/unet_experiments.py first")
    return {
        group: candidates_by_run([experiments / v / "best.pt" for v in variants], root, runs, tta)
        for group, variants in groups.items()
    }


def alone_scores(
    candidates: dict[str, dict[str, pd.DataFrame]],
    solutions: dict[str, pd.DataFrame],
    fit_run: str,
    threshold_scale: float = 1.0,
) -> dict[str, float]:
    """Weighted F4 on every run but ``fit_run`` of each group alone, thresholds tuned on ``fit_run`` (times
    ``threshold_scale``)."""
    return {
        group: float(fit_run_table(by_run, solutions, fit_run, threshold_scale).attrs["score"])
        for group, by_run in candidates.items()
    }


def fit_run_table(
    by_run: dict[str, pd.DataFrame], solutions: dict[str, pd.DataFrame], fit_run: str, threshold_scale: float = 1.0
) -> pd.DataFrame:
    """The score table on every run but ``fit_run`` of one group's candidates (``by_run``), thresholds tuned on
    ``fit_run`` (times ``threshold_scale``)."""
    test = [run for run in solutions if run != fit_run]
    thresholds = best_thresholds(by_run[fit_run], solutions[fit_run], scale=threshold_scale)
    picks = apply_thresholds(pd.concat([by_run[r] for r in test], ignore_index=True), thresholds, 1.0)
    return score_table(pd.concat([solutions[r] for r in test], ignore_index=True), picks)


def fold_row(candidates: dict[str, dict[str, pd.DataFrame]], solutions: dict[str, pd.DataFrame], fit_run: str):
    """Weighted F4 on every run but ``fit_run`` of each group alone and of each U-Net group with the
    detector, thresholds (and the ensemble) fitted on ``fit_run``."""
    test = [run for run in solutions if run != fit_run]
    solution = pd.concat([solutions[r] for r in test], ignore_index=True)

    def test_frame(group):
        return pd.concat([candidates[group][r] for r in test], ignore_index=True)

    row = alone_scores(candidates, solutions, fit_run)
    for group in UNET_GROUPS:
        names = [group, DETECTOR]
        ensemble = fit_ensemble([candidates[n][fit_run] for n in names], solutions[fit_run], names, threshold_scale=1.0)
        picks = ensemble_picks(ensemble, [test_frame(n) for n in names])
        row[f"{group} + detector"] = float(
            score_table(solution, apply_thresholds(picks, ensemble.thresholds, 1.0)).attrs["score"]
        )
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domain", default="randomized", choices=["fixed", "randomized"])
    parser.add_argument("--quality-out", type=Path, default=Path("/tmp/cryokit_quality"))
    args = parser.parse_args(argv)
    out = args.quality_out
    root, runs = unseen_runs(out, args.domain)
    experiments = out / experiments_folder(args.domain)
    candidates = experiment_candidates(UNET_GROUPS, experiments, root, runs, DEMO_TTA["unet"])
    detector = out / f"yolo3d_{args.domain}" / "best.pt"
    candidates[DETECTOR] = candidates_by_run([detector], root, runs, DEMO_TTA["yolo3d"])
    solutions = {run: read_solution(root, "train", [run]) for run in runs}
    rows = {run: fold_row(candidates, solutions, run) for run in runs}
    columns = list(rows[runs[0]])
    lines = [
        *report_header(f"{COMMAND} --domain {args.domain}"),
        "",
        f"U-Nets of `benchmarks/unet_experiments.py` (the DynUNet preset and its variants, {args.domain} "
        "simulator) averaged map by map and predicted with "
        f"{DEMO_TTA['unet']} TTA; the detector of `benchmarks/quality.py` ({DEMO_TTA['yolo3d']} TTA) joined "
        "by `cryokit ensemble`'s fit. Each of the runs the models never trained on "
        f"({', '.join(runs)}) fits the thresholds and the ensemble in turn, the other two are scored. "
        "Weighted F4:",
        "",
        *fold_table(rows, columns),
    ]
    body = "\n".join(lines)
    print(body)
    update_section(f"U-Net seeds averaged ({args.domain} simulator)", body, keep_notes=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
