"""Scale-out on Dask: many small images and one volume in blocks, 1 vs 2 workers.

Every configuration runs in a fresh process (``--role``), so that peak memory is its own:

* ``loop``: a plain loop over the images in one process, torch's default threads
  (``run_batch(client=None)``, the same code as ``napari-segany auto`` per image);
* ``cluster-1`` / ``cluster-2``: ``napari_segany.distributed.run_batch`` on a
  ``LocalCluster`` of 1 or 2 worker processes (one thread each);
* ``overhead``: empty tasks on 2 workers (tasks/s the scheduler sustains, per-task cost);
* ``blocks-1`` / ``blocks-2`` / ``blocks-here``: ``segment_blocks`` on one volume, on 1 or 2
  workers or in this process, against ``tiled``: the single-process tiled run.

    .venv/bin/python bench/scale_out.py --images 12 --size 256 --volume 4 512 512

The model is ``sam_tiny`` (the real SAM architecture at 256 px input, random weights);
timings measure the machinery around the model, whose own cost is measured in
``bench/embed_throughput.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, write_json  # noqa: E402


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _discs(shape, n, seed):
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 40, shape).astype(np.uint8)
    yy, xx = np.mgrid[:shape[-2], :shape[-1]]
    for _ in range(n):
        cy, cx, r = rng.uniform(0, shape[-2]), rng.uniform(0, shape[-1]), rng.uniform(6, 24)
        img[..., (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 220
    return img


def _prepare(work: Path, n: int, size: int, vol: tuple[int, int, int]) -> None:
    import tifffile

    (work / "imgs").mkdir(parents=True, exist_ok=True)
    for k in range(n):
        tifffile.imwrite(work / "imgs" / f"i{k:03d}.tif", _discs((size, size), 12, k))
    tifffile.imwrite(work / "vol.tif", _discs(vol, 40, 99), photometric="minisblack")


def _opts(pps: int):
    from napari_segany.auto import AutoSettings
    from napari_segany.distributed import JobOptions

    return JobOptions(auto=AutoSettings(points_per_side=pps, pred_iou_thresh=0,
                                        stability_score_thresh=0), tile=256, halo=32)


def _role(args) -> dict:
    from napari_segany.distributed import (
        WorkerModel,
        collect_inputs,
        open_cluster,
        run_batch,
        segment_blocks,
    )

    work = Path(args.work)
    model = WorkerModel("sam_tiny", random_weights=True, device="cpu")
    opts = _opts(args.pps)
    role = args.role
    out: dict = {"role": role}
    if role in ("loop", "cluster-1", "cluster-2"):
        items = collect_inputs(work / "imgs", out_dir=work / f"out-{role}")
        if role == "loop":
            import torch

            out["torch_threads"] = torch.get_num_threads()
            run_batch(items[:1], options=opts, model=model)  # build the model, warm up
            items = items[1:]
            t0 = time.perf_counter()
            res = run_batch(items, options=opts, model=model)
            out["seconds"] = time.perf_counter() - t0
            out["peak_mib"] = [_peak_mib()]
        else:
            nw = int(role[-1])
            with open_cluster(n_workers=nw, dashboard=False, memory_limit=None,
                              timeout=60) as c:
                run_batch(items[:nw], options=opts, model=model, client=c.client)  # warm
                items = items[nw:]
                t0 = time.perf_counter()
                res = run_batch(items, options=opts, model=model, client=c.client)
                out["seconds"] = time.perf_counter() - t0
                out["peak_mib"] = sorted(c.client.run(_peak_mib).values())
        assert res.ok, res.failed
        out["images"] = len(items)
        out["images_per_s"] = len(items) / out["seconds"]
    elif role == "overhead":
        from napari_segany.distributed import open_cluster

        with open_cluster(n_workers=2, dashboard=False, memory_limit=None, timeout=60) as c:
            c.client.gather(c.client.map(_noop, range(20), pure=False))
            t0 = time.perf_counter()
            c.client.gather(c.client.map(_noop, range(args.tasks), pure=False))
            dt = time.perf_counter() - t0
        out.update(tasks=args.tasks, seconds=dt, tasks_per_s=args.tasks / dt,
                   ms_per_task=1000 * dt / args.tasks)
    elif role == "tiled":
        from napari_segany.distributed import BatchItem

        item = BatchItem("vol", str(work / "vol.tif"), str(work / "tiled.zarr"))
        t0 = time.perf_counter()
        res = run_batch([item], options=opts, model=model)
        out.update(seconds=time.perf_counter() - t0, peak_mib=[_peak_mib()],
                   objects=res.done[0]["objects"])
    else:  # blocks-N, blocks-here
        n = role.split("-")[1]
        dest = work / f"{role}.zarr"
        kw = dict(model=model, options=opts, tile=256, halo=32, chunk_size=256, keep=True)
        if n == "here":
            t0 = time.perf_counter()
            res = segment_blocks(str(work / "vol.tif"), str(dest), **kw)
            out.update(seconds=time.perf_counter() - t0, peak_mib=[_peak_mib()])
        else:
            with open_cluster(n_workers=int(n), dashboard=False, memory_limit=None,
                              timeout=60) as c:
                t0 = time.perf_counter()
                res = segment_blocks(str(work / "vol.tif"), str(dest), client=c.client, **kw)
                out["seconds"] = time.perf_counter() - t0
                out["peak_mib"] = sorted(c.client.run(_peak_mib).values())
                out["client_peak_mib"] = _peak_mib()
        run = Path(res.folder)
        out.update(blocks=res.blocks, objects=res.objects, tasks=sum(res.ran.values()),
                   run_folder_bytes=sum(p.stat().st_size for p in run.rglob("*")
                                        if p.is_file()))
    return out


def _noop(i):
    return i


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=12)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--volume", type=int, nargs=3, default=[4, 512, 512])
    ap.add_argument("--pps", type=int, default=8, help="points per side (segment everything)")
    ap.add_argument("--tasks", type=int, default=500, help="empty tasks (overhead)")
    ap.add_argument("--roles", nargs="*", default=["loop", "cluster-1", "cluster-2", "overhead",
                                                   "tiled", "blocks-here", "blocks-1",
                                                   "blocks-2"])
    ap.add_argument("--role", help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.role:
        print(json.dumps(_role(args)))
        return
    with tempfile.TemporaryDirectory() as work:
        _prepare(Path(work), args.images, args.size, tuple(args.volume))
        rows = []
        for role in args.roles:
            cmd = [sys.executable, __file__, "--role", role, "--work", work, "--pps",
                   str(args.pps), "--tasks", str(args.tasks)]
            got = subprocess.run(cmd, capture_output=True, text=True, env=os.environ)
            if got.returncode:
                sys.exit(f"{role} failed:\n{got.stderr[-3000:]}")
            row = json.loads(got.stdout.strip().splitlines()[-1])
            row["load_after"] = round(os.getloadavg()[0], 1)  # the machine may be shared
            rows.append(row)
            print(json.dumps(row), flush=True)
    path = write_json("scale_out.json", {"args": vars(args), "rows": rows,
                                         "machine_now": machine()})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
