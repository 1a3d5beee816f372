"""Labels at scale: a (n, 2048, 2048) uint32 store written plane by plane, opened in napari.

Write (fresh process): ``LabelsStore.create`` of shape (n, H, W) uint32 (n=1000 at 2048x2048
is 16 GiB logical), then for every plane a few random disc objects are painted exactly as
``Session.propagate`` writes propagation results (``store.paint(plane, mask, obj_id,
overlap="keep")`` + ``store.set_object``). Reports planes/s, peak RSS and bytes on disk.

Open (fresh process, needs a display, e.g. ``xvfb-run -a``): ``napari.Viewer(show=False)``,
then the store is opened through this plugin's reader contribution
(``napari_segany._napari.reader.get_reader``) and added as a Labels layer; RSS before/after and
the time to open are reported. The layer is backed by the zarr array: planes are read on
demand.

    xvfb-run -a python bench/labels_scale.py --planes 1000 --size 2048

Writes ``labels_scale.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import peak_rss_mib, rss_now_mib, write_json  # noqa: E402


def write(path: Path, n: int, size: int, objects: int, budget_s: float | None) -> dict:
    import numpy as np

    from napari_segany.storage import LabelsStore

    rss0 = rss_now_mib()
    store = LabelsStore.create(path, (n, size, size))
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    done = 0
    for k in range(n):
        for oid in range(1, objects + 1):
            r = int(rng.integers(size // 40, size // 10))
            cy, cx = (int(v) for v in rng.integers(r, size - r, 2))
            mask = np.zeros((size, size), bool)
            yy, xx = np.ogrid[-r:r + 1, -r:r + 1]
            mask[cy - r:cy + r + 1, cx - r:cx + r + 1] = yy * yy + xx * xx <= r * r
            store.paint((k,), mask, oid, overlap="keep")
            store.set_object(oid)
        done += 1
        if budget_s and time.perf_counter() - t0 > budget_s:
            break
    dt = time.perf_counter() - t0
    disk = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return {"planes_total": n, "planes_written": done, "objects_per_plane": objects,
            "plane": [size, size], "logical_gib": round(n * size * size * 4 / 2**30, 2),
            "write_s": round(dt, 1), "planes_per_s": round(done / dt, 2),
            "peak_rss_mib": round(peak_rss_mib(), 1), "rss_before_mib": round(rss0, 1),
            "disk_mib": round(disk / 2**20, 1)}


def open_in_napari(path: Path) -> dict:
    import numpy as np

    rss_start = rss_now_mib()
    import napari

    from napari_segany._napari.reader import get_reader

    viewer = napari.Viewer(show=False)
    rss0 = rss_now_mib()
    t0 = time.perf_counter()
    reader = get_reader(str(path))
    assert reader is not None, "the plugin's reader did not accept the store"
    (data, meta, kind), = reader(str(path))
    layer = viewer.add_labels(data, **meta) if kind == "labels" else None
    viewer.dims.set_current_step(0, data.shape[0] // 2)
    t_open = time.perf_counter() - t0
    rss1 = rss_now_mib()
    plane = np.asarray(layer.data[data.shape[0] // 2])  # one plane read back
    out = {"open_s": round(t_open, 2), "rss_after_napari_import_mib": round(rss0, 1),
           "rss_after_open_mib": round(rss1, 1), "open_delta_mib": round(rss1 - rss0, 1),
           "rss_before_import_mib": round(rss_start, 1),
           "layer_data_type": type(layer.data).__module__ + "." + type(layer.data).__name__,
           "plane_objects": int(len(np.unique(plane)) - 1), "layer_shape": list(layer.data.shape)}
    viewer.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--planes", type=int, default=1000)
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--objects", type=int, default=4)
    ap.add_argument("--budget-s", type=float, default=None,
                    help="stop writing after this many seconds (rate and RSS still reported)")
    ap.add_argument("--dir", type=Path, default=None, help="where the store is made (temp)")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--step", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.step:
        what, path = args.step[0], Path(args.step[1])
        res = (write(path, args.planes, args.size, args.objects, args.budget_s)
               if what == "write" else open_in_napari(path))
        print(json.dumps(res))
        return
    tmp = Path(tempfile.mkdtemp(prefix="segany-labels-", dir=args.dir))
    path = tmp / "labels.zarr"
    try:
        rows = {}
        for what in ("write", "open"):
            cmd = [sys.executable, __file__, "--step", what, str(path), "--planes",
                   str(args.planes), "--size", str(args.size), "--objects", str(args.objects)]
            if args.budget_s:
                cmd += ["--budget-s", str(args.budget_s)]
            proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
            if proc.returncode:
                sys.exit(f"{what} failed:\n{proc.stderr[-3000:]}")
            rows[what] = json.loads(proc.stdout.strip().splitlines()[-1])
            print(what, rows[what], flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    w, o = rows["write"], rows["open"]
    print(f"\nLabels store ({w['planes_total']}, {args.size}, {args.size}) uint32 = "
          f"{w['logical_gib']} GiB logical; {w['objects_per_plane']} disc objects per plane")
    print(f"wrote {w['planes_written']} planes in {w['write_s']} s ({w['planes_per_s']} planes/s), "
          f"peak RSS {w['peak_rss_mib']:.0f} MiB, {w['disk_mib']:.0f} MiB on disk")
    print(f"napari: opened in {o['open_s']} s, RSS {o['rss_after_napari_import_mib']:.0f} -> "
          f"{o['rss_after_open_mib']:.0f} MiB (+{o['open_delta_mib']:.0f}), layer data "
          f"{o['layer_data_type']}")
    print(f"wrote {write_json('labels_scale.json', {'write': w, 'open': o}, args.out)}")


if __name__ == "__main__":
    main()
