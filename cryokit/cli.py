"""The ``cryokit`` command: one subcommand per job, each a thin call into the library.

Every subcommand is a pair: ``_add_<name>(subparsers)`` declares its arguments and ``_run_<name>(args)``
calls the library. Heavy imports happen inside ``_run_*`` so ``cryokit --help`` stays fast.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Callable, Sequence

__all__ = ["main", "build_parser"]


def _add_copick_source(p: argparse.ArgumentParser, picks: bool = True, tomo_type: bool = True) -> None:
    """--copick CONFIG.json and what to read from it (beside --data ROOT for the Kaggle layout)."""
    group = p.add_argument_group("copick project (instead of --data)")
    group.add_argument("--copick", type=str, metavar="CONFIG.json", help="copick config: local, Data Portal or S3")
    group.add_argument("--voxel-spacing", type=float, help="the tomograms' voxel spacing in Angstrom, as copick has it")
    if tomo_type:
        group.add_argument("--tomo-type", help="tomogram type to read (e.g. wbp, denoised)")
    if picks:
        group.add_argument("--pick-user", default="", help="copick user_id of the picks to train or score on")
        group.add_argument("--pick-session", default="", help="copick session_id of those picks (default: all)")


def _copick_source(args: argparse.Namespace):
    from cryokit.io.source import CopickSource

    if getattr(args, "data", None) is not None:
        raise ValueError("give --data ROOT (Kaggle layout) or --copick CONFIG.json, not both")
    return CopickSource(
        args.copick, args.voxel_spacing or 0.0, getattr(args, "pick_user", ""), getattr(args, "pick_session", "")
    )


def _copick_edges(args: argparse.Namespace) -> list[str]:
    """Config overrides (data.*) for --copick and its options."""
    import json

    if not getattr(args, "copick", None):
        return []
    if args.data is not None:
        raise ValueError("give --data ROOT (Kaggle layout) or --copick CONFIG.json, not both")
    edges = [f"data.copick={json.dumps(args.copick)}", f"data.voxel_spacing={args.voxel_spacing or 0.0}"]
    edges += [f"data.pick_user={json.dumps(args.pick_user)}", f"data.pick_session={json.dumps(args.pick_session)}"]
    return edges + ([f"data.tomo_type={json.dumps(args.tomo_type)}"] if args.tomo_type else [])


def _add_copick_config(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("copick-config", help="write a copick config and overlay for a Kaggle-layout dataset")
    p.add_argument("--data", required=True, type=Path, help="competition root (holds train/ and test/)")
    p.add_argument("--split", default="train", choices=["train", "test"])
    p.add_argument("--out", required=True, type=Path, help="folder for copick_<split>.json and the overlay")
    p.set_defaults(run=_run_copick_config)


def _run_copick_config(args: argparse.Namespace) -> int:
    from cryokit.io.copick_config import write_copick_project

    config_path = write_copick_project(args.data, args.split, args.out)
    print(f"copick config: {config_path}")
    return 0


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model (U-Net or YOLO-style detector) with validation on the metric")
    p.add_argument("--config", type=Path, help="YAML or JSON file mapping onto cryokit.config.RunConfig")
    p.add_argument("--model", choices=sorted(_model_presets()), help="model family preset (sets model, target, loss)")
    p.add_argument("--data", type=Path, help="competition root (sets data.root)")
    p.add_argument("--out", type=Path, help="run folder (sets train.out_dir)")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in OUT from OUT/last.pt, with its stored configuration (--set may not contradict it)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace a run already in OUT (default: refuse)")
    p.add_argument(
        "--init-from",
        type=Path,
        metavar="CKPT",
        help="start from this checkpoint's weights (pretrain on simulated data, fine-tune on yours)",
    )
    p.add_argument(
        "--precision",
        choices=_precisions(),
        help="precision of the validation passes (sets train.val_precision; auto: as train.amp on CUDA, fp32 on CPU)",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any config field, e.g. --set train.lr=1e-3 --set data.val_runs=[TS_5_4]",
    )
    _add_copick_source(p)
    p.set_defaults(run=_run_train)


def _model_presets() -> dict:
    from cryokit.config import MODEL_PRESETS

    return MODEL_PRESETS


def _run_train(args: argparse.Namespace) -> int:
    from cryokit.config import MODEL_PRESETS, load_config
    from cryokit.training.loop import fit
    from cryokit.training.tracking import open_tracker

    if args.resume and args.overwrite:
        raise ValueError("--resume and --overwrite contradict each other: pick one")
    edges = [f"data.root={args.data}"] if args.data else []
    edges += _copick_edges(args)
    edges += [f"train.out_dir={args.out}"] if args.out else []
    edges += [f"train.val_precision={args.precision}"] if args.precision else []
    edges += [f"train.init_from={args.init_from}"] if args.init_from else []
    preset = [f"{key}={value}" for key, value in MODEL_PRESETS[args.model].items()] if args.model else []
    config = load_config(args.config, preset + edges + list(args.overrides))
    if args.resume:  # the stored configuration, with only what was given explicitly changed (fit checks it)
        config = load_config(args.config, preset + edges + list(args.overrides), base=_stored_config(config))
    if not config.data.root and not config.data.copick:
        raise ValueError("no data: pass --data ROOT or --copick CONFIG.json (or set data.root / data.copick)")
    tracking = config.tracking
    # Under torchrun only rank 0 logs to MLflow.
    enabled = tracking.enabled and int(os.environ.get("RANK", "0")) == 0
    with open_tracker(
        enabled, tracking.tracking_uri, tracking.experiment, config.train.out_dir, tracking.run_name
    ) as tracker:
        result = fit(config, resume=args.resume, tracker=tracker, overwrite=args.overwrite)
    print(
        f"best validation score {result.best_score:.4f} at epoch {result.best_epoch}; "
        f"checkpoint {result.best_checkpoint}"
    )
    return 0


def _stored_config(config):
    """The configuration stored in ``train.out_dir/last.pt`` (``--resume``)."""
    from cryokit.config import RunConfig, from_dict
    from cryokit.training.checkpoint import load_checkpoint

    last = Path(config.train.out_dir) / "last.pt"
    if not last.is_file():
        raise FileNotFoundError(f"cannot resume: {last} does not exist (train without --resume to start a run)")
    return from_dict(RunConfig, load_checkpoint(last)["config"])


def _add_predict(sub: argparse._SubParsersAction) -> None:
    from cryokit.inference.tta import TTA_CHOICES

    p = sub.add_parser("predict", help="predict picks for every run of a split and write a submission CSV")
    p.add_argument(
        "--checkpoint",
        dest="checkpoints",
        action="append",
        required=True,
        type=Path,
        help="a trained checkpoint; repeat to ensemble",
    )
    p.add_argument("--data", type=Path, help="competition root (or --copick)")
    p.add_argument("--split", default="test", choices=["train", "test"])
    p.add_argument("--runs", nargs="*", help="only these runs (default: all runs of the split)")
    p.add_argument("--out", type=Path, help="submission CSV to write (optional with --write-picks)")
    p.add_argument(
        "--tta",
        nargs="+",
        choices=TTA_CHOICES,
        help="test-time augmentation: one for every checkpoint group, or one per group in order (default: the "
        "--ensemble's, else none)",
    )
    p.add_argument("--thresholds", type=Path, help="thresholds.json (default: the checkpoint's tuned thresholds)")
    p.add_argument(
        "--device",
        default="auto",
        help="auto (every visible GPU, one worker each; else the CPU), cuda (every GPU), cpu, cuda:1, ...",
    )
    p.add_argument(
        "--workers",
        type=int,
        help="worker processes, runs shared out in turn (default: one per GPU, or one on the CPU)",
    )
    p.add_argument(
        "--precision",
        default="auto",
        choices=_precisions(),
        help="network precision: auto (bf16 on GPUs and CPUs that have it, fp16 on a T4, else fp32), fp32, bf16, fp16",
    )
    p.add_argument(
        "--ensemble",
        type=Path,
        help="ensemble.json from 'cryokit ensemble': calibrated merge of checkpoints of different kinds",
    )
    p.add_argument(
        "--keep-scores",
        action="store_true",
        help="write every scored candidate (a 'score' column, no thresholds) for threshold tuning",
    )
    _add_copick_source(p, picks=False)
    p.add_argument(
        "--write-picks",
        metavar="USER/SESSION",
        help="with --copick: write the picks into the project as copick picks of this user and session",
    )
    p.add_argument("--overwrite-picks", action="store_true", help="replace an existing --write-picks session")
    p.add_argument(
        "--map-objects",
        action="store_true",
        help="predict a project whose objects differ from the checkpoint's: keep the shared ones, by name",
    )
    p.add_argument(
        "--on-error",
        default="raise",
        choices=["raise", "skip"],
        help="skip: log a run that fails, leave it out, go on (exit status 1 names it); raise: stop (default)",
    )
    p.set_defaults(run=_run_predict)


def _check_output_file(path: Path, flag: str = "--out") -> None:
    """Refuse, before any work, an output file that cannot be written: a folder, or under a file."""
    if path.is_dir():
        raise ValueError(f"{flag} {path} is a folder: name the CSV file to write")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"{flag} {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK):
        raise ValueError(f"{flag} {path}: {parent} is not writable")


def _add_ensemble(sub: argparse._SubParsersAction) -> None:
    from cryokit.inference.tta import TTA_CHOICES

    p = sub.add_parser(
        "ensemble",
        help="fit an ensemble of checkpoints of different kinds on validation runs (calibration, weights, thresholds)",
    )
    p.add_argument("--checkpoint", dest="checkpoints", action="append", required=True, type=Path, help="repeat")
    p.add_argument("--data", type=Path, help="competition root with picks for the validation runs (or --copick)")
    p.add_argument("--runs", nargs="+", required=True, help="validation runs (not trained on)")
    p.add_argument("--out", required=True, type=Path, help="ensemble JSON to write")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument(
        "--tta",
        nargs="+",
        default=["none"],
        choices=TTA_CHOICES,
        help="test-time augmentation the members are predicted with: one for all, or one per checkpoint group "
        "in order (recorded in the ensemble; e.g. flips none for a U-Net and a detector)",
    )
    p.add_argument(
        "--min-gain-references",
        type=float,
        default=2.0,  # cryokit.ensemble.DEFAULT_MIN_GAIN_REFERENCES, without importing it here
        help="without a vote, a class leaves the best member only if merging gains more validation F4 than "
        "finding this many more of its references would (default 2; 0: any gain)",
    )
    p.add_argument(
        "--threshold-scale",
        type=float,
        default=0.8,  # cryokit.thresholds.THRESHOLD_SCALE, without importing it here
        help="for new runs, the vote keeps picks from this on its scaled scores (1: each member's own tuned "
        "threshold), a choice per class multiplies its tuned thresholds by it (default 0.8; 1: the validation "
        "optimum)",
    )
    p.add_argument(
        "--peer-margin",
        type=float,
        default=0.1,  # cryokit.ensemble.DEFAULT_PEER_MARGIN, without importing it here
        help="members within this much of the best one's weighted validation F4 vote, each on its scores "
        "divided by its own tuned threshold, on the classes it finds on validation (default 0.1)",
    )
    p.add_argument(
        "--no-vote",
        dest="vote",
        action="store_false",
        help="no vote: every class keeps the best member alone unless another choice gains more than "
        "--min-gain-references on validation",
    )
    _add_copick_source(p, tomo_type=False)
    p.set_defaults(run=_run_ensemble)


def _run_ensemble(args: argparse.Namespace) -> int:
    from cryokit.ensemble import fit_ensemble, save_ensemble
    from cryokit.inference.predict import group_candidates
    from cryokit.io.layout import select_runs
    from cryokit.io.source import KaggleSource
    from cryokit.thresholds import check_threshold_scale

    if (args.data is None) == (args.copick is None):
        raise ValueError("give --data ROOT (Kaggle layout) or --copick CONFIG.json")
    check_threshold_scale(args.threshold_scale, "--threshold-scale")  # before any prediction
    for option, value in (("--peer-margin", args.peer_margin), ("--min-gain-references", args.min_gain_references)):
        if not value >= 0:
            raise ValueError(f"{option} must be >= 0, got {value}")
    source = _copick_source(args) if args.copick else KaggleSource(args.data, "train")
    select_runs(source.list_runs(), args.runs, f"--runs (runs of {source.describe()})")
    solution = source.read_solution(args.runs)
    if solution.empty:
        raise ValueError(f"{source.describe()} holds no picks on {', '.join(args.runs)}: nothing to fit on")
    names, candidates = group_candidates(
        [str(c) for c in args.checkpoints], source, "train", args.runs, _one_or_each(args.tta), args.device
    )
    ensemble = fit_ensemble(
        candidates,
        solution,
        names,
        catalog=source.catalog(),
        min_gain_references=args.min_gain_references,
        vote=args.vote,
        peer_margin=args.peer_margin,
        threshold_scale=args.threshold_scale,
    )
    save_ensemble(args.out, ensemble)
    print(f"ensemble of {len(names)} member(s) in {args.out}; validation F4 per class:")
    for name, per_member in ensemble.val_fbeta.items():
        print(f"  {name:>20}: " + ", ".join(f"{k.rsplit('/', 1)[-1]} {v:.3f}" for k, v in per_member.items()))
    return 0


def _one_or_each(values: list[str]) -> str | list[str]:
    """A repeatable option's one value (for every group) or its list (one per group)."""
    return values[0] if len(values) == 1 else values


def _precisions() -> tuple[str, ...]:
    return ("auto", "fp32", "bf16", "fp16")  # cryokit.inference.device.PRECISIONS, without importing torch


def _run_predict(args: argparse.Namespace) -> int:
    from cryokit.ensemble import load_ensemble
    from cryokit.inference.predict import predict_runs
    from cryokit.inference.shard import distributed_rank_world
    from cryokit.io.source import KaggleSource
    from cryokit.io.submission import write_submission
    from cryokit.particles import COMPETITION_CATALOG
    from cryokit.thresholds import load_thresholds

    if args.out is not None:
        _check_output_file(args.out)
    if (args.data is None) == (args.copick is None):
        raise ValueError("give --data ROOT (Kaggle layout) or --copick CONFIG.json")
    if args.out is None and not args.write_picks:
        raise ValueError("nothing to write: give --out CSV and/or --write-picks USER/SESSION")
    if args.write_picks and not args.copick:
        raise ValueError("--write-picks needs --copick CONFIG.json (the project to write the picks into)")
    session = None
    if args.write_picks:
        from cryokit.io.copick_picks import parse_picks_session

        session = parse_picks_session(args.write_picks)
    source = _copick_source(args) if args.copick else KaggleSource(args.data, args.split)
    catalog = source.catalog() if args.copick else COMPETITION_CATALOG
    if session is not None and not args.overwrite_picks:  # refuse before predicting, not after
        from cryokit.io.copick_picks import refuse_existing_session

        refuse_existing_session(source, list(args.runs) if args.runs else source.list_runs(), session)
    thresholds = load_thresholds(args.thresholds, catalog) if args.thresholds else None
    ensemble = load_ensemble(args.ensemble) if args.ensemble else None
    picks, seconds = predict_runs(
        [str(c) for c in args.checkpoints],
        source,
        args.split,
        args.runs,
        None if args.tta is None else _one_or_each(args.tta),
        thresholds,
        args.device,
        keep_scores=args.keep_scores,
        on_error=args.on_error,
        ensemble=ensemble,
        tomo_type=getattr(args, "tomo_type", None),
        map_by_name=args.map_objects,
        precision=args.precision,
        workers=args.workers,
    )
    if distributed_rank_world()[0] != 0:
        return 0  # under torchrun every rank holds all the picks; rank 0 writes the one CSV
    failed = dict(picks.attrs.get("failed_runs") or {})
    if session is not None:
        from cryokit.io.copick_picks import write_copick_picks

        runs = list(args.runs) if args.runs else source.list_runs()
        objects = picks.attrs.get("objects")
        written = write_copick_picks(source, picks, runs, session, catalog, args.overwrite_picks, objects)
        print(f"{sum(written.values())} picks in {len(written)} copick picks files of session {session}")
    if args.out is None:
        for run, error in failed.items():
            print(f"FAILED {run}: {error}", file=sys.stderr)
        return 1 if failed else 0
    if args.keep_scores:
        from cryokit.io.candidates import write_candidates

        write_candidates(picks, args.out, catalog)
    else:
        write_submission(picks, args.out, catalog)
    mean = sum(seconds) / max(1, len(seconds))
    print(
        f"{len(picks)} picks for {len(seconds) - len(failed)} runs in {args.out}; {mean:.1f} s per tomogram "
        f"(projected {mean * 500 / 3600:.1f} h for the ~500 hidden test tomograms)"
    )
    if failed:
        for run, error in failed.items():
            print(f"FAILED {run}: {error}", file=sys.stderr)
        print(f"{len(failed)} of {len(seconds)} run(s) failed and are not in {args.out}", file=sys.stderr)
        return 1
    return 0


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="write an inference-only checkpoint: weights (EMA if present), configuration, thresholds",
    )
    p.add_argument("--checkpoint", required=True, type=Path, help="a training checkpoint (best.pt, last.pt)")
    p.add_argument("--out", required=True, type=Path, help="inference checkpoint to write (.pt)")
    _add_weight_dtype(p)
    p.set_defaults(run=_run_export)


def _add_weight_dtype(p: argparse.ArgumentParser, default: str = "float32") -> None:
    p.add_argument(
        "--weights",
        dest="weights_dtype",
        default=default,
        choices=["float32", "float16", "int8", "auto"],  # checkpoint.WEIGHT_DTYPES, without importing torch
        help="how weights are stored: float16 halves the size; int8 (kernels with a scale per output channel) "
        f"quarters it; auto: int8 for networks of 10 M parameters or more, else float16 (default: {default})",
    )
    p.add_argument(
        "--half", dest="weights_dtype", action="store_const", const="float16", help="the same as --weights float16"
    )


def _megabytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def _run_export(args: argparse.Namespace) -> int:
    from cryokit.training.checkpoint import export_inference_checkpoint

    sizes = export_inference_checkpoint(args.checkpoint, args.out, args.weights_dtype)
    print(
        f"{args.checkpoint} ({_megabytes(sizes['source_bytes'])}) -> {args.out} ({_megabytes(sizes['bytes'])}; "
        f"{sizes['weights']} weights in {sizes['dtype']}, configuration and thresholds)"
    )
    return 0


def _add_score(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("score", help="score a submission CSV with the competition metric")
    p.add_argument("--solution", type=Path, help="competition root (picks JSON) or a solution CSV (or --copick)")
    p.add_argument("--submission", required=True, type=Path, help="submission CSV")
    p.add_argument("--split", default="train", choices=["train", "test"], help="split of the root holding the picks")
    p.add_argument("--runs", nargs="*", help="score only these runs (default: every run of the solution)")
    _add_copick_source(p, tomo_type=False)
    p.set_defaults(run=_run_score)


def _run_score(args: argparse.Namespace) -> int:
    import pandas as pd

    from cryokit.io import read_solution
    from cryokit.io.layout import select_runs
    from cryokit.io.submission import read_submission
    from cryokit.metric import score_table
    from cryokit.particles import COMPETITION_CATALOG

    if (args.solution is None) == (args.copick is None):
        raise ValueError("give --solution (root or CSV) or --copick CONFIG.json with --pick-user")
    catalog = COMPETITION_CATALOG
    if args.copick:
        args.data = None
        source = _copick_source(args)
        catalog = source.catalog()
        solution = source.read_solution()
    elif args.solution.is_dir():
        solution = read_solution(args.solution, args.split)
    else:
        solution = read_submission(args.solution)
    available = sorted(set(solution["experiment"].astype(str)))
    if args.runs is not None:
        select_runs(available, args.runs, f"--runs (runs of the solution {args.solution or args.copick})")
        solution = solution[solution["experiment"].isin(args.runs)]
    submission = read_submission(args.submission, catalog)
    if not args.copick:
        _note_picks_outside(args.solution, args.split, {"solution": solution, "submission": submission})
    unpredicted = sorted(set(solution["experiment"]) - set(submission["experiment"]))
    if unpredicted:  # the metric counts every pick of these runs as missed, as Kaggle does
        print(
            f"note: no submitted rows for {len(unpredicted)} run(s) of the solution ({', '.join(unpredicted)}): "
            "all their picks count as misses; use --runs to score a subset",
            file=sys.stderr,
        )
    table = score_table(solution, submission, catalog=catalog)
    with pd.option_context("display.float_format", "{:.4f}".format, "display.width", 120):
        print(table.to_string(index=False))
    print(f"score {table.attrs['score']:.4f}")
    return 0


def _note_picks_outside(solution_path: Path, split: str, tables: dict) -> None:
    """A note on stderr for picks with negative coordinates or (for a competition root, whose tomograms
    give the extent) beyond their tomogram: they can never be matched."""
    from cryokit.coords import outside_extent
    from cryokit.io import open_run_tomogram

    extents: dict[str, object] = {}
    for name, table in tables.items():
        count, runs = 0, []
        for run, rows in table.groupby("experiment"):
            if solution_path.is_dir() and run not in extents:
                try:
                    extents[run] = open_run_tomogram(solution_path, split, str(run)).extent_angstrom_xyz
                except (FileNotFoundError, ValueError):
                    extents[run] = None
            bad = int(outside_extent(rows[["x", "y", "z"]].to_numpy(float), extents.get(run)).sum())
            if bad:
                count, runs = count + bad, runs + [f"{run}: {bad}"]
        if count:
            print(
                f"note: {count} {name} pick(s) lie outside their tomogram (negative or beyond its extent; "
                f"{', '.join(runs)}): they cannot match anything",
                file=sys.stderr,
            )


def _add_kaggle(sub: argparse._SubParsersAction) -> None:
    from cryokit.inference.tta import TTA_CHOICES

    p = sub.add_parser("kaggle", help="build the self-contained Kaggle inference notebook; stage dataset and kernel")
    actions = p.add_subparsers(dest="kaggle_command", required=True, metavar="ACTION")
    build = actions.add_parser("build", help="write the inference notebook with the cryokit code packed in")
    build.add_argument(
        "--out", type=Path, default=Path("dist/kaggle/cryokit-inference.ipynb"), help="notebook to write"
    )
    build.add_argument("--source", type=Path, help="jupytext source (default: kaggle/inference.py of the repository)")
    build.set_defaults(run=_run_kaggle_build)
    pack = actions.add_parser("bundle", help="stage OUT/dataset (checkpoints, wheels) and OUT/kernel (notebook)")
    pack.add_argument("--checkpoints", nargs="+", required=True, type=Path, help="checkpoints, most important first")
    pack.add_argument("--thresholds", required=True, type=Path, help="thresholds.json")
    pack.add_argument("--out", required=True, type=Path, help="folder to hold dataset/ and kernel/")
    pack.add_argument("--dataset-slug", default="INSERT_USERNAME/cryokit-models", help="username/dataset-name")
    pack.add_argument("--kernel-slug", help="username/kernel-name (default: username/cryokit-inference)")
    pack.add_argument(
        "--tta",
        choices=TTA_CHOICES,
        help="the notebook's default TTA (default flips; with --ensemble each member's fitted one)",
    )
    pack.add_argument(
        "--ensemble", type=Path, help="a fitted ensemble (cryokit ensemble) over --checkpoints, in their order"
    )
    pack.add_argument("--wheels", type=Path, help="folder of wheels to ship instead of fetching monai and einops")
    pack.add_argument(
        "--wheel-source",
        default="auto",
        choices=["auto", "download", "installed"],
        help="without --wheels: pip download, repack the installed package, or download else repack",
    )
    pack.add_argument("--public", action="store_true", help="make the kernel public (default private)")
    _add_weight_dtype(pack, default="auto")
    pack.add_argument("--source", type=Path, help="jupytext source (default: kaggle/inference.py of the repository)")
    pack.set_defaults(run=_run_kaggle_bundle)


def _run_kaggle_build(args: argparse.Namespace) -> int:
    from cryokit.kaggle.notebook import build_notebook

    print(f"notebook: {build_notebook(args.out, source=args.source)}")
    return 0


def _run_kaggle_bundle(args: argparse.Namespace) -> int:
    from cryokit.kaggle.bundle import bundle

    staged = bundle(
        args.checkpoints,
        args.thresholds,
        args.out,
        args.dataset_slug,
        args.kernel_slug,
        args.tta,
        args.wheels,
        args.wheel_source,
        not args.public,
        args.source,
        args.weights_dtype,
        args.ensemble,
    )
    for entry in staged.checkpoints:
        print(
            f"{entry['file']}: {_megabytes(entry['source_bytes'])} -> {_megabytes(entry['bytes'])} "
            f"(inference only: {entry['weights']} weights in {entry['dtype']}, configuration, thresholds)"
        )
    print(f"dataset total: {_megabytes(sum(e['bytes'] for e in staged.checkpoints))} of checkpoints")
    print(
        f"dataset: {staged.dataset} (wheels: {', '.join(w.name for w in staged.wheels)})\n"
        f"kernel: {staged.kernel} (notebook {staged.notebook.name})\n"
        f"push: kaggle datasets create -p {staged.dataset}  (later: kaggle datasets version -p {staged.dataset} "
        f"-m 'new models')\n      kaggle kernels push -p {staged.kernel}"
    )
    return 0


def _add_tune(sub: argparse._SubParsersAction) -> None:
    # cryokit.tuning.study's PRUNERS and OBJECTIVES, written out so that --help does not import optuna
    p = sub.add_parser(
        "tune",
        help="Optuna study maximising the validation F4; resumable, many workers per study",
        description="Run --trials trials of an Optuna study in this process (each worker started "
        "with the same --study and --storage runs its own --trials; --max-trials caps the study). "
        "Writes OUT/best_config.yaml for cryokit train --config.",
    )
    p.add_argument("--study", required=True, help="study name (created, or loaded and continued)")
    p.add_argument(
        "--storage",
        help="sqlite:///..., postgresql://user:pw@host/db, journal:PATH or PATH.log (default: OUT/optuna.db)",
    )
    p.add_argument("--trials", type=int, required=True, help="trials this worker runs")
    p.add_argument("--max-trials", type=int, help="stop once the study holds this many finished trials")
    p.add_argument("--timeout", type=float, help="stop starting trials after this many seconds")
    p.add_argument("--config", type=Path, help="base config (YAML or JSON); data.val_runs must be set")
    p.add_argument("--space", type=Path, help="YAML/JSON narrowing the search space (cryokit.tuning.space)")
    p.add_argument("--data", type=Path, help="competition root (sets data.root)")
    p.add_argument("--out", type=Path, default=Path("runs/tune"), help="study folder (default runs/tune)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a base config field, e.g. --set train.epochs=5",
    )
    p.add_argument("--pruner", default="median", choices=["median", "hyperband", "none"])
    p.add_argument("--seed", type=int, help="sampler seed (give each worker its own)")
    p.add_argument("--objective", default="fit", choices=["fit", "quadratic"], help=argparse.SUPPRESS)  # tests
    _add_copick_source(p)
    p.set_defaults(run=_run_tune)


def _run_tune(args: argparse.Namespace) -> int:
    from cryokit.config import apply_overrides, load_config
    from cryokit.tuning.space import load_space
    from cryokit.tuning.study import run_study

    config = load_config(args.config)
    edges = ([f"data.root={args.data}"] if args.data else []) + _copick_edges(args)
    config = apply_overrides(config, edges + list(args.overrides))
    if args.trials < 0:
        raise ValueError(f"--trials must be >= 0, got {args.trials}")
    study = run_study(
        args.study,
        config,
        args.trials,
        load_space(args.space),
        args.storage,
        args.out,
        args.objective,
        args.timeout,
        args.max_trials,
        args.pruner,
        args.seed,
    )
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    print(f"study {args.study}: {len(study.trials)} trials ({len(complete)} complete)")
    if complete:
        print(
            f"best trial {study.best_trial.number}: validation F4 {study.best_value:.4f}; "
            f"config {args.out / 'best_config.yaml'}"
        )
    return 0


def _add_simulate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("simulate", help="write a simulated dataset in the exact Kaggle layout")
    p.add_argument("--out", required=True, type=Path, help="dataset root to write (train/ or test/ inside)")
    p.add_argument("--runs", required=True, type=int, help="number of runs")
    p.add_argument("--seed", required=True, type=int, help="dataset seed; runs are named TS_sim_{seed}_{i}")
    p.add_argument("--split", default="train", choices=["train", "test"], help="test: denoised only, no picks")
    p.add_argument("--shape", nargs=3, type=int, metavar=("Z", "Y", "X"), help="level-0 shape (default 184 630 630)")
    p.add_argument("--snr", type=float, help="signal-to-noise ratio (default: the difficulty's)")
    p.add_argument("--difficulty", default="default", choices=["easy", "default", "hard"])
    p.add_argument(
        "--domain",
        default="randomized",
        choices=["fixed", "randomized"],
        help="randomized: each run draws its imaging, ice, clutter and particle variants (cryokit.synth.domains)",
    )
    p.set_defaults(run=_run_simulate)


def _run_simulate(args: argparse.Namespace) -> int:
    from cryokit.synth import config_for_difficulty, simulate_dataset

    overrides = {"shape_zyx": tuple(args.shape)} if args.shape else {}
    overrides.update({"snr": args.snr} if args.snr is not None else {})
    config = config_for_difficulty(args.difficulty, domain=args.domain, **overrides)
    runs = simulate_dataset(args.out, args.runs, args.seed, args.split, config)
    print(
        f"simulated {len(runs)} {args.split} runs ({config.difficulty}, snr {config.snr:g}, shape "
        f"{'x'.join(map(str, config.shape_zyx))}, {config.domain} domain) into {args.out}"
    )
    return 0


def _add_baseline(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("baseline", help="classical DoG blob detection (no training) -> submission CSV")
    p.add_argument("--data", type=Path, help="competition root (or --copick)")
    p.add_argument("--split", default="test", choices=["train", "test"], help="split to predict")
    p.add_argument("--out", required=True, type=Path, help="submission CSV to write")
    p.add_argument(
        "--calibrate-on",
        type=Path,
        help="ROOT/train (or a root): calibrate blob sizes and thresholds on its picks "
        "(default: the predicted split itself, which must then be train)",
    )
    p.add_argument("--tomo-type", default="denoised", help="tomogram type to read")
    p.add_argument("--level", type=int, default=1, help="multiscale level (1 = 20 A voxels)")
    _add_copick_source(p, tomo_type=False)  # with --copick: calibrate on its picks, predict its runs
    p.set_defaults(run=_run_baseline)


def _calibration_source(path: Path | None, data: Path, split: str):
    from cryokit.io.source import KaggleSource

    if path is None:
        if split != "train":
            raise ValueError("--calibrate-on is required when predicting the test split (it has no picks)")
        logging.getLogger("cryokit.baseline").warning("calibrating on the predicted runs: the score is optimistic")
        return KaggleSource(data, split)
    return KaggleSource(path.parent, path.name) if path.name in ("train", "test") else KaggleSource(path, "train")


def _run_baseline(args: argparse.Namespace) -> int:
    import pandas as pd

    from cryokit.baseline import BaselineConfig, calibrate, predict
    from cryokit.io.source import KaggleSource
    from cryokit.io.submission import write_submission

    if (args.data is None) == (args.copick is None):
        raise ValueError("give --data ROOT (Kaggle layout) or --copick CONFIG.json")
    config = BaselineConfig(tomo_type=args.tomo_type, level=args.level)
    if args.copick:
        source = calibration_source = _copick_source(args)
    else:
        source = KaggleSource(args.data, args.split)
        calibration_source = _calibration_source(args.calibrate_on, args.data, args.split)
    calibration = calibrate(calibration_source, config=config)
    with pd.option_context("display.float_format", "{:.4f}".format, "display.width", 120):
        print(calibration.table().to_string(index=False))
    picks = predict(source, calibration, config=config)
    write_submission(picks, args.out, source.catalog())
    print(f"{len(picks)} picks in {args.out}")
    return 0


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the main job end to end: data, baseline, U-Net, predict, score, plots")
    p.add_argument("--out", type=Path, default=Path("outputs/demo"), help="output folder (default outputs/demo)")
    p.add_argument("--data", type=Path, help="a Kaggle-layout root to use instead of simulating (its train split)")
    p.add_argument("--quick", action="store_true", help="a ~3-minute smoke run (small volumes, tiny network)")
    p.add_argument("--difficulty", default="default", choices=["easy", "default", "hard"], help="simulated data")
    p.add_argument(
        "--domain",
        choices=["fixed", "randomized"],
        help="simulated data: one domain or a family (default randomized; fixed with --quick)",
    )
    p.add_argument("--epochs", type=int, help="training epochs (default 24, 8 with --quick)")
    p.add_argument("--no-track", action="store_true", help="do not log to MLflow")
    p.add_argument(
        "--models",
        nargs="+",
        default=["unet"],
        choices=sorted(_model_presets()),
        help="model families to train (default unet); several: their calibrated ensemble is scored and submitted",
    )
    p.set_defaults(run=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from cryokit.config import replace
    from cryokit.demo.pipeline import DemoConfig, run_demo

    config = DemoConfig.quick_defaults() if args.quick else DemoConfig()
    training = config.training
    if args.epochs:
        training = replace(training, train=replace(training.train, epochs=args.epochs))
    if args.no_track:
        training = replace(training, tracking=replace(training.tracking, enabled=False))
    config = replace(
        config,
        out_dir=str(args.out),
        data_root=str(args.data or ""),
        difficulty=args.difficulty,
        domain=args.domain or config.domain,
        training=training,
        models=tuple(args.models),
    )
    result = run_demo(config)
    for method, value in result.scores.items():
        print(f"held-out score {method:>16}: {value:.4f}")
    print(f"\nEverything is in {result.out_dir}/:")
    for name, path in result.files.items():
        print(f"  {name:>16}: {path}")
    return 0


# Subcommands in the order ``cryokit --help`` lists them.
_SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_demo,
    _add_train,
    _add_predict,
    _add_ensemble,
    _add_export,
    _add_score,
    _add_copick_config,
    _add_kaggle,
    _add_tune,
    _add_simulate,
    _add_baseline,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cryokit", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in _SUBCOMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return int(args.run(args) or 0)
    except (FileNotFoundError, ValueError, FileExistsError) as error:
        # Bad input: one clear line, no traceback (use -v for the traceback).
        if args.verbose:
            raise
        print(f"cryokit {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
