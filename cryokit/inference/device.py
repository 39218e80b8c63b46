"""Device and precision: chosen once, at the edge; nothing else in cryokit calls ``.cuda()``.

On the CPU autocast is a no-op unless bf16 is asked for; on CUDA it is bf16 where the hardware has it
and fp16 elsewhere (a T4).
"""

from __future__ import annotations

import contextlib

import torch

__all__ = ["resolve_device", "native_bf16", "autocast"]


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


def autocast(device: torch.device, enabled: bool = True, cpu_bf16: bool = False):
    """bf16 autocast on CUDA when supported (else fp16); on CPU nothing, or bf16 with ``cpu_bf16``."""
    if enabled and cpu_bf16 and device.type == "cpu":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    if device.type != "cuda" or not enabled:
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if native_bf16() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


def native_bf16() -> bool:
    """bf16 in hardware (Ampere and later). A T4 only emulates it, slowly, yet ``is_bf16_supported()``
    says True there by default: ask without emulation (older torch has no such argument)."""
    try:
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    except TypeError:
        return bool(torch.cuda.is_bf16_supported())
