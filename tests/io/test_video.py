"""Video in: lazy (t, y, x, 3) frames through PyAV, random access, pixel formats, bad files."""

from __future__ import annotations

import struct
import warnings
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from napari_segany import Session, read_image
from napari_segany.errors import VideoError
from napari_segany.io import VideoFile, is_video
from testdata import DATA

DAVIS = DATA / "davis_car-shadow" / "JPEGImages" / "480p" / "car-shadow"
#: Floor of the PSNR (dB) of a DAVIS frame after an H.264 (crf 18, 4:2:0) round trip.
PSNR_FLOOR = 35.0


def write_video(path: Path, frames, *, codec="libx264", rate=25, pix_fmt="yuv420p",
                in_format="rgb24", options=None, container=None, times=None) -> Path:
    out = av.open(str(path), "w", format=container)
    s = out.add_stream(codec, rate=rate)
    s.height, s.width = frames[0].shape[:2]
    s.pix_fmt = pix_fmt
    s.options = dict(options or {})
    if times is not None:
        s.codec_context.time_base = s.time_base = Fraction(1, 90000)
    for i, f in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format=in_format)
        if times is not None:
            frame.pts, frame.time_base = round(times[i] * 90000), Fraction(1, 90000)
        for p in s.encode(frame):
            out.mux(p)
    for p in s.encode():
        out.mux(p)
    out.close()
    return path


def moving_square(n=30, h=48, w=64, dtype=np.uint8):
    scale = 257 if dtype == np.uint16 else 1
    frames = []
    for i in range(n):
        a = np.zeros((h, w, 3), dtype)
        a[..., 0] = (i * 6 % 250) * scale
        a[10:20, i:i + 10] = 200 * scale
        frames.append(a)
    return frames


def plain_pyav(path: Path) -> list[np.ndarray]:
    """Every frame by sequential decoding with PyAV alone (the reference)."""
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


@pytest.fixture(scope="module")
def long_gop(tmp_path_factory) -> Path:
    """H.264 with B-frames, keyframes every 12 frames."""
    path = tmp_path_factory.mktemp("video") / "gop.mp4"
    return write_video(path, moving_square(40), options={"g": "12", "bf": "2"})


@pytest.mark.data
@pytest.mark.skipif(not DAVIS.is_dir(), reason="shared DAVIS data not present")
def test_davis_mp4_round_trip(tmp_path):
    from PIL import Image

    originals = [np.asarray(Image.open(f).convert("RGB")) for f in sorted(DAVIS.glob("*.jpg"))]
    path = write_video(tmp_path / "car.mp4", originals, rate=24, options={"crf": "18"})
    video = read_image(path).data
    assert isinstance(video, VideoFile)
    assert video.shape == (len(originals),) + originals[0].shape == (40, 480, 854, 3)
    assert video.dtype == np.uint8 and video.fps == 24 and not video.variable_frame_rate
    np.testing.assert_allclose(video.timestamps, np.arange(40) / 24)
    scores = [psnr(video[i], originals[i]) for i in range(len(video))]
    assert min(scores) > PSNR_FLOOR, scores


def test_forward_backward_and_random_access_agree(long_gop):
    ref = plain_pyav(long_gop)
    frame_bytes = 48 * 64 * 3
    for cache in (0, 3 * frame_bytes, 100 * frame_bytes):
        fwd = VideoFile(long_gop, cache_bytes=cache)
        assert len(fwd) == len(ref) == 40
        assert all(np.array_equal(fwd[i], ref[i]) for i in range(40))
        bwd = VideoFile(long_gop, cache_bytes=cache)
        assert all(np.array_equal(bwd[i], ref[i]) for i in reversed(range(40)))
        rnd = VideoFile(long_gop, cache_bytes=cache)
        order = np.random.default_rng(1).permutation(40)
        assert all(np.array_equal(rnd[int(i)], ref[i]) for i in order)
    assert list(fwd.keyframes) == [0, 12, 24, 36]
    assert fwd.stats["seeks"] <= 1  # sequential reading never seeks again


def test_backward_reading_reuses_the_cache(long_gop):
    small = VideoFile(long_gop, cache_bytes=48 * 64 * 3)  # one frame: a GOP per frame
    big = VideoFile(long_gop)
    for v in (small, big):
        for i in reversed(range(len(v))):
            v[i]
    assert big.stats["decoded"] <= 40 + 12  # each GOP decoded about once
    assert small.stats["decoded"] > 3 * big.stats["decoded"]


def test_indexing_like_an_array(long_gop):
    v = VideoFile(long_gop)
    ref = np.stack(plain_pyav(long_gop))
    np.testing.assert_array_equal(v[-1], ref[-1])
    np.testing.assert_array_equal(v[3:9:2, 5:10, :, 0], ref[3:9:2, 5:10, :, 0])
    np.testing.assert_array_equal(v[..., 1][7], ref[7, ..., 1])
    np.testing.assert_array_equal(v[[4, 1]], ref[[4, 1]])
    np.testing.assert_array_equal(np.asarray(v), ref)
    assert v.ndim == 4 and v.nbytes == ref.nbytes
    out = v[5]
    out[:] = 0  # a copy: the cache is not changed
    np.testing.assert_array_equal(v[5], ref[5])
    with pytest.raises(IndexError):
        v[40]


@pytest.mark.parametrize("name, codec, container", [
    ("a.avi", "mpeg4", None), ("a.mkv", "libx264", None), ("a.mov", "libx264", None),
    ("a.webm", "libvpx-vp9", None)])
def test_containers(tmp_path, name, codec, container):
    frames = moving_square(20)
    path = write_video(tmp_path / name, frames, codec=codec, container=container,
                       options={"bf": "2"} if codec == "mpeg4" else None)
    assert is_video(path)
    v = VideoFile(path)
    assert v.shape == (20, 48, 64, 3) and v.fps == 25
    ref = plain_pyav(path)
    assert all(np.array_equal(v[i], ref[i]) for i in reversed(range(20)))


def test_ten_bit_video_is_uint16_through_the_normaliser(tmp_path):
    from napari_segany import Normalizer

    frames = moving_square(12, dtype=np.uint16)
    path = write_video(tmp_path / "deep.mkv", frames, codec="ffv1", pix_fmt="yuv444p10le",
                       in_format="rgb48le")
    v = VideoFile(path)
    assert v.dtype == np.uint16 and v.bit_depth == 10 and v.pixel_format == "yuv444p10le"
    assert abs(int(v[3][15, 5, 0]) - 200 * 257) < 2 * 257  # full 16-bit scale
    exact = Normalizer.fit(v, rgb=True, mode="window", window="file")
    rgb = exact(v[3])
    assert rgb.dtype == np.uint8 and abs(int(rgb[15, 5, 0]) - 200) <= 2
    auto = Normalizer.fit(v, rgb=True)  # percentiles, as for any 16-bit image
    assert auto.mode == "percentile" and auto(v[3]).dtype == np.uint8


def test_variable_frame_rate_keeps_timestamps(tmp_path):
    times = [0, 0.04, 0.1, 0.3, 0.34, 0.5]
    path = write_video(tmp_path / "vfr.mp4", moving_square(6), times=times)
    v = VideoFile(path)
    np.testing.assert_allclose(v.timestamps, times, atol=1e-4)
    assert v.variable_frame_rate


def test_session_and_reader_take_a_video(long_gop, rule_backend, tmp_path):
    img = read_image(long_gop)
    assert img.rgb and img.metadata["format"] == "video" and img.metadata["fps"] == 25
    session = Session(img.data, rule_backend, rgb=True, labels=tmp_path / "l.zarr")
    assert session.shape == (40, 48, 64)
    np.testing.assert_array_equal(session.plane_rgb((30,)), plain_pyav(long_gop)[30])
    from napari_segany._napari.reader import get_reader

    layers = get_reader(str(long_gop))(str(long_gop))
    data, kwargs, kind = layers[0]
    assert kind == "image" and kwargs["rgb"] and data.shape == (40, 48, 64, 3)
    assert kwargs["metadata"]["fps"] == 25


# ------------------------------------------------------------------------------ bad input
def _audio_only(path: Path) -> Path:
    out = av.open(str(path), "w")
    s = out.add_stream("aac", rate=16000)
    frame = av.AudioFrame.from_ndarray(np.zeros((1, 16000), np.float32), format="fltp",
                                       layout="mono")
    frame.sample_rate = 16000
    for p in s.encode(frame):
        out.mux(p)
    for p in s.encode():
        out.mux(p)
    out.close()
    return path


def test_bad_files_are_refused_clearly(tmp_path, long_gop):
    data = long_gop.read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])  # moov atom lost
    (tmp_path / "noise.mp4").write_bytes(np.random.default_rng(0).bytes(4000))
    (tmp_path / "empty.mkv").write_bytes(b"")
    _audio_only(tmp_path / "voice.m4v")
    cases = {"cut.mp4": "truncated, damaged or not a video", "noise.mp4": "cannot be read",
             "empty.mkv": "cannot be read", "voice.m4v": "no video stream"}
    for name, message in cases.items():
        with pytest.raises(VideoError, match=message):
            VideoFile(tmp_path / name)
        with pytest.raises(ValueError, match=message):
            read_image(tmp_path / name)


def test_truncated_files_and_lying_frame_counts(tmp_path):
    frames = moving_square(30)
    fast = write_video(tmp_path / "fast.mp4", frames, container="mp4")
    # index at the front (faststart): a cut file still opens, but holds fewer frames
    out = av.open(str(tmp_path / "front.mp4"), "w", options={"movflags": "faststart"})
    s = out.add_stream("libx264", rate=25)
    s.height, s.width, s.pix_fmt = 96, 128, "yuv420p"
    rng = np.random.default_rng(0)
    for f in (rng.integers(0, 255, (96, 128, 3), dtype=np.uint8) for _ in range(30)):
        for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
            out.mux(p)
    for p in s.encode():
        out.mux(p)
    out.close()
    front = (tmp_path / "front.mp4").read_bytes()
    (tmp_path / "front_cut.mp4").write_bytes(front[: int(len(front) * 0.6)])
    with pytest.raises(VideoError, match=r"declares 30 frames but holds \d+"):
        VideoFile(tmp_path / "front_cut.mp4")
    # an AVI whose header claims 90 frames
    avi = bytearray(write_video(tmp_path / "a.avi", frames, codec="mpeg4").read_bytes())
    at = avi.find(b"strh") + 8 + 32  # AVISTREAMHEADER.dwLength
    avi[at:at + 4] = struct.pack("<I", 90)
    (tmp_path / "lying.avi").write_bytes(bytes(avi))
    with pytest.raises(VideoError, match="declares 90 frames but holds 30"):
        VideoFile(tmp_path / "lying.avi")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        v = VideoFile(tmp_path / "lying.avi", strict=False)
    assert len(v) == 30 and "declares 90" in str(w[0].message)
    # an MKV cut in the middle: it declares a duration, not a count
    mkv = write_video(tmp_path / "a.mkv", frames).read_bytes()
    (tmp_path / "cut.mkv").write_bytes(mkv[: int(len(mkv) * 0.6)])
    with pytest.raises(VideoError, match="truncated"):
        VideoFile(tmp_path / "cut.mkv")
    assert len(VideoFile(fast)) == 30
