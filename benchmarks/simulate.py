"""Benchmark the simulator: seconds per full-size run (184 x 630 x 630, denoised + wbp, levels 0-2).

Times each stage of ``cryokit.synth.simulate_run`` (placement, density rendering, imaging) and the
writing of the OME-Zarr stores and picks, on ``--runs`` runs of the default config, into a
temporary folder.

Run: ``.venv/bin/python benchmarks/simulate.py`` (updates the "Simulator" section of docs/BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine_description, update_section  # noqa: E402

from cryokit.synth import SimulatedRun, SimulationConfig, render_density, write_run  # noqa: E402
from cryokit.synth.imaging import image_tomograms  # noqa: E402
from cryokit.synth.placement import place_scene  # noqa: E402

COMMAND = ".venv/bin/python benchmarks/simulate.py"


def time_one_run(config: SimulationConfig, seed: tuple[int, int], out_root: Path) -> dict[str, float]:
    """Seconds per stage for one run (the stages of ``simulate_run``, then writing)."""
    times = {}
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    scene = place_scene(config, rng)
    times["placement"] = time.perf_counter() - start
    start = time.perf_counter()
    density = render_density(scene, config)
    times["render density"] = time.perf_counter() - start
    start = time.perf_counter()
    volumes = image_tomograms(density, config, rng)
    times["imaging (CTF, wedge, noise, 2 tomo types)"] = time.perf_counter() - start
    start = time.perf_counter()
    simulated = SimulatedRun(volumes, scene.picks(), scene, config.voxel_spacing_angstrom_zyx)
    write_run(out_root, "train", f"TS_bench_{seed[1]}", simulated, config.n_levels)
    times["write 2 OME-Zarr stores (3 levels) + picks"] = time.perf_counter() - start
    times["objects placed"] = float(len(scene.objects))
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="full-size runs to time")
    args = parser.parse_args(argv)
    config = SimulationConfig()
    with tempfile.TemporaryDirectory() as folder:
        per_run = [time_one_run(config, (0, i), Path(folder)) for i in range(args.runs)]
    stages = [k for k in per_run[0] if k != "objects placed"]
    totals = [sum(t[k] for k in stages) for t in per_run]
    rows = "\n".join(f"| {k} | {np.mean([t[k] for t in per_run]):.2f} |" for k in stages)
    body = (
        f"- Command: `{COMMAND} --runs {args.runs}`\n"
        f"- Machine: {machine_description()}\n"
        f"- Date: {datetime.date.today().isoformat()}; load average at the end {os.getloadavg()[0]:.1f} "
        f"(cores shared with other jobs: expect tens of percent of noise)\n\n"
        f"Default config (difficulty `default`), shape {' x '.join(map(str, config.shape_zyx))}, tomo types "
        f"{', '.join(config.tomo_types)}, {config.n_levels} levels; about "
        f"{np.mean([t['objects placed'] for t in per_run]):.0f} objects placed per run (particles and clutter).\n\n"
        f"**{np.mean(totals):.1f} s per full-size run** (mean of {args.runs}; min {min(totals):.1f}, "
        f"max {max(totals):.1f}).\n\n"
        f"| stage | seconds (mean) |\n|---|---:|\n{rows}\n"
    )
    print(body)
    update_section("Simulator", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
