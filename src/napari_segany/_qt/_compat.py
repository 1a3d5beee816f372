"""Work around a crash between Triton's bundled LLVM and Mesa's LLVM in one process.

On Linux, napari's canvas may run on Mesa (llvmpipe, or radeonsi), which loads
``libLLVM``. torchvision (imported by segment-anything and sam2) imports
``torch._dynamo``, which imports ``triton`` when it is installed (CUDA builds of torch
ship it), and loading Triton's own LLVM into a process that already holds Mesa's one
crashes with a segmentation fault. Inference here never needs Triton (it only compiles
GPU kernels for ``torch.compile``), so when Mesa's LLVM is already loaded and Triton
is not, Triton is hidden from this process: ``import triton`` then raises ImportError
and torch proceeds without it. Set ``NAPARI_SEGANY_KEEP_TRITON=1`` to opt out.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys

__all__ = ["avoid_llvm_clash"]

log = logging.getLogger(__name__)


def _llvm_loaded() -> bool:
    try:
        with open("/proc/self/maps") as f:
            return any("libLLVM" in line for line in f)
    except OSError:
        return False


def avoid_llvm_clash() -> bool:
    """Hide Triton when importing it would crash this process; True when it was hidden."""
    if (not sys.platform.startswith("linux") or "triton" in sys.modules
            or os.environ.get("NAPARI_SEGANY_KEEP_TRITON", "").lower() in ("1", "true", "yes")):
        return False
    try:
        if importlib.util.find_spec("triton") is None:
            return False
    except (ImportError, ValueError):
        return False
    if not _llvm_loaded():
        return False
    sys.modules["triton"] = None  # type: ignore[assignment]  # import triton -> ImportError
    log.warning("napari-segany: Triton hidden from this process (its LLVM would clash with "
                "the OpenGL driver's); torch.compile GPU kernels are unavailable. Set "
                "NAPARI_SEGANY_KEEP_TRITON=1 to keep it.")
    return True
