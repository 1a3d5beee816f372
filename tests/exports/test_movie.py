"""Overlay movies: frame count, size and rate; colours by id; where the image comes from."""

from __future__ import annotations

import threading
from fractions import Fraction

import av
import numpy as np
import pytest

from napari_segany.errors import Cancelled, ExportError
from napari_segany.exports import export_labels, export_movie
from napari_segany.exports.movie import object_colors, render_movie_frame
from napari_segany.io import VideoFile
from napari_segany.overlay import label_colors
from napari_segany.storage import LabelsStore


def _video(path, n=12, h=48, w=64, rate=Fraction(30000, 1001), times=None):
    out = av.open(str(path), "w")
    s = out.add_stream("libx264", rate=rate)
    s.height, s.width, s.pix_fmt = h, w, "yuv420p"
    if times is not None:
        s.codec_context.time_base = s.time_base = Fraction(1, 90000)
    for i in range(n):
        frame = av.VideoFrame.from_ndarray(np.full((h, w, 3), 10 * i, np.uint8), format="rgb24")
        if times is not None:
            frame.pts, frame.time_base = round(times[i] * 90000), Fraction(1, 90000)
        for p in s.encode(frame):
            out.mux(p)
    for p in s.encode():
        out.mux(p)
    out.close()
    return path


def _labels(n=12, h=48, w=64):
    lab = np.zeros((n, h, w), np.uint32)
    for t in range(n):
        lab[t, 10:20, 5 + t:15 + t] = 1
        lab[t, 30:40, 30:44] = 7
    return lab


def test_movie_of_a_video_keeps_count_size_and_rate(tmp_path):
    src = VideoFile(_video(tmp_path / "src.mp4"))
    out = export_movie(_labels(), tmp_path / "over.mp4", image=src, ids=False)
    movie = VideoFile(out)
    assert movie.shape == (12, 48, 64, 3)
    assert movie.frame_rate == Fraction(30000, 1001)
    # object 7 is drawn in its colour over the source's grey
    inside = movie[3][35, 37].astype(int)
    grey = 30
    want = 0.55 * grey + 0.45 * object_colors(np.array([7]))[0]
    assert np.abs(inside - want).max() < 12
    assert np.abs(movie[3][2, 60].astype(int) - grey).max() < 6  # background untouched
    labelled = VideoFile(export_movie(_labels(), tmp_path / "ids.mp4", image=src))
    assert np.abs(labelled[3][35, 37].astype(int) - inside).max() > 40  # the id is written


def test_array_image_fps_odd_size_and_the_export_dispatch(tmp_path):
    image = np.random.default_rng(0).integers(0, 4000, (5, 31, 45)).astype(np.uint16)
    labels = _labels(5, 31, 45)
    path = export_labels(labels, tmp_path / "m.mp4", image=image, fps=7)
    movie = VideoFile(path)
    assert movie.shape == (5, 32, 46, 3) and movie.fps == 7  # padded to even sizes
    with pytest.raises(ExportError, match="already exists"):
        export_labels(labels, path, image=image, format="movie")
    export_labels(labels, path, image=image, format="mp4", overwrite=True, ids=False,
                  contours=False, alpha=0.2)
    with pytest.raises(ExportError, match="takes no option"):
        export_labels(labels, tmp_path / "x.mp4", image=image, colour="red")


def test_variable_frame_rate_follows_the_source(tmp_path):
    times = [0, 0.05, 0.2, 0.25, 0.6, 0.65]
    src = _video(tmp_path / "vfr.mp4", n=6, times=times)
    out = export_movie(_labels(6), tmp_path / "o.mp4", image=src)
    np.testing.assert_allclose(VideoFile(out).timestamps, times, atol=1e-3)


def test_the_store_s_source_image_is_used(tmp_path):
    src = _video(tmp_path / "src.mp4", n=4)
    store = LabelsStore.create(tmp_path / "l.zarr", (4, 48, 64),
                               provenance={"source": {"path": str(src), "format": "other"}})
    store.paint((2,), _labels(4)[2] == 7, 7)
    movie = VideoFile(export_labels(store, tmp_path / "o.mkv"))
    assert movie.shape == (4, 48, 64, 3) and movie.fps == pytest.approx(30000 / 1001)
    bare = LabelsStore.create(tmp_path / "bare.zarr", (4, 48, 64))
    with pytest.raises(ExportError, match="pass image="):
        export_movie(bare, tmp_path / "b.mp4")


def test_colours_follow_the_ids():
    np.testing.assert_array_equal(object_colors(np.arange(1, 30)), label_colors(29)[1:])
    a = np.zeros((20, 20), np.uint32)
    a[2:8, 2:8] = 5
    b = a.copy()
    b[12:18, 12:18] = 2  # another object appears: 5 keeps its colour
    rgb = np.zeros((20, 20, 3), np.uint8)
    fa = render_movie_frame(rgb, a, ids=False, contours=False)
    fb = render_movie_frame(rgb, b, ids=False, contours=False)
    np.testing.assert_array_equal(fa[4, 4], fb[4, 4])
    assert not np.array_equal(fb[14, 14], fb[4, 4])


def test_bad_input_writes_nothing(tmp_path):
    labels = _labels(4)
    image = np.zeros((4, 48, 64), np.uint8)
    cases = [
        (dict(labels_or_store=np.zeros((2, 4, 48, 64), np.uint32), image=image), "(t, y, x)"),
        (dict(labels_or_store=labels, image=np.zeros((3, 48, 64), np.uint8)), "does not fit"),
        (dict(labels_or_store=labels, image=image, fps=0), "fps must be"),
        (dict(labels_or_store=labels, image=image, codec="nope"), "no 'nope' encoder"),
        (dict(labels_or_store=labels, image=image, timestamps=[0, 1, 1, 2]), "increasing"),
        (dict(labels_or_store=labels, image=image, alpha=3), "alpha"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ExportError, match=message):
            export_movie(path=tmp_path / "bad.mp4", **kwargs)
    with pytest.raises(ExportError, match="is written as"):
        export_movie(labels, tmp_path / "bad.gif", image=image)
    stop = threading.Event()
    calls = []

    def progress(done, total):
        calls.append(done)
        if done == 2:
            stop.set()

    with pytest.raises(Cancelled):
        export_movie(labels, tmp_path / "bad.mp4", image=image, progress=progress, cancel=stop)
    assert calls[:3] == [0, 1, 2]
    assert list(tmp_path.iterdir()) == []
