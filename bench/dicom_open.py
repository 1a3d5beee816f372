"""Opening a DICOM series to its first displayed plane, against reading it whole first.

A synthetic CT series (``--slices`` x 512 x 512, int16 stored as uint16 with
RescaleIntercept -1024, one file per slice, shuffled names) is written once. Then each
side runs in a fresh process (so peak RSS is its own), ``--repeats`` times, with the
files evicted from the page cache before each run (``posix_fadvise(DONTNEED)``: a cold
read, as after copying a study from PACS) or kept warm (``--warm``):

Imports happen before the clock starts, on every side.

* ``napari-segany``: ``read_image(folder)`` (headers only: slices sorted along the normal,
  geometry checked) then ``data[mid]``, the plane napari shows first (the middle one);
* ``SimpleITK``: ``ImageSeriesReader`` over ``GetGDCMSeriesFileNames`` (GDCM sorts the
  files), ``Execute()``, then the middle plane of ``GetArrayViewFromImage``;
* ``pydicom``: ``dcmread`` of every file, sorted by position along the normal, rescaled
  and stacked into one array (what scripts do by hand), then the middle plane.

With ``--napari`` (needs a display, e.g. ``xvfb-run -a``) the same is measured up to the
first drawn canvas: ``viewer.open(folder, plugin="napari-segany")`` against
``viewer.add_image`` of the SimpleITK volume with its spacing as scale.

    python bench/dicom_open.py --slices 500 --repeats 3
    xvfb-run -a python bench/dicom_open.py --slices 500 --repeats 3 --napari

Writes ``dicom_open.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_json  # noqa: E402


def write_series(folder: Path, n: int, size: int = 512) -> None:
    import numpy as np
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size]
    body = ((yy - size / 2) ** 2 / 0.8 + (xx - size / 2) ** 2) < (0.42 * size) ** 2
    series, study, frame = generate_uid(), generate_uid(), generate_uid()
    order = rng.permutation(n)
    for k in range(n):
        cy = size * (0.35 + 0.3 * k / max(1, n - 1))
        organ = ((yy - cy) ** 2 + (xx - size * 0.45) ** 2) < (size * 0.1) ** 2
        hu = np.where(body, 40, -1000) + 60 * organ + rng.normal(0, 15, (size, size))
        uid = generate_uid()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = CTImageStorage, uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = CTImageStorage, uid, "CT"
        ds.PatientName, ds.PatientID = "Bench^CT", "BENCH"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.SeriesNumber, ds.InstanceNumber = 2, int(order[k]) + 1
        ds.ImagePositionPatient = [-200.0, -200.0, -600.0 + 1.25 * k]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing, ds.SliceThickness = [0.78125, 0.78125], 1.25
        ds.Rows = ds.Columns = size
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
        ds.WindowCenter, ds.WindowWidth = 40, 400
        ds.PixelData = np.clip(hu + 1024, 0, 4095).astype(np.uint16).tobytes()
        ds.save_as(folder / f"IM{rng.integers(1 << 40):011x}", enforce_file_format=True)


def evict(folder: Path) -> None:
    for f in folder.iterdir():
        with open(f, "rb") as fh:
            os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


_SIDES = {
    "napari-segany": """
import pydicom, pydicom.pixels  # imported by read_image on first use; outside the timing
from napari_segany.io import read_image
t0 = time.perf_counter()
img = read_image(FOLDER)
opened = time.perf_counter()
plane = img.data[img.data.shape[0] // 2]
""",
    "SimpleITK": """
import SimpleITK as sitk
t0 = time.perf_counter()
reader = sitk.ImageSeriesReader()
reader.SetFileNames(reader.GetGDCMSeriesFileNames(FOLDER))
image = reader.Execute()
opened = time.perf_counter()
arr = sitk.GetArrayViewFromImage(image)
plane = np.array(arr[arr.shape[0] // 2])
""",
    "pydicom": """
import pydicom
t0 = time.perf_counter()
files = [pydicom.dcmread(os.path.join(FOLDER, f)) for f in os.listdir(FOLDER)]
normal = np.cross(*np.reshape(np.asarray(files[0].ImageOrientationPatient, float), (2, 3)))
files.sort(key=lambda d: float(np.dot(np.asarray(d.ImagePositionPatient, float), normal)))
vol = np.stack([d.pixel_array.astype(np.int16) * int(d.RescaleSlope) + int(d.RescaleIntercept)
                for d in files])
opened = time.perf_counter()
plane = vol[vol.shape[0] // 2]
""",
}

_NAPARI = {
    "napari-segany": """
[layer] = viewer.open(FOLDER, plugin="napari-segany")
""",
    "SimpleITK": """
import SimpleITK as sitk
reader = sitk.ImageSeriesReader()
reader.SetFileNames(reader.GetGDCMSeriesFileNames(FOLDER))
image = reader.Execute()
arr = sitk.GetArrayFromImage(image)
viewer.add_image(arr, scale=image.GetSpacing()[::-1], contrast_limits=(-160, 240))
""",
}

_HEAD = """
import json, os, resource, sys, time
import numpy as np
FOLDER = sys.argv[1]
def rss():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
base = rss()
"""


def _api_code(side: str) -> str:
    return _HEAD + _SIDES[side] + """
done = time.perf_counter()
print(json.dumps({"open_s": opened - t0, "first_plane_s": done - t0, "base_mib": base,
                  "peak_mib": rss(), "plane_mean": float(np.mean(plane))}))
"""


def _napari_code(side: str) -> str:
    return _HEAD + """
import napari
from qtpy.QtWidgets import QApplication
viewer = napari.Viewer(show=True)
app = QApplication.instance()
for _ in range(20):
    app.processEvents()
base = rss()
t0 = time.perf_counter()
""" + _NAPARI[side] + """
viewer.screenshot(canvas_only=True, flash=False)  # the first plane drawn on the canvas
done = time.perf_counter()
print(json.dumps({"first_plane_s": done - t0, "base_mib": base, "peak_mib": rss()}))
viewer.close()
"""


def run_side(code: str, folder: Path, warm: bool) -> dict:
    if not warm:
        evict(folder)
    out = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True,
                         text=True, timeout=1800, check=False)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--slices", type=int, default=500)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warm", action="store_true", help="keep the files in the page cache")
    p.add_argument("--napari", action="store_true", help="also up to the first drawn canvas")
    p.add_argument("--folder", type=Path, default=None, help="reuse a series written before")
    p.add_argument("--out", type=Path, default=None, help="results folder")
    args = p.parse_args(argv)
    tmp = None
    folder = args.folder
    if folder is None:
        tmp = Path(tempfile.mkdtemp(prefix="segany-dicom-"))
        folder = tmp / "series"
        t = time.perf_counter()
        write_series(folder, args.slices)
        print(f"wrote {args.slices} slices in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    size_mib = sum(f.stat().st_size for f in folder.iterdir()) / 2**20
    results: dict = {"slices": args.slices, "plane": [512, 512], "files_mib": round(size_mib),
                     "cache": "warm" if args.warm else "cold (posix_fadvise DONTNEED)",
                     "repeats": args.repeats, "api": {}, "napari": {}}
    try:
        groups = [("api", _api_code, list(_SIDES))]
        if args.napari:
            groups.append(("napari", _napari_code, list(_NAPARI)))
        for group, make, sides in groups:
            for side in sides:
                runs = [run_side(make(side), folder, args.warm) for _ in range(args.repeats)]
                summary = {k: round(statistics.median(r[k] for r in runs), 3)
                           for k in runs[0] if k != "plane_mean"}
                summary["runs"] = runs
                results[group][side] = summary
                print(f"{group:6s} {side:14s} first plane {summary['first_plane_s']:.2f} s, "
                      f"peak RSS {summary['peak_mib']:.0f} MiB (after imports "
                      f"{summary['base_mib']:.0f})", file=sys.stderr)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    path = write_json("dicom_open.json", results, args.out)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
