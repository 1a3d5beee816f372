"""Screenshot of the napari-segany dock widget at work, for the documentation.

Opens a napari viewer (under a virtual X display when there is no display: Xvfb is
started when installed), loads the 2D nuclei sample, opens the widget through the
plugin manifest, starts a model, adds clicks and a box for two objects, commits the
first and saves a screenshot of the whole window to ``docs/images/widget.png``.

Usage::

    python scripts/screenshot.py                       # tiny SAM2, random weights
    python scripts/screenshot.py --model sam2.1_hiera_tiny --weights   # real weights

``--train`` trains the model of the dock's *Fine-tune* section for two epochs on the
nuclei sample's ground truth and saves ``docs/images/widget_train.png``.

``--workflow`` runs the whole workflow of ``tests/gui/test_gui_workflow.py`` instead and
saves one picture per step to ``docs/images/workflow_*.png``: on the MSD spleen CT crop when
the shared data folder (``../shared/data`` beside the repository) is there, else on the
built-in "volume" sample::

    python scripts/screenshot.py --workflow

With random weights (the default, no download) the masks are meaningless: the pictures
show the widget, the layers and the workflow, not segmentation quality.
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
    parser.add_argument("--out", default=None,
                        help="the picture (default docs/images/widget.png), or with "
                             "--workflow the folder of the pictures (default docs/images)")
    parser.add_argument("--size", default="1600x1000", help="window size, WxH")
    parser.add_argument("--workflow", action="store_true",
                        help="one picture per step of the whole workflow (workflow_*.png)")
    parser.add_argument("--train", action="store_true",
                        help="the fine-tune section after a short training run "
                             "(widget_train.png)")
    args = parser.parse_args(argv)
    xvfb = _ensure_display()
    try:
        if args.train:
            return _train(args)
        return _workflow(args) if args.workflow else _single(args)
    finally:
        if xvfb is not None:
            xvfb.terminate()
            xvfb.wait(10)


def _viewer(args):
    import napari

    viewer = napari.Viewer(show=True, title="napari-segany")
    w, h = (int(v) for v in args.size.split("x"))
    viewer.window._qt_window.resize(w, h)
    return viewer


def _start(viewer, args, app, width: int = 0):
    dock, widget = viewer.window.add_plugin_dock_widget("napari-segany", "Segment Anything")
    if width:  # wide enough for the dock's rows (its scroll area does not scroll sideways)
        from qtpy.QtCore import Qt

        viewer.window._qt_window.resizeDocks([dock], [width], Qt.Orientation.Horizontal)
    ui = widget.ui
    ui.model_combo.setCurrentText(args.model)
    ui.device_combo.setCurrentText("cpu")
    ui.random_check.setChecked(not args.weights)
    return widget


def _start_session(widget, app, output: str) -> bool:
    """Press Start with ``output`` as the labels store; False (and the status said) when no
    session came of it."""
    ui = widget.ui
    ui.output_edit.setText(output)
    ui.output_edit.textEdited.emit(output)
    ui.start_btn.click()
    _wait(widget, app)
    if widget.session is None:
        print(ui.status_label.text(), file=sys.stderr)
        return False
    return True


def _single(args) -> int:
    """The default picture: the nuclei sample, two objects (docs/images/widget.png)."""
    import numpy as np
    from qtpy.QtWidgets import QApplication

    from napari_segany.samples import load_sample

    viewer = _viewer(args)
    app = QApplication.instance()
    viewer.open_sample("napari-segany", "nuclei")
    widget = _start(viewer, args, app, width=600)
    ui = widget.ui
    import tempfile

    os.chdir(tempfile.mkdtemp(prefix="segany-screenshot-"))  # no machine path in the picture
    if not _start_session(widget, app, "nuclei_segany.zarr"):
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
    out = Path(args.out or ROOT / "docs" / "images" / "widget.png")
    out.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(out), canvas_only=False)
    print(f"saved {out}")
    viewer.close()
    return 0


def _train(args) -> int:
    """The fine-tune section after two epochs on the nuclei sample's own ground truth
    (docs/images/widget_train.png)."""
    import tempfile
    from dataclasses import replace

    from qtpy.QtWidgets import QApplication

    from napari_segany.samples import load_sample

    viewer = _viewer(args)
    app = QApplication.instance()
    os.chdir(tempfile.mkdtemp(prefix="segany-screenshot-"))  # no machine path in the picture
    viewer.open_sample("napari-segany", "nuclei")
    viewer.add_labels(load_sample("nuclei").labels, name="nuclei ground truth")
    widget = _start(viewer, args, app, width=600)
    ui = widget.ui
    ui.image_combo.setCurrentText("nuclei (sample)")
    if not _start_session(widget, app, "nuclei_segany.zarr"):
        return 1
    panel = widget.train_panel
    panel.parent().set_open(True)  # its Section
    panel.sources_list.item(0).setSelected(True)  # the empty store of this session: not yet
    panel.remove_selected()
    panel.image_pick.setCurrentText("nuclei (sample)")
    panel.labels_pick.setCurrentText("nuclei ground truth")
    panel.add_picked_layers()
    panel.settings = replace(panel.settings, objects_per_step=8, n_corrections=1,
                             loss_size=128)
    panel.val_spin.setValue(0)  # one image of one plane: nothing to hold out
    panel.epochs_spin.setValue(2)
    panel.out_edit.setText("ft-nuclei")
    panel.train_btn.click()
    end = time.monotonic() + 600
    while panel.jobs.busy and time.monotonic() < end:
        app.processEvents()
        time.sleep(0.05)
    _wait(widget, app)
    out = Path(args.out or ROOT / "docs" / "images")
    out.mkdir(parents=True, exist_ok=True)
    _shoot(viewer, widget, app, out, "widget_train.png", show=panel)
    viewer.close()
    return 0


#: (z, y, x) of the two objects on the CT (the spleen, another bright region) and the
#: plane segment everything runs on; the "volume" sample's are taken from the sample
_CT_PROMPTS = ((14, 83, 79), (14, 147, 136), 5)


def _shoot(viewer, widget, app, out: Path, name: str, show=None) -> None:
    """The whole window, the dock scrolled to ``show``."""
    from qtpy.QtWidgets import QScrollArea

    _close_notifications(viewer)
    viewer.reset_view()  # the whole plane, in the canvas the dock left
    _wait(widget, app)
    if show is not None:
        scroll = widget.findChild(QScrollArea)
        scroll.ensureWidgetVisible(show, 0, 0)
        app.processEvents()
    path = out / name
    viewer.screenshot(str(path), canvas_only=False)
    print(f"saved {path}")


def _click(layers, image, zyx) -> None:
    layers.points.add(layers.points.world_to_data(image.data_to_world(list(zyx))))


def _go_to(viewer, image, z: int) -> None:
    viewer.dims.set_point(0, image.data_to_world([z, 0, 0])[0])


def _workflow(args) -> int:
    """One picture per step: prompts, a stopped walk, review, objects, reopened."""
    import tempfile

    import numpy as np
    from qtpy.QtWidgets import QApplication

    from napari_segany.samples import load_sample

    out = Path(args.out or ROOT / "docs" / "images")
    out.mkdir(parents=True, exist_ok=True)
    ct_file = ROOT.parent / "shared" / "data" / "msd_spleen_crop" / "sub-spleen2_ct.nii.gz"
    if ct_file.is_file():
        from napari_segany.io import read_image

        ct = read_image(ct_file)
        data, scale, name = np.asarray(ct.data), tuple(ct.spacing), "ct"
        first, second, auto_plane = _CT_PROMPTS
        names = ("spleen", "bright region")
    else:
        sample = load_sample("volume")
        data, scale, name = sample.image, (2.0, 1.0, 1.0), "volume"
        (z,), (x, y) = sample.point_plane, sample.point
        first, second, auto_plane = (z, y, x), (z, 24, 24), 3
        names = ("blob", "background")
    # the store in a scratch folder, named relatively: the pictures show no machine path
    os.chdir(tempfile.mkdtemp(prefix="segany-screenshot-"))
    store = f"{name}_segany.zarr"
    app = None

    def open_viewer():
        nonlocal app
        viewer = _viewer(args)
        app = QApplication.instance()
        image = viewer.add_image(data, name=name, scale=scale)
        viewer.reset_view()
        widget = _start(viewer, args, app, width=600)
        widget.ui.output_edit.setText(store)
        widget.ui.output_edit.textEdited.emit(store)
        widget.review.stage_check.setChecked(False)
        widget.ui.start_btn.click()
        _wait(widget, app)
        if widget.session is None:
            print(widget.ui.status_label.text(), file=sys.stderr)
        return viewer, image, widget

    viewer, image, widget = open_viewer()
    if widget.session is None:
        return 1
    ui = widget.ui
    # 1. two objects prompted on one plane: the first committed, the second previewed
    _go_to(viewer, image, first[0])
    _click(widget.layers, image, first)
    _wait(widget, app)
    ui.class_edit.setText(names[0])
    ui.commit_btn.click()
    ui.new_btn.click()
    _click(widget.layers, image, second)
    _wait(widget, app)
    ui.class_edit.setText(names[1])
    viewer.layers.selection.active = widget.layers.points
    _shoot(viewer, widget, app, out, "workflow_1_prompts.png", ui.commit_btn)
    ui.commit_btn.click()
    ui.clear_btn.click()  # object 2 is done; the store keeps its prompts
    ui.object_spin.setValue(1)
    # 2. slice-wise propagation of object 1 until a rule stops it; go there, correct
    ui.mode_combo.setCurrentText("slice-wise propagation")
    ui.direction_combo.setCurrentText("forward")
    panel = widget.propagation
    panel.section.set_open(True)
    panel.max_ratio.setValue(1.5)  # random weights: masks jump, so the walk stops soon
    ui.propagate_btn.click()
    _wait(widget, app)
    if panel.stops:
        panel.go_btn.click()
        _wait(widget, app)
        stop = panel.stops[0]
        _click(widget.layers, image, (stop.plane[0], *first[1:]))
        _wait(widget, app)
    _shoot(viewer, widget, app, out, "workflow_2_stop.png", panel.continue_btn)
    if panel.stops:
        panel.max_ratio.setValue(1000)
        panel.continue_btn.click()
        _wait(widget, app)
    panel.section.set_open(False)
    # 3. segment everything on another plane, staged for review
    widget.review.stage_check.setChecked(True)
    _go_to(viewer, image, auto_plane)
    auto = widget.auto_ui
    auto.points_spin.setValue(16)
    auto.iou_check.setChecked(False)  # random weights: keep what the thresholds would drop
    auto.iou_spin.setValue(0.0)
    auto.stability_spin.setValue(0.0)
    auto.min_area_spin.setValue(20)
    auto.everything_btn.click()
    _wait(widget, app)
    # and three rectangles turned into objects in one batch, staged beside them
    z = auto_plane
    ui.class_edit.setText("")
    boxes = widget.layers.boxes
    for oid, (y0, x0, y1, x1) in enumerate(((30, 30, 70, 70), (90, 40, 125, 80),
                                            (60, 95, 110, 150)), start=10):
        # a box per object id (a second box of one object on a plane replaces the first)
        boxes.feature_defaults = {**dict(boxes.feature_defaults.iloc[0]), "object_id": oid}
        boxes.add_rectangles(
            np.array([[z, y0, x0], [z, y0, x1], [z, y1, x1], [z, y1, x0]], float))
    viewer.layers.selection.active = widget.layers.boxes
    auto.boxes_btn.click()
    _wait(widget, app)
    review = widget.review
    for i in range(min(2, review.list.count())):
        review.list.item(i).setSelected(True)
    _shoot(viewer, widget, app, out, "workflow_3_review.png", review.discard_all_btn)
    # 4. accept the selected ones, discard the rest, undo, redo: the object list
    review.accept_btn.click()
    review.discard_all_btn.click()
    ui.undo_btn.click()
    ui.redo_btn.click()
    widget.objects.table.selectRow(0)
    _go_to(viewer, image, auto_plane)
    viewer.layers.selection.active = widget.layers.output
    _shoot(viewer, widget, app, out, "workflow_4_objects.png", widget.objects.section)
    widget.layers.output.save(str(Path(store).with_suffix(".ome.zarr")),
                              plugin="napari-segany")
    viewer.close()
    # 5. the next day: a new viewer, the same image and store
    viewer, image, widget = open_viewer()
    if widget.session is None:
        return 1
    _go_to(viewer, image, first[0])
    _shoot(viewer, widget, app, out, "workflow_5_reopened.png", widget.objects.section)
    viewer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
