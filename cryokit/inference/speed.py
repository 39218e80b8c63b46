"""Speed switches of whole-tomogram inference, and the arithmetic that costs a tomogram.

``InferenceOptions`` holds the switches ``cryokit.inference.predict.predict_maps`` and ``predict_runs`` take;
its defaults give the plain path's maps. The figures in the docstrings come from
``benchmarks/inference_speed.py`` (section "Inference speed" of docs/BENCHMARKS.md), measured on a
2-core AMD EPYC (Zen 4, AVX512-BF16) shared with other jobs, default U-Net (16, 32, 64, 128), windows
of 64 x 128 x 128, ratios of runs side by side in one process.

``count_windows`` and ``forward_flops`` give the work of one pass over a tomogram: windows times the
FLOPs of one window, from which a GPU's matrix throughput gives a floor on the seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

__all__ = ["InferenceOptions", "prepare_for_inference", "count_windows", "forward_flops"]


@dataclass(frozen=True)
class InferenceOptions:
    """Speed switches of whole-tomogram inference; the defaults give the plain path's numbers.

    Speed-ups per window on the CPU over five runs of the benchmark, each timing the options side by
    side (docs/BENCHMARKS.md, "Inference speed", holds the quietest run); on CUDA the benchmark's GPU
    branch times them. ``channels_last`` and ``compile`` stay off until a measurement says otherwise;
    ``cpu_bf16`` is on (bf16 where the CPU has it natively, fp32 elsewhere); ``volume_on_device`` is
    on, because the host-side stitching it removes costs far more than a GPU's network time (FLOP floor
    0.03 s on a T4).

    Attributes:
        channels_last: run the windows and the network in ``torch.channels_last_3d`` memory format
            (same maps within 1e-5). CPU: 0.85-1.15x, within the noise, so off; on CUDA it lets cuDNN
            pick NDHWC tensor-core kernels under fp16 autocast (the usual win, unmeasured here).
        compile: ``torch.compile`` each model once (``prepare_for_inference``; same maps within 1e-5).
            CPU: 0.8-1.4x per window (1.2x in the quietest run), for 5 s (warm inductor cache) to 60 s
            (cold) of compiling and a recompile per new batch shape, so off.
        cpu_bf16: precision "auto" on the CPU means bf16 where the CPU has bf16 instructions
            (``cryokit.inference.device.cpu_native_bf16``: AVX512-BF16 or AMX), fp32 elsewhere. 2.3x per
            window on this Zen 4 CPU with AVX512-BF16; class probabilities move by up to about 0.02,
            which cost the quality benchmark's trained U-Net 0.004 weighted F4 and its detector nothing
            (with the thresholds training tuned). False: fp32 on every CPU (training's validation).
        volume_on_device: on a GPU, normalise the tomogram there once, then cut windows and stitch
            maps there (``cryokit.data.normalise.normalise_tomogram_on``): no host-device copy per window
            batch and no stitching on the host, which takes 6-23 s of a level-0 tomogram on 2 CPU
            cores. Ignored on the CPU, where torch's normalisation was 1.0-1.9x slower than numpy's.
    """

    channels_last: bool = False
    compile: bool = False
    cpu_bf16: bool = True
    volume_on_device: bool = True


def prepare_for_inference(model: nn.Module, options: InferenceOptions) -> nn.Module:
    """``model`` in eval mode, in channels-last format and compiled as ``options`` ask (once per model).

    The memory format is changed in place (the weights keep their values); ``torch.compile`` returns a
    wrapper sharing the weights, so call this once and reuse the result for every tomogram.
    """
    model = model.eval()
    if options.channels_last:
        model = model.to(memory_format=torch.channels_last_3d)
    if options.compile:
        model = torch.compile(model, dynamic=False)
    return model


def count_windows(shape_zyx: Sequence[int], size_zyx: Sequence[int], overlap: float, output_stride: int = 1) -> int:
    """Number of sliding windows ``cryokit.inference.sliding_window.sliding_window_maps`` runs over a (Z, Y, X) volume.

    Per axis MONAI places ``ceil((n - w) / interval) + 1`` windows (one if the axis fits in a window),
    with the interval ``int(w * (1 - overlap))`` rounded down to whole output cells.
    """
    total = 1
    for n, w in zip(shape_zyx, size_zyx):
        n = max(int(w), math.ceil(int(n) / output_stride) * output_stride)
        interval = min(int(w), max(output_stride, int(w * (1 - overlap)) // output_stride * output_stride))
        total *= 1 if n <= w else math.ceil((n - w) / interval) + 1
    return total


def forward_flops(model: nn.Module, input_shape: Sequence[int], device: torch.device | str = "cpu") -> int:
    """FLOPs of one forward pass of ``model`` on a zero tensor of ``input_shape`` (B, C, Z, Y, X).

    Counted by ``torch.utils.flop_counter.FlopCounterMode``: convolutions (transposed too) and matrix
    products, a multiply-add counting 2, so a Conv3d costs ``2 * k^3 * C_in * C_out`` per output voxel;
    normalisation, activations and biases are not counted (they are memory-bound, not matrix work).
    """
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(tuple(input_shape), device=device))
    return int(counter.get_total_flops())
