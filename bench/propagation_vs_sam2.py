"""SAM2 propagation: napari-segany versus SAM2's own video predictor, same stack, same click.

The peer is ``SAM2VideoPredictor`` used as in SAM2's notebooks: the frames are written as
JPEGs into a temporary folder (for the peer only; napari-segany reads the array directly),
``init_state(folder)``, one click on frame 0, ``propagate_in_video``. Both sides use the same
synthetic (n, H, W) stack as ``bench/sam2_memory.py`` and the same model configuration with
random weights (compute cost and memory do not depend on weight values). Every run is a fresh
process; peak RSS is that process's ``ru_maxrss``. Time includes reading the frames (the
peer's ``init_state``; for us the lazy reads inside propagation), not writing the JPEGs.

    python bench/propagation_vs_sam2.py --frames 25 100 --who peer ours --out bench/results
    python bench/propagation_vs_sam2.py --frames 12 --objects 1 4 16 \
        --who peer peer_bf16 ours ours_fp32                               # many objects
    python bench/propagation_vs_sam2.py --device cuda --frames 200 1000   # on a GPU

``CPU s`` is the process's CPU time (``time.process_time``) over the same span: with one
thread per side (``OMP_NUM_THREADS=1``) it is the work done, and unlike the wall-clock time
it holds on a machine shared with other jobs.

``--objects K`` clicks K objects on frame 0 (one point each, spread over the plane) on
both sides. ``steady s/frame`` is the time per frame once SAM2's memory bank is full (from frame
8 on). ``peer_bf16`` runs the peer under CPU bfloat16 autocast (what ``ours`` uses on CPUs
with native bf16), ``ours_fp32`` forces napari-segany to float32: together they separate
the engineering (objects batched, shared work once per frame) from the precision.

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


#: Frames after which SAM2's memory bank is full (num_maskmem = 7: the steady state).
STEADY_FROM = 8


def _steady(stamps: list[float]) -> float | None:
    """Mean seconds per frame once the memory bank is full (None for short runs)."""
    if len(stamps) <= STEADY_FROM:
        return None
    return round((stamps[-1] - stamps[STEADY_FROM - 1]) / (len(stamps) - STEADY_FROM), 3)


def run_peer(n: int, model: str, size: int, device: str = "cpu", objects: int = 1,
             bf16: bool = False) -> dict:
    import numpy as np
    import torch
    from PIL import Image
    from sam2.build_sam import build_sam2_video_predictor

    sys.path.insert(0, str(HERE))
    from sam2_memory import LazyStack, object_points

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
        c0 = time.process_time()
        t0 = time.perf_counter()
        growth = []
        amp = (torch.autocast("cuda", dtype=torch.bfloat16) if cuda
               else torch.autocast("cpu", dtype=torch.bfloat16) if bf16
               else contextlib.nullcontext())
        with torch.inference_mode(), amp:
            state = predictor.init_state(video_path=tmp)
            t_init = time.perf_counter() - t0
            for k, pt in enumerate(object_points(objects, size)):
                predictor.add_new_points_or_box(
                    state, frame_idx=0, obj_id=k + 1, points=np.array([pt], np.float32),
                    labels=np.array([1], np.int32))
            count, stamps = 0, []
            for _idx, _ids, logits in predictor.propagate_in_video(state):
                masks = (logits[:, 0] > 0).cpu().numpy()
                count += int(masks.shape == (objects, size, size))
                stamps.append(time.perf_counter() - t0)
                if count % 5 == 0 or count == n:
                    growth.append([count, round(time.perf_counter() - t0, 1),
                                   round(_rss_now_mib(), 1)])
                    print(json.dumps({"progress": growth[-1]}), file=sys.stderr, flush=True)
        if cuda:
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        cpu = time.process_time() - c0
    extra = {"peak_gpu_mib": round(torch.cuda.max_memory_allocated() / 2**20, 1)} if cuda else {}
    return {
        "who": "sam2_video_predictor" + ("_bf16" if bf16 and not cuda else ""),
        "objects": objects, "precision": "bf16" if bf16 or cuda else "fp32",
        "plane_times_s": [round(t, 2) for t in stamps],
        "steady_s_per_frame": _steady(stamps), "frames": n, "written": count,
        "seconds": round(dt, 2), "cpu_s": round(cpu, 2), "init_state_s": round(t_init, 2),
        "fps": round(n / dt, 4),
        "s_per_frame": round(dt / n, 2), "cpu_s_per_frame": round(cpu / n, 2),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "rss_after_load_mib": round(rss0, 1), "rss_growth": growth, "device": device, **extra,
    }


def run_ours(n: int, model: str, size: int, device: str = "cpu", objects: int = 1,
             precision: str | None = None) -> dict:
    sys.path.insert(0, str(HERE))
    from sam2_memory import run_one

    row = run_one(n, model, _device(device), None, size, objects=objects, precision=precision)
    row["device"] = _device(device)
    row["who"] = "napari_segany" + ("_fp32" if precision == "fp32" else "")
    row["steady_s_per_frame"] = _steady(row["plane_times_s"])
    row["cpu_s_per_frame"] = round(row["cpu_s"] / n, 2)
    row["s_per_frame"] = round(row["seconds"] / n, 2)
    return row


WHO = {"peer": ("peer", False, None), "peer_bf16": ("peer", True, None),
       "ours": ("ours", False, None), "ours_fp32": ("ours", False, "fp32")}


def _one(who: str, n: int, objects: int, args: argparse.Namespace) -> dict:
    side, bf16, precision = WHO[who]
    if side == "peer":
        return run_peer(n, args.model, args.size, args.device, objects, bf16)
    return run_ours(n, args.model, args.size, args.device, objects, precision)


def _key(r: dict) -> tuple:
    return (r["who"], r["frames"], r.get("device", "cpu"), r.get("objects", 1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, nargs="+", default=[25, 100])
    ap.add_argument("--objects", type=int, nargs="+", default=[1],
                    help="numbers of objects (one click each on frame 0)")
    ap.add_argument("--who", nargs="+", default=["peer", "ours"], choices=sorted(WHO),
                    help="peer: SAM2VideoPredictor in float32 (bf16 autocast on CUDA); "
                         "peer_bf16: the same under CPU bf16 autocast; ours: napari-segany "
                         "at precision='auto'; ours_fp32: napari-segany forced to float32")
    ap.add_argument("--model", default="sam2.1_hiera_tiny", choices=sorted(CONFIGS))
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--one", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        who, n, objects = args.one[0], int(args.one[1]), int(args.one[2])
        print(json.dumps(_one(who, n, objects, args)))
        return
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "propagation_vs_sam2.json"
    meta = json.loads(path.read_text()) if path.exists() else {"rows": []}
    turn = 0
    for n in args.frames:
        for objects in args.objects:
            order = args.who if turn % 2 == 0 else args.who[::-1]  # alternate the sides
            turn += 1
            for who in order:
                cmd = [sys.executable, __file__, "--one", who, str(n), str(objects),
                       "--model", args.model, "--size", str(args.size), "--device", args.device]
                env = {k: v for k, v in os.environ.items() if k != "NAPARI_SEGANY_PRECISION"}
                proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
                if proc.returncode:
                    sys.exit(f"{who} with {n} frames, {objects} objects failed:\n"
                             f"{proc.stderr[-3000:]}")
                row = json.loads(proc.stdout.strip().splitlines()[-1])
                meta["rows"] = [r for r in meta["rows"] if _key(r) != _key(row)] + [row]
                print(json.dumps({k: v for k, v in row.items() if k != "plane_times_s"}),
                      flush=True)
                meta.update({"model": args.model, "size": args.size, "weights": "random",
                             "python": platform.python_version(), "cpus": os.cpu_count(),
                             "date": time.strftime("%Y-%m-%d")})
                path.write_text(json.dumps(meta, indent=2))
    print(f"\nSAM2 propagation, {args.model}, random weights (cost does not depend on weight "
          f"values), {args.size}x{args.size} planes")
    print(f"{'who':>26} {'device':>7} {'objects':>7} {'frames':>7} {'s':>8} {'s/frame':>8}"
          f" {'steady s/frame':>14} {'CPU s/frame':>11} {'peak RSS MiB':>13} {'peak GPU MiB':>13}")
    for r in sorted(meta["rows"], key=lambda r: (r.get("device", "cpu"), r["frames"],
                                                 r.get("objects", 1), r["who"])):
        gpu, steady = r.get("peak_gpu_mib"), r.get("steady_s_per_frame")
        print(f"{r['who']:>26} {r.get('device', 'cpu'):>7} {r.get('objects', 1):>7} "
              f"{r['frames']:>7} {r['seconds']:>8.1f} {r['s_per_frame']:>8.2f} "
              f"{'-' if steady is None else format(steady, '.2f'):>14} "
              f"{r.get('cpu_s_per_frame', float('nan')):>11.2f} "
              f"{r['peak_rss_mib']:>13.0f} {'-' if gpu is None else format(gpu, '.0f'):>13}")


if __name__ == "__main__":
    main()
