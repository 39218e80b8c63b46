"""Benchmark the simulator: seconds per full-size run (184 x 630 x 630, denoised + wbp, levels 0-2), for
the fixed domain and the randomized one, and a figure of randomized runs side by side.

Times each stage of ``cryokit.synth.simulate_run`` (domain draw, placement, density rendering, imaging)
and the writing of the OME-Zarr stores, picks and ``simulation.json``, on ``--runs`` runs of each domain
(default config otherwise), into a temporary folder. The randomized runs' central slices (``denoised``,
an x-y slice through the middle of the ice and an x-z slice) go to ``docs/simulator_domains.png``.

Run: ``.venv/bin/python benchmarks/simulate.py`` (updates the "Simulator" section of docs/BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import report_header, update_section  # noqa: E402

from cryokit.plots import save_figure  # noqa: E402
from cryokit.synth import SimulatedRun, SimulationConfig, render_density, write_run  # noqa: E402
from cryokit.synth.imaging import image_tomograms  # noqa: E402
from cryokit.synth.placement import place_scene  # noqa: E402
from cryokit.synth.simulate import domain_config, draw_run_domain, mean_ice_thickness_angstrom  # noqa: E402

COMMAND = ".venv/bin/python benchmarks/simulate.py"
FIGURE = Path(__file__).resolve().parents[1] / "docs" / "simulator_domains.png"


def time_one_run(config: SimulationConfig, seed: tuple[int, int], out_root: Path) -> tuple[dict, SimulatedRun]:
    """(seconds per stage, the run) for one run: the stages of ``simulate_run``, then writing."""
    times = {}
    start = time.perf_counter()
    domain = draw_run_domain(config, seed) if config.domain == "randomized" else None
    run_config = config if domain is None else domain_config(config, domain)
    rng = np.random.default_rng(seed)
    scene = place_scene(run_config, rng, domain)
    times["domain draw + placement"] = time.perf_counter() - start
    start = time.perf_counter()
    density = render_density(scene, run_config)
    times["render density"] = time.perf_counter() - start
    start = time.perf_counter()
    thickness = None if domain is None else mean_ice_thickness_angstrom(run_config)
    volumes = image_tomograms(density, run_config, rng, domain, thickness)
    times["imaging (CTF, wedge, noise, 2 tomo types)"] = time.perf_counter() - start
    start = time.perf_counter()
    record = {"domain": config.domain, "seed": list(seed), "parameters": None if domain is None else domain.to_dict()}
    simulated = SimulatedRun(
        volumes, scene.picks(), scene, run_config.voxel_spacing_angstrom_zyx, record=record, domain=domain
    )
    write_run(out_root, "train", f"TS_bench_{config.domain}_{seed[1]}", simulated, run_config.n_levels)
    times["write 2 OME-Zarr stores (3 levels) + picks + simulation.json"] = time.perf_counter() - start
    times["objects placed"] = float(len(scene.objects))
    return times, simulated


def _window(image: np.ndarray) -> tuple[float, float]:
    return tuple(np.percentile(image, [1, 99]))


def central_slices(run: SimulatedRun) -> tuple[np.ndarray, np.ndarray, object]:
    """(x-y slice through the middle of the ice, x-z slice through the middle of y, the domain draw)."""
    volume = run.volumes["denoised"]
    y_mid, x_mid = (volume.shape[1] - 1) / 2, (volume.shape[2] - 1) / 2
    z_mid = int(round(float(np.mean(run.scene.slab.bounds(np.array(y_mid), np.array(x_mid))))))
    return volume[z_mid].copy(), volume[:, volume.shape[1] // 2, :].copy(), run.domain


def plot_domains(slices: list[tuple[np.ndarray, np.ndarray, object]], path: Path) -> Path:
    """Central x-y slice (top) and x-z slice (bottom) of each run's ``denoised``, titled by its draw."""
    n = len(slices)
    fig, axes = plt.subplots(2, n, figsize=(3.2 * n, 4.8), gridspec_kw={"height_ratios": [630, 200]}, squeeze=False)
    for column, (xy, xz, d) in enumerate(slices):
        axes[0, column].imshow(xy, cmap="gray", vmin=_window(xy)[0], vmax=_window(xy)[1])
        axes[1, column].imshow(xz, cmap="gray", vmin=_window(xz)[0], vmax=_window(xz)[1], aspect="equal")
        clutter = ", ".join(k for k in d.clutter_kinds if k in ("membrane", "carbon", "vesicle", "gold")) or "debris"
        axes[0, column].set_title(
            f"{d.recon_style}; defocus {d.defocus_um:.1f} um\nsnr {d.snr:.2f}; tilt +-{d.tilt_range_degrees:.0f}, "
            f"axis {d.tilt_axis_degrees:+.0f}\n{clutter}",
            fontsize=8,
        )
        for ax in axes[:, column]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_ylabel("x-y, mid-ice", fontsize=8)
    axes[1, 0].set_ylabel("x-z", fontsize=8)
    fig.suptitle("Randomized simulator: denoised tomograms of runs drawn from DomainRanges() (184 x 630 x 630)")
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="full-size runs to time per domain")
    parser.add_argument("--figure-runs", type=int, default=6, help="randomized runs in the figure (>= --runs)")
    args = parser.parse_args(argv)
    results, figure_runs = {}, []
    with tempfile.TemporaryDirectory() as folder:
        for domain in ("fixed", "randomized"):
            config = SimulationConfig(domain=domain)
            n = max(args.runs, args.figure_runs) if domain == "randomized" else args.runs
            results[domain] = []
            for i in range(n):
                times, run = time_one_run(config, (0, i), Path(folder))
                results[domain].append(times)
                if domain == "randomized" and i < args.figure_runs:
                    figure_runs.append(central_slices(run))
                del run
    plot_domains(figure_runs, FIGURE)
    stages = [k for k in results["fixed"][0] if k != "objects placed"]
    sections = []
    for domain, per_run in results.items():
        totals = [sum(t[k] for k in stages) for t in per_run]
        rows = "\n".join(f"| {k} | {np.mean([t[k] for t in per_run]):.2f} |" for k in stages)
        sections.append(
            f"**`{domain}`: {np.mean(totals):.1f} s per full-size run** (mean of {len(per_run)}; min "
            f"{min(totals):.1f}, max {max(totals):.1f}; about {np.mean([t['objects placed'] for t in per_run]):.0f} "
            f"objects placed per run).\n\n| stage | seconds (mean) |\n|---|---:|\n{rows}\n"
        )
    config = SimulationConfig()
    body = (
        "\n".join(
            report_header(
                f"{COMMAND} --runs {args.runs} --figure-runs {args.figure_runs}",
                date_note=f"load average at the end {os.getloadavg()[0]:.1f} (cores shared with other jobs: expect "
                "tens of percent of noise)",
            )
        )
        + "\n\n"
        f"Default config (difficulty `default`), shape {' x '.join(map(str, config.shape_zyx))}, tomo types "
        f"{', '.join(config.tomo_types)}, {config.n_levels} levels; `fixed` and `randomized` domains "
        f"(`SimulationConfig(domain=...)`, ranges `DomainRanges()`). Both domains are timed in the same run under "
        f"the same load: compare them with each other, not with figures of other days.\n\n" + "\n".join(sections) + "\n"
        "Central slices of randomized runs (denoised), one column per run, titled with what it drew: "
        "![simulator domains](simulator_domains.png)\n"
    )
    print(body)
    update_section("Simulator", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
