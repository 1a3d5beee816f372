"""SAM2 propagation: napari-segany versus SAM2's own video predictor, same stack, same click.

The peer is ``SAM2VideoPredictor`` used as in SAM2's notebooks: the frames are written as
JPEGs into a temporary folder (for the peer only; napari-segany reads the array directly),
``init_state(folder)``, one click on frame 0, ``propagate_in_video``. Both sides use the same
synthetic (n, H, W) stack as ``bench/sam2_memory.py`` and the same model configuration with
random weights (compute cost and memory do not depend on weight values). Every run is a fresh
process; peak RSS is that process's ``ru_maxrss``. Time includes reading the frames (the
peer's ``init_state``; for us the lazy reads inside propagation), not writing the JPEGs.

    python bench/propagation_vs_sam2.py --frames 25 100 --who peer ours --out bench/results
    python bench/propagation_vs_sam2.py --device cuda --frames 200 1000   # on a GPU

On a GPU (``--device cuda``) the peer runs as SAM2's notebooks set it up: under bfloat16
autocast with TF32 matmuls; ours uses the backend's own bf16 autocast. Peak GPU memory
(``torch.cuda.max_memory_allocated``) is recorded for both.

Writes ``propagation_vs_sam2.json`` in --out (rows are merged with rows already there, so
runs of different lengths can be made separately).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CONFIGS = {"sam2.1_hiera_tiny": "configs/sam2.1/sam2.1_hiera_t.yaml"}


def _rss_now_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def run_peer(n: int, model: str, size: int, device: str = "cpu") -> dict:
    import numpy as np
    import torch
    from PIL import Image
    from sam2.build_sam import build_sam2_video_predictor

    sys.path.insert(0, str(HERE))
    from sam2_memory import LazyStack

    from napari_segany.intensity import Normalizer

    device = _device(device)
    cuda = device == "cuda"
    predictor = build_sam2_video_predictor(CONFIGS[model], ckpt_path=None, device=device)
    if cuda:  # as in SAM2's notebooks
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.cuda.reset_peak_memory_stats()
    stack = LazyStack(n, size)
    norm = Normalizer.fit(stack)
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(n):  # the JPEG folder the notebooks start from (not timed)
            plane = norm(np.asarray(stack[k]))
            u8 = (np.clip(plane, 0, 1) * 255).astype(np.uint8) if plane.dtype != np.uint8 else plane
            if u8.ndim == 2:
                u8 = np.repeat(u8[..., None], 3, axis=-1)
            Image.fromarray(u8).save(Path(tmp) / f"{k:05d}.jpg", quality=95)
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        t0 = time.perf_counter()
        growth = []
        amp = (torch.autocast("cuda", dtype=torch.bfloat16) if cuda
               else contextlib.nullcontext())
        with torch.inference_mode(), amp:
            state = predictor.init_state(video_path=tmp)
            t_init = time.perf_counter() - t0
            predictor.add_new_points_or_box(
                state, frame_idx=0, obj_id=1,
                points=np.array([[size * 0.5, size * 0.3]], np.float32),
                labels=np.array([1], np.int32))
            count = 0
            for _idx, _ids, logits in predictor.propagate_in_video(state):
                mask = (logits[0, 0] > 0).cpu().numpy()
                count += int(mask.shape == (size, size))
                if count % 5 == 0 or count == n:
                    growth.append([count, round(time.perf_counter() - t0, 1),
                                   round(_rss_now_mib(), 1)])
                    print(json.dumps({"progress": growth[-1]}), file=sys.stderr, flush=True)
        if cuda:
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
    extra = {"peak_gpu_mib": round(torch.cuda.max_memory_allocated() / 2**20, 1)} if cuda else {}
    return {
        "who": "sam2_video_predictor", "frames": n, "written": count,
        "seconds": round(dt, 2), "init_state_s": round(t_init, 2), "fps": round(n / dt, 4),
        "s_per_frame": round(dt / n, 2),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "rss_after_load_mib": round(rss0, 1), "rss_growth": growth, "device": device, **extra,
    }


def run_ours(n: int, model: str, size: int, device: str = "cpu") -> dict:
    sys.path.insert(0, str(HERE))
    from sam2_memory import run_one

    row = run_one(n, model, _device(device), None, size)
    row["device"] = _device(device)
    row["who"] = "napari_segany"
    row["s_per_frame"] = round(row["seconds"] / n, 2)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, nargs="+", default=[25, 100])
    ap.add_argument("--who", nargs="+", default=["peer", "ours"], choices=["peer", "ours"])
    ap.add_argument("--model", default="sam2.1_hiera_tiny", choices=sorted(CONFIGS))
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        who, n = args.one[0], int(args.one[1])
        fn = run_peer if who == "peer" else run_ours
        print(json.dumps(fn(n, args.model, args.size, args.device)))
        return
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "propagation_vs_sam2.json"
    meta = json.loads(path.read_text()) if path.exists() else {"rows": []}
    for n in args.frames:
        for who in args.who:
            cmd = [sys.executable, __file__, "--one", who, str(n), "--model", args.model,
                   "--size", str(args.size), "--device", args.device]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode:
                sys.exit(f"{who} with {n} frames failed:\n{proc.stderr[-3000:]}")
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            ident = (row["who"], row["frames"], row.get("device", "cpu"))
            meta["rows"] = [r for r in meta["rows"]
                            if (r["who"], r["frames"], r.get("device", "cpu")) != ident] + [row]
            print(json.dumps(row), flush=True)
            meta.update({"model": args.model, "size": args.size, "weights": "random",
                         "python": platform.python_version(), "cpus": os.cpu_count(),
                         "date": time.strftime("%Y-%m-%d")})
            path.write_text(json.dumps(meta, indent=2))
    print(f"\nSAM2 propagation, {args.model}, random weights (cost does not depend on weight "
          f"values), {args.size}x{args.size} planes")
    print(f"{'who':>22} {'device':>7} {'frames':>7} {'s':>8} {'s/frame':>8} {'peak RSS MiB':>13}"
          f" {'peak GPU MiB':>13}")
    for r in sorted(meta["rows"], key=lambda r: (r.get("device", "cpu"), r["frames"], r["who"])):
        gpu = r.get("peak_gpu_mib")
        print(f"{r['who']:>22} {r.get('device', 'cpu'):>7} {r['frames']:>7} {r['seconds']:>8.1f}"
              f" {r['s_per_frame']:>8.2f} {r['peak_rss_mib']:>13.0f}"
              f" {'-' if gpu is None else format(gpu, '.0f'):>13}")


if __name__ == "__main__":
    main()
