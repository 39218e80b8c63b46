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
from _report import report_header, update_section  # noqa: E402

from cryokit.config import MODEL_PRESETS, RunConfig, apply_overrides  # noqa: E402
from cryokit.coords import angstrom_xyz_to_voxel_zyx  # noqa: E402
from cryokit.data.normalise import normalise_tomogram, normalise_tomogram_on  # noqa: E402
from cryokit.data.targets import class_radii_voxels, gaussian_heatmaps  # noqa: E402
from cryokit.inference.device import autocast, autocast_precision, native_bf16  # noqa: E402
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
        *report_header(
            command,
            date_note=f"load average at the end {load:.1f} (2 cores shared with other jobs: absolute seconds carry "
            "tens of percent of noise, ratios measured side by side less)",
        ),
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


# --- bf16 against fp32 on the quality benchmark's held-out runs (section "Inference precision quality") ---

PRECISION_QUALITY_TITLE = "Inference precision quality"
# bf16 becomes the CPU default only if it loses no more than this much weighted F4 (issue 17).
PRECISION_F4_TOLERANCE = 0.005


# Variants of one trained model compared on the held-out runs: (label, --precision, stored weights).
PRECISION_VARIANTS = (
    ("fp32", "fp32", "float32"),
    ("bf16", "bf16", "float32"),
    ("fp16 weights", "fp32", "float16"),
    ("int8 weights", "fp32", "int8"),
)


def precision_quality(root: Path, out: Path, epochs: int, checkpoints: list[Path]) -> dict:
    """Weighted F4 of trained models on the quality benchmark's held-out runs, per variant of
    ``PRECISION_VARIANTS``: predicted on the CPU in fp32 and in bf16, and from the int8 export
    (``cryokit export --weights int8``) in fp32; thresholds tuned on the validation run per variant, and
    fp32's applied to every variant.

    ``root`` is a root written by ``benchmarks/quality.py`` (its ``runs.json`` names the train, validation
    and held-out runs). ``checkpoints``: trained models (e.g. that benchmark's ``unet_fixed/best.pt`` and
    ``yolo3d_fixed/best.pt``); none: a U-Net is trained as that benchmark trains it, into ``out``.
    """
    import json

    from quality import train_model

    from cryokit.inference.predict import predict_runs
    from cryokit.io import read_solution
    from cryokit.metric import score_table
    from cryokit.postprocess import apply_thresholds
    from cryokit.thresholds import best_thresholds
    from cryokit.training.checkpoint import export_inference_checkpoint, load_checkpoint

    runs = json.loads((root / "runs.json").read_text())
    with Timer() as training:
        if not checkpoints:
            checkpoints = [train_model("unet", "unet", root, runs["train"], runs["val"], out, epochs, reuse=True)]
    solution, val_solution = read_solution(root, "train", runs["heldout"]), read_solution(root, "train", runs["val"])
    models = {}
    for checkpoint in checkpoints:
        state = load_checkpoint(checkpoint)
        name = "YOLO3D detector" if state["config"]["model"]["name"] == "yolo3d" else "U-Net"
        last = checkpoint.parent / "last.pt"
        rows = {}
        for label, precision, dtype in PRECISION_VARIANTS:
            exported = out / f"{checkpoint.parent.name}_{dtype}.pt"
            sizes = export_inference_checkpoint(checkpoint, exported, dtype)
            scored = {}
            for split_name in ("val", "heldout"):
                with Timer() as timer:
                    picks, _ = predict_runs(
                        [str(exported)],
                        str(root),
                        "train",
                        runs[split_name],
                        keep_scores=True,
                        device="cpu",
                        progress=False,
                        precision=precision,
                    )
                scored[split_name] = (picks, timer.seconds / len(runs[split_name]))
            rows[label] = {"candidates": scored["heldout"][0], "seconds": scored["heldout"][1], "bytes": sizes["bytes"]}
            rows[label]["thresholds"] = best_thresholds(scored["val"][0], val_solution)
        for row in rows.values():
            for which in ("own", "fp32"):
                thresholds = row["thresholds"] if which == "own" else rows["fp32"]["thresholds"]
                table = score_table(solution, apply_thresholds(row["candidates"], thresholds, 1.0))
                row[f"f4_{which}"] = float(table.attrs["score"])
                row[f"table_{which}"] = table
        models[name] = {
            "rows": rows,
            "checkpoint": checkpoint,
            "epoch": load_checkpoint(last)["epoch"] if last.is_file() else state["epoch"],
            "best_epoch": state.get("best_epoch"),
            "best_score": state.get("best_score"),
        }
    return {"models": models, "runs": runs, "training_seconds": training.seconds}


def precision_quality_report(command: str, result: dict) -> str:
    runs = result["runs"]
    first = next(iter(result["models"].values()))["rows"]["fp32"]
    names = [n for n in first["table_own"]["particle_type"] if n != "beta-amylase"]
    lines = [
        *report_header(
            command, date_note=f"models trained here in {result['training_seconds'] / 60:.0f} min (0 when given)"
        ),
        "",
        "Trained models of `benchmarks/quality.py` (demo configuration, level 1) on their data: thresholds tuned on "
        f"the validation run ({', '.join(runs['val'])}) per variant, scored on the held-out runs "
        f"({', '.join(runs['heldout'])}) with the competition metric, on the CPU. bf16: `cryokit predict "
        "--precision bf16`; fp16 / int8 weights: `cryokit export --weights float16|int8` (int8: kernels with a "
        "scale per output channel, the rest fp16), predicted in fp32. `cryokit predict` applies the "
        "checkpoint's thresholds, which training tuned on fp32 maps on the CPU: the column 'fp32's thresholds' "
        "is what a user gets.",
        "",
        "| model | variant | " + " | ".join(names) + " | weighted F4 (own thresholds) | weighted F4 (fp32's "
        "thresholds) | file | s per held-out tomogram (level 1) |",
        "|---|---|" + "---:|" * (len(names) + 4),
    ]
    verdicts = []
    for model, entry in result["models"].items():
        rows = entry["rows"]
        for label, row in rows.items():
            f4 = row["table_own"].set_index("particle_type")["fbeta"]
            lines.append(
                f"| {model} ({entry['epoch']} epochs, best {entry['best_epoch']}) | {label} | "
                + " | ".join(f"{f4[n]:.3f}" for n in names)
                + f" | **{row['f4_own']:.4f}** | {row['f4_fp32']:.4f} | {row['bytes'] / 1e6:.1f} MB | "
                f"{row['seconds']:.1f} |"
            )
        for label in rows:
            if label != "fp32":
                losses = {w: rows["fp32"][f"f4_{w}"] - rows[label][f"f4_{w}"] for w in ("fp32", "own")}
                verdicts.append(
                    f"{model}, {label}: {losses['fp32']:+.4f} weighted F4 lost against fp32 with fp32's thresholds ("
                    + ("within" if losses["fp32"] <= PRECISION_F4_TOLERANCE else "over")
                    + f" the tolerance {PRECISION_F4_TOLERANCE}); {losses['own']:+.4f} with thresholds re-tuned on "
                    "its own validation maps."
                )
    from cryokit.inference.device import cpu_default_precision

    verdicts.append(
        f"Precision auto on this CPU (`cpu_default_precision()`, cryokit/inference/device.py): "
        f"{cpu_default_precision()}."
    )
    return "\n".join([*lines, "", *(f"- {v}" for v in verdicts)])


# --- stages per precision, decoders, the detector, bundle sizes (section "Inference stages") ---

STAGES_TITLE = "Inference stages, precision and bundles"


def measure_stages(root: Path, run: str, precision: str, decode: bool) -> dict:
    """Stages of one level-0 tomogram on the CPU in ``precision`` (in a fresh process: its own peak RSS);
    with ``decode`` also today's decoder (scipy, 6 maps) and the torch one (1 map, scaled by 6)."""
    from cryokit.postprocess import find_peaks_maxpool_torch

    tomogram = open_run_tomogram(root, "train", run, "denoised", 0)
    with Timer() as read:
        volume = normalise_tomogram(tomogram)
    config = RunConfig()
    model, task = build_model_and_task(config, tomogram.voxel_spacing_angstrom_zyx)
    timed = TimedModel(model.eval())
    with Timer() as total:
        maps = predict_maps(
            timed, task.dense_maps, volume, sliding_window(config.patch), task.output_stride, precision=precision
        )
    del maps
    row = {
        "precision": precision,
        "read_normalise": read.seconds,
        "network": timed.seconds,
        "stitching": total.seconds - timed.seconds,
        "windows": timed.windows,
    }
    if decode:
        looking = trained_looking_maps(root, run, tomogram)
        with Timer() as scipy_decode:
            picks = task.decode(looking, tomogram.voxel_spacing_angstrom_zyx, run)
        first = torch.from_numpy(looking[0])
        radius = 0.5 * class_radii_voxels(tomogram.voxel_spacing_angstrom_zyx)[0]
        with Timer() as torch_one:
            find_peaks_maxpool_torch(first, radius, 0.05)
        row.update(decoding=scipy_decode.seconds, torch_decoding=6 * torch_one.seconds, candidates=len(picks))
    row["rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return row


def per_window_network(spacing, rounds: int) -> dict[str, dict[str, float]]:
    """Best seconds per 64 x 128 x 128 window of the default U-Net and the default detector, fp32 and bf16,
    in interleaved rounds (batch 2), and each one's windows per level-0 tomogram."""
    rows = {}
    steps = {}
    for name, preset in (("U-Net", "unet"), ("YOLO3D detector", "yolo3d")):
        config = apply_overrides(RunConfig(), MODEL_PRESETS[preset])
        model, task = build_model_and_task(config, spacing)
        model.eval()
        x = torch.randn(2, 1, *WINDOW)
        rows[name] = {"windows": count_windows(FULL_SHAPE, WINDOW, config.patch.inference_overlap, task.output_stride)}
        for precision in ("fp32", "bf16"):

            def step(model=model, x=x, precision=precision):
                with autocast_precision(torch.device("cpu"), precision):
                    return model(x)

            steps[(name, precision)] = step
    best = interleaved_best(steps, rounds)
    for (name, precision), seconds in best.items():
        rows[name][precision] = seconds / 2
    return rows


def bundle_sizes(spacing, folder: Path) -> dict[str, dict[str, int]]:
    """Bytes of a training checkpoint (weights, EMA weights, AdamW moments, as ``fit`` saves) of the default
    U-Net and detector, and of its inference-only exports in fp32 and fp16."""
    from cryokit.config import to_dict
    from cryokit.training.checkpoint import export_inference_checkpoint, save_checkpoint

    folder.mkdir(parents=True, exist_ok=True)
    sizes = {}
    for name, preset in (("U-Net", "unet"), ("YOLO3D detector", "yolo3d")):
        config = apply_overrides(RunConfig(), {**MODEL_PRESETS[preset], "train.ema_decay": 0.99})
        model, _ = build_model_and_task(config, spacing)
        optimizer = torch.optim.AdamW(model.parameters())
        for parameter in model.parameters():
            parameter.grad = torch.zeros_like(parameter)
        optimizer.step()  # AdamW's two moments per weight, as in every saved checkpoint
        state = {
            "model": model.state_dict(),
            "ema": copy.deepcopy(model).state_dict(),
            "optimizer": optimizer.state_dict(),
            "config": to_dict(config),
            "voxel_spacing_angstrom_zyx": list(map(float, spacing)),
            "thresholds": {},
        }
        source = save_checkpoint(folder / f"{preset}_train.pt", state)
        full = export_inference_checkpoint(source, folder / f"{preset}_fp32.pt")
        half = export_inference_checkpoint(source, folder / f"{preset}_fp16.pt", "float16")
        int8 = export_inference_checkpoint(source, folder / f"{preset}_int8.pt", "int8")
        sizes[name] = {
            "training": full["source_bytes"],
            "fp32": full["bytes"],
            "fp16": half["bytes"],
            "int8": int8["bytes"],
        }
    return sizes


def measure_gpu_stages(root: Path, run: str) -> dict:
    """On CUDA: the level-0 tomogram per precision with the volume on the device, decoded there (torch)
    and, for the ratio, on the host (today's: maps to the host, scipy)."""
    device = torch.device("cuda")
    tomogram = open_run_tomogram(root, "train", run, "denoised", 0)
    config = RunConfig()
    model, task = build_model_and_task(config, tomogram.voxel_spacing_angstrom_zyx)
    model = model.to(device).eval()
    spacing = tomogram.voxel_spacing_angstrom_zyx
    rows = {}
    precisions = ("fp32", "bf16", "fp16") if native_bf16() else ("fp32", "fp16")
    for precision in precisions:
        warm_up = torch.zeros(64, 128, 256, device=device)
        predict_maps(model, task.dense_maps, warm_up, sliding_window(config.patch), device=device, precision=precision)
        timed = TimedModel(model)
        torch.cuda.reset_peak_memory_stats(device)
        with Timer() as read:
            volume = normalise_tomogram_on(tomogram, device)
            _sync(device)
        with Timer() as total:
            maps = predict_maps(
                timed, task.dense_maps, volume, sliding_window(config.patch), device=device, precision=precision
            )
            _sync(device)
        looking = torch.from_numpy(trained_looking_maps(root, run, tomogram)).to(device)
        with Timer() as on_device:
            task.decode(looking, spacing, run)
            _sync(device)
        with Timer() as on_host:
            task.decode(looking.cpu().numpy(), spacing, run)
        rows[precision] = {
            "read_normalise": read.seconds,
            "network": timed.seconds,
            "stitching": total.seconds - timed.seconds,
            "decoding": on_device.seconds,
            "host_decoding": on_host.seconds,
            "peak_gib": torch.cuda.max_memory_allocated(device) / 2**30,
        }
        del maps, volume, looking
    return rows


def stages_report(command, stages, networks, sizes, gpu, cpu_tflops, flops) -> str:
    """The markdown body of the "Inference stages, precision and bundles" section."""
    today = stages["fp32"]
    decoding = today["decoding"]
    lines = [
        *report_header(
            command,
            date_note=f"load average at the end {os.getloadavg()[0]:.1f} (2 cores shared with other jobs: absolute "
            "seconds carry tens of percent of noise)",
        ),
        "",
        "One simulated level-0 tomogram (184 x 630 x 630), default U-Net of `RunConfig()` untrained, windows "
        "64 x 128 x 128, overlap 0.25, batch 2; each precision in a fresh process (peak RSS its own). Decoding "
        'runs on trained-looking maps (see "Inference speed"), at the 0.05 candidate floor. fp32 is `--precision '
        'fp32`; precision auto is bf16 on CPUs with bf16 instructions (see "Inference precision quality" for '
        'what it costs in F4, and "CPU inference per level-0 tomogram" for the default path against the old one).',
        "",
        "**CPU, seconds per level-0 tomogram by stage**",
        "",
        "| path | read + normalise | network | stitching | decoding | total | vs today | peak RSS |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    base_total = today["read_normalise"] + today["network"] + today["stitching"] + decoding
    for precision, row in stages.items():
        total = row["read_normalise"] + row["network"] + row["stitching"] + decoding
        label = f"{precision}, scipy decoding"
        lines.append(
            f"| {label} | {row['read_normalise']:.1f} | {row['network']:.1f} | {row['stitching']:.1f} | "
            f"{decoding:.1f} | **{total:.0f}** | {base_total / total:.2f}x | {row['rss_gib']:.1f} GiB |"
        )
    lines += [
        "",
        f"Decoding on the CPU ({today['candidates']} candidates): scipy `maximum_filter` {decoding:.1f} s; torch "
        f"max-pool on the CPU {today['torch_decoding']:.1f} s (one map timed, times 6), "
        f"{today['torch_decoding'] / decoding:.1f}x scipy's, so the CPU keeps scipy (`PeakDecoding.backend` "
        "'auto'). Network share of the fp32 time: "
        f"{today['network'] / base_total:.0%}; {flops / 1e9:.1f} GFLOP per window at "
        f"{flops * today['windows'] / today['network'] / 1e9:.0f} GFLOP/s against a measured fp32 matmul rate of "
        f"{cpu_tflops * 1e3:.0f} GFLOP/s.",
        "",
        "**Network per window and per level-0 tomogram, U-Net and detector** (fastest of interleaved rounds, "
        "batch 2, scaled by each one's window count; untrained weights cost what trained ones do)",
        "",
        "| model | windows | fp32 s / window | bf16 s / window | fp32 network s / tomogram | bf16 network "
        "s / tomogram | vs the U-Net (fp32) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    unet = networks["U-Net"]
    for name, row in networks.items():
        lines.append(
            f"| {name} | {row['windows']} | {row['fp32']:.3f} | {row['bf16']:.3f} | "
            f"{row['fp32'] * row['windows']:.0f} | {row['bf16'] * row['windows']:.0f} | "
            f"{row['fp32'] * row['windows'] / (unet['fp32'] * unet['windows']):.2f}x |"
        )
    lines += [
        "",
        "**Checkpoint and bundle sizes** (default U-Net and detector; training checkpoint = weights + EMA "
        "weights + AdamW moments, as `fit` saves; export = `cryokit export` / what `kaggle bundle` ships)",
        "",
        "| model | training checkpoint | inference-only fp32 | inference-only fp16 (`--weights float16`) "
        "| inference-only int8 (`--weights int8`) |",
        "|---|---:|---:|---:|---:|",
    ]
    columns = ("training", "fp32", "fp16", "int8")
    for name, row in sizes.items():
        lines.append(f"| {name} | " + " | ".join(f"{row[k] / 1e6:.1f} MB" for k in columns) + " |")
    total = {k: sum(row[k] for row in sizes.values()) for k in columns}
    lines.append("| **bundle: U-Net + detector** | " + " | ".join(f"{total[k] / 1e6:.1f} MB" for k in columns) + " |")
    lines.append("")
    if gpu is None:
        lines += [
            "**GPU**: no GPU on this machine. The script's CUDA branch (`measure_gpu_stages`: each precision with "
            "the volume on the device, decoding on the device against maps to the host + scipy, the share of "
            "decoding, peak GPU memory) did not run; the GPU targets (decoding <= 10 % of the time, a model "
            "with flips TTA in <= 8 s on a T4) are unmeasured.",
            "",
            "| GPU path, level 0 | read + normalise | network | stitching | decoding | total | decoding share "
            "| peak GPU memory |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
            "| fp32 / bf16 / fp16 | no GPU on this machine | | | | | | |",
        ]
    else:
        name = torch.cuda.get_device_name()
        lines += [
            f"**GPU: {name}** (volume on the device; decoding on the device, torch)",
            "",
            "| precision | read + normalise | network | stitching | decoding (device) | decoding (host, today) "
            "| total | decoding share | peak GPU memory |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for precision, row in gpu.items():
            total = row["read_normalise"] + row["network"] + row["stitching"] + row["decoding"]
            lines.append(
                f"| {precision} | {row['read_normalise']:.2f} | {row['network']:.2f} | {row['stitching']:.2f} | "
                f"{row['decoding']:.2f} | {row['host_decoding']:.2f} | {total:.2f} | {row['decoding'] / total:.0%} | "
                f"{row['peak_gib']:.1f} GiB |"
            )
    return "\n".join(lines)


DECODING_TITLE = "Peak decoding on the CPU"


def _decode_all(maps: np.ndarray, spacing, dense: bool) -> tuple[float, list[np.ndarray]]:
    """Seconds to find the max-pool peaks of the 6 class maps at the candidate floor, and the peaks."""
    import cryokit.postprocess as postprocess
    from cryokit.coords import radius_angstrom_to_voxels
    from cryokit.particles import particle
    from cryokit.tasks import PeakDecoding

    decoding, share = PeakDecoding(), postprocess._DENSE_TILE_SHARE
    postprocess._DENSE_TILE_SHARE = 0.0 if dense else share  # 0: the whole map in one piece
    try:
        with Timer() as timer:
            found = [
                postprocess.find_peaks_maxpool(
                    maps[c],
                    decoding.radius_fraction * radius_angstrom_to_voxels(particle(name).radius_angstrom, spacing),
                    decoding.candidate_floor,
                )[0]
                for c, name in enumerate(PARTICLE_NAMES)
            ]
    finally:
        postprocess._DENSE_TILE_SHARE = share
    return timer.seconds, found


def decoding_comparison(root: Path, run: str, checkpoint: Path | None) -> list[dict]:
    """Dense max-filter against the sparse one (``cryokit.postprocess._local_maxima``) on the same maps:
    trained-looking level-0 maps, and a trained checkpoint's maps of ``run`` (at its level, and repeated 2x
    per axis as a stand-in for level-0 maps of the same model)."""
    import cryokit.postprocess as postprocess
    from cryokit.training.checkpoint import load_model

    tomogram = open_run_tomogram(root, "train", run, "denoised", 0)
    cases = [
        (
            "trained-looking maps, level 0",
            trained_looking_maps(root, run, tomogram),
            tomogram.voxel_spacing_angstrom_zyx,
        )
    ]
    if checkpoint is not None:
        loaded = load_model(checkpoint)
        level = open_run_tomogram(root, "train", run, "denoised", loaded.level)
        with torch.no_grad():
            maps = predict_maps(loaded.model, loaded.task.dense_maps, normalise_tomogram(level), loaded.window)
        maps = maps.numpy()
        spacing = level.voxel_spacing_angstrom_zyx
        cases.append((f"trained U-Net's maps, level {loaded.level}", maps, spacing))
        cases.append(
            (
                f"the same repeated 2x per axis ({' x '.join(map(str, np.asarray(maps.shape[1:]) * 2))})",
                maps.repeat(2, 1).repeat(2, 2).repeat(2, 3),
                [v / 2 for v in spacing],
            )
        )
    rows = []
    for name, maps, spacing in cases:
        floor = 0.05
        share = float(np.mean([(postprocess._tile_maxima(m, postprocess._PEAK_TILE) >= floor).mean() for m in maps]))
        dense_s, dense_peaks = _decode_all(maps, spacing, dense=True)
        sparse_s, sparse_peaks = _decode_all(maps, spacing, dense=False)
        same = all(np.array_equal(a, b) for a, b in zip(dense_peaks, sparse_peaks))
        rows.append(
            {
                "maps": name,
                "shape": maps.shape[1:],
                "tiles": share,
                "dense": dense_s,
                "sparse": sparse_s,
                "peaks": sum(len(p) for p in dense_peaks),
                "same": same,
            }
        )
        print(rows[-1])
    return rows


def decoding_report(command: str, rows: list[dict]) -> str:
    import cryokit.postprocess as postprocess

    tile, share = postprocess._PEAK_TILE, postprocess._DENSE_TILE_SHARE
    lines = [
        *report_header(command),
        "",
        "`find_peaks_maxpool` on the 6 class maps (candidate floor 0.05, NMS radius half the particle's, sub-voxel "
        "refinement), the max-filter in one piece (dense, today's before) against the sparse one (the filter runs "
        f"only on boxes around {tile}-voxel tiles whose maximum reaches the floor, grown by the kernel's half-width; "
        f"the whole map when more than {share:.0%} of the tiles do). Same maps, same process, one after the other.",
        "",
        "| maps | shape (z, y, x) | tiles reaching the floor | peaks | dense s | sparse s | speed-up | same peaks |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['maps']} | {' x '.join(map(str, row['shape']))} | {row['tiles']:.0%} | {row['peaks']} | "
            f"{row['dense']:.2f} | {row['sparse']:.2f} | {row['dense'] / row['sparse']:.1f}x | "
            f"{'yes' if row['same'] else 'NO'} |"
        )
    return "\n".join(lines)


def run_stages(args, command: str) -> int:
    torch.manual_seed(0)
    run = ensure_data(args.data)
    stages = {
        precision: in_fresh_process(measure_stages, args.data, run, precision, precision == "fp32")
        for precision in ("fp32", "bf16")
    }
    print(stages)
    spacing = open_run_tomogram(args.data, "train", run, "denoised", 0).voxel_spacing_angstrom_zyx
    networks = per_window_network(spacing, args.stage_rounds)
    print(networks)
    sizes = bundle_sizes(spacing, args.data / "bundle_sizes")
    print(sizes)
    model = build_model_and_task(RunConfig(), spacing)[0].eval()
    flops = forward_flops(model, (1, 1, *WINDOW))
    n = 2048
    a, b = torch.randn(n, n), torch.randn(n, n)
    cpu_tflops = 2 * n**3 / interleaved_best({"mm": lambda: torch.matmul(a, b)}, 5)["mm"] / 1e12
    gpu = measure_gpu_stages(args.data, run) if torch.cuda.is_available() else None
    body = stages_report(command, stages, networks, sizes, gpu, cpu_tflops, flops)
    print(body)
    update_section(STAGES_TITLE, body)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("/tmp/cryokit_bench_inference"))
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds of the per-window timings")
    parser.add_argument("--cost-rounds", type=int, default=2, help="interleaved rounds of the overlap/TTA timings")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (about a minute)")
    parser.add_argument(
        "--stages",
        action="store_true",
        help=f"only the section {STAGES_TITLE!r}: stages per precision, decoders, detector, bundle sizes",
    )
    parser.add_argument("--stage-rounds", type=int, default=3, help="interleaved rounds of the per-window timings")
    parser.add_argument(
        "--precision-quality",
        type=Path,
        metavar="QUALITY_ROOT",
        help=f"only the section {PRECISION_QUALITY_TITLE!r}, on a root written by benchmarks/quality.py",
    )
    parser.add_argument(
        "--decoding",
        type=Path,
        metavar="ROOT",
        help=f"only the section {DECODING_TITLE!r}, on a simulated root (with --checkpoint: its maps too)",
    )
    parser.add_argument("--decoding-run", help="--decoding: the run (default: the root's first)")
    parser.add_argument("--quality-out", type=Path, default=Path("/tmp/cryokit_precision_quality"))
    parser.add_argument("--epochs", type=int, default=24, help="--precision-quality: U-Net training epochs")
    parser.add_argument(
        "--checkpoint", type=Path, action="append", default=[], help="--precision-quality: a trained model (repeat)"
    )
    args = parser.parse_args(argv)
    command = " ".join([COMMAND, *(sys.argv[1:] if argv is None else argv)])
    if args.precision_quality:
        result = precision_quality(args.precision_quality, args.quality_out, args.epochs, args.checkpoint)
        body = precision_quality_report(command, result)
        print(body)
        update_section(PRECISION_QUALITY_TITLE, body)
        return 0
    if args.stages:
        return run_stages(args, command)
    if args.decoding:
        root = args.decoding
        run = args.decoding_run or list_runs(root, "train")[0]
        body = decoding_report(command, decoding_comparison(root, run, args.checkpoint[0] if args.checkpoint else None))
        print(body)
        update_section(DECODING_TITLE, body)
        return 0
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
