"""What the Kaggle inference notebook runs: predict every test run within the time limit, write the CSV.

``predict_submission`` loads the checkpoints once, predicts run after run with the library's own
``cryokit.inference.predict_run`` (the same code as ``cryokit predict``), and always ends by writing a
valid submission CSV, even an empty one:

* a run that fails to load or predict is logged and skipped (``on_error="skip"``), the others go on;
* a time-budget guard measures the tomograms done so far, projects the whole hidden test set
  (``expected_tomograms``, about 500 at 86 s each in 12 h on Kaggle's T4) and, when the projection
  exceeds the budget, steps down a ladder of cheaper plans: TTA first (flips+rot90 -> flips -> none),
  then ensemble members from the last; if even the real time left runs out, the remaining runs are
  left out so that the CSV is still written in time;
* a fitted ensemble (``cryokit ensemble``'s JSON file) merges the members on calibrated scores with its
  own thresholds, each member predicting with the TTA the ensemble was fitted with (the guard may lower
  it); once the guard drops a member, the rest are merged as without one (``thresholds`` or the first
  checkpoint's), since the ensemble's weights and thresholds hold for all its members together;
* every visible GPU works (Kaggle's 2 x T4): one worker process per device takes every n-th run
  (``cryokit.inference.shard``) with its own guard counting the devices; the parent merges the picks
  in run order and writes the one CSV.

This module is packed into the notebook by ``cryokit kaggle build``; it imports nothing that Kaggle's
image lacks apart from the wheels shipped with the checkpoints (monai, einops).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd

from cryokit.inference.predict import ensemble_groups, ensemble_mismatch, predict_each_run, predict_run
from cryokit.inference.tta import group_ttas
from cryokit.kaggle.budget import InferencePlan, TimeBudget, degradation_ladder

__all__ = [
    "BUNDLE_MANIFEST",
    "InferencePlan",
    "degradation_ladder",
    "TimeBudget",
    "SubmissionReport",
    "resolve_checkpoints",
    "resolve_thresholds",
    "predict_submission",
]

log = logging.getLogger(__name__)

# The manifest ``cryokit kaggle bundle`` writes next to the checkpoints (and the notebook looks for).
BUNDLE_MANIFEST = "cryokit_bundle.json"


@dataclass
class SubmissionReport:
    """What happened: per-run seconds and pick counts, failures, plan changes and the projection."""

    csv_path: str
    n_picks: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    picks_per_run: dict[str, int] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    skipped_for_time: list[str] = field(default_factory=list)
    plan_changes: list[dict] = field(default_factory=list)
    final_plan: dict = field(default_factory=dict)
    checkpoints: list[str] = field(default_factory=list)
    ensemble: str = ""  # the fitted ensemble applied ("" none)
    device: str = ""
    seconds_per_tomogram: float | None = None
    expected_tomograms: int = 0
    projected_hours: float | None = None
    budget_hours: float = 0.0
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        lines = [f"{self.n_picks} picks from {len(self.seconds)} tomogram(s) written to {self.csv_path}"]
        if self.ensemble:
            lines.append(f"fitted ensemble of {self.ensemble} (calibrated merge, its own thresholds)")
        if self.seconds_per_tomogram is not None:
            lines.append(
                f"{self.seconds_per_tomogram:.1f} s per tomogram ({self.final_plan.get('describe', '')}); "
                f"projected {self.projected_hours:.2f} h for {self.expected_tomograms} tomograms "
                f"(budget {self.budget_hours:.3g} h)"
            )
            if self.projected_hours is not None and self.projected_hours > self.budget_hours:
                lines.append("WARNING: over budget even with the cheapest plan: fewer or faster models needed")
        lines += [
            f"plan change after {c['after_tomograms']} tomogram(s): {c['from']} -> {c['to']} "
            f"(projected {c['projected_hours']:.2f} h)"
            for c in self.plan_changes
        ]
        lines += [f"FAILED {run}: {error}" for run, error in self.failed.items()]
        if self.skipped_for_time:
            lines.append(f"left out for lack of time: {', '.join(self.skipped_for_time)}")
        lines += [f"ERROR {error}" for error in self.errors]
        return "\n".join(lines)


@dataclass(frozen=True)
class _Settings:
    """How every run is predicted (``predict_submission``'s arguments; plain data, sent to device workers).
    ``ensemble`` is the one read from the file, then, on each device, the one that fits the loaded checkpoints."""

    tta: str
    ensemble: object  # a fitted cryokit.ensemble.Ensemble, or None
    thresholds: dict[str, float] | None
    amp: bool | None
    precision: str
    on_error: str


def resolve_checkpoints(model_dir: str | Path, names: Sequence[str] = ()) -> list[Path]:
    """Checkpoint paths: ``names`` inside ``model_dir``; else the bundle manifest's order; else sorted ``*.pt``."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise FileNotFoundError(f"model folder {model_dir} does not exist (attach the checkpoints dataset)")
    manifest = model_dir / BUNDLE_MANIFEST
    if not names and manifest.is_file():
        names = [entry["file"] for entry in json.loads(manifest.read_text())["checkpoints"]]
    paths = [model_dir / name for name in names] if names else sorted(model_dir.glob("*.pt"))
    missing = [str(p) for p in paths if not p.is_file()]
    if missing or not paths:
        raise FileNotFoundError(
            f"checkpoint(s) {', '.join(missing)} not found" if missing else f"no checkpoints (*.pt) in {model_dir}"
        )
    return paths


def resolve_thresholds(model_dir: str | Path, thresholds_file: str) -> dict[str, float] | None:
    """Thresholds from ``thresholds_file`` (relative to ``model_dir``); None for "" (use the checkpoint's)."""
    from cryokit.thresholds import load_thresholds

    if not thresholds_file:
        return None
    path = Path(model_dir) / thresholds_file
    if not path.is_file():
        log.warning("thresholds file %s not found: using the first checkpoint's tuned thresholds", path)
        return None
    return load_thresholds(path)


def _load_checkpoints(paths: Sequence[str | Path], device, on_error: str, report: SubmissionReport) -> list:
    """Every checkpoint that loads; with "skip" one that does not is reported and left out."""
    from cryokit.training.checkpoint import load_model

    loaded = []
    for path in paths:
        try:
            loaded.append(load_model(path, device))
            report.checkpoints.append(str(path))
        except Exception as error:  # noqa: BLE001 -- one damaged member must not sink the ensemble
            if on_error == "raise":
                raise
            report.errors.append(f"checkpoint {path} skipped ({type(error).__name__}: {error})")
            log.error(report.errors[-1])
    if not loaded:
        raise RuntimeError(f"none of the {len(paths)} checkpoint(s) could be loaded")
    return loaded


def _predict_all(
    loaded: list,
    root,
    split: str,
    runs: list[str],
    ladder: list[InferencePlan],
    settings: _Settings,
    device,
    budget: TimeBudget,
    report: SubmissionReport,
    frames: list[pd.DataFrame],
) -> None:
    """Every run with the library's run loop; after each, the guard re-plans (``report.final_plan`` follows).
    Each run's picks go into ``frames`` as soon as it is done, so that whatever happens later, they are written.
    ``settings.ensemble`` (one that fits ``loaded``, or None) merges the groups while the plan keeps every
    one of its members (module docstring)."""
    level, started = 0, 0
    report.final_plan = ladder[0].to_dict()

    def predict_one(run: str) -> pd.DataFrame:
        nonlocal started
        started += 1
        plan = ladder[level]
        index = {id(loaded[m]): m for m in plan.members}
        groups = ensemble_groups([loaded[m] for m in plan.members])
        ttas = [plan.tta_of(index[id(members[0])]) for members in groups]  # a group's members share one TTA
        merging = settings.ensemble if len(plan.members) == len(loaded) else None  # it holds for all its members
        return predict_run(
            groups,
            str(root),
            split,
            run,
            ttas,
            None if merging is not None else settings.thresholds,  # the ensemble's own, on its calibrated scale
            device,
            settings.amp,
            ensemble=merging,
            precision=settings.precision,
        )

    def after_run(run: str, picks: pd.DataFrame, seconds: float) -> None:
        frames.append(picks)
        report.seconds[run], report.picks_per_run[run] = seconds, len(picks)
        guarded(replan, run, seconds)

    def guarded(step: Callable, *args):
        """A failing time guard is reported once and then ignored: the runs are still predicted."""
        try:
            return step(*args)
        except Exception as error:  # noqa: BLE001
            message = f"time guard off ({type(error).__name__}: {error})"
            if message not in report.errors:
                report.errors.append(message)
                log.error(message)
            return False

    def replan(run: str, seconds: float) -> None:
        nonlocal level
        budget.record(ladder[level], seconds)
        done = started
        new_level = budget.affordable(ladder, level, done)
        if new_level != level:
            projected = budget.projected_total(ladder[level], done) or 0.0
            report.plan_changes.append(
                {
                    "after_tomograms": done,
                    "from": ladder[level].describe(),
                    "to": ladder[new_level].describe(),
                    "projected_hours": projected / 3600,
                }
            )
            log.warning(
                "projected %.2f h for %d tomograms exceeds the %.3g h budget: %s -> %s",
                projected / 3600,
                budget.expected_tomograms,
                budget.budget_seconds / 3600,
                ladder[level].describe(),
                ladder[new_level].describe(),
            )
            level = new_level
            report.final_plan = ladder[level].to_dict()

    def out_of_time() -> bool:
        if budget.out_of_time(ladder[level]):
            log.error("out of time after %.0f s: the remaining runs are left out", budget.elapsed())
            return True
        return False

    results = predict_each_run(
        runs, predict_one, settings.on_error, progress=False, after_run=after_run, stop=lambda: guarded(out_of_time)
    )
    report.failed.update(results.failed)
    report.skipped_for_time = results.not_started


def _valid_rows(picks: pd.DataFrame, report: SubmissionReport) -> pd.DataFrame:
    """The rows a submission may hold; the others (non-finite or non-numeric coordinates, an unknown
    particle type, no experiment) are dropped and reported per run, so one bad row never costs the CSV."""
    import numpy as np

    from cryokit.particles import PARTICLE_NAMES

    xyz = np.stack(
        [pd.to_numeric(picks[c], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan) for c in "xyz"]
    )
    experiment = picks["experiment"]
    good = np.isfinite(xyz).all(axis=0) & picks["particle_type"].isin(PARTICLE_NAMES).to_numpy()
    good &= ~experiment.isna().to_numpy() & (experiment.astype(str).str.strip() != "").to_numpy()
    if not good.all():
        for run, count in experiment[~good].astype(str).value_counts(sort=False).items():
            report.errors.append(
                f"{run}: {count} pick(s) dropped (non-finite coordinates, unknown particle type or no experiment)"
            )
            log.error(report.errors[-1])
    return picks[good].reset_index(drop=True)


def _finish(
    report: SubmissionReport,
    budget: TimeBudget,
    frames: list[pd.DataFrame],
    out_csv: str | Path,
    report_json: str | Path | None,
) -> None:
    """Write the CSV (valid rows only; header only when there are none), then the projection and the report.

    Every step is guarded: whatever fails is recorded in ``report.errors`` and the CSV is still written.
    """
    from cryokit.io.submission import write_submission
    from cryokit.postprocess import empty_scored_picks

    picks = empty_scored_picks()
    try:
        picks = _valid_rows(pd.concat(frames, ignore_index=True), report) if frames else picks
        write_submission(picks, out_csv)
    except Exception as error:  # noqa: BLE001 -- the CSV must exist: fall back to a header-only one
        report.errors.append(f"the picks could not be written ({type(error).__name__}: {error}): empty CSV written")
        log.error(report.errors[-1])
        picks = empty_scored_picks()
        write_submission(picks, out_csv)
    report.n_picks = len(picks)
    try:
        if report.final_plan:
            plan = InferencePlan.from_dict(report.final_plan)
            report.expected_tomograms = budget.expected_tomograms
            report.seconds_per_tomogram = budget.seconds_per_tomogram(plan)
            done = len(report.seconds) + len(report.failed)
            projected = budget.projected_total(plan, done / budget.devices)  # each device did about its share
            report.projected_hours = None if projected is None else projected / 3600
    except Exception as error:  # noqa: BLE001 -- a projection is a nicety; the CSV is written already
        report.errors.append(f"no projection ({type(error).__name__}: {error})")
    try:
        _write_report(report, report_json)
    except Exception as error:  # noqa: BLE001
        report.errors.append(f"report {report_json} not written ({type(error).__name__}: {error})")
        log.error(report.errors[-1])


def _write_report(report: SubmissionReport, report_json: str | Path | None) -> None:
    from cryokit.io.atomic import atomic_write_text

    if report_json:
        atomic_write_text(report_json, json.dumps(report.to_dict(), indent=2))


def _read_ensemble(path: str | Path | None, on_error: str, report: SubmissionReport):
    """The fitted ensemble in ``path`` (None for none); with "skip" one that cannot be read is reported and
    the members are merged without it."""
    from cryokit.ensemble import load_ensemble

    if not path:
        return None
    try:
        return load_ensemble(path)
    except Exception as error:  # noqa: BLE001 -- without the ensemble the members still predict
        if on_error == "raise":
            raise
        report.errors.append(f"ensemble not used ({type(error).__name__}: {error}): members merged on raw scores")
        log.error(report.errors[-1])
        return None


def _fitting_ensemble(ensemble, loaded: list, on_error: str, report: SubmissionReport):
    """``ensemble`` if it fits the loaded checkpoints (one member per group, the same particles), else
    None (reported; "raise" raises)."""
    if ensemble is None:
        return None
    problem = ensemble_mismatch(ensemble, loaded)
    if problem:
        if on_error == "raise":
            raise ValueError(f"the ensemble does not fit: it {problem}")
        report.errors.append(f"ensemble not used: it {problem}; members merged on raw scores")
        log.error(report.errors[-1])
        return None
    report.ensemble = f"{len(ensemble.members)} members, TTA {', '.join(ensemble.tta)}"
    return ensemble


def _without_idle_groups(loaded: list, ensemble, report: SubmissionReport) -> tuple[list, object]:
    """The checkpoints and the ensemble without the groups it gives no weight (members outside its vote):
    they would cost passes, in the guard's plan too, and change no pick."""
    from cryokit.ensemble import idle_members, without_members

    idle = idle_members(ensemble)
    if not idle:
        return loaded, ensemble
    groups = ensemble_groups(loaded)
    kept = [item for g, members in enumerate(groups) if g not in idle for item in members]
    unused = [str(item.path) for g in idle for item in groups[g]]
    report.ensemble += f"; not run (no weight in it): {', '.join(unused)}"
    log.info("ensemble gives no weight to %s: not run", ", ".join(unused))
    return kept, without_members(ensemble, idle)


def _member_ttas(loaded: list, group_tta: Sequence[str]) -> tuple[str, ...]:
    """Each loaded checkpoint's TTA from one TTA per ensemble group (``ensemble_groups`` order)."""
    groups = ensemble_groups(loaded)
    group_of = {id(member): g for g, members in enumerate(groups) for member in members}
    return tuple(group_ttas(group_tta, len(groups))[group_of[id(item)]] for item in loaded)


def _predict_on_device(
    checkpoints: Sequence[str | Path],
    root,
    split: str,
    runs: list[str],
    settings: _Settings,
    device,
    budget: TimeBudget,
    report: SubmissionReport,
    frames: list[pd.DataFrame],
) -> None:
    """Load the checkpoints on ``device`` and predict ``runs`` there under ``budget``'s guard."""
    loaded = _load_checkpoints(checkpoints, device, settings.on_error, report)
    ensemble = _fitting_ensemble(settings.ensemble, loaded, settings.on_error, report)
    if ensemble is not None:
        loaded, ensemble = _without_idle_groups(loaded, ensemble, report)
    settings = replace(settings, ensemble=ensemble)
    ladder = degradation_ladder(settings.tta, len(loaded), _member_ttas(loaded, ensemble.tta) if ensemble else ())
    log.info(
        "%d run(s) on %s; %d model(s)%s; plan %s",
        len(runs),
        device,
        len(loaded),
        f", ensemble of {report.ensemble}" if ensemble else "",
        ladder[0].describe(),
    )
    _predict_all(loaded, root, split, runs, ladder, settings, device, budget, report, frames)


def _submission_worker(
    checkpoints: Sequence[str | Path],
    root,
    split: str,
    settings: _Settings,
    budget_seconds: float,
    expected_tomograms: int,
    started_at: float,
    devices: int,
    runs: list[str],
    device,
    threads: int | None = None,
) -> tuple[SubmissionReport, list[pd.DataFrame], list[tuple[int, float]]]:
    """One device's worker of ``predict_submission`` (a spawned process): its report, picks and timings."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    budget = TimeBudget(budget_seconds, expected_tomograms, started_at, time.time, devices)
    report, frames = SubmissionReport(csv_path="", device=str(device)), []
    try:
        _predict_on_device(checkpoints, root, split, runs, settings, device, budget, report, frames)
    except Exception as error:  # noqa: BLE001 -- the other devices' runs still make the CSV
        if settings.on_error == "raise":
            raise
        report.errors.append(f"{device}: {type(error).__name__}: {error}")
        log.exception("prediction on %s stopped early", device)
    return report, frames, budget.samples


def _merge_reports(report: SubmissionReport, parts: Sequence[SubmissionReport], runs: Sequence[str]) -> None:
    """The workers' reports into ``report``, run by run in ``runs``' order; the cheapest final plan."""
    for name in ("seconds", "picks_per_run", "failed"):
        merged = {k: v for part in parts for k, v in getattr(part, name).items()}
        getattr(report, name).update({run: merged[run] for run in runs if run in merged})
    skipped = {run for part in parts for run in part.skipped_for_time}
    report.skipped_for_time = [run for run in runs if run in skipped]
    report.plan_changes = [{**change, "device": part.device} for part in parts for change in part.plan_changes]
    plans = [part.final_plan for part in parts if part.final_plan]
    if plans:
        report.final_plan = min(plans, key=lambda p: InferencePlan.from_dict(p).passes)
    report.checkpoints = parts[0].checkpoints if parts else []
    report.ensemble = parts[0].ensemble if parts and all(part.ensemble for part in parts) else ""
    report.errors += [error for part in parts for error in part.errors]


def predict_submission(
    checkpoints: Sequence[str | Path],
    root: str | Path,
    out_csv: str | Path,
    split: str = "test",
    runs: Sequence[str] | None = None,
    tta: str = "none",
    thresholds: dict[str, float] | None = None,
    device: str = "auto",
    amp: bool | None = None,
    on_error: str = "skip",
    ensemble: str | Path | None = None,
    time_budget_hours: float = 12.0,
    expected_tomograms: int = 500,
    budget_safety: float = 0.9,
    started_at: float | None = None,
    report_json: str | Path | None = None,
    clock: Callable[[], float] = time.time,
    precision: str = "auto",
    workers: int | None = None,
) -> SubmissionReport:
    """Predict every run of a split and write the submission CSV, whatever happens.

    Args:
        checkpoints: ensemble members in order of importance (the guard drops the last ones first).
        root: competition root (holds ``{split}/static/ExperimentRuns``).
        out_csv: the submission to write; written even when nothing could be predicted.
        runs: only these runs (default: every run of the split).
        tta: the TTA wanted (``TTA_CHOICES``); the guard may lower it. With an ensemble, the most any
            member uses: each predicts with the TTA the ensemble was fitted with, up to this.
        thresholds: per-class thresholds; None uses the first checkpoint's tuned thresholds. An ensemble
            uses its own (they are on its calibrated scale) while it has all its members.
        device: "auto" (every visible GPU, one worker process each; else the CPU), "cuda" (every GPU),
            "cpu", "cuda:1", ...; amp: mixed precision on CUDA (None: as trained).
        on_error: "skip" logs a failing run (or checkpoint) and goes on; "raise" stops (after writing the CSV).
        time_budget_hours, budget_safety: the guard keeps the projection under their product.
        expected_tomograms: tomograms to project for (at least the number of runs found), over all devices.
        started_at: ``clock()`` when the notebook started; default now.
        report_json: where to write the report as JSON (optional).
        clock: the guard's clock with one device (the workers of several use ``time.time``).
        precision: the network's, one of ``cryokit.inference.device.PRECISIONS`` ("auto" follows ``amp``).
        workers: worker processes (default one per device of ``device``); runs are shared out in turn.
        ensemble: a fitted ensemble's JSON file (``cryokit ensemble``), one member per group of checkpoints
            (``ensemble_groups``); one that cannot be read or does not fit is reported and the members
            are merged on raw scores ("raise" raises).
    """
    from cryokit.inference.device import resolve_precision

    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    degradation_ladder(tta, max(1, len(checkpoints)))  # checks tta before anything runs
    resolve_precision(precision, "cpu")  # and the precision
    budget_seconds = time_budget_hours * 3600 * budget_safety
    budget = TimeBudget(budget_seconds, expected_tomograms, started_at, clock)
    report = SubmissionReport(csv_path=str(out_csv), budget_hours=time_budget_hours * budget_safety)
    frames: list[pd.DataFrame] = []
    try:
        from functools import partial

        from cryokit.inference.shard import inference_devices, run_shards
        from cryokit.io import list_runs

        devices = inference_devices(device, workers)
        report.device = ", ".join(map(str, devices))
        runs = list(runs) if runs else list_runs(root, split)
        expected = max(budget.expected_tomograms, len(runs))
        budget = TimeBudget(budget_seconds, expected, budget.started_at, clock, len(devices))
        log.info("%d run(s) in %s/%s over %s", len(runs), root, split, report.device)
        settings = _Settings(tta, _read_ensemble(ensemble, on_error, report), thresholds, amp, precision, on_error)
        if len(devices) == 1:
            _predict_on_device(checkpoints, root, split, runs, settings, devices[0], budget, report, frames)
        else:
            worker = partial(
                _submission_worker,
                [str(c) for c in checkpoints],
                str(root),
                split,
                settings,
                budget_seconds,
                expected,
                budget.started_at,
                len(devices),
            )
            parts = run_shards(worker, runs, devices)
            _merge_reports(report, [part for part, _, _ in parts], runs)
            budget.samples = [sample for _, _, samples in parts for sample in samples]
            picks = [frame for _, part_frames, _ in parts for frame in part_frames]
            order = {run: i for i, run in enumerate(runs)}
            frames.extend(sorted(picks, key=lambda f: order.get(f["experiment"].iat[0], -1) if len(f) else -1))
    except Exception as error:  # noqa: BLE001 -- with "skip" an empty but valid CSV beats no CSV
        if on_error == "raise":
            raise
        report.errors.append(f"{type(error).__name__}: {error}")
        log.exception("prediction stopped early")
    finally:
        _finish(report, budget, frames, out_csv, report_json)
    return report
