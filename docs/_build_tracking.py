"""Make the pictures of docs/tracking.md (run under a display, e.g. ``xvfb-run -a``).

    xvfb-run -a .venv/bin/python docs/_build_tracking.py

Tracks the synthetic movie of tests/tracking/cell_movie.py (cells with two divisions) with
its perfect model, then writes docs/tracking/overlay_frame.png (frame 16 of the overlay
movie, 4x enlarged), docs/tracking/lineage.txt (res_track.txt) and
docs/tracking/tracks_layer.png (a napari screenshot: image, labels and the Tracks layer
with its lineage graph).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "tracking")]

from cell_movie import LineageBackend, cell_movie  # noqa: E402

from napari_segany import Session  # noqa: E402
from napari_segany.exports import export_movie  # noqa: E402
from napari_segany.io import VideoFile  # noqa: E402
from napari_segany.overlay import save_png  # noqa: E402
from napari_segany.prompts import ObjectPrompt, PromptSet  # noqa: E402
from napari_segany.tracking import (  # noqa: E402
    TrackSettings,
    export_ctc,
    track,
    tracks_layer_data,
)

OUT = ROOT / "docs" / "tracking"


def main() -> None:
    OUT.mkdir(exist_ok=True)
    image, truth = cell_movie()
    with tempfile.TemporaryDirectory() as tmp:
        session = Session(image, LineageBackend(image, truth), labels=Path(tmp) / "l.zarr")
        prompts = PromptSet()
        for oid, (x, y) in {1: (40, 15), 2: (60, 50), 3: (15, 75)}.items():
            prompts.add((0,), oid, ObjectPrompt(points=[[x, y]]))
        result = track(session, prompts, settings=TrackSettings(min_area=10))
        print(result.lineage, result.divisions)
        labels = np.asarray(session.labels.array[:])
        big = np.kron(image, np.ones((1, 4, 4), np.uint8))
        big_labels = np.kron(labels, np.ones((1, 4, 4), np.uint32))
        movie = export_movie(big_labels, Path(tmp) / "overlay.mp4", image=big, fps=5)
        save_png(OUT / "overlay_frame.png", VideoFile(movie)[16])
        ctc = export_ctc(session.labels, Path(tmp) / "res")
        (OUT / "lineage.txt").write_text((ctc / "res_track.txt").read_text())
        data, kwargs, _ = tracks_layer_data(session.labels)
        screenshot(image, labels, data, kwargs)


def screenshot(image, labels, data, kwargs) -> None:
    import napari

    viewer = napari.Viewer(show=True)
    viewer.window.resize(900, 760)
    viewer.add_image(image, name="cells", scale=(1, 4, 4))
    viewer.add_labels(labels, name="labels", scale=(1, 4, 4), opacity=0.35)
    kwargs.update(tail_length=20, tail_width=3, scale=(1, 4, 4), color_by="track_id")
    viewer.add_tracks(data, **kwargs)
    viewer.dims.set_current_step(0, 19)
    viewer.reset_view()
    shot = viewer.screenshot(canvas_only=True, flash=False)
    save_png(OUT / "tracks_layer.png", shot[..., :3])
    viewer.close()


if __name__ == "__main__":
    main()
