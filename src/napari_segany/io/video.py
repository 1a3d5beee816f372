"""Video files (MP4, MOV, AVI, MKV, WebM) as lazy ``(t, y, x, 3)`` arrays, decoded with PyAV.

:class:`VideoFile` opens a video with PyAV (the ``av`` package, whose wheels carry FFmpeg)
and reads frames only when they are indexed: nothing is decoded to JPEG, nothing is held
beyond a bounded cache.

Random access
-------------
Opening demuxes the file once without decoding (packets only, a fraction of decoding's
cost) and keeps a *keyframe index*: the presentation timestamp of every frame and which
frames are keyframes. Frame ``i`` is then found by seeking to the last keyframe at or
before it and decoding forward; a decoder that is already positioned before ``i`` in the
same group of pictures just goes on (sequential reading never seeks). Decoded frames are
kept in an LRU cache bounded in bytes (``cache_bytes``, 256 MiB by default), so reading
backwards through a long-GOP H.264 file decodes each group of pictures about once per
cache-full of frames instead of once per frame; frames decoded on the way that would
fall out of the cache before they are used are not even converted to RGB.

Pixel formats
-------------
8-bit video (yuv420p, yuv444p, nv12, gray, rgb24, ...) is returned as uint8 RGB; deeper
formats (10-, 12-, 16-bit: yuv420p10le, p010, gray16le, rgb48le, ...) as uint16 RGB
scaled to the full 0..65535 range. The intensity normaliser maps either to the model's
input like any other image (uint8 passes through; uint16 by percentiles, or exactly
linearly with ``window="file"``, which reads :attr:`VideoFile.window`).

Bad input
---------
A file that is not a video, a file without a video stream (audio only), a truncated or
corrupt file, and a file whose header declares another number of frames than it holds
are refused when opened, with a :class:`~napari_segany.errors.VideoError` naming the
file and what to do: the first and the last group of pictures are decoded then
(``check="ends"``; ``check="full"`` decodes every frame once), so a stack that opened
does not fail half-way through a propagation.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections import OrderedDict
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import VideoError

__all__ = ["VideoFile", "VideoError", "VIDEO_SUFFIXES", "is_video", "read_video"]

#: File name endings read as video.
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm")
#: Default byte budget of the decoded-frame cache.
CACHE_BYTES = 256 * 2**20
_CHECKS = ("ends", "full", "none")


def is_video(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a video file by its ending (:data:`VIDEO_SUFFIXES`)."""
    return Path(path).name.lower().endswith(VIDEO_SUFFIXES) and Path(path).is_file()


def read_video(path: str | os.PathLike, **options: Any) -> VideoFile:
    """Open a video as a lazy ``(t, y, x, 3)`` array (see :class:`VideoFile`)."""
    return VideoFile(path, **options)


def _av() -> Any:
    try:
        import av
    except ImportError:  # pragma: no cover - a dependency; named for broken installs
        raise VideoError("reading video needs PyAV: pip install av") from None
    return av


class VideoFile:
    """A video file as a lazy ``(t, H, W, 3)`` array; frames are decoded when indexed.

    Parameters
    ----------
    path : str or path
        MP4, MOV, M4V, AVI, MKV or WebM (any container and codec FFmpeg reads).
    cache_bytes : int
        Byte budget of the decoded-frame LRU cache (at least one frame is kept).
    strict : bool
        Refuse a file whose header declares another frame count than it holds (a
        truncated or damaged file). ``False`` uses the frames found, with a warning.
    check : {"ends", "full", "none"}
        What is decoded when the file is opened, besides the first frame: the last group
        of pictures (default), every frame, or nothing (decoded, not converted to RGB).
    threads : bool
        Let FFmpeg decode with several threads.

    Attributes
    ----------
    shape : tuple of int
        ``(t, H, W, 3)``.
    dtype : numpy.dtype
        uint8 for 8-bit video, uint16 (0..65535) for deeper pixel formats.
    timestamps : numpy.ndarray
        ``(t,)`` float64 presentation times in seconds (variable frame rates kept).
    fps : float
        Frames per second (the stream's average rate, else from the timestamps).
    frame_rate : fractions.Fraction
        The same as a fraction (e.g. 30000/1001).
    variable_frame_rate : bool
        The frame intervals differ by more than 1 %.
    keyframes : numpy.ndarray
        Indices of the keyframes (where decoding can start).
    pixel_format, codec, bit_depth : str, str, int
        What the file holds.
    declared_frames : int
        The frame count in the file's header (0 when it declares none).
    window : tuple of float or None
        ``(center, width)`` of the full range for > 8-bit video (for ``window="file"``).
    stats : dict
        ``decoded`` frames, cache ``hits``, ``seeks`` so far.

    Notes
    -----
    Frames are returned as new, writable arrays. One :class:`VideoFile` may be read from
    several threads (decoding is serialised by a lock).
    """

    rgb = True

    def __init__(self, path: str | os.PathLike, *, cache_bytes: int = CACHE_BYTES,
                 strict: bool = True, check: str = "ends", threads: bool = True) -> None:
        if check not in _CHECKS:
            raise ValueError(f"check must be one of {_CHECKS}, got {check!r}")
        if int(cache_bytes) < 0:
            raise ValueError(f"cache_bytes must be >= 0, got {cache_bytes!r}")
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"video not found: {self.path}")
        av = _av()
        self._lock = threading.RLock()
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self.stats = {"decoded": 0, "hits": 0, "seeks": 0}
        self._frames: Any = None  # the live decoder (an iterator of frames)
        self._pos: int | None = None  # index of the last frame it delivered
        try:
            self._container = av.open(str(self.path), mode="r")
        except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
            raise VideoError(f"{self.path} cannot be read as a video ({_reason(exc)}): it is "
                             "truncated, damaged or not a video file; re-encode or re-export "
                             "it") from None
        try:
            self._open(av, int(cache_bytes), bool(strict), check, bool(threads))
        except BaseException:
            self.close()
            raise

    # -- opening --------------------------------------------------------------------------------
    def _open(self, av: Any, cache_bytes: int, strict: bool, check: str, threads: bool) -> None:
        videos = list(self._container.streams.video)
        if not videos:
            kinds = sorted({s.type for s in self._container.streams}) or ["no streams"]
            raise VideoError(f"{self.path} holds no video stream (only {', '.join(kinds)}); "
                             "open a file with pictures")
        st = self._stream = videos[0]
        if threads:
            st.thread_type = "AUTO"
        ctx = st.codec_context
        self.codec = ctx.name
        fmt = ctx.format
        if fmt is None or not ctx.width or not ctx.height:
            raise VideoError(f"{self.path}: its video stream has no picture size or pixel "
                             "format (damaged header); re-encode it")
        self.pixel_format = fmt.name
        self.bit_depth = max((c.bits for c in fmt.components), default=8)
        self._out_format = "rgb24" if self.bit_depth <= 8 else "rgb48le"
        self.dtype = np.dtype(np.uint8 if self.bit_depth <= 8 else np.uint16)
        self.window = None if self.bit_depth <= 8 else (65535 / 2.0, 65535.0)
        self.declared_frames = int(st.frames or 0)
        pts, keys = self._index(av)
        n = len(pts)
        if n == 0:
            raise VideoError(f"{self.path} holds a video stream without frames (empty or "
                             "truncated); re-encode it")
        if self.declared_frames and self.declared_frames != n:
            msg = (f"{self.path} declares {self.declared_frames} frames but holds {n} "
                   "readable ones: the file is truncated or its header is wrong")
            if strict:
                raise VideoError(msg + "; remux or re-encode it (e.g. 'ffmpeg -i IN -c copy "
                                 "OUT.mkv'), or open it with strict=False to use the "
                                 f"{n} frames found")
            warnings.warn(msg + f"; the {n} frames found are used", stacklevel=4)
        self._pts = pts
        self._index_of = {int(p): i for i, p in enumerate(pts)}
        self.keyframes = np.flatnonzero(keys)
        if not len(self.keyframes) or self.keyframes[0] != 0:
            self.keyframes = np.concatenate([[0], self.keyframes]).astype(np.int64)
        tb = st.time_base or Fraction(1, 1)
        self.timestamps = pts.astype(np.float64) * float(tb)
        rate = st.average_rate or st.guessed_rate
        if not rate and n > 1 and self.timestamps[-1] > self.timestamps[0]:
            rate = Fraction((n - 1) / (self.timestamps[-1] - self.timestamps[0])
                            ).limit_denominator(1001)
        self.frame_rate = Fraction(rate) if rate else Fraction(0)
        self.fps = float(self.frame_rate)
        steps = np.diff(self.timestamps)
        self.variable_frame_rate = bool(len(steps) > 1 and
                                        np.ptp(steps) > 0.01 * max(float(np.median(steps)),
                                                                   1e-12))
        self._check_duration(strict)
        self._frame_shape = (int(ctx.height), int(ctx.width), 3)
        self.shape = (n,) + self._frame_shape
        self.ndim = 4
        frame_bytes = int(np.prod(self._frame_shape)) * self.dtype.itemsize
        self._capacity = max(1, cache_bytes // frame_bytes)
        self._check(check)

    def _check_duration(self, strict: bool) -> None:
        """A container that declares no frame count (MKV, WebM) but a duration: the frames
        found must span it (a cut file keeps the duration of the whole)."""
        c, n = self._container, len(self._pts)
        if self.declared_frames or len(c.streams) != 1 or not c.duration or not self.fps:
            return
        declared = c.duration / 1e6
        found = float(self.timestamps[-1] - self.timestamps[0]) + 1.0 / self.fps
        if declared > found + 2.0 / self.fps + 0.01 * declared:
            msg = (f"{self.path} declares {declared:.3g} s of video but holds {n} frames "
                   f"({found:.3g} s): the file is truncated")
            if strict:
                raise VideoError(msg + "; re-encode it, or open it with strict=False to use "
                                 f"the {n} frames found")
            warnings.warn(msg + f"; the {n} frames found are used", stacklevel=5)

    def _index(self, av: Any) -> tuple[np.ndarray, np.ndarray]:
        """Presentation timestamps (sorted) and keyframe flags of every frame, by demuxing."""
        stamps: list[int] = []
        keys: set[int] = set()
        try:
            for packet in self._container.demux(self._stream):
                if packet.size == 0 or packet.is_discard:
                    continue  # the final flush packet; frames an edit list leaves out
                ts = packet.pts if packet.pts is not None else packet.dts
                if ts is None:
                    raise VideoError(f"{self.path} has video packets without timestamps; "
                                     "remux it (e.g. 'ffmpeg -i IN -c copy OUT.mkv')")
                stamps.append(int(ts))
                if packet.is_keyframe:
                    keys.add(int(ts))
        except av.error.FFmpegError as exc:
            raise VideoError(f"{self.path} is damaged after {len(stamps)} frames "
                             f"({_reason(exc)}); re-encode it") from None
        pts = np.array(sorted(stamps), dtype=np.int64)
        if len(np.unique(pts)) != len(pts):
            raise VideoError(f"{self.path} has frames with the same timestamp; remux it "
                             "(e.g. 'ffmpeg -i IN -c copy OUT.mkv')")
        return pts, np.isin(pts, np.fromiter(keys, np.int64, len(keys)))

    def _check(self, check: str) -> None:
        """Decode the first frame, and the last group of pictures (or all) without
        converting it, so that a file that opens can be read to its end."""
        self.frame(0)
        if check != "none" and len(self) > 1:
            self._verify(0 if check == "full" else self._keyframe_before(len(self) - 1))
        with self._lock:
            self.stats.update(decoded=0, hits=0, seeks=0)

    def _verify(self, key: int) -> None:
        """Every frame from keyframe ``key`` to the end decodes (pictures are not kept)."""
        av = _av()
        n, seen = len(self), set()
        self._seek(key)
        try:
            for frame in self._frames:
                idx = self._index_of.get(frame.pts) if frame.pts is not None else None
                if idx is not None and idx >= key:
                    seen.add(idx)
        except av.error.FFmpegError as exc:
            missing = sorted(set(range(key, n)) - seen)
            raise VideoError(f"frame {missing[0] if missing else key} of {self.path} cannot be "
                             f"decoded ({_reason(exc)}): the file is damaged; re-encode it"
                             ) from None
        finally:
            self._frames = self._pos = None
        missing = sorted(set(range(key, n)) - seen)
        if missing and len(missing) < n - key:  # timestamps differ from the index: trust frames
            raise VideoError(f"frames {', '.join(map(str, missing[:5]))} of {self.path} are in "
                             "its index but could not be decoded: the file is truncated or "
                             "damaged; re-encode it")

    # -- array protocol -------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.shape[0]

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def __repr__(self) -> str:
        vfr = ", variable frame rate" if self.variable_frame_rate else ""
        return (f"<VideoFile {self.path.name} {self.shape} {self.dtype} {self.codec} "
                f"{self.pixel_format} {self.fps:.3g} fps{vfr}>")

    def __getitem__(self, key: Any) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        if any(k is Ellipsis for k in key):
            i = next(n for n, k in enumerate(key) if k is Ellipsis)
            fill = (slice(None),) * (self.ndim - len(key) + 1)
            key = key[:i] + fill + key[i + 1:]
        if not key:
            key = (slice(None),)
        first, rest = key[0], key[1:]
        if isinstance(first, (int, np.integer)):
            return self.frame(range(len(self))[int(first)])[rest]
        if isinstance(first, slice):
            picks = range(len(self))[first]
        else:
            picks = [range(len(self))[int(i)] for i in np.asarray(first).ravel()]
        frames = [self.frame(i) for i in picks]
        out = np.stack(frames) if frames else np.empty((0,) + self._frame_shape, self.dtype)
        return out[(slice(None),) + rest]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[:]
        return out if dtype is None else out.astype(dtype)

    def close(self) -> None:
        """Close the file (frames in the cache stay readable)."""
        container = getattr(self, "_container", None)
        if container is not None:
            self._frames = None
            container.close()
            self._container = None

    def __enter__(self) -> VideoFile:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    # -- decoding -------------------------------------------------------------------------------
    def frame(self, i: int) -> np.ndarray:
        """Frame ``i`` as a new ``(H, W, 3)`` array (uint8, or uint16 for deep video)."""
        i = range(len(self))[int(i)]
        with self._lock:
            hit = self._cache.get(i)
            if hit is not None:
                self._cache.move_to_end(i)
                self.stats["hits"] += 1
                return hit.copy()
            return self._decode(i).copy()

    def _keyframe_before(self, i: int) -> int:
        return int(self.keyframes[np.searchsorted(self.keyframes, i, "right") - 1])

    def _decode(self, i: int) -> np.ndarray:
        if self._container is None:
            raise VideoError(f"{self.path} was closed; open it again")
        key = self._keyframe_before(i)
        if self._frames is None or self._pos is None or not key - 1 <= self._pos < i:
            self._seek(key)
            floor = key
        else:
            floor = self._pos + 1
        keep_from = i - self._capacity + 1
        av = _av()
        try:
            for frame in self._frames:
                expected = floor if self._pos is None else self._pos + 1
                idx = expected if frame.pts is None else self._index_of.get(frame.pts)
                if idx is None or idx < floor:
                    continue  # before the keyframe after a seek (open-GOP leading frames)
                if idx > i and self._pos is None:  # the demuxer seeked past the target
                    return self._from_start(i)
                self._pos = idx
                self.stats["decoded"] += 1
                if idx >= keep_from:
                    arr = self._to_array(frame, idx)
                    self._store(idx, arr)
                    if idx == i:
                        return arr
                if idx >= i:
                    break
        except av.error.FFmpegError as exc:
            self._frames = self._pos = None
            raise VideoError(f"frame {i} of {self.path} cannot be decoded ({_reason(exc)}): "
                             "the file is damaged; re-encode it") from None
        self._frames = self._pos = None
        raise VideoError(f"frame {i} of {self.path} is in its index but could not be decoded: "
                         "the file is truncated or damaged; re-encode it")

    def _seek(self, key: int) -> None:
        self._container.seek(int(self._pts[key]), stream=self._stream, backward=True,
                             any_frame=False)
        self._frames = self._container.decode(self._stream)
        self._pos = None
        self.stats["seeks"] += 1

    def _from_start(self, i: int) -> np.ndarray:
        """Decode from the first frame (a container whose seeking lands past the target)."""
        self.keyframes = np.array([0], dtype=np.int64)  # seek only to the start from now on
        self._frames = self._pos = None
        return self._decode(i)

    def _to_array(self, frame: Any, idx: int) -> np.ndarray:
        if (frame.height, frame.width) != self._frame_shape[:2]:
            raise VideoError(f"frame {idx} of {self.path} is {frame.width}x{frame.height}, "
                             f"the video {self._frame_shape[1]}x{self._frame_shape[0]}; "
                             "re-encode it at one size")
        return frame.to_ndarray(format=self._out_format)

    def _store(self, idx: int, arr: np.ndarray) -> None:
        self._cache[idx] = arr
        self._cache.move_to_end(idx)
        while len(self._cache) > self._capacity:
            self._cache.popitem(last=False)


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return text.split(":")[-1].strip() if ":" in text and len(text) > 80 else text.strip()
