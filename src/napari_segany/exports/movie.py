"""Overlay movies: the image with its labels drawn over it, as an H.264 MP4 (PyAV).

Each object keeps one colour through the movie (chosen from its id, so an object has the
same colour in every frame and in every export), its outline, and its id written at its
centre. Frames are rendered and encoded one at a time: a movie of any length is written
in bounded memory. The frame rate is the source's (a video's own rate, and its timestamps
when the rate varies), else ``fps``.

Licence note: PyAV's wheels encode H.264 with the bundled libx264, which is GPL-2.0-or-later
software; see ``docs/tracking.md`` for what that means when the wheels are redistributed,
and ``codec=`` for other encoders.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from .._progress import Cancel, Progress, check_cancel, counter
from ..errors import ExportError
from ..intensity import Normalizer
from ..io import read_image
from ..io.video import VideoFile
from .common import _Labels, _target

__all__ = ["export_movie", "object_colors", "render_movie_frame", "MOVIE_CONTAINERS"]

#: File endings of movies and the container each is written as.
MOVIE_CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}
_GOLDEN = 0.618033988749895


def object_colors(ids: np.ndarray, *, seed: int = 3) -> np.ndarray:
    """``(N, 3)`` uint8 colours of object ids (0 is black); the same id, the same colour.

    The hues follow :func:`napari_segany.overlay.label_colors`: id ``k`` gets the colour of
    row ``k`` there, for ids up to 2**32 - 1.
    """
    from matplotlib.colors import hsv_to_rgb

    ids = np.asarray(ids, dtype=np.float64).ravel()
    start = np.random.default_rng(seed).uniform()
    hue = (start + (ids - 1) * _GOLDEN) % 1.0
    hsv = np.stack([hue, np.full_like(hue, 0.85), np.ones_like(hue)], axis=1)
    out = (hsv_to_rgb(hsv) * 255).round().astype(np.uint8)
    out[ids == 0] = 0
    return out


def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one bitmap size
        return ImageFont.load_default()


def render_movie_frame(rgb: np.ndarray, labels: np.ndarray, *, alpha: float = 0.45,
                       contours: bool = True, ids: bool = True,
                       font_size: int | None = None) -> np.ndarray:
    """One overlay frame: ``labels`` blended over ``rgb`` in their id colours.

    Parameters
    ----------
    rgb : numpy.ndarray
        ``(H, W, 3)`` uint8.
    labels : numpy.ndarray
        ``(H, W)`` integer labels (0 = background).
    alpha : float
        Fill opacity (0: outlines only).
    contours : bool
        Draw each object's outline in its colour.
    ids : bool
        Write each object's id at its centre.
    font_size : int, optional
        Text height in pixels (default: 1/40 of the frame height, at least 10).

    Returns
    -------
    numpy.ndarray
        ``(H, W, 3)`` uint8.
    """
    from PIL import Image, ImageDraw

    labels = np.asarray(labels)
    present = np.unique(labels)
    present = present[present > 0]
    if not present.size:
        return np.asarray(rgb, dtype=np.uint8).copy()
    lut_ids = np.concatenate([[0], present])
    index = np.searchsorted(lut_ids, labels)  # 0 background, 1.. the objects present
    col = object_colors(lut_ids).astype(np.float32)
    out = np.asarray(rgb, dtype=np.float32).copy()
    fg = index > 0
    out[fg] = (1 - alpha) * out[fg] + alpha * col[index[fg]]
    if contours:
        edges = _edges(index)
        out[edges] = col[index[edges]]
    frame = np.clip(out, 0, 255).astype(np.uint8)
    if not ids:
        return frame
    rows, cols = np.nonzero(fg)
    which = index[rows, cols]
    count = np.bincount(which, minlength=len(lut_ids))[1:]
    cy = np.bincount(which, weights=rows, minlength=len(lut_ids))[1:] / count
    cx = np.bincount(which, weights=cols, minlength=len(lut_ids))[1:] / count
    centres = list(zip(cy, cx, strict=True))
    image = Image.fromarray(frame)
    draw = ImageDraw.Draw(image)
    size = int(font_size or max(10, labels.shape[0] // 40))
    font = _font(size)
    for oid, (cy, cx) in zip(present, centres, strict=True):
        draw.text((float(cx), float(cy)), str(int(oid)), fill=(255, 255, 255), font=font,
                  anchor="mm", stroke_width=max(1, size // 8), stroke_fill=(0, 0, 0))
    return np.asarray(image)


def _edges(index: np.ndarray) -> np.ndarray:
    """Pixels of an object with a 4-neighbour of another value (the inner outline)."""
    edge = np.zeros(index.shape, bool)
    edge[1:] |= index[1:] != index[:-1]
    edge[:-1] |= index[:-1] != index[1:]
    edge[:, 1:] |= index[:, 1:] != index[:, :-1]
    edge[:, :-1] |= index[:, :-1] != index[:, 1:]
    return edge & (index > 0)


def _source_video(labels: _Labels) -> VideoFile | None:
    path = labels.source().get("path")
    if path and Path(path).is_file() and Path(path).name.lower().endswith(
            (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm")):
        return VideoFile(path)
    return None


def _image(image: Any, labels: _Labels) -> tuple[Any, bool]:
    """The image under the labels (given, or the source the store recorded) and its rgb."""
    if image is None or image is True:  # True: "the source" (the command line's --image source)
        src = labels.source().get("path")
        if not src:
            raise ExportError("a movie needs the image under the labels: pass image= (an "
                              "array or a file; --image on the command line); this store "
                              "records no source image")
        if not Path(src).exists():
            raise ExportError(f"the store's source image {src} no longer exists; pass image= "
                              "(--image) to say where it is")
        image = src
    if isinstance(image, (str, os.PathLike)):
        image = read_image(image).data
    shape = tuple(int(s) for s in image.shape)
    rgb = len(shape) == len(labels.shape) + 1 and shape[-1] in (3, 4)
    if (shape[:-1] if rgb else shape) != labels.shape:
        raise ExportError(f"the image {shape} does not fit the labels {labels.shape}: a movie "
                          "needs an image of the labels' (t, y, x) shape (RGB allowed)")
    return image, rgb


def _timing(image: Any, labels: _Labels, fps: float | None,
            timestamps: Any) -> tuple[Fraction, np.ndarray | None]:
    """The frame rate and, for a variable rate, each frame's time in seconds."""
    video = image if isinstance(image, VideoFile) else None
    if video is None and (fps is None or timestamps is None):
        video = _source_video(labels)
    if timestamps is None and video is not None and video.variable_frame_rate:
        timestamps = video.timestamps
    if fps is None:
        fps = video.frame_rate if video is not None and video.fps > 0 else 10
    try:
        rate = Fraction(fps).limit_denominator(1001)
    except (TypeError, ValueError):
        raise ExportError(f"fps must be a positive number, got {fps!r}") from None
    if not rate > 0:
        raise ExportError(f"fps must be a positive number, got {fps!r}")
    if timestamps is not None:
        timestamps = np.asarray(timestamps, dtype=np.float64).ravel()
        if len(timestamps) != labels.shape[0] or not np.all(np.diff(timestamps) > 0):
            raise ExportError(f"timestamps must be {labels.shape[0]} increasing times in "
                              f"seconds, one per frame, got {len(timestamps)}")
    return rate, timestamps


def _normalizer(normalizer: Any, image: Any, rgb: bool, labels: _Labels) -> Normalizer:
    if isinstance(normalizer, Normalizer):
        return normalizer
    if isinstance(normalizer, dict):
        return Normalizer.from_dict(normalizer)
    if normalizer is not None:
        raise ExportError(f"normalizer must be a Normalizer or its dict, got "
                          f"{type(normalizer).__name__}")
    recorded = labels.provenance.get("normalization")
    if isinstance(recorded, dict):
        try:
            return Normalizer.from_dict(recorded)
        except (KeyError, TypeError, ValueError):
            pass
    return Normalizer.fit(image, rgb=rgb)


def export_movie(
    labels_or_store: Any,
    path: str | os.PathLike,
    *,
    image: Any = None,
    normalizer: Any = None,
    fps: float | None = None,
    timestamps: Any = None,
    alpha: float = 0.45,
    contours: bool = True,
    ids: bool = True,
    codec: str = "libx264",
    crf: int = 18,
    preset: str = "veryfast",
    overwrite: bool = False,
    progress: Progress = None,
    cancel: Cancel = None,
) -> Path:
    """Write an overlay movie (H.264 MP4) of an image with its labels.

    Parameters
    ----------
    labels_or_store : LabelsStore, path of one, or integer array, shape (t, H, W)
    path : str or path
        ``.mp4`` (or ``.m4v``, ``.mov``, ``.mkv``).
    image : array-like or path, optional
        ``(t, H, W)`` or ``(t, H, W, 3)``: a video, a TIFF stack, an array. Default: the
        source image the store recorded (the command line records it).
    normalizer : Normalizer or dict, optional
        How the image becomes RGB; default: the mapping the store recorded, else one
        fitted to the image.
    fps : float, optional
        Frames per second; default: the source video's rate, else 10.
    timestamps : array-like, optional
        ``(t,)`` increasing frame times in seconds (a variable frame rate); default: the
        source video's, when its rate varies.
    alpha : float
        Fill opacity of the objects.
    contours, ids : bool
        Draw outlines; write ids.
    codec : str
        FFmpeg encoder: ``"libx264"`` (H.264, default), ``"libopenh264"``, ``"mpeg4"``,
        ``"libvpx-vp9"`` (with ``.mkv``), ...
    crf : int
        Quality of libx264 (0 lossless .. 51; 18 looks lossless).
    preset : str
        Speed of libx264 (``"ultrafast"`` .. ``"veryslow"``; slower is smaller).
    overwrite : bool
        Replace an existing file.
    progress, cancel
        ``progress(done, total)`` in frames; ``cancel`` stops before the next frame
        (:class:`~napari_segany.errors.Cancelled`; nothing is left under ``path``).

    Returns
    -------
    Path
        ``path``. Frames of odd width or height are padded by one pixel (H.264 4:2:0
        needs even sizes).
    """
    import av

    labels = _Labels(labels_or_store)
    if len(labels.shape) != 3:
        raise ExportError(f"a movie needs (t, y, x) labels, got shape {labels.shape}; for "
                          "(t, z, y, x) export one z-plane (labels[:, z])")
    suffix = Path(path).suffix.lower()
    if suffix not in MOVIE_CONTAINERS:
        raise ExportError(f"a movie is written as {', '.join(MOVIE_CONTAINERS)}, not "
                          f"{Path(path).name!r}")
    if not 0 <= float(alpha) <= 1:
        raise ExportError(f"alpha must be in [0, 1], got {alpha!r}")
    try:
        av.codec.Codec(codec, "w")
    except Exception:
        raise ExportError(f"this FFmpeg has no {codec!r} encoder; choose another codec= "
                          "(e.g. 'libx264', 'libopenh264', 'mpeg4')") from None
    image, rgb = _image(image, labels)
    rate, times = _timing(image, labels, fps, timestamps)
    norm = _normalizer(normalizer, image, rgb, labels)
    t, h, w = labels.shape
    tick = counter(progress, t)
    with _target(path, overwrite, labels) as tmp:
        out = av.open(str(tmp), mode="w", format=MOVIE_CONTAINERS[suffix])
        try:
            stream = out.add_stream(codec, rate=rate)
            stream.width, stream.height = w + w % 2, h + h % 2
            stream.pix_fmt = "yuv420p"
            if codec == "libx264":
                stream.options = {"crf": str(int(crf)), "preset": str(preset)}
            if times is not None:
                stream.codec_context.time_base = stream.time_base = Fraction(1, 90000)
            for n, (key, plane) in enumerate(labels.planes()):
                check_cancel(cancel)
                frame_rgb = norm(image[key[0]])
                picture = render_movie_frame(frame_rgb, plane, alpha=float(alpha),
                                             contours=contours, ids=ids)
                if w % 2 or h % 2:
                    picture = np.pad(picture, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(picture),
                                                   format="rgb24")
                if times is not None:
                    frame.pts = int(round((times[n] - times[0]) * 90000))
                    frame.time_base = Fraction(1, 90000)
                for packet in stream.encode(frame):
                    out.mux(packet)
                if tick:
                    tick()
            for packet in stream.encode():
                out.mux(packet)
        finally:
            out.close()
    return Path(path)
