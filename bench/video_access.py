"""Video in: reading a 1080p MP4 forward and backward, and time to the first mask.

Part 1, reading (``--part read``): synthetic 1920x1080 H.264 MP4s (libx264 ultrafast, a
keyframe every ``--gop`` frames, B-frames) of two lengths. Each case runs in a fresh
process (peak RSS is that process's ``VmHWM``), in alternating rounds (ours, peer, ours,
...); every time counts from opening the file:

* ours forward / backward: ``VideoFile(path)[i]`` for i in order / in reverse (keyframe
  index, 256 MiB LRU of decoded frames);
* peer forward: plain sequential PyAV decoding (``container.decode``, ``to_ndarray``);
* peer backward, the plain ways: decode everything into a list and read it reversed
  (memory grows with the length), or seek to each frame's keyframe and decode forward
  to it (no cache; measured on the last ``--seek-frames`` frames only, it is slow);
* the other design the issue named, transcode once to a zarr frame store: decode every
  frame sequentially into a zarr array chunked one frame a chunk (zarr's default
  compressor) on disk, then read it backward (the transcode counts in the time).

Part 2, time to the first mask (``--part first``): the seed's approach, frames dumped to a
JPEG folder and then ``SAM2VideoPredictor.
init_state`` (which loads every frame) and one click on frame 0 (OpenCV's
``VideoCapture`` and ``imwrite`` when ``cv2`` imports, as the seed did; else PyAV and
Pillow at quality 95, OpenCV's default); against ours,
``read_image(mp4)`` + ``Session`` + one click on frame 0 (only that frame is decoded and
embedded). SAM2.1-tiny with random weights (cost does not depend on them).

    python bench/video_access.py --part read --lengths 60,240 --rounds 3
    python bench/video_access.py --part first --frames 100

Writes ``video_access.json`` / ``video_first_mask.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import WEIGHTS_NOTE, write_json  # noqa: E402

W, H = 1920, 1080


def make_video(path: Path, n: int, w: int = W, h: int = H, gop: int = 250) -> Path:
    """A moving gradient with noise, H.264 (libx264, ultrafast preset, keyframes every
    ``gop`` frames, B-frames)."""
    import av
    import numpy as np

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w]
    out = av.open(str(path), "w")
    s = out.add_stream("libx264", rate=30)
    s.width, s.height, s.pix_fmt = w, h, "yuv420p"
    s.options = {"preset": "ultrafast", "crf": "23", "g": str(gop), "bf": "2"}
    noise = rng.integers(0, 40, (h, w), dtype=np.uint8)
    for i in range(n):
        base = ((xx + 8 * i) % 256).astype(np.uint8)
        disc = ((yy - h / 2) ** 2 + (xx - (200 + 6 * i) % w) ** 2) < 150 ** 2
        frame = np.stack([base, np.roll(noise, i, axis=1), np.where(disc, 230, 40)], axis=-1)
        for p in s.encode(av.VideoFrame.from_ndarray(frame.astype(np.uint8), format="rgb24")):
            out.mux(p)
    for p in s.encode():
        out.mux(p)
    out.close()
    return path


# ------------------------------------------------------------------------------ one case
def _hwm_mib() -> float:
    """This process's peak RSS (VmHWM; ru_maxrss would keep the parent's across exec)."""
    with open("/proc/self/status") as fh:
        kib = next(int(ln.split()[1]) for ln in fh if ln.startswith("VmHWM"))
    return round(kib / 1024, 1)


def case(kind: str, path: str, seek_frames: int) -> dict:
    """One reading case in this process: frames, seconds (from opening), peak RSS."""
    import av
    import numpy as np

    from napari_segany.io import VideoFile

    t0 = time.perf_counter()  # opening counts: for ours the index and the check of the ends
    checksum = 0
    if kind in ("ours_forward", "ours_backward"):
        v = VideoFile(path)
        t_open = time.perf_counter() - t0
        n = len(v)
        order = range(n) if kind == "ours_forward" else range(n - 1, -1, -1)
        for i in order:
            checksum += int(v[i][540, 960, 0])
        extra = {"stats": v.stats, "open_s": round(t_open, 3)}
        frames = n
    elif kind == "peer_forward":
        with av.open(path) as c:
            frames = 0
            for f in c.decode(c.streams.video[0]):
                checksum += int(f.to_ndarray(format="rgb24")[540, 960, 0])
                frames += 1
        extra = {}
    elif kind == "peer_backward_list":
        with av.open(path) as c:
            all_frames = [f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])]
        for a in reversed(all_frames):
            checksum += int(a[540, 960, 0])
        frames, extra = len(all_frames), {}
    elif kind == "peer_backward_seek":
        with av.open(path) as c:
            st = c.streams.video[0]
            pts = sorted(p.pts for p in c.demux(st) if p.pts is not None)
        c = av.open(path)
        st = c.streams.video[0]
        frames = 0
        for target in reversed(pts[-seek_frames:]):
            c.seek(target, stream=st, backward=True)
            for f in c.decode(st):
                if f.pts == target:
                    checksum += int(f.to_ndarray(format="rgb24")[540, 960, 0])
                    break
            frames += 1
        c.close()
        extra = {"measured_frames": frames}
    elif kind == "zarr_backward":
        import zarr

        with tempfile.TemporaryDirectory(dir=Path(path).parent) as tmp, av.open(path) as c:
            st = c.streams.video[0]
            z = zarr.create_array(Path(tmp) / "frames.zarr", shape=(st.frames, H, W, 3),
                                  chunks=(1, H, W, 3), dtype="uint8")
            for k, f in enumerate(c.decode(st)):
                z[k] = f.to_ndarray(format="rgb24")
            t_transcode = time.perf_counter() - t0
            frames = z.shape[0]
            for i in range(frames - 1, -1, -1):
                checksum += int(z[i][540, 960, 0])
            disk = sum(p.stat().st_size for p in Path(tmp).rglob("*") if p.is_file())
        extra = {"transcode_s": round(t_transcode, 3), "store_mib": round(disk / 2**20, 1),
                 "read_fps": round(frames / (time.perf_counter() - t0 - t_transcode), 2)}
    else:
        raise ValueError(kind)
    dt = time.perf_counter() - t0
    return {"kind": kind, "frames": frames, "seconds": round(dt, 3),
            "fps": round(frames / dt, 2), "peak_rss_mib": _hwm_mib(),
            "checksum": checksum, **extra, "numpy": np.__version__}


def _subprocess(kind: str, path: Path, seek_frames: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--case", kind, "--video", str(path),
                          "--seek-frames", str(seek_frames)], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def part_read(args: argparse.Namespace) -> None:
    kinds = ["ours_forward", "peer_forward", "ours_backward", "peer_backward_list",
             "peer_backward_seek", "zarr_backward"]
    lengths = [int(v) for v in args.lengths.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="segany-video-") as tmp:
        for n in lengths:
            path = make_video(Path(tmp) / f"v{n}.mp4", n, gop=args.gop)
            from napari_segany.io import VideoFile

            v = VideoFile(path, check="none")
            runs: dict[str, list[dict]] = {k: [] for k in kinds}
            for _ in range(args.rounds):  # alternating rounds
                for kind in kinds:
                    if kind == "peer_backward_list" and n > args.list_max:
                        continue  # holds every decoded frame: 6 MiB each at 1080p
                    runs[kind].append(_subprocess(kind, path, args.seek_frames))
            for kind in kinds:
                r = runs[kind]
                if not r:
                    continue
                rows.append({"length": n, "kind": kind, "frames": r[0]["frames"],
                             "fps_median": statistics.median(x["fps"] for x in r),
                             "fps_runs": [x["fps"] for x in r],
                             "peak_rss_mib_median": statistics.median(x["peak_rss_mib"]
                                                                      for x in r),
                             "open_s": statistics.median(x["open_s"] for x in r)
                             if "open_s" in r[0] else None,
                             "keyframes": len(v.keyframes), "mp4_mib": round(
                                 path.stat().st_size / 2**20, 1),
                             "stats": r[0].get("stats"),
                             **{k: statistics.median(x[k] for x in r) for k in
                                ("transcode_s", "store_mib", "read_fps") if k in r[0]}})
                print(json.dumps(rows[-1]))
    print(f"\n1920x1080 H.264 (keyframe every {args.gop}), {args.rounds} alternating rounds, "
          "medians; 2 CPU cores shared with other work")
    print("| length | case | frames | frames/s | peak RSS MiB | note |")
    print("| ---: | --- | ---: | ---: | ---: | --- |")
    for r in rows:
        note = ""
        if "transcode_s" in r:
            note = (f"transcode {r['transcode_s']:.1f} s ({r['store_mib']:.0f} MiB on disk), "
                    f"then {r['read_fps']:.0f} frames/s")
        elif r["stats"]:
            note = (f"opening {r['open_s']:.1f} s; decoded {r['stats']['decoded']}, seeks "
                    f"{r['stats']['seeks']}")
        elif r["kind"] == "peer_backward_seek":
            note = f"last {r['frames']} frames only"
        print(f"| {r['length']} | {r['kind']} | {r['frames']} | {r['fps_median']:.1f} | "
              f"{r['peak_rss_mib_median']:.0f} | {note} |")
    print(f"wrote {write_json('video_access.json', {'rows': rows}, args.out)}")


# ------------------------------------------------------------------------------ first mask
def _first_ours(path: str) -> dict:
    import numpy as np

    from napari_segany import Session, load_model, read_image
    from napari_segany.prompts import ObjectPrompt

    backend = load_model("sam2.1_hiera_tiny", random_weights=True, device="cpu")
    backend.embed(np.zeros((64, 64, 3), np.uint8))  # warm-up, not timed
    t0 = time.perf_counter()
    img = read_image(path)
    session = Session(img.data, backend, rgb=True)
    seg = session.segment(ObjectPrompt(points=[[W / 2, H / 2]], labels=[1]), (0,))[1]
    dt = time.perf_counter() - t0
    assert seg.mask.shape == (H, W)
    return {"side": "ours", "seconds": round(dt, 2), "frames_decoded": img.data.stats[
        "decoded"], "peak_rss_mib": _hwm_mib()}


def _dump_jpegs(path: str, folder: Path) -> str:
    """The seed's frame dump: OpenCV's VideoCapture + imwrite (quality 95, its default);
    PyAV + Pillow at the same quality where OpenCV is not installed."""
    try:
        import cv2
    except ImportError:
        import av
        from PIL import Image

        with av.open(path) as c:
            for k, f in enumerate(c.decode(c.streams.video[0])):
                Image.fromarray(f.to_ndarray(format="rgb24")).save(folder / f"{k:05d}.jpg",
                                                                   quality=95)
        return "pyav+pillow"
    cap = cv2.VideoCapture(path)
    k = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        cv2.imwrite(str(folder / f"{k:05d}.jpg"), frame)
        k += 1
    cap.release()
    return f"opencv {cv2.__version__}"


def _first_peer(path: str) -> dict:
    import numpy as np
    import torch
    from sam2.build_sam import build_sam2_video_predictor

    predictor = build_sam2_video_predictor("configs/sam2.1/sam2.1_hiera_t.yaml",
                                           ckpt_path=None, device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        dump = _dump_jpegs(path, Path(tmp))
        t_dump = time.perf_counter() - t0
        with torch.inference_mode():
            state = predictor.init_state(video_path=tmp)
            t_init = time.perf_counter() - t0 - t_dump
            _, _, logits = predictor.add_new_points_or_box(
                state, frame_idx=0, obj_id=1, points=np.array([[W / 2, H / 2]], np.float32),
                labels=np.array([1], np.int32))
        dt = time.perf_counter() - t0
    assert logits.shape[-2:] == (H, W)
    return {"side": "peer", "dump": dump, "seconds": round(dt, 2),
            "jpeg_dump_s": round(t_dump, 2),
            "init_state_s": round(t_init, 2), "peak_rss_mib": _hwm_mib()}


def part_first(args: argparse.Namespace) -> None:
    rows = []
    with tempfile.TemporaryDirectory(prefix="segany-video-") as tmp:
        path = make_video(Path(tmp) / "v.mp4", args.frames, gop=args.gop)
        for r in range(args.rounds):
            for side in ("ours", "peer"):
                out = subprocess.run([sys.executable, __file__, "--first-case", side,
                                      "--video", str(path)], capture_output=True, text=True,
                                     check=True)
                row = json.loads(out.stdout.strip().splitlines()[-1])
                row.update(round=r, frames=args.frames)
                rows.append(row)
                print(json.dumps(row))
    med = {s: statistics.median(x["seconds"] for x in rows if x["side"] == s)
           for s in ("ours", "peer")}
    rss = {s: statistics.median(x["peak_rss_mib"] for x in rows if x["side"] == s)
           for s in ("ours", "peer")}
    print(f"\nTime to the first mask, {args.frames}-frame 1920x1080 MP4, SAM2.1-tiny, CPU "
          f"(2 shared cores); {WEIGHTS_NOTE}")
    print(f"ours (read_image + Session + click): {med['ours']:.1f} s, {rss['ours']:.0f} MiB")
    print(f"JPEG dump + init_state + click: {med['peer']:.1f} s, {rss['peer']:.0f} MiB")
    print(f"ratio: {med['peer'] / med['ours']:.1f}x")
    print(f"wrote {write_json('video_first_mask.json', {'rows': rows, 'median_s': med, 'peak_rss_mib': rss}, args.out)}")  # noqa: E501


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=["read", "first"], default="read")
    ap.add_argument("--lengths", default="60,240")
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seek-frames", type=int, default=24)
    ap.add_argument("--gop", type=int, default=120, help="keyframe interval of the MP4s")
    ap.add_argument("--list-max", type=int, default=300,
                    help="longest video the decode-all-into-a-list peer runs on")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--case", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--first-case", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--video", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.case:
        print(json.dumps(case(args.case, args.video, args.seek_frames)))
    elif args.first_case:
        fn = _first_ours if args.first_case == "ours" else _first_peer
        print(json.dumps(fn(args.video)))
    elif args.part == "read":
        part_read(args)
    else:
        part_first(args)


if __name__ == "__main__":
    main()
