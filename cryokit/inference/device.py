"""Device and precision: chosen once, at the edge; nothing else in cryokit calls ``.cuda()``.

A precision is one of ``PRECISIONS``: "fp32" (no autocast), "bf16" or "fp16" (autocast to that type),
or "auto": on CUDA bf16 where the hardware has it and fp16 elsewhere (a T4), fp32 when mixed precision
is off; on the CPU ``cpu_default_precision()`` for inference: bf16 where the CPU has bf16 instructions
(AVX512-BF16 or AMX), fp32 elsewhere (emulated bf16 is slower than fp32). On this project's Zen 4 CPU
bf16 runs the default U-Net 2.5x faster (a level-0 tomogram in 29.7 s against 66.1 s) and cost the
quality benchmark's trained U-Net 0.004 weighted F4 and its detector nothing (0.0005 gained) on the
held-out runs, with the thresholds training tuned (docs/BENCHMARKS.md, "Inference precision quality"
and "CPU inference per level-0 tomogram").
Training and its validation passes stay fp32 on the CPU, so thresholds are tuned on exact maps.
"""

from __future__ import annotations

import contextlib

import torch

__all__ = [
    "PRECISIONS",
    "cpu_native_bf16",
    "cpu_default_precision",
    "resolve_device",
    "native_bf16",
    "resolve_precision",
    "autocast_precision",
    "autocast",
]

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(name: str = "auto") -> torch.device:
    """ "auto" picks CUDA when present; otherwise the named device, checked to exist here.

    Raises ValueError (one line) for a name torch does not know, or a CUDA device this machine lacks.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"device {name!r} is not a device (use auto, cpu, cuda or cuda:N): {error}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            built = "built without CUDA" if torch.version.cuda is None else "sees no GPU"
            raise ValueError(f"device {name!r}: no CUDA GPU here (torch {torch.__version__} {built}); use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


def cpu_native_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether this CPU has bf16 matrix instructions (AVX512-BF16 or AMX-BF16), read from the Linux CPU flags.

    oneDNN runs bf16 convolutions on other AVX-512 CPUs too, by emulation and slower than fp32, so only
    these flags count; elsewhere (macOS, Windows, Arm) the answer is False and the CPU default stays fp32.
    """
    try:
        with open(cpuinfo) as lines:
            for line in lines:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def cpu_default_precision() -> str:
    """What "auto" means for inference on this CPU: "bf16" where it is native (``cpu_native_bf16``), else "fp32"."""
    return "bf16" if cpu_native_bf16() else "fp32"


def resolve_precision(precision: str, device: torch.device | str, amp: bool = True, cpu_bf16: bool = False) -> str:
    """ "fp32", "bf16" or "fp16": ``precision`` itself, or what "auto" means on ``device``.

    Args:
        precision: one of ``PRECISIONS``.
        device: where the network runs.
        amp: "auto": mixed precision at all (on CUDA bf16 where native, else fp16), else fp32.
        cpu_bf16: "auto" on the CPU with ``amp``: ``cpu_default_precision()`` (bf16 where native), instead of
            fp32. Inference passes it (``InferenceOptions.cpu_bf16``); training and validation do not.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "auto":
        return precision
    if torch.device(device).type == "cuda":
        return ("bf16" if native_bf16() else "fp16") if amp else "fp32"
    return cpu_default_precision() if cpu_bf16 and amp else "fp32"


def autocast_precision(device: torch.device | str, precision: str):
    """The autocast context of ``precision`` (resolved as ``resolve_precision`` does) on ``device``."""
    device = torch.device(device)
    resolved = resolve_precision(precision, device)
    if resolved == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=_DTYPES[resolved])


def autocast(device: torch.device, enabled: bool = True, cpu_bf16: bool = False):
    """bf16 autocast on CUDA when supported (else fp16); on CPU nothing, or bf16 with ``cpu_bf16`` where native."""
    return autocast_precision(device, resolve_precision("auto", device, enabled, cpu_bf16))


def native_bf16() -> bool:
    """bf16 in hardware (Ampere and later). A T4 only emulates it, slowly, yet ``is_bf16_supported()``
    says True there by default: ask without emulation (older torch has no such argument)."""
    try:
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    except TypeError:
        return bool(torch.cuda.is_bf16_supported())
