"""Benchmark the training data pipeline: augmented patches per second from zarr, workers 0 and 2.

Data: two full-size simulated runs (184 x 630 x 630, ``cryokit.synth.simulate_dataset``, denoised only),
written once into ``--data`` and reused. Each configuration runs one epoch of ``--patches`` patches of
64 x 128 x 128 through ``PatchDataset`` and a ``DataLoader`` (batch 2, ``collate``), timing from the
loader's creation (so worker start-up and the per-worker intensity statistics count) to the last batch:

* plain: read + normalise + ball targets, no augmentation (the cost of reading the same patches);
* augmented: ``AugmentConfig()`` defaults (flips, rot90, 10 degree rotation, 5 % zoom, intensity, noise);
* augmented + elastic: the same with ``elastic_p=1``.

Run: ``.venv/bin/python benchmarks/data_pipeline.py`` (updates the "Data pipeline" section of
docs/BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import report_header, update_section  # noqa: E402

from cryokit.config import AugmentConfig, DataConfig, PatchConfig, TargetConfig  # noqa: E402
from cryokit.data import normalise  # noqa: E402
from cryokit.data.augment import Augmenter, Sample, apply_augmentation  # noqa: E402
from cryokit.data.dataset import PatchDataset, collate  # noqa: E402
from cryokit.data.normalise import read_region, tomogram_intensity_stats  # noqa: E402
from cryokit.io import list_runs, open_run_tomogram  # noqa: E402
from cryokit.models.build import build_dataset  # noqa: E402

COMMAND = ".venv/bin/python benchmarks/data_pipeline.py"
CONFIGS = {
    "plain (no augmentation)": None,
    "augmented (defaults)": AugmentConfig(),
    "augmented + elastic": AugmentConfig(elastic_p=1.0),
}


def ensure_data(root: Path, n_runs: int) -> tuple[list[str], str]:
    """Simulated full-size runs in ``root`` (written once), or a random store if the simulator is missing."""
    if (root / "train").is_dir() and len(list_runs(root, "train")) >= n_runs:
        return list_runs(root, "train")[:n_runs], "simulated (cached)"
    try:
        from cryokit.synth import SimulationConfig, simulate_dataset
    except ImportError:
        return _random_runs(root, n_runs), "random"
    start = time.perf_counter()
    runs = simulate_dataset(root, n_runs, seed=0, config=SimulationConfig(tomo_types=("denoised",)), progress=False)
    print(f"simulated {n_runs} runs in {time.perf_counter() - start:.0f} s")
    return runs, "simulated"


def _random_runs(root: Path, n_runs: int) -> list[str]:
    from cryokit.io import write_run_picks, write_tomogram

    rng = np.random.default_rng(0)
    runs = [f"TS_rand_{i}" for i in range(n_runs)]
    for run in runs:
        path = root / "train" / "static" / "ExperimentRuns" / run / "VoxelSpacing10.000" / "denoised.zarr"
        write_tomogram(path, rng.normal(size=(184, 630, 630)).astype(np.float32), 10.012)
        write_run_picks(root, "train", run, {"ribosome": rng.uniform(0, [6300, 6300, 1840], size=(100, 3))})
    return runs


def time_loader(dataset: PatchDataset, workers: int) -> float:
    """Patches per second for one epoch, loader start-up included."""
    start = time.perf_counter()
    loader = DataLoader(dataset, batch_size=2, num_workers=workers, collate_fn=collate)
    n = sum(len(batch["run"]) for batch in loader)
    return n / (time.perf_counter() - start)


def stage_times(root: Path, run: str, augment: AugmentConfig, size_zyx, repeats: int = 10) -> dict[str, float]:
    """Milliseconds per patch of each stage in this process."""
    tomogram = open_run_tomogram(root, "train", run)
    normalise._STATS_CACHE.clear()
    start = time.perf_counter()
    tomogram_intensity_stats(tomogram)
    times = {"intensity statistics (once per tomogram, in `__init__`)": time.perf_counter() - start}
    rng = np.random.default_rng(0)
    origins = [rng.integers(0, np.asarray(tomogram.shape_zyx) - size_zyx) for _ in range(repeats)]
    for name, config in (("defaults", augment), ("defaults + elastic", replace(augment, elastic_p=1.0))):
        augmenter = Augmenter.from_config(config)
        params = [augmenter.draw(torch.Generator().manual_seed(i), size_zyx) for i in range(repeats)]
        start = time.perf_counter()
        regions = [
            read_region(tomogram, o - p.margin_zyx(), np.asarray(size_zyx) + 2 * p.margin_zyx())
            for o, p in zip(origins, params)
        ]
        times[f"read + normalise patch with the context its draw needs ({name})"] = time.perf_counter() - start
        start = time.perf_counter()
        for region, p in zip(regions, params):
            apply_augmentation(Sample(torch.from_numpy(region), np.zeros((0, 3)), np.zeros(0, np.int64)), p)
        times[f"augment ({name})"] = time.perf_counter() - start
    start = time.perf_counter()
    for origin in origins:
        read_region(tomogram, origin, size_zyx)
    times["read + normalise patch (no context)"] = time.perf_counter() - start
    return {k: 1000 * v / (1 if k.startswith("intensity") else repeats) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("/tmp/cryokit_bench_pipeline"))
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--patches", type=int, default=48)
    args = parser.parse_args()
    runs, source = ensure_data(args.data, args.runs)
    patch = PatchConfig(patches_per_epoch=args.patches)
    rows = []
    for name, augment in CONFIGS.items():
        dataset = build_dataset(DataConfig(root=str(args.data)), patch, TargetConfig(kind="balls"), augment, runs, 0)
        for workers in (0, 2):
            rate = time_loader(dataset, workers)
            rows.append(f"| {name} | {workers} | {rate:.1f} | {1000 / rate:.0f} |")
            print(rows[-1], flush=True)
    stages = stage_times(args.data, runs[0], AugmentConfig(), patch.size_zyx)
    stage_rows = [f"| {k} | {v:.0f} |" for k, v in stages.items()]
    print("\n".join(stage_rows))
    body = "\n".join(
        [
            *report_header(f"{COMMAND} --patches {args.patches}"),
            "",
            f"Training patches of {' x '.join(map(str, patch.size_zyx))} voxels (z, y, x) from {len(runs)} {source} "
            f"level-0 runs of 184 x 630 x 630 (zarr, 64^3 chunks, page-cached), ball targets, `DataLoader` "
            f"batch 2; one epoch of {args.patches} patches, loader start-up included (the intensity statistics "
            "are computed once in the dataset's `__init__`, outside the timing). The machine's 2 cores were "
            "shared with other jobs while this ran, so expect run-to-run noise of tens of percent.",
            "",
            "| pipeline | workers | patches / s | ms / patch |",
            "|---|---:|---:|---:|",
            *rows,
            "",
            "Stages in one process (ms per patch, mean of 10; torch uses both cores here, one per worker above). "
            "Each item reads only the context its own draw needs (`AugmentParams.margin_zyx`); the bound over all "
            "draws of the defaults is "
            f"{Augmenter.from_config(AugmentConfig()).margin_bound_zyx(patch.size_zyx).tolist()} voxels per side "
            "(z, y, x).",
            "",
            "| stage | ms |",
            "|---|---:|",
            *stage_rows,
        ]
    )
    print(f"updated {update_section('Data pipeline', body)}")


if __name__ == "__main__":
    main()
