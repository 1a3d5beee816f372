"""Peak memory and speed of SAM2 memory propagation as the stack grows.

Runs napari-segany's SAM2 propagation (arrays in, lazy frame features, bounded state) over
synthetic stacks of several lengths, each in a fresh process, and prints a table of peak
resident memory (and peak GPU memory on CUDA) and frames per second. Random weights are
used unless --checkpoint is given: compute cost and memory do not depend on weight values.

    python bench/sam2_memory.py --frames 25 200 --model sam2.1_hiera_tiny --out bench/results

Writes ``sam2_memory.json`` in --out.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


class LazyStack:
    """A (n, H, W) uint16 stack whose planes are made when read (nothing held in memory)."""

    def __init__(self, n: int, size: int = 512) -> None:
        self.shape = (n, size, size)
        self.dtype = __import__("numpy").dtype("uint16")
        self.ndim = 3

    def __getitem__(self, key):  # noqa: ANN001
        import numpy as np

        key = key if isinstance(key, tuple) else (key,)
        first, rest = key[0], key[1:]
        if isinstance(first, (int, np.integer)):
            return self._plane(int(first))[rest] if rest else self._plane(int(first))
        planes = np.stack([self._plane(i) for i in range(self.shape[0])[first]])
        return planes[(slice(None),) + rest]

    def _plane(self, i: int):  # noqa: ANN202
        import numpy as np

        n, h, w = self.shape
        yy, xx = np.mgrid[0:h, 0:w]
        cy, cx = h * (0.3 + 0.4 * i / max(1, n - 1)), w * 0.5
        blob = ((yy - cy) ** 2 + (xx - cx) ** 2) < (h * 0.12) ** 2
        rng = np.random.default_rng(i)
        return (300 + 2500 * blob + rng.normal(0, 50, (h, w))).clip(0, 65535).astype(np.uint16)


def object_points(objects: int, size: int) -> list[list[float]]:
    """One click per object, spread over the plane (object 1 on the moving disc)."""
    pts = [[size * 0.5, size * 0.3]]
    side = max(2, int(np.ceil(np.sqrt(max(objects - 1, 1)))))
    for k in range(objects - 1):
        r, c = divmod(k, side)
        pts.append([size * (0.1 + 0.8 * c / (side - 1)), size * (0.1 + 0.8 * r / (side - 1))])
    return pts


def run_one(n: int, model: str, device: str, checkpoint: str | None, size: int,
            objects: int = 1, precision: str | None = None) -> dict:
    import numpy as np

    from napari_segany.engine import load_model
    from napari_segany.intensity import Normalizer
    from napari_segany.prompts import ObjectPrompt, PromptSet
    from napari_segany.propagate import propagate_sam2

    backend = (load_model(model, checkpoint=checkpoint, device=device, precision=precision)
               if checkpoint else
               load_model(model, random_weights=True, device=device, precision=precision))
    stack = LazyStack(n, size)
    norm = Normalizer.fit(stack)
    prompts = PromptSet()
    for k, pt in enumerate(object_points(objects, size)):
        prompts.add((0,), k + 1, ObjectPrompt(points=[pt], labels=[1]))
    cuda = backend.device.type == "cuda"
    if cuda:
        import torch

        torch.cuda.reset_peak_memory_stats()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    c0 = time.process_time()
    t0 = time.perf_counter()
    count, planes_done, stamps = 0, set(), []
    for res in propagate_sam2(lambda k: backend.embed(norm(np.asarray(stack[k]))), backend,
                              prompts, lead_shape=(n,), plane_shape=(size, size)):
        count += int(res.mask.shape == (size, size))
        if res.plane not in planes_done:
            planes_done.add(res.plane)
            stamps.append(time.perf_counter() - t0)
    if cuda:
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    cpu = time.process_time() - c0
    out = {
        "frames": n, "written": count, "seconds": round(dt, 2), "cpu_s": round(cpu, 2),
        "fps": round(n / dt, 3),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "rss_after_load_mib": round(rss0, 1), "device": str(backend.device),
        "objects": objects, "precision": backend.precision,
        "plane_times_s": [round(t, 2) for t in stamps],
    }
    if cuda:
        out["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, nargs="+", default=[25, 200])
    ap.add_argument("--model", default="sam2.1_hiera_tiny")
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--size", type=int, default=512, help="plane side in pixels")
    ap.add_argument("--out", type=Path, default=Path("bench/results"))
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.model, args.device, args.checkpoint, args.size)))
        return
    rows = []
    for n in args.frames:
        cmd = [sys.executable, __file__, "--one", str(n), "--model", args.model,
               "--device", args.device, "--size", str(args.size)]
        if args.checkpoint:
            cmd += ["--checkpoint", args.checkpoint]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
        if proc.returncode:
            sys.exit(f"run with {n} frames failed:\n{proc.stderr[-3000:]}")
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    base = rows[0]["peak_rss_mib"]
    weights = 'checkpoint' if args.checkpoint else 'random weights'
    print(f"\nSAM2 propagation, {args.model}, {weights}"
          f" (memory and speed do not depend on weight values), {args.size}x{args.size} planes")
    print(f"{'frames':>7} {'s':>8} {'frames/s':>9} {'peak RSS MiB':>13} {'vs first':>9}"
          + (f" {'peak GPU MiB':>13}" if "peak_gpu_mib" in rows[0] else ""))
    for r in rows:
        line = (f"{r['frames']:>7} {r['seconds']:>8.1f} {r['fps']:>9.3f} {r['peak_rss_mib']:>13.0f}"
                f" {r['peak_rss_mib'] / base:>9.2f}")
        if "peak_gpu_mib" in r:
            line += f" {r['peak_gpu_mib']:>13.0f}"
        print(line)
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {"model": args.model, "size": args.size, "python": platform.python_version(),
            "machine": platform.machine(), "cpus": os.cpu_count(), "rows": rows,
            "date": time.strftime("%Y-%m-%d")}
    (args.out / "sam2_memory.json").write_text(json.dumps(meta, indent=2))


if __name__ == "__main__":
    main()
