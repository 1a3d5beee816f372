"""Device choice (cuda > mps > cpu) and the compute precision.

Precisions
----------
``"fp32"``
    Plain float32 everywhere: results equal those of segment-anything and sam2 run as
    their documentation shows on a CPU.
``"bf16"``
    bfloat16 autocast (matmuls and convolutions in bf16, reductions in float32), as SAM2's
    own notebooks and evaluation scripts run on GPUs.
``"fp16"``
    float16 autocast (CUDA only).
``"auto"``
    bf16 on CUDA GPUs that support it (fp16 on older ones); on the CPU, bf16 where the CPU
    computes bf16 natively (AVX512-BF16 or AMX, see :func:`cpu_has_native_bf16`) and
    float32 elsewhere (emulated bf16 is slower than float32); float32 on Apple MPS.

``$NAPARI_SEGANY_PRECISION`` sets the precision when none is given (``precision=None``).
"""

from __future__ import annotations

import contextlib
import functools
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["ENV_PRECISION", "PRECISIONS", "autocast", "cpu_has_native_bf16",
           "precision_name", "requested_precision", "resolve_device", "resolve_precision"]

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
#: Environment variable giving the precision when a caller gives none.
ENV_PRECISION = "NAPARI_SEGANY_PRECISION"

#: /proc/cpuinfo flags of native bf16 matrix arithmetic on x86.
_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def resolve_device(device: Any = None) -> torch.device:
    """Pick the compute device.

    Parameters
    ----------
    device : str, torch.device or None
        ``None`` or ``"auto"`` picks CUDA when available, then Apple MPS, then the CPU.
        An explicit device that is not available raises a :class:`ValueError`.
    """
    import torch

    if device is None or (isinstance(device, str) and device.lower() == "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"unknown device {device!r}; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"
        ) from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but no CUDA GPU is available; use 'cpu'")
    if dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ValueError("device 'mps' was asked for but MPS is not available; use 'cpu'")
    return dev


def _cpuinfo_flags(path: str = "/proc/cpuinfo") -> frozenset[str]:
    try:
        with open(path) as fh:
            for line in fh:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 matrix products natively.

    True on x86 CPUs with AVX512-BF16 (e.g. AMD Zen 4 and later, Intel Cooper Lake) or AMX
    (Intel Sapphire Rapids and later), detected through torch's own CPU feature checks
    (cpuinfo, the library oneDNN dispatches on) or, in torch builds without them, the
    flags of ``/proc/cpuinfo``. Elsewhere (most laptop and desktop CPUs, Apple silicon)
    torch emulates bf16, which is slower than float32.
    """
    import torch

    checks = [getattr(torch.cpu, n, None)
              for n in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    checks = [c for c in checks if callable(c)]
    if checks:
        try:
            return any(bool(c()) for c in checks)
        except Exception:  # pragma: no cover - an odd torch build: fall back to the flags
            pass
    return bool(_BF16_FLAGS & _cpuinfo_flags())


def requested_precision(precision: str | None) -> str:
    """``precision``, or ``$NAPARI_SEGANY_PRECISION`` when it is None (default ``"auto"``)."""
    if precision is None:
        precision = os.environ.get(ENV_PRECISION, "").strip().lower() or "auto"
        if precision not in PRECISIONS:
            raise ValueError(f"${ENV_PRECISION} must be one of {PRECISIONS}, got {precision!r}")
    return precision


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device``; ``None`` means float32.

    ``"auto"`` is bf16 on CUDA GPUs that support it, fp16 on older CUDA GPUs, bf16 on CPUs
    with native bf16 (:func:`cpu_has_native_bf16`), and float32 on other CPUs and MPS.
    """
    import torch

    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "fp32":
        return None
    if precision == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if device.type == "cpu" and cpu_has_native_bf16():
            return torch.bfloat16
        return None
    if device.type == "cpu" and precision == "fp16":
        raise ValueError("fp16 autocast is not supported on the CPU; use 'fp32' or 'bf16'")
    return torch.bfloat16 if precision == "bf16" else torch.float16


def precision_name(dtype: torch.dtype | None) -> str:
    """``"fp32"``, ``"bf16"`` or ``"fp16"`` for an autocast dtype (None: float32)."""
    if dtype is None:
        return "fp32"
    return {"torch.bfloat16": "bf16", "torch.float16": "fp16"}.get(str(dtype), str(dtype))


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """A context manager running its body in ``dtype`` autocast (or plain float32)."""
    import torch

    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
