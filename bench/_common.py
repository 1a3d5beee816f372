"""Helpers shared by the benchmark scripts (not part of the package)."""

from __future__ import annotations

import json
import os
import platform
import resource
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
WEIGHTS_NOTE = ("random weights: compute cost and memory do not depend on weight values, "
                "so the timings hold for real checkpoints")


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (ru_maxrss, Linux KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_now_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def machine() -> dict:
    import numpy
    import zarr

    info = {"python": platform.python_version(), "machine": platform.machine(),
            "cpus": os.cpu_count(), "numpy": numpy.__version__, "zarr": zarr.__version__,
            "date": time.strftime("%Y-%m-%d"), "gpu": None}
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:  # pragma: no cover
        pass
    try:
        with open("/proc/cpuinfo") as fh:
            info["cpu"] = next(ln.split(":", 1)[1].strip() for ln in fh if "model name" in ln)
    except (OSError, StopIteration):  # pragma: no cover
        pass
    return info


def write_json(name: str, payload: dict, out: Path | None = None) -> Path:
    out = out or RESULTS
    out.mkdir(parents=True, exist_ok=True)
    path = out / name
    path.write_text(json.dumps({"machine": machine(), "note": WEIGHTS_NOTE, **payload}, indent=2))
    return path


def synthetic_volume(n: int, size: int = 512, seed: int = 0):
    """An in-memory (n, size, size) uint16 stack with one bright moving disc."""
    import numpy as np

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    vol = np.empty((n, size, size), np.uint16)
    for k in range(n):
        cy, cx = size * (0.3 + 0.4 * k / max(1, n - 1)), size * 0.5
        blob = ((yy - cy) ** 2 + (xx - cx) ** 2) < (size * 0.12) ** 2
        vol[k] = (300 + 2500 * blob + rng.normal(0, 50, (size, size))).clip(0, 65535)
    return vol
