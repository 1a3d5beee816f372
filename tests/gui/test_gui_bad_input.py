"""Bad input through the dock widget: a clear message, no crash, nothing changed on disk.

Each test feeds the widget one kind of bad input as a user would (a click outside the
image, an empty box, NaN pixels, an empty image, a foreign embedding cache, a broken
checkpoint file, a prompt on a plane that does not exist) and checks that

* a napari notification and/or the status label names the problem and what to do,
* no exception escapes into the event loop (pytest-qt fails the test if one does) and
  no traceback notification appears,
* the files already on disk (labels store, embedding cache, checkpoint) keep their
  bytes and modification times, and a refused Start creates no labels store,
* the widget still works once the input is fixed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from guihelp import start, wait_idle

from napari_segany.intensity import Normalizer
from napari_segany.storage import EmbeddingCache, LabelsStore
from rule_backend import RuleBackend


# ------------------------------------------------------------------------------- helpers
def _mark() -> int:
    from napari.utils.notifications import notification_manager

    return len(notification_manager.records)


def _messages(since: int) -> list[str]:
    """Texts of the napari notifications after ``since``; fails on traceback notifications."""
    from napari.utils.notifications import ErrorNotification, notification_manager

    records = notification_manager.records[since:]
    crashed = [str(n.message) for n in records if isinstance(n, ErrorNotification)]
    assert not crashed, f"an exception reached napari: {crashed}"
    return [str(n.message) for n in records]


def _files(root: str | Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``root``: relative path -> (bytes, mtime in ns)."""
    root = Path(root)
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


def _two_squares() -> np.ndarray:
    img = np.zeros((32, 32), np.uint8)
    img[4:12, 4:12] = 255
    img[20:28, 18:26] = 255
    return img


def _square(rows: slice, cols: slice, shape=(32, 32)) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[rows, cols] = True
    return m


def _remove_last(layer) -> None:
    layer.selected_data = {len(layer.data) - 1}
    layer.remove_selected()


def _commit_first_object(widget, qtbot, point) -> dict[str, tuple[bytes, int]]:
    """Click ``point``, commit it as object 1, go to object 2; returns the store's files."""
    widget.layers.points.add(point)
    wait_idle(widget, qtbot)
    assert widget.preview is not None and widget.preview.mask.any()
    widget.ui.commit_btn.click()
    widget.ui.new_btn.click()
    assert widget.ui.object_spin.value() == 2
    wait_idle(widget, qtbot)
    files = _files(widget.ui.output_edit.text())
    assert any(not name.endswith(".json") for name in files), files  # a chunk was written
    return files


def _press_start(widget, qtbot, *, model: str = "rule_test", random: bool = True) -> None:
    ui = widget.ui
    ui.model_combo.setCurrentText(model)
    ui.device_combo.setCurrentText("cpu")
    ui.random_check.setChecked(random)
    ui.start_btn.click()
    wait_idle(widget, qtbot)


def _assert_no_session(viewer, widget, image_name: str) -> None:
    """No session for ``image_name`` (a session that worked before is kept as it was)."""
    assert widget.layers is None or widget.layers.image.name != image_name
    names = {x.name for x in viewer.layers}
    assert not {f"{image_name} points", f"{image_name} labels"} & names


def _reported(widget, since: int) -> tuple[str, str]:
    """(the short status line, the full text under Details) of a refused Start; the
    notification says the short line."""
    short = widget.ui.status_label.text()
    assert short in _messages(since), (short, _messages(since))
    assert len(short) < 260, short  # one short line, not the whole message
    assert not widget.ui.details_btn.isHidden() or not widget.ui.details_text.toPlainText()
    return short, widget.ui.details_text.toPlainText()


# ---------------------------------------------------------------------- 1. points off the image
def test_clicks_outside_the_image_are_refused_and_a_valid_click_works(viewer_widget, qtbot,
                                                                      rule_model):
    viewer, widget = viewer_widget
    viewer.add_image(_two_squares(), name="img")
    start(widget, qtbot)
    layers, ui = widget.layers, widget.ui
    stored = _commit_first_object(widget, qtbot, [8, 8])

    for bad, where in (([-3, 22], "x=22, y=-3"), ([24, 40], "x=40, y=24")):
        since = _mark()
        layers.points.add(bad)
        wait_idle(widget, qtbot)
        assert widget.preview is None and not layers.preview.data.any()
        for text in (ui.status_label.text(), *_messages(since)):
            assert "Cannot use the prompts" in text and where in text, text
            assert "outside the image" in text and "Remove the point" in text, text
        assert len(_messages(since)) == 1
        assert _files(ui.output_edit.text()) == stored
        _remove_last(layers.points)  # what the message asks for
        wait_idle(widget, qtbot)
        assert ui.status_label.text() == "The prompts are usable again."

    layers.points.add([-3, 22])
    wait_idle(widget, qtbot)
    ui.commit_btn.click()  # there is no preview to commit
    assert "Nothing to commit" in ui.status_label.text()
    assert _files(ui.output_edit.text()) == stored
    _remove_last(layers.points)

    # the widget goes on working: a valid click on the second square, committed as object 2
    layers.points.add([24, 22])
    wait_idle(widget, qtbot)
    assert np.array_equal(widget.preview.mask, _square(slice(20, 28), slice(18, 26)))
    ui.commit_btn.click()
    plane = LabelsStore.open(ui.output_edit.text(), mode="r").read_plane(())
    assert np.array_equal(plane == 1, _square(slice(4, 12), slice(4, 12)))
    assert np.array_equal(plane == 2, _square(slice(20, 28), slice(18, 26)))


# ----------------------------------------------------------------------- 2. degenerate boxes
def test_empty_outside_or_non_rectangle_boxes_are_refused(viewer_widget, qtbot, rule_model):
    viewer, widget = viewer_widget
    viewer.add_image(_two_squares(), name="img")
    start(widget, qtbot)
    layers, ui = widget.layers, widget.ui
    stored = _commit_first_object(widget, qtbot, [8, 8])
    _remove_last(layers.points)  # object 1's point: only object 2's box is prompted now
    wait_idle(widget, qtbot)

    cases = (
        (lambda: layers.boxes.add_rectangles(np.array([[22, 18], [22, 26]], float)),
         ("is empty", "non-zero width and height")),  # zero height
        (lambda: layers.boxes.add_rectangles(np.array([[24, 22], [24, 22]], float)),
         ("is empty", "non-zero width and height")),  # a single point
        (lambda: layers.boxes.add_rectangles(np.array([[40, 40], [50, 60]], float)),
         ("entirely outside the image", "redraw it over the image")),
        (lambda: layers.boxes.add_ellipses(np.array([[18, 16], [30, 28]], float)),
         ("only 'rectangle' shapes", "redraw it")),
    )
    for add, needles in cases:
        since = _mark()
        add()
        wait_idle(widget, qtbot)
        assert len(layers.boxes.data) == 1  # kept for the user to fix, not dropped silently
        assert widget.preview is None and not layers.preview.data.any()
        messages = _messages(since)
        assert len(messages) == 1, messages
        for text in (ui.status_label.text(), messages[0]):
            assert text.startswith("Cannot use the prompts: shape 0"), text
            assert all(n in text for n in needles), text
        ui.commit_btn.click()
        assert "Nothing to commit" in ui.status_label.text()
        assert _files(ui.output_edit.text()) == stored
        _remove_last(layers.boxes)
        wait_idle(widget, qtbot)

    layers.boxes.add_rectangles(np.array([[18, 16], [30, 28]], float))
    wait_idle(widget, qtbot)
    assert np.array_equal(widget.preview.mask, _square(slice(20, 28), slice(18, 26)))


# ------------------------------------------------------------------------ 3. NaN / inf pixels
def test_nan_and_inf_pixels_are_tolerated_and_an_all_nan_image_is_refused(
        viewer_widget, qtbot, rule_model):
    viewer, widget = viewer_widget
    yy, xx = np.mgrid[:32, :32]
    disc = (yy - 16) ** 2 + (xx - 16) ** 2 < 36
    img = disc.astype(np.float32)
    img[:4, :4] = np.nan
    img[30, 30], img[30, 1] = np.inf, -np.inf
    img[16, 18] = np.nan  # inside the disc: maps to 0, a hole in the object
    viewer.add_image(img, name="nan")
    start(widget, qtbot)
    rgb = widget.session.plane_rgb(())
    assert rgb[:4, :4].max() == 0 and rgb[30, 30].max() == 0 and rgb[16, 18].max() == 0
    widget.layers.points.add([16, 14])
    wait_idle(widget, qtbot)
    assert np.array_equal(widget.preview.mask, disc & np.isfinite(img))
    widget.ui.commit_btn.click()
    plane = LabelsStore.open(widget.ui.output_edit.text(), mode="r").read_plane(())
    assert np.array_equal(plane == 1, disc & np.isfinite(img))

    # only NaN and inf: no intensity mapping can be fitted -> refused before any store exists
    viewer.add_image(np.where(disc, np.inf, np.nan).astype(np.float32), name="allnan")
    widget.ui.image_combo.setCurrentText("allnan")
    out = widget.ui.output_edit.text()
    since = _mark()
    working = widget.session
    _press_start(widget, qtbot)
    _assert_no_session(viewer, widget, "allnan")
    assert widget.session is working and widget.layers.image.name == "nan"  # still works
    assert not Path(out).exists()
    short, details = _reported(widget, since)
    assert "NaN" in short and "pick another layer" in short, short
    assert "NaN or infinite" in details, details


# ---------------------------------------------------------------------- 4. empty / 1D images
@pytest.mark.parametrize("shape", [(0, 32, 32), (4, 0, 0, 3)])
@pytest.mark.filterwarnings("ignore:invalid value encountered in divide:RuntimeWarning")
def test_start_on_an_empty_image_names_the_shape(viewer_widget, qtbot, rule_model,
                                                 monkeypatch, shape):
    viewer, widget = viewer_widget
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        viewer.add_image(np.zeros(32, np.uint8), name="line")  # napari refuses 1D images
    assert widget.ui.image_combo.count() == 0
    viewer.add_image(np.zeros(shape, np.uint8), name="empty")
    assert widget.ui.image_combo.currentText() == "empty"
    out = widget.ui.output_edit.text()
    since = _mark()
    _press_start(widget, qtbot)
    _assert_no_session(viewer, widget, "empty")
    text = widget.ui.status_label.text()
    assert str(shape) in text and "non-empty" in text and "pick another image" in text, text
    assert any(str(shape) in m for m in _messages(since))
    assert rule_model.made == []  # refused before loading a model
    assert not Path(out).exists()

    # offline with the default model: the shape is the problem named, not the download
    monkeypatch.setenv("NAPARI_SEGANY_OFFLINE", "1")
    widget.ui.model_combo.setCurrentText("sam2.1_hiera_tiny")
    widget.ui.random_check.setChecked(False)
    since = _mark()
    widget.ui.start_btn.click()
    wait_idle(widget, qtbot)
    messages = _messages(since)
    assert widget.session is None
    assert messages and all(str(shape) in m and "offline" not in m for m in messages), messages


# ------------------------------------------------------------------- 5. foreign embedding cache
@pytest.mark.parametrize("other", ["model", "data"])
def test_a_cache_made_for_another_model_or_image_is_refused_and_kept(
        viewer_widget, qtbot, rule_model, tmp_path, other):
    viewer, widget = viewer_widget
    img = _two_squares()
    data = img if other == "model" else img[::-1].copy()
    backend = RuleBackend(name="another_model" if other == "model" else "rule_test")
    cache_path = tmp_path / "out.embeddings.zarr"  # where the widget puts out.zarr's cache
    EmbeddingCache(cache_path, backend=backend, normalizer=Normalizer.fit(data),
                   data=data).get(())
    cached = _files(cache_path)
    assert len(cached) >= 3

    viewer.add_image(img, name="img")
    out = tmp_path / "out.zarr"
    widget.ui.output_edit.setText(str(out))
    widget.ui.cache_check.setChecked(True)
    since = _mark()
    _press_start(widget, qtbot)
    _assert_no_session(viewer, widget, "img")
    short, details = _reported(widget, since)
    assert "embedding cache" in short and "untick 'cache embeddings on disk'" in short, short
    needle = "name another_model vs rule_test" if other == "model" else "fingerprint"
    assert str(cache_path) in details and "made for other inputs" in details and \
        needle in details, details
    assert _files(cache_path) == cached
    assert not out.exists()  # the labels store is not created for a refused session

    # without the cache the same settings start, and the foreign cache is still untouched
    widget.ui.cache_check.setChecked(False)
    start(widget, qtbot)
    assert widget.session.cache is None and out.exists()
    assert _files(cache_path) == cached


# ------------------------------------------------------------------- 6. broken checkpoint files
def test_truncated_or_unsafe_checkpoint_is_refused_naming_the_file(viewer_widget, qtbot,
                                                                   monkeypatch, tmp_path):
    import pathlib

    import torch

    from napari_segany._qt import widget as widget_mod

    viewer, widget = viewer_widget
    viewer.add_image(_two_squares(), name="img")
    whole = tmp_path / "whole.pt"
    torch.save({"image_encoder.patch_embed.proj.weight": torch.zeros(8, 3, 4, 4)}, whole)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    unsafe = tmp_path / "unsafe.pth"  # a pickle that would build a Python object on load
    torch.save({"weight": torch.zeros(2), "where": pathlib.PurePosixPath("/x")}, unsafe)
    out = widget.ui.output_edit.text()

    for path, needle in ((truncated, "truncated or not a PyTorch checkpoint"),
                         (unsafe, "contains Python objects other than tensors")):
        before = (path.read_bytes(), path.stat().st_mtime_ns)
        monkeypatch.setattr(widget_mod.QFileDialog, "getOpenFileName",
                            staticmethod(lambda *a, p=path, **k: (str(p), "")))
        widget.ui.checkpoint_btn.click()
        assert widget.ui.model_combo.currentText() == str(path)
        since = _mark()
        widget.ui.device_combo.setCurrentText("cpu")
        widget.ui.start_btn.click()
        wait_idle(widget, qtbot)
        _assert_no_session(viewer, widget, "img")
        short, details = _reported(widget, since)
        assert "Could not load the model" in short and "pick another checkpoint" in short
        assert str(path) in details and needle in details, details
        assert (path.read_bytes(), path.stat().st_mtime_ns) == before
        assert not Path(out).exists()


# --------------------------------------------------------------- 7. prompts on missing planes
def test_prompts_on_a_plane_outside_the_volume_are_refused(viewer_widget, qtbot, rule_model):
    viewer, widget = viewer_widget
    vol = np.stack([_two_squares()] * 4)
    viewer.add_image(vol, name="vol")
    start(widget, qtbot)
    layers, ui = widget.layers, widget.ui
    assert layers.current_plane() is not None
    viewer.dims.set_current_step(0, 0)
    wait_idle(widget, qtbot)
    stored = _commit_first_object(widget, qtbot, [0, 8, 8])

    for add, needle in (
            (lambda: layers.points.add([7, 24, 22]), "point 1: coordinate 7 on image axis 0"),
            (lambda: layers.points.add([-2, 24, 22]), "point 1: coordinate -2 on image axis 0"),
            (lambda: layers.boxes.add_rectangles(
                np.array([[9, 18, 16], [9, 18, 28], [9, 30, 28], [9, 30, 16]], float)),
             "shape 0, vertex 0: coordinate 9 on image axis 0")):
        since = _mark()
        add()
        wait_idle(widget, qtbot)
        assert widget.preview is None and not layers.preview.data.any()
        messages = _messages(since)
        assert len(messages) == 1, messages
        for text in (ui.status_label.text(), messages[0]):
            assert needle in text and "outside the valid range 0..3" in text, text
            assert "move it onto an existing plane" in text, text
        # moving through the planes shows the problem again, without a notification each time
        since = _mark()
        for z in (1, 2, 0):
            viewer.dims.set_current_step(0, z)
            wait_idle(widget, qtbot)
            assert needle in ui.status_label.text()
        assert _messages(since) == []
        # Propagate refuses the same prompts, writing nothing
        ui.mode_combo.setCurrentText("slice-wise propagation")
        since = _mark()
        ui.propagate_btn.click()
        wait_idle(widget, qtbot)
        assert any(needle in m for m in _messages(since))
        ui.mode_combo.setCurrentText("2D (current plane)")
        assert _files(ui.output_edit.text()) == stored
        _remove_last(layers.boxes if "shape" in needle else layers.points)
        wait_idle(widget, qtbot)
        assert "outside" not in ui.status_label.text()

    viewer.dims.set_current_step(0, 3)
    layers.points.add([3, 24, 22])
    wait_idle(widget, qtbot)
    assert widget.preview.plane == (3,)
    assert np.array_equal(widget.preview.mask, _square(slice(20, 28), slice(18, 26)))
