"""Seconds per level-0 tomogram on the CPU: the path before the inference-speed work against today's default.

One full-size simulated tomogram (184 x 630 x 630, level 0, ``inference_speed.ensure_data``). For the default
U-Net of ``RunConfig()`` and the default detector (``MODEL_PRESETS["yolo3d"]``), untrained (a network costs
the same trained or not), each path runs in a fresh process (its own peak RSS), one after the other:

* before: fp32 on the CPU, every candidate above the 0.05 floor decoded, thresholds applied afterwards;
* now (the default): precision "auto", which is bf16 on a CPU with bf16 instructions
  (``cryokit.inference.device.cpu_native_bf16``) and fp32 elsewhere; the decoder's floors are the
  checkpoint's thresholds (``Task.decode(floors=...)``: the same picks, tested).

Stages: read + normalise, network (forward passes), stitching (the rest of ``predict_maps``: windows,
softmax, Gaussian blending) and decoding. Decoding time depends on the maps, so it is measured on a
trained U-Net's maps (``--checkpoint``, a level-1 model of ``benchmarks/quality.py``: its maps of
``--maps-run`` repeated 2x per axis to level-0 size, decoded with its tuned thresholds) and on
trained-looking maps (a Gaussian at every particle, noise under the floor). The detector decodes its own
(untrained) maps: a stride-4 grid, 1/64 of the voxels.

Run: ``.venv/bin/python benchmarks/cpu_path.py --checkpoint /tmp/cryokit_quality/unet_randomized/best.pt
--maps-data /tmp/cryokit_quality/data_randomized --maps-run TS_sim_1_0`` (writes the section
"CPU inference per level-0 tomogram" of docs/BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import report_header, update_section  # noqa: E402
from inference_speed import TimedModel, ensure_data, in_fresh_process, trained_looking_maps  # noqa: E402

from cryokit.config import MODEL_PRESETS, RunConfig, apply_overrides  # noqa: E402
from cryokit.data.normalise import normalise_tomogram  # noqa: E402
from cryokit.inference.device import cpu_default_precision, resolve_precision  # noqa: E402
from cryokit.inference.predict import Timer, predict_maps  # noqa: E402
from cryokit.io import open_run_tomogram  # noqa: E402
from cryokit.models.build import build_model_and_task, sliding_window  # noqa: E402

COMMAND = ".venv/bin/python benchmarks/cpu_path.py"
TITLE = "CPU inference per level-0 tomogram"
PATHS = {"before": ("fp32", False), "now": ("auto", True)}  # precision, decode at the thresholds


def trained_maps(checkpoint: Path, root: Path, run: str, precision: str) -> tuple[np.ndarray, dict, tuple]:
    """A trained checkpoint's class maps of ``run`` at its level, repeated 2x per axis (level-0 size), its
    thresholds (its default for classes it has none for) and the level-0 spacing."""
    from cryokit.training.checkpoint import load_model

    loaded = load_model(checkpoint)
    tomogram = open_run_tomogram(root, "train", run, "denoised", loaded.level)
    maps = predict_maps(
        loaded.model,
        loaded.task.dense_maps,
        normalise_tomogram(tomogram),
        loaded.window,
        loaded.task.output_stride,  # a stride-2 U-Net's maps are on its cell grid: what level 0 gives it too
        precision=precision,
    ).numpy()
    factor = 2**loaded.level
    for axis in (1, 2, 3):
        maps = maps.repeat(factor, axis)
    thresholds = {n: loaded.thresholds.get(n, loaded.default_threshold) for n in loaded.task.catalog.names}
    spacing = tuple(v / factor for v in tomogram.voxel_spacing_angstrom_zyx)
    return maps, thresholds, spacing


def measure(root: Path, run: str, preset: str, path: str, checkpoint: Path | None, maps_root, maps_run) -> dict:
    """The stages of one level-0 tomogram for ``preset`` on ``path`` (``PATHS``), in this (fresh) process."""
    precision, at_thresholds = PATHS[path]
    tomogram = open_run_tomogram(root, "train", run, "denoised", 0)
    with Timer() as read:
        volume = normalise_tomogram(tomogram)
    config = apply_overrides(RunConfig(), MODEL_PRESETS[preset])
    model, task = build_model_and_task(config, tomogram.voxel_spacing_angstrom_zyx)
    timed = TimedModel(model.eval())
    with Timer() as total:
        # predict_maps' default options: "auto" is bf16 where the CPU has it (InferenceOptions.cpu_bf16)
        maps = predict_maps(
            timed, task.dense_maps, volume, sliding_window(config.patch), task.output_stride, precision=precision
        )
    row = {
        "precision": resolve_precision(precision, "cpu", cpu_bf16=True),
        "read_normalise": read.seconds,
        "network": timed.seconds,
        "stitching": total.seconds - timed.seconds,
        "windows": timed.windows,
    }
    spacing = tomogram.voxel_spacing_angstrom_zyx
    floors = {n: config.postprocess.default_threshold for n in task.catalog.names} if at_thresholds else None
    if preset == "yolo3d":
        with Timer() as decode:
            task.decode(maps, spacing, run, floors)
        row["decoding"] = decode.seconds
    else:
        del maps
        looking = trained_looking_maps(root, run, tomogram)
        with Timer() as decode:
            row["looking_picks"] = len(task.decode(looking, spacing, run, floors))
        row["looking_decoding"] = decode.seconds
        del looking
        if checkpoint is not None:
            maps, thresholds, spacing = trained_maps(checkpoint, maps_root, maps_run, precision)
            with Timer() as decode:
                picks = task.decode(maps, spacing, maps_run, thresholds if at_thresholds else None)
            row["decoding"] = decode.seconds
            row["picks"] = int(sum((picks["score"] >= picks["particle_type"].map(thresholds)).to_numpy()))
        else:
            row["decoding"] = row["looking_decoding"]
    row["rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return row


def window_gflops() -> dict[str, float]:
    """GFLOP of one 64 x 128 x 128 window of the default U-Net and the default detector (``forward_flops``)."""
    from cryokit.inference.speed import forward_flops

    gflops = {}
    for name, preset in (("U-Net", "unet"), ("YOLO3D detector", "yolo3d")):
        model, _ = build_model_and_task(apply_overrides(RunConfig(), MODEL_PRESETS[preset]), (10.0, 10.0, 10.0))
        gflops[name] = forward_flops(model.eval(), (1, 1, 64, 128, 128)) / 1e9
    return gflops


def report(command: str, rows: dict, checkpoint: Path | None, gflops: dict[str, float]) -> str:
    def total(r):
        return r["read_normalise"] + r["network"] + r["stitching"] + r["decoding"]

    lines = [
        *report_header(command, date_note=f"load average at the end {os.getloadavg()[0]:.1f}"),
        "",
        "One simulated level-0 tomogram (184 x 630 x 630), untrained default networks (windows 64 x 128 x 128, "
        "overlap 0.25, batch 2), each path in a fresh process, one after the other. Before: fp32, every "
        "candidate above the 0.05 floor decoded. Now (the default): precision auto, which is "
        f"{cpu_default_precision()} on this CPU (bf16 where the CPU has bf16 instructions), and the decoder's "
        "floors at the thresholds (the same picks). "
        + (
            f"U-Net decoding on a trained U-Net's maps (`{checkpoint}`, level 1, repeated 2x per axis to level-0 "
            "size) with its tuned thresholds."
            if checkpoint
            else "U-Net decoding on trained-looking maps."
        ),
        "",
        "| model | path | precision | read + normalise | network | stitching | decoding | total | vs before "
        "| peak RSS |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (name, path), row in rows.items():
        before = rows[(name, "before")]
        lines.append(
            f"| {name} | {path} | {row['precision']} | {row['read_normalise']:.1f} | {row['network']:.1f} | "
            f"{row['stitching']:.1f} | {row['decoding']:.1f} | **{total(row):.1f}** | "
            f"{total(before) / total(row):.2f}x | {row['rss_gib']:.1f} GiB |"
        )
    unet, detector = rows[("U-Net", "now")], rows[("YOLO3D detector", "now")]
    lines += [
        "",
        f"Detector per tomogram against the U-Net, both on today's default: {total(detector) / total(unet):.2f}x. "
        f"One window costs the detector {gflops['YOLO3D detector']:.0f} GFLOP against the U-Net's "
        f"{gflops['U-Net']:.1f} ({gflops['YOLO3D detector'] / gflops['U-Net']:.0f}x; most of it the MedicalNet "
        "ResNet-18's dilated 512-channel layer4 at stride 8); the U-Net's thin full-resolution layers run far "
        "from the matmul rate, the detector's wide ones near it, so the time ratio is smaller than the FLOP "
        "ratio but cannot reach 2x without a lighter backbone. "
        "U-Net decoding on trained-looking maps (a Gaussian at each particle): "
        + ", ".join(
            f"{path} {rows[('U-Net', path)]['looking_decoding']:.1f} s ({rows[('U-Net', path)]['looking_picks']} picks)"
            for path in PATHS
        )
        + (
            "; on the trained maps both paths keep "
            + " and ".join(str(rows[("U-Net", path)]["picks"]) for path in PATHS)
            + " picks over the thresholds."
            if checkpoint
            else "."
        ),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("/tmp/cryokit_bench_inference"))
    parser.add_argument("--checkpoint", type=Path, help="a trained U-Net (benchmarks/quality.py) for decoding")
    parser.add_argument("--maps-data", type=Path, help="the root the checkpoint's maps come from")
    parser.add_argument("--maps-run", help="the run of --maps-data the checkpoint's maps come from")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    run = ensure_data(args.data)
    rows = {}
    for name, preset in (("U-Net", "unet"), ("YOLO3D detector", "yolo3d")):
        for path in PATHS:
            rows[(name, path)] = in_fresh_process(
                measure, args.data, run, preset, path, args.checkpoint, args.maps_data, args.maps_run
            )
            print(name, path, rows[(name, path)], flush=True)
    command = " ".join([COMMAND, *(sys.argv[1:] if argv is None else argv)])
    body = report(command, rows, args.checkpoint, window_gflops())
    print(body)
    update_section(TITLE, body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
