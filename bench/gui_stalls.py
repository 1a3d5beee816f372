"""How long the napari GUI thread stalls while a user clicks and propagates in the widget.

A 10 ms ``QTimer`` runs on the GUI thread; every gap between two of its ticks longer than
its period is time in which the viewer could not repaint or take a key press. The script
opens a real napari viewer (under Xvfb when there is no display), opens the dock widget
through the plugin manifest, starts SAM2.1-tiny (random weights: the same compute as real
ones, no download) and then, per plane size (512² and 2048² by default):

* **napari alone**: the same clicks added to a plain Points layer (no widget), the
  baseline of napari's own cost;
* **clicks**: ``--clicks`` positive clicks at random places, each replacing the previous
  one, waiting for the widget's preview after each; the stall of a click is the longest
  tick gap from the click until its preview is shown;
* **propagation**: SAM2 propagation of one object through a stack of ``--planes`` planes of
  that size, while the script steps the viewer's plane every 100 ms (napari alone: the same
  stepping with no job).

It also reports how long *Start* kept the GUI thread busy creating layers (the widget's
``start_seconds``). Default torch thread settings. Usage::

    python bench/gui_stalls.py                          # 512 and 2048, 100 clicks each
    python bench/gui_stalls.py --sizes 512 --clicks 20  # a quick look
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from _common import write_json  # noqa: E402
from screenshot import _ensure_display  # noqa: E402


class TickGaps:
    """Gaps between the ticks of a 10 ms QTimer on the GUI thread (seconds)."""

    def __init__(self, period_ms: int = 10) -> None:
        from qtpy.QtCore import QTimer

        self.period = period_ms / 1000
        self.times: list[float] = []
        self.timer = QTimer()
        self.timer.setInterval(period_ms)
        self.timer.timeout.connect(lambda: self.times.append(time.perf_counter()))
        self.timer.start()

    def worst_between(self, t0: float, t1: float) -> float:
        """The longest stretch without a tick in [t0, t1] (stall beyond the period)."""
        ts = [t0] + [t for t in self.times if t0 < t < t1] + [t1]
        return max(0.0, float(np.max(np.diff(ts))) - self.period) if len(ts) > 1 else 0.0

    def gaps(self, t0: float, t1: float) -> np.ndarray:
        ts = np.array([t for t in self.times if t0 <= t <= t1])
        return np.clip(np.diff(ts) - self.period, 0, None) if len(ts) > 1 else np.zeros(1)


def _pump(app, seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.002)


def _wait(widget, app, timeout: float = 600) -> None:
    end = time.perf_counter() + timeout
    while not widget.idle and time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.002)


def _image(size: int, planes: int = 0, seed: int = 0) -> np.ndarray:
    """Bright discs on a noisy background, (size, size) or (planes, size, size)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    plane = rng.normal(40, 8, (size, size))
    for cy, cx in rng.uniform(0.1, 0.9, (12, 2)) * size:
        plane[(yy - cy) ** 2 + (xx - cx) ** 2 < (size * 0.04) ** 2] = 220
    plane = plane.clip(0, 255).astype(np.uint8)
    return np.stack([np.roll(plane, k, axis=0) for k in range(planes)]) if planes else plane


def _stats(values) -> dict:
    a = np.asarray(values, float) * 1000
    return {"n": int(a.size), "p50_ms": float(np.percentile(a, 50)),
            "p95_ms": float(np.percentile(a, 95)), "max_ms": float(a.max()),
            "worst_ms": [round(float(v), 1) for v in np.sort(a)[::-1][:5]],
            "worst_at": [int(i) for i in np.argsort(a)[::-1][:5]]}


def run(sizes: list[int], clicks: int, planes: int, model: str) -> dict:
    import napari
    from qtpy.QtWidgets import QApplication

    viewer = napari.Viewer(show=True, title="napari-segany stalls")
    viewer.window._qt_window.resize(1400, 900)
    app = QApplication.instance()
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-segany", "Segment Anything")
    ticks = TickGaps()
    rng = np.random.default_rng(1)
    results: dict = {}
    for size in sizes:
        row: dict = {}
        img = _image(size)
        # -- napari alone: the same clicks on a plain Points layer
        plain = viewer.add_image(img, name=f"plain {size}")
        pts = viewer.add_points(name="plain points", ndim=2)
        _pump(app, 0.5)
        stalls = []
        for _ in range(clicks):
            y, x = rng.uniform(0, size - 1, 2)
            t0 = time.perf_counter()
            pts.data = np.empty((0, 2))
            pts.add([y, x])
            _pump(app, 0.05)
            stalls.append(ticks.worst_between(t0, time.perf_counter()))
        row["napari alone, clicks"] = _stats(stalls)
        pts.visible = plain.visible = False  # (removing them crashed Mesa's llvmpipe once)
        # -- the widget: Start, then clicks with a preview each
        layer = viewer.add_image(img, name=f"img {size}")
        ui = widget.ui
        ui.image_combo.setCurrentText(layer.name)
        ui.model_combo.setCurrentText(model)
        ui.device_combo.setCurrentText("cpu")
        ui.random_check.setChecked(True)
        widget.review.stage_check.setChecked(False)
        ui.start_btn.click()
        _wait(widget, app)
        if widget.session is None:
            raise SystemExit(ui.status_label.text())
        row["start_gui_seconds"] = dict(widget.start_seconds)
        points = widget.layers.points
        points.add([size / 2, size / 2])  # the first click embeds the plane
        _wait(widget, app)
        stalls, latencies = [], []
        for _ in range(clicks):
            y, x = rng.uniform(0, size - 1, 2)
            t0 = time.perf_counter()
            points.data = np.empty((0, 2))
            points.add([y, x])
            _wait(widget, app)
            t1 = time.perf_counter()
            _pump(app, 0.02)
            stalls.append(ticks.worst_between(t0, t1 + 0.02))
            latencies.append(t1 - t0)
        row["widget, clicks"] = _stats(stalls)
        row["widget, click to preview"] = _stats(latencies)
        viewer.layers.remove(layer)
        _pump(app, 0.5)
        # -- propagation through a stack while the viewer steps planes
        stack = _image(size, planes)
        plain = viewer.add_image(stack, name=f"plain stack {size}")
        t0 = time.perf_counter()
        for k in range(min(planes, 20)):
            viewer.dims.set_point(0, k)
            _pump(app, 0.1)
        row["napari alone, stepping planes"] = _stats(ticks.gaps(t0, time.perf_counter()))
        viewer.layers.remove(plain)
        vol = viewer.add_image(stack, name=f"vol {size}")
        ui.image_combo.setCurrentText(vol.name)
        ui.start_btn.click()
        _wait(widget, app)
        viewer.dims.set_point(0, 0)
        widget.layers.points.add([0, size / 2, size / 2])
        _wait(widget, app)
        ui.mode_combo.setCurrentText("SAM2 propagation")
        ui.propagate_btn.click()
        t0 = time.perf_counter()
        k = 0
        while not widget.idle and time.perf_counter() - t0 < 1800:
            viewer.dims.set_point(0, k % planes)
            k += 1
            _pump(app, 0.1)
        t1 = time.perf_counter()
        row["widget, during SAM2 propagation"] = _stats(ticks.gaps(t0, t1))
        row["propagation_seconds"] = t1 - t0
        row["propagation_status"] = ui.status_label.text()
        viewer.layers.remove(vol)
        _pump(app, 0.5)
        results[str(size)] = row
        print(f"{size}: {row}", flush=True)
    viewer.close()
    return results


def _colouring() -> str:
    """How napari colours uint32 labels in this environment (its compiled backends)."""
    import importlib.util

    for name in ("PartSegCore_compiled_backend", "numba"):
        if importlib.util.find_spec(name) is not None:
            return name
    return "numpy"


def _model_nice() -> int:
    from napari_segany._qt._priority import _wanted

    return _wanted()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="512,2048")
    p.add_argument("--clicks", type=int, default=100)
    p.add_argument("--planes", type=int, default=8)
    p.add_argument("--model", default="sam2.1_hiera_tiny")
    p.add_argument("--out", default=None, help="results JSON (default bench/results/)")
    args = p.parse_args(argv)
    xvfb = _ensure_display()
    try:
        sizes = [int(s) for s in args.sizes.split(",")]
        results = run(sizes, args.clicks, args.planes, args.model)
    finally:
        if xvfb is not None:
            xvfb.terminate()
    print()
    print("| plane | what | n | p50 stall (ms) | p95 (ms) | max (ms) |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for size, row in results.items():
        for what, st in row.items():
            if isinstance(st, dict) and "p95_ms" in st:
                print(f"| {size}² | {what} | {st['n']} | {st['p50_ms']:.0f} | "
                      f"{st['p95_ms']:.0f} | {st['max_ms']:.0f} |")
        print(f"| {size}² | Start, GUI thread | | "
              f"{row['start_gui_seconds'].get('total', 0) * 1000:.0f} total | | |")
    kept = {**vars(args), "out": Path(args.out).name if args.out else None}  # no local paths
    out = write_json("gui_stalls.json", {"args": kept, "results": results,
                                         "labels_colouring": _colouring(),
                                         "model_nice": _model_nice()},
                     Path(args.out).parent if args.out else None)
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
