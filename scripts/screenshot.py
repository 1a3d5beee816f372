"""Screenshot of the napari-segany dock widget at work, for the documentation.

Opens a napari viewer (under a virtual X display when there is no display: Xvfb is
started when installed), loads the 2D nuclei sample, opens the widget through the
plugin manifest, starts a model, adds clicks and a box for two objects, commits the
first and saves a screenshot of the whole window to ``docs/images/widget.png``.

Usage::

    python scripts/screenshot.py                       # tiny SAM2, random weights
    python scripts/screenshot.py --model sam2.1_hiera_tiny --weights   # real weights

With random weights (the default, no download) the masks are meaningless: the picture
shows the widget, the layers and the workflow, not segmentation quality.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _ensure_display() -> subprocess.Popen | None:
    if not sys.platform.startswith("linux") or os.environ.get("DISPLAY"):
        return None
    if not shutil.which("Xvfb"):
        sys.exit("no display and no Xvfb: install xvfb (and libgl1-mesa-dri) or run under a "
                 "desktop session")
    def die_with_parent() -> None:  # Linux: SIGTERM to Xvfb when this script dies
        import ctypes
        import signal

        try:
            ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass

    read, write = os.pipe()
    proc = subprocess.Popen(["Xvfb", "-displayfd", str(write), "-screen", "0", "1600x1000x24",
                             "-nolisten", "tcp"], pass_fds=(write,),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            preexec_fn=die_with_parent)
    os.close(write)
    with os.fdopen(read) as f:
        os.environ["DISPLAY"] = ":" + f.readline().strip()
    if os.environ.get("QT_QPA_PLATFORM") == "offscreen":
        os.environ["QT_QPA_PLATFORM"] = "xcb"  # offscreen has no OpenGL
    return proc


def _wait(widget, app, timeout: float = 300) -> None:
    end = time.monotonic() + timeout
    while not widget.idle and time.monotonic() < end:
        app.processEvents()
        time.sleep(0.01)
    for _ in range(20):
        app.processEvents()
        time.sleep(0.01)


def _close_notifications(viewer) -> None:
    try:
        from napari._qt.dialogs.qt_notification import NapariQtNotification
    except ImportError:
        return
    for toast in viewer.window._qt_window.findChildren(NapariQtNotification):
        toast.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="sam2_tiny")
    parser.add_argument("--weights", action="store_true",
                        help="use the model's real weights (downloaded or cached)")
    parser.add_argument("--out", default=str(ROOT / "docs" / "images" / "widget.png"))
    parser.add_argument("--size", default="1600x1000", help="window size, WxH")
    args = parser.parse_args(argv)
    xvfb = _ensure_display()
    try:
        import napari
        import numpy as np
        from qtpy.QtWidgets import QApplication

        from napari_segany.samples import load_sample

        viewer = napari.Viewer(show=True, title="napari-segany")
        w, h = (int(v) for v in args.size.split("x"))
        viewer.window._qt_window.resize(w, h)
        app = QApplication.instance()
        viewer.open_sample("napari-segany", "nuclei")
        _dock, widget = viewer.window.add_plugin_dock_widget("napari-segany",
                                                             "Segment Anything")
        ui = widget.ui
        ui.model_combo.setCurrentText(args.model)
        ui.device_combo.setCurrentText("cpu")
        ui.random_check.setChecked(not args.weights)
        ui.start_btn.click()
        _wait(widget, app)
        if widget.session is None:
            print(ui.status_label.text(), file=sys.stderr)
            return 1
        sample = load_sample("nuclei")
        x, y = sample.point
        widget.layers.points.add([[y, x], [y + 4, x - 3]])
        _wait(widget, app)
        ui.class_edit.setText("nucleus")
        ui.commit_btn.click()
        ui.new_btn.click()
        rows, cols = np.nonzero(sample.labels == 5)
        widget.layers.boxes.add_rectangles(
            np.array([[rows.min() - 4, cols.min() - 4], [rows.max() + 4, cols.max() + 4]], float))
        widget.toggle_positive()
        widget.layers.points.add([[rows.mean(), cols.mean() + 9]])  # a negative click
        _wait(widget, app)
        viewer.layers.selection.active = widget.layers.points
        viewer.reset_view()
        _close_notifications(viewer)
        _wait(widget, app)
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        viewer.screenshot(str(out), canvas_only=False)
        print(f"saved {out}")
        viewer.close()
        return 0
    finally:
        if xvfb is not None:
            xvfb.terminate()
            xvfb.wait(10)


if __name__ == "__main__":
    raise SystemExit(main())
