"""Device and precision: chosen once, at the edge; nothing else in cryokit calls ``.cuda()``.

A precision is one of ``PRECISIONS``: "fp32" (no autocast), "bf16" or "fp16" (autocast to that type),
or "auto": on CUDA bf16 where the hardware has it and fp16 elsewhere (a T4), fp32 when mixed precision
is off; on the CPU ``CPU_DEFAULT_PRECISION``. bf16 on this project's CPU runs the network 1.7-2.6x
faster with probabilities within about 0.02, but stays opt-in until the quality benchmark shows it
costs no more than 0.005 weighted F4 on held-out runs (docs/BENCHMARKS.md, "Inference stages").
"""

from __future__ import annotations

import contextlib

import torch

__all__ = [
    "PRECISIONS",
    "CPU_DEFAULT_PRECISION",
    "resolve_device",
    "native_bf16",
    "resolve_precision",
    "autocast_precision",
    "autocast",
]

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
CPU_DEFAULT_PRECISION = "fp32"
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


def resolve_precision(precision: str, device: torch.device | str, amp: bool = True, cpu_bf16: bool = False) -> str:
    """ "fp32", "bf16" or "fp16": ``precision`` itself, or what "auto" means on ``device``.

    Args:
        precision: one of ``PRECISIONS``.
        device: where the network runs.
        amp: "auto": mixed precision at all (on CUDA bf16 where native, else fp16), else fp32.
        cpu_bf16: "auto" on the CPU with ``amp``: bf16 instead of ``CPU_DEFAULT_PRECISION``.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "auto":
        return precision
    if torch.device(device).type == "cuda":
        return ("bf16" if native_bf16() else "fp16") if amp else "fp32"
    return "bf16" if cpu_bf16 and amp else CPU_DEFAULT_PRECISION


def autocast_precision(device: torch.device | str, precision: str):
    """The autocast context of ``precision`` (resolved as ``resolve_precision`` does) on ``device``."""
    device = torch.device(device)
    resolved = resolve_precision(precision, device)
    if resolved == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=_DTYPES[resolved])


def autocast(device: torch.device, enabled: bool = True, cpu_bf16: bool = False):
    """bf16 autocast on CUDA when supported (else fp16); on CPU nothing, or bf16 with ``cpu_bf16``."""
    return autocast_precision(device, resolve_precision("auto", device, enabled, cpu_bf16))


def native_bf16() -> bool:
    """bf16 in hardware (Ampere and later). A T4 only emulates it, slowly, yet ``is_bf16_supported()``
    says True there by default: ask without emulation (older torch has no such argument)."""
    try:
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    except TypeError:
        return bool(torch.cuda.is_bf16_supported())
