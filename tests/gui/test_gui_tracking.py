"""The Tracking panel (napari_segany._qt._tracking) on its own, in a real napari viewer."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parents[1] / "tracking"))  # cell_movie.py

from cell_movie import TRUE_PARENTS, LineageBackend, cell_movie  # noqa: E402

from napari_segany import Session  # noqa: E402
from napari_segany.io import VideoFile  # noqa: E402
from napari_segany.tracking import read_ctc, scan_tracks  # noqa: E402


def _panel(make_napari_viewer, tmp_path, backend=None):
    from napari_segany._qt._tracking import TrackingPanel

    viewer = make_napari_viewer()
    image, truth = cell_movie()
    session = Session(image, backend or LineageBackend(image, truth),
                      labels=tmp_path / "l.zarr")
    image_layer = viewer.add_image(image, name="cells")
    labels_layer = viewer.add_labels(session.labels.as_array(), name="labels")
    panel = TrackingPanel(viewer, lambda: session, image_layer=image_layer,
                          labels_layer=labels_layer)
    viewer.window.add_dock_widget(panel, name="Tracking")
    panel.min_area.setValue(10)
    return viewer, panel, session, truth


def _wait(qtbot, panel):
    qtbot.waitUntil(lambda: not panel.busy, timeout=60000)


def test_track_from_a_labelled_frame_and_show_the_lineage(make_napari_viewer, qtbot, tmp_path):
    viewer, panel, session, truth = _panel(make_napari_viewer, tmp_path)
    session.labels.write_plane((0,), truth[0])  # the cells segmented on frame 0
    viewer.dims.set_current_step(0, 0)
    results = []
    panel.tracked.connect(results.append)
    panel.track_button.click()
    assert panel.busy and not panel.track_button.isEnabled()
    _wait(qtbot, panel)
    assert panel.track_button.isEnabled()
    assert results == [panel.last_result]
    assert len(panel.last_result.divisions) == 2, panel.status.text()
    assert "divisions" in panel.status.text()
    layer = panel.show_tracks()
    assert layer.graph == {d: [p] for d, p in TRUE_PARENTS.items()}  # seeds kept truth's ids
    assert layer.data.shape[1] == 4
    # the CTC folder and the overlay movie, written by jobs
    written = []
    panel.exported.connect(written.append)
    panel.export(tmp_path / "ctc")
    _wait(qtbot, panel)
    back, lineage = read_ctc(tmp_path / "ctc")
    np.testing.assert_array_equal(back, truth)
    assert lineage.graph() == layer.graph
    panel.export_movie(tmp_path / "o.mp4", fps=4)
    _wait(qtbot, panel)
    assert written == [str(tmp_path / "ctc"), str(tmp_path / "o.mp4")], panel.status.text()
    movie = VideoFile(tmp_path / "o.mp4")
    assert movie.shape == (20, 96, 112, 3) and movie.fps == 4


def test_mark_a_division_with_two_points(make_napari_viewer, qtbot, tmp_path):
    viewer, panel, session, truth = _panel(make_napari_viewer, tmp_path)
    session.labels.write_plane((0,), truth[0])
    panel.k.setValue(50)  # nothing divides by itself
    viewer.dims.set_current_step(0, 0)
    panel.track_button.click()
    _wait(qtbot, panel)
    assert panel.last_result is not None, panel.status.text()
    assert not panel.last_result.divisions
    viewer.dims.set_current_step(0, 8)
    points = panel.points_layer()
    points.add([[8, 50, 53], [8, 50, 67], [3, 10, 10]])  # (t, y, x); the last on another frame
    np.testing.assert_allclose(panel.frame_points(), [[53, 50], [67, 50]])
    panel.labels_layer.selected_label = 2  # picking the parent's label sets the track id
    assert panel.track_id.value() == 2
    panel.k.setValue(3)
    panel.division_button.click()
    _wait(qtbot, panel)
    lineage = scan_tracks(session.labels).lineage
    assert lineage[2].end == 7 and len(lineage.children(2)) == 2
    # a bad request is refused with the reason, the store unchanged
    before = np.asarray(session.labels.array[:])
    panel.track_id.setValue(99)
    panel.correct_button.click()
    _wait(qtbot, panel)
    assert "no track 99" in panel.status.text()
    np.testing.assert_array_equal(session.labels.array[:], before)


class _SlowBackend(LineageBackend):
    """The perfect model, held after ``free`` predictions until the test lets it go."""

    def __init__(self, image, truth, free):
        super().__init__(image, truth)
        self.free, self.go, self.held = free, threading.Event(), threading.Event()

    def predict(self, embedding, prompts, *, multimask=True):
        if self.calls >= self.free:
            self.held.set()
            self.go.wait(30)
        return super().predict(embedding, prompts, multimask=multimask)


def test_cancel_keeps_the_frames_written(make_napari_viewer, qtbot, tmp_path):
    image, truth = cell_movie()
    backend = _SlowBackend(image, truth, free=30)  # 3 cells a frame: about 10 frames
    viewer, panel, session, _ = _panel(make_napari_viewer, tmp_path, backend)
    session.labels.write_plane((0,), truth[0])
    viewer.dims.set_current_step(0, 0)
    panel.track_button.click()
    qtbot.waitUntil(backend.held.is_set, timeout=60000)
    assert panel.cancel_button.isEnabled()
    panel.cancel_button.click()
    backend.go.set()
    _wait(qtbot, panel)
    result = panel.last_result
    assert result.cancelled and "cancelled" in panel.status.text()
    assert 0 < len(result.frames) < 20, result.frames
    kept = np.asarray(session.labels.array[:])
    for t in result.frames:
        assert kept[t].any()
    assert not kept[result.frames[-1] + 1:].any()
