"""Seconds per tomogram of whole-tomogram inference: its parts, its options, its FLOPs and their floor.

Data: one full-size simulated run (184 x 630 x 630, ``cryokit.synth.simulate_dataset``, denoised), written
once into ``--data`` as OME-Zarr and read back at level 0 (184 x 630 x 630) and level 1 (92 x 315 x 315).
Model: the default U-Net of ``RunConfig()`` (``build_model_and_task``), untrained, windows of 64 x 128 x 128,
overlap 0.25, batch 2. Each level runs in a fresh process, so its peak RSS is its own. Parts:

* read + normalise: zarr read and ``normalise_tomogram`` (statistics included);
* network: the model's forward passes (summed inside ``predict_maps``);
* stitching: the rest of ``predict_maps`` (window cutting, softmax, Gaussian blending, crop);
* decoding: ``SegmentationTask.decode`` (max-filter peaks on 6 maps, NMS, Angstrom) of trained-looking
  maps, since decoding time grows with the number of peaks and an untrained network's maps are not like
  a trained one's: a Gaussian (peak 0.95, sigma a quarter of the radius) at every simulated particle plus
  uniform noise below 0.04.

Options (batch size, channels_last_3d, CPU bf16 autocast, torch.compile with ``--compile``) are timed
per window side by side (interleaved rounds, fastest) and scaled by the window count; overlap on the
level-1 volume and TTA flips on a 64 x 192 x 192 crop, scaled by the measured ratio. FLOPs come from
``FlopCounterMode`` on one window times the window count. On a CUDA machine the script also times the
GPU path (fp16/bf16 autocast, volume on the device or on the host) and the GPU's matmul throughput.

Run: ``.venv/bin/python benchmarks/inference_speed.py`` (updates the "Inference speed" section of
docs/BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import datetime
import multiprocessing
import os
import resource
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine_description, update_section  # noqa: E402

from cryokit.config import RunConfig, apply_overrides  # noqa: E402
from cryokit.coords import angstrom_xyz_to_voxel_zyx  # noqa: E402
from cryokit.data.normalise import normalise_tomogram, normalise_tomogram_on  # noqa: E402
from cryokit.data.targets import class_radii_voxels, gaussian_heatmaps  # noqa: E402
from cryokit.inference.device import autocast
from cryokit.inference.predict import Timer, predict_maps  # noqa: E402
from cryokit.inference.speed import InferenceOptions, count_windows, forward_flops, prepare_for_inference  # noqa: E402
from cryokit.io import list_runs, open_run_tomogram, read_run_picks  # noqa: E402
from cryokit.models.build import build_model_and_task, sliding_window  # noqa: E402
from cryokit.particles import PARTICLE_NAMES  # noqa: E402

COMMAND = ".venv/bin/python benchmarks/inference_speed.py"
# Peak matrix throughput, TFLOP/s. NVIDIA T4 datasheet: "Mixed Precision (FP16/FP32) 65 TFLOPS",
# "Single-Precision 8.1 TFLOPS". NVIDIA H100 SXM datasheet: BF16 Tensor Core 1,979 TFLOPS with sparsity,
# so about 990 dense.
PEAKS_TFLOPS = {"T4 fp16 tensor cores": 65.0, "T4 fp32": 8.1, "H100 SXM bf16 dense": 989.5}
WINDOW = (64, 128, 128)
FULL_SHAPE = (184, 630, 630)


def ensure_data(root: Path) -> str:
    """The name of one full-size simulated run in ``root`` (simulated and written once)."""
    if (root / "train").is_dir() and list_runs(root, "train"):
        return list_runs(root, "train")[0]
    from cryokit.synth import SimulationConfig, simulate_dataset

    return simulate_dataset(root, 1, seed=0, config=SimulationConfig(tomo_types=("denoised",)), progress=False)[0]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class TimedModel(nn.Module):
    """``model`` counting the seconds and windows of its forward passes (synchronised on CUDA)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model, self.seconds, self.windows = model, 0.0, 0

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        _sync(windows.device)
        start = time.perf_counter()
        out = self.model(windows)
        _sync(windows.device)
        self.seconds += time.perf_counter() - start
        self.windows += len(windows)
        return out


def trained_looking_maps(root: Path, run: str, tomogram, seed: int = 0) -> np.ndarray:
    """(6, Z, Y, X) maps like a trained network's: a Gaussian (peak 0.95, sigma radius / 4) at every
    simulated particle, plus uniform noise in [0, 0.04) (under the 0.05 candidate floor)."""
    picks = read_run_picks(root, "train", run)
    spacing = tomogram.voxel_spacing_angstrom_zyx
    centres = angstrom_xyz_to_voxel_zyx(picks[["x", "y", "z"]].to_numpy(float), spacing)
    classes = picks["particle_type"].map(PARTICLE_NAMES.index).to_numpy()
    maps = gaussian_heatmaps(tomogram.shape_zyx, centres, classes, class_radii_voxels(spacing, 0.25)[classes])
    rng = np.random.default_rng(seed)
    for channel in maps:  # one channel at a time: a float32 map, not six float64 ones
        channel *= np.float32(0.95)
        channel += rng.random(channel.shape, dtype=np.float32) * np.float32(0.04)
    return maps


def measure_tomogram(root: Path, run: str, level: int) -> dict:
    """Parts of one default-path tomogram at ``level``, in this (fresh) process; peak RSS at the end."""
    tomogram = open_run_tomogram(root, "train", run, "denoised", level)
    with Timer() as read:
        volume = normalise_tomogram(tomogram)
    config = apply_overrides(RunConfig(), {"data.level": level})
    model, task = build_model_and_task(config, tomogram.voxel_spacing_angstrom_zyx)
    timed = TimedModel(model.eval())
    with Timer() as total:
        maps = predict_maps(timed, task.dense_maps, volume, sliding_window(config.patch), task.output_stride)
    del maps
    looking = trained_looking_maps(root, run, tomogram)
    with Timer() as decode:
        picks = task.decode(looking, tomogram.voxel_spacing_angstrom_zyx, run)
    return {
        "level": level,
        "shape": tomogram.shape_zyx,
        "read_normalise": read.seconds,
        "network": timed.seconds,
        "stitching": total.seconds - timed.seconds,
        "decoding": decode.seconds,
        "windows": timed.windows,
        "candidates": len(picks),
        "particles": len(read_run_picks(root, "train", run)),
        "rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }


def in_fresh_process(function, *args):
    """``function(*args)`` in a spawned process (its own peak RSS); returns its result."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


def interleaved_best(steps: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Fastest seconds of each step, the steps run in turn ``rounds`` times. Other jobs on the cores
    only ever add time, so the minimum is the estimate least disturbed by them."""
    times: dict[str, list[float]] = {name: [] for name in steps}
    with torch.no_grad():
        for _ in range(rounds):
            for name, step in steps.items():
                with Timer() as timer:
                    step()
                times[name].append(timer.seconds)
    return {name: min(values) for name, values in times.items()}


def window_seconds(model: nn.Module, compile_model: bool, rounds: int) -> tuple[dict[str, float], float, dict]:
    """Best seconds per window of each network option, compile seconds, and the CPU's matmul TFLOP/s
    (fp32, bf16; n = 2048) timed in the same interleaved rounds, so the ratios share the machine's load."""
    cl_model = prepare_for_inference(copy.deepcopy(model), InferenceOptions(channels_last=True))
    x, cpu = torch.randn(4, 1, *WINDOW), torch.device("cpu")

    def bf16(w):
        with autocast(cpu, True, cpu_bf16=True):
            return model(w)

    def channels_last(w):
        return cl_model(w.contiguous(memory_format=torch.channels_last_3d))

    variants = {
        "batch 1": (model, 1),
        "batch 2 (default)": (model, 2),
        "batch 4": (model, 4),
        "channels_last_3d, batch 2": (channels_last, 2),
        "bf16 autocast on CPU, batch 2": (bf16, 2),
    }
    compile_seconds = float("nan")
    if compile_model:
        with Timer() as compiling, torch.no_grad():
            compiled = prepare_for_inference(copy.deepcopy(model), InferenceOptions(compile=True))
            compiled(x[:2])
        variants["torch.compile, batch 2"], compile_seconds = (compiled, 2), compiling.seconds
    n = 2048
    operands = {
        name: [torch.randn(n, n).to(dtype) for _ in range(2)]
        for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16))
    }
    steps = {name: (lambda fn=fn, batch=batch: fn(x[:batch])) for name, (fn, batch) in variants.items()}
    steps.update({f"matmul {name}": (lambda a=a, b=b: torch.matmul(a, b)) for name, (a, b) in operands.items()})
    best = interleaved_best(steps, rounds)
    per_window = {name: best[name] / batch for name, (_, batch) in variants.items()}
    return per_window, compile_seconds, {name: 2 * n**3 / best[f"matmul {name}"] / 1e12 for name in operands}


def normalise_seconds(root: Path, run: str, rounds: int = 5) -> dict[str, float]:
    """Best seconds of reading the level-0 volume, and of reading + normalising with numpy and torch."""
    tomogram = open_run_tomogram(root, "train", run, "denoised", 0)
    normalise_tomogram(tomogram)  # statistics cached, as in every later call
    return interleaved_best(
        {
            "read (zarr -> float32)": tomogram.read,
            "read + normalise (numpy, `normalise_tomogram`)": lambda: normalise_tomogram(tomogram),
            "read + normalise (torch on CPU, `normalise_tomogram_on`)": lambda: normalise_tomogram_on(tomogram, "cpu"),
        },
        rounds,
    )


def matmul_tflops(device: torch.device, dtype: torch.dtype, n: int = 8192, reps: int = 5) -> float:
    """Best TFLOP/s of an ``n x n`` by ``n x n`` matmul (2 n^3 FLOPs) over ``reps`` runs."""
    a, b = (torch.randn(n, n, device=device).to(dtype) for _ in range(2))
    torch.matmul(a, b)
    best = float("inf")
    for _ in range(reps):
        _sync(device)
        start = time.perf_counter()
        torch.matmul(a, b)
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e12


def overlap_and_tta(model: nn.Module, root: Path, run: str, rounds: int) -> dict[str, tuple[float, int]]:
    """(best seconds, windows) of ``predict_maps`` with overlap 0.25 / 0.5 on the level-1 volume and with
    TTA none / flips on a 64 x 192 x 192 crop of level 0, in interleaved rounds."""
    config = RunConfig()
    tomogram = open_run_tomogram(root, "train", run, "denoised", 1)
    _, task = build_model_and_task(config, tomogram.voxel_spacing_angstrom_zyx)
    level1 = normalise_tomogram(tomogram)
    crop = normalise_tomogram(open_run_tomogram(root, "train", run, "denoised", 0))[:64, :192, :192].copy()
    window = sliding_window(config.patch)
    half = dataclasses.replace(window, overlap=0.5)
    cases = {
        "overlap 0.25 (level 1)": (level1, window, "none"),
        "overlap 0.5 (level 1)": (level1, half, "none"),
        "tta none (64 x 192 x 192 crop)": (crop, window, "none"),
        "tta flips (64 x 192 x 192 crop)": (crop, window, "flips"),
    }
    best = interleaved_best(
        {
            name: (lambda v=v, p=p, t=t: predict_maps(model, task.dense_maps, v, p, tta=t))
            for name, (v, p, t) in cases.items()
        },
        rounds,
    )
    return {
        name: (best[name], count_windows(v.shape, WINDOW, p.overlap) * (8 if t == "flips" else 1))
        for name, (v, p, t) in cases.items()
    }


def measure_gpu(root: Path, run: str) -> dict[str, dict[str, float]]:
    """Parts of the level-0 tomogram on CUDA under autocast, per option (warmed up first)."""
    device = torch.device("cuda")
    tomogram = open_run_tomogram(root, "train", run, "denoised", 0)
    config = RunConfig()
    model, task = build_model_and_task(config, tomogram.voxel_spacing_angstrom_zyx)
    cases = {
        "volume on host, stitching on CPU": InferenceOptions(volume_on_device=False),
        "volume on GPU (default)": InferenceOptions(),
        "volume on GPU + channels_last_3d": InferenceOptions(channels_last=True),
        "volume on GPU + channels_last_3d + torch.compile": InferenceOptions(channels_last=True, compile=True),
    }
    rows = {}
    for name, options in cases.items():
        prepared = prepare_for_inference(copy.deepcopy(model).to(device), options)
        warm_up = torch.zeros(64, 128, 256, device=device)  # 3 windows: batches of 2 and 1 (compiles both)
        predict_maps(prepared, task.dense_maps, warm_up, sliding_window(config.patch), device=device, options=options)
        timed = TimedModel(prepared)
        torch.cuda.reset_peak_memory_stats(device)
        with Timer() as read:
            on_device = options.volume_on_device
            volume = normalise_tomogram_on(tomogram, device) if on_device else normalise_tomogram(tomogram)
            _sync(device)
        with Timer() as total:
            maps = predict_maps(
                timed, task.dense_maps, volume, sliding_window(config.patch), device=device, options=options
            )
            _sync(device)
        with Timer() as to_host:
            maps.cpu().numpy()
        rows[name] = {
            "read_normalise": read.seconds,
            "network": timed.seconds,
            "stitching": total.seconds - timed.seconds,
            "to_host": to_host.seconds,
            "peak_gib": torch.cuda.max_memory_allocated(device) / 2**30,
        }
        del maps, volume, prepared
    return rows


def _parts_table(parts: list[dict]) -> list[str]:
    lines = [
        "| input (z, y, x) | windows | read + normalise | network | stitching | decoding (candidates) | total "
        "| peak RSS |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in parts:
        total = p["read_normalise"] + p["network"] + p["stitching"] + p["decoding"]
        lines.append(
            f"| level {p['level']}: {' x '.join(map(str, p['shape']))} | {p['windows']} | "
            f"{p['read_normalise']:.1f} | {p['network']:.1f} | {p['stitching']:.1f} | "
            f"{p['decoding']:.1f} ({p['candidates']} for {p['particles']} particles) | **{total:.0f}** | "
            f"{p['rss_gib']:.1f} GiB |"
        )
    return lines


def _shares(level0: dict) -> str:
    """One sentence: where a level-0 tomogram's time goes, and what stays on the CPU next to a GPU."""
    parts = {k: level0[k] for k in ("read_normalise", "network", "stitching", "decoding")}
    total = sum(parts.values())
    shares = ", ".join(f"{k.replace('_', ' + ')} {v / total:.0%}" for k, v in parts.items())
    return (
        f"Level 0 on this CPU: {shares}. On a GPU the network and (with the volume on the device) the "
        f"stitching move there; decoding ({level0['decoding']:.0f} s here, scipy on the CPU) does not."
    )


def _options_table(per_window: dict[str, float], windows: int, compile_seconds: float) -> list[str]:
    default = per_window["batch 2 (default)"]
    lines = [
        f"| network option | s / window | network s / level-0 tomogram ({windows} windows) | speed-up |",
        "|---|---:|---:|---:|",
    ]
    for name, seconds in per_window.items():
        label = name + (f" (compiling: {compile_seconds:.0f} s, inductor cache as found)" if "compile" in name else "")
        lines.append(f"| {label} | {seconds:.3f} | {seconds * windows:.0f} | {default / seconds:.2f}x |")
    return lines


def _costs_table(costs: dict[str, tuple[float, int]], level0: dict) -> list[str]:
    """Overlap and TTA: measured ratio on a smaller volume next to the window ratios; projected by the latter,
    since network and stitching are both work per window."""
    base = level0["network"] + level0["stitching"]
    full_ratio = count_windows(FULL_SHAPE, WINDOW, 0.5) / count_windows(FULL_SHAPE, WINDOW, 0.25)
    pairs = [
        ("overlap 0.5 vs 0.25", "overlap 0.5 (level 1)", "overlap 0.25 (level 1)", full_ratio),
        ("TTA flips (8 passes) vs none", "tta flips (64 x 192 x 192 crop)", "tta none (64 x 192 x 192 crop)", 8.0),
    ]
    lines = [
        "| setting | measured on | seconds (windows) | measured ratio | window ratio there | window ratio at "
        "level 0 | projected network + stitching, level 0 |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for label, new, old, window_ratio in pairs:
        (t_new, w_new), (t_old, w_old) = costs[new], costs[old]
        lines.append(
            f"| {label} | {new.split('(')[1].rstrip(')')} | {t_new:.1f} ({w_new}) vs {t_old:.1f} ({w_old}) | "
            f"{t_new / t_old:.2f}x | {w_new / w_old:.2f}x | {window_ratio:.2f}x | "
            f"{base * window_ratio:.0f} s (default {base:.0f} s) |"
        )
    return lines


def _flops_table(flops: int, cpu_tflops: dict[str, float], per_window: dict[str, float], level0: dict) -> list[str]:
    peaks = {**PEAKS_TFLOPS, "this CPU, measured fp32 matmul": cpu_tflops["fp32"]}
    lines = [
        "| pass | windows | TFLOP | " + " | ".join(f"floor at {k} ({v:.3g} TFLOP/s)" for k, v in peaks.items()) + " |",
        "|---|---:|---:|" + "---:|" * len(peaks),
    ]
    for label, shape, overlap, passes in (
        ("level 0, overlap 0.25", FULL_SHAPE, 0.25, 1),
        ("level 0, overlap 0.5", FULL_SHAPE, 0.5, 1),
        ("level 0, overlap 0.25, TTA flips", FULL_SHAPE, 0.25, 8),
        ("level 1, overlap 0.25", tuple(n // 2 for n in FULL_SHAPE), 0.25, 1),
    ):
        windows = count_windows(shape, WINDOW, overlap) * passes
        tflop = flops * windows / 1e12
        lines.append(
            f"| {label} | {windows} | {tflop:.2f} | "
            + " | ".join(f"{tflop / peak:.3g} s" for peak in peaks.values())
            + " |"
        )
    fp32 = flops / per_window["batch 2 (default)"] / 1e12
    bf16 = flops / per_window["bf16 autocast on CPU, batch 2"] / 1e12
    run = flops * level0["windows"] / level0["network"] / 1e12
    lines.append(
        f"\nAchieved by the network on this CPU, in the rounds that timed the matmuls (2048 x 2048): fp32 "
        f"{fp32 * 1e3:.1f} GFLOP/s = {fp32 / cpu_tflops['fp32']:.0%} of the fp32 matmul rate "
        f"({cpu_tflops['fp32'] * 1e3:.0f} GFLOP/s), bf16 autocast {bf16 * 1e3:.1f} GFLOP/s = "
        f"{bf16 / cpu_tflops['bf16']:.0%} of the bf16 matmul rate ({cpu_tflops['bf16'] * 1e3:.0f} GFLOP/s). "
        f"The level-0 run above achieved {run * 1e3:.1f} GFLOP/s (fp32)."
    )
    return lines


def _gpu_lines(gpu: dict[str, dict[str, float]], gpu_tflops: dict[str, float]) -> list[str]:
    precision = "bf16" if torch.cuda.get_device_capability()[0] >= 8 else "fp16"
    lines = [
        f"GPU: {torch.cuda.get_device_name()}, autocast {precision}; matmul "
        + ", ".join(f"{k} {v:.0f} TFLOP/s" for k, v in gpu_tflops.items())
        + ".",
        "",
        "| GPU path, level 0 | read + normalise | network | stitching | maps to host | total | peak GPU memory |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in gpu.items():
        total = r["read_normalise"] + r["network"] + r["stitching"] + r["to_host"]
        lines.append(
            f"| {name} | {r['read_normalise']:.2f} | {r['network']:.2f} | {r['stitching']:.2f} | "
            f"{r['to_host']:.2f} | {total:.2f} | {r['peak_gib']:.1f} GiB |"
        )
    return lines


def report(command, parts, per_window, compile_seconds, rounds, normalising, costs, flops, cpu_tflops, gpu) -> str:
    """The markdown body of the "Inference speed" section."""
    level0 = parts[0]
    load = os.getloadavg()[0]
    lines = [
        f"- Command: `{command}`",
        f"- Machine: {machine_description()}",
        f"- Date: {datetime.date.today().isoformat()}; load average at the end {load:.1f} (2 cores shared with "
        "other jobs: absolute seconds carry tens of percent of noise, ratios measured side by side less)",
        "",
        "Default U-Net of `RunConfig()` (channels 16-32-64-128, 1 residual unit, 7 outputs), untrained, windows "
        "64 x 128 x 128, overlap 0.25, batch 2, fp32, on a simulated tomogram (`simulate_dataset`, seed 0). "
        "Decoding runs on trained-looking maps (a Gaussian of peak 0.95 at each of the run's simulated "
        "particles, plus noise under the 0.05 candidate floor), because its time grows with the number of "
        "peaks. Network = the forward passes; stitching = the rest of `predict_maps` (window cutting, "
        "softmax, Gaussian blending). Each level runs in a fresh process; peak RSS is `ru_maxrss`. "
        "Kaggle's budget is about 86 s per tomogram on a T4.",
        "",
        "**Seconds per tomogram on this CPU (default path)**",
        "",
        *_parts_table(parts),
        "",
        _shares(level0),
        "",
        f"**Network options** (one window of 64 x 128 x 128, fastest of {rounds} interleaved rounds, scaled by "
        "the window count; the maps agree with the default within 1e-5, except bf16: probabilities within ~0.02)",
        "",
        *_options_table(per_window, level0["windows"], compile_seconds),
        "",
        "**Reading and normalising the level-0 volume** (fastest of 5 interleaved rounds, statistics cached)",
        "",
        "| step | seconds |",
        "|---|---:|",
        *(f"| {k} | {v:.2f} |" for k, v in normalising.items()),
        "",
        "**Overlap and TTA** (measured on a smaller volume; projected to level 0 by the window ratio, since "
        "network and stitching are work per window)",
        "",
        *_costs_table(costs, level0),
        "",
        f"**FLOPs and their floor** ({flops / 1e9:.2f} GFLOP per window by `FlopCounterMode`: convolutions "
        "only, norms and activations not counted; floor = FLOPs / peak matrix throughput, so real GPU "
        "times sit well above it)",
        "",
        *_flops_table(flops, cpu_tflops, per_window, level0),
    ]
    if gpu is not None:
        lines += ["", *_gpu_lines(*gpu)]
    else:
        lines += [
            "",
            "No GPU on this machine: the script's CUDA branch (autocast, volume on the GPU or on the "
            "host, channels_last_3d, torch.compile, matmul throughput) did not run.",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("/tmp/cryokit_bench_inference"))
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds of the per-window timings")
    parser.add_argument("--cost-rounds", type=int, default=2, help="interleaved rounds of the overlap/TTA timings")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (about a minute)")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    run = ensure_data(args.data)
    parts = [in_fresh_process(measure_tomogram, args.data, run, level) for level in (0, 1)]
    print(*parts, sep="\n")
    spacing = open_run_tomogram(args.data, "train", run, "denoised", 0).voxel_spacing_angstrom_zyx
    model = build_model_and_task(RunConfig(), spacing)[0].eval()
    per_window, compile_seconds, cpu_tflops = window_seconds(model, args.compile, args.rounds)
    print(per_window, cpu_tflops)
    normalising = normalise_seconds(args.data, run)
    costs = overlap_and_tta(model, args.data, run, args.cost_rounds)
    print(normalising, costs, sep="\n")
    gpu = None
    if torch.cuda.is_available():
        cuda = torch.device("cuda")
        dtypes = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
        gpu = (measure_gpu(args.data, run), {name: matmul_tflops(cuda, dtype, 8192) for name, dtype in dtypes.items()})
    flops = forward_flops(model, (1, 1, *WINDOW))
    command = " ".join([COMMAND, *(sys.argv[1:] if argv is None else argv)])
    body = report(command, parts, per_window, compile_seconds, args.rounds, normalising, costs, flops, cpu_tflops, gpu)
    print(body)
    update_section("Inference speed", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
