"""Tests for napari_segany.io (read_image), napari_segany.samples and napari_segany.overlay."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import zarr
from PIL import Image

from napari_segany import io as nio
from napari_segany.io import ImageData, read_image
from napari_segany.overlay import label_colors, render_overlay, save_png
from napari_segany.samples import SAMPLES, blob_volume, load_sample, nuclei_2d

RNG = np.random.default_rng(42)


# -- read_image: TIFF -----------------------------------------------------------------------


def test_tiff_2d_uint16(tmp_path):
    img = RNG.integers(0, 65535, size=(40, 56), endpoint=True).astype(np.uint16)
    tifffile.imwrite(tmp_path / "a.tif", img)
    out = read_image(tmp_path / "a.tif")
    assert isinstance(out, ImageData)
    assert out.rgb is False
    assert out.path == tmp_path / "a.tif"
    assert isinstance(out.data, np.ndarray)  # small: read into memory
    assert out.data.dtype == np.uint16
    assert np.array_equal(out.data, img)


@pytest.mark.parametrize("suffix", [".tif", ".TIFF"])
def test_tiff_3d_uint16(tmp_path, suffix):
    vol = RNG.integers(0, 4000, size=(5, 30, 20)).astype(np.uint16)
    path = tmp_path / f"v{suffix}"
    tifffile.imwrite(path, vol)
    out = read_image(str(path))  # str paths work too
    assert out.rgb is False
    assert out.data.shape == (5, 30, 20)
    assert np.array_equal(np.asarray(out.data), vol)


def test_tiff_4d_keeps_its_axes(tmp_path):
    stack = RNG.integers(0, 100, size=(2, 3, 16, 18)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "t.tif", stack, photometric="minisblack")
    out = read_image(tmp_path / "t.tif")
    assert out.data.shape == (2, 3, 16, 18)
    assert np.array_equal(np.asarray(out.data[1, 2]), stack[1, 2])


def test_tiff_rgb(tmp_path):
    rgb = RNG.integers(0, 255, size=(20, 24, 3)).astype(np.uint8)
    tifffile.imwrite(tmp_path / "c.tif", rgb, photometric="rgb")
    out = read_image(tmp_path / "c.tif")
    assert out.rgb is True
    assert np.array_equal(np.asarray(out.data), rgb)


def test_large_tiff_is_opened_lazily(tmp_path, monkeypatch):
    vol = RNG.integers(0, 65535, size=(6, 48, 40), endpoint=True).astype(np.uint16)
    tifffile.imwrite(tmp_path / "big.tif", vol)
    # Below the threshold it is a plain in-memory array...
    assert isinstance(read_image(tmp_path / "big.tif").data, np.ndarray)
    # ...above it, a lazy zarr array whose planes are read on demand.
    monkeypatch.setattr(nio.read, "IN_MEMORY_MAX_BYTES", vol.nbytes - 1)
    out = read_image(tmp_path / "big.tif")
    assert not isinstance(out.data, np.ndarray)
    assert isinstance(out.data, zarr.Array)
    assert out.data.shape == vol.shape
    assert out.data.dtype == np.uint16
    assert out.rgb is False
    for z in (0, 3, 5):
        plane = np.asarray(out.data[z])
        assert plane.shape == (48, 40)
        assert np.array_equal(plane, vol[z])
    assert np.array_equal(np.asarray(out.data[2:4, 10:20, 5:9]), vol[2:4, 10:20, 5:9])


def test_corrupt_tiff_is_a_value_error(tmp_path):
    (tmp_path / "bad.tif").write_bytes(b"definitely not a TIFF file")
    with pytest.raises(ValueError, match="cannot read image"):
        read_image(tmp_path / "bad.tif")


# -- read_image: PNG / JPEG -----------------------------------------------------------------


def test_png_rgb(tmp_path):
    rgb = RNG.integers(0, 255, size=(17, 23, 3)).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "c.png")
    out = read_image(tmp_path / "c.png")
    assert out.rgb is True
    assert out.data.shape == (17, 23, 3)
    assert np.array_equal(out.data, rgb)


def test_png_rgba_is_rgb(tmp_path):
    rgba = RNG.integers(0, 255, size=(9, 11, 4)).astype(np.uint8)
    Image.fromarray(rgba).save(tmp_path / "c.png")
    out = read_image(tmp_path / "c.png")
    assert out.rgb is True
    assert out.data.shape == (9, 11, 4)


def test_png_gray(tmp_path):
    gray = RNG.integers(0, 255, size=(17, 23)).astype(np.uint8)
    Image.fromarray(gray).save(tmp_path / "g.png")
    out = read_image(tmp_path / "g.png")
    assert out.rgb is False
    assert out.data.shape == (17, 23)
    assert np.array_equal(out.data, gray)


def test_png_palette_becomes_rgb(tmp_path):
    gray = (np.arange(12 * 14).reshape(12, 14) % 7).astype(np.uint8)
    im = Image.fromarray(gray).convert("P")
    im.save(tmp_path / "p.png")
    out = read_image(tmp_path / "p.png")
    assert out.rgb is True
    assert out.data.shape == (12, 14, 3)


def test_jpeg_gray(tmp_path):
    Image.fromarray(np.full((16, 16), 128, np.uint8)).save(tmp_path / "g.jpg")
    out = read_image(tmp_path / "g.jpg")
    assert out.rgb is False
    assert out.data.shape == (16, 16)
    assert abs(int(out.data.mean()) - 128) <= 2


# -- read_image: npy / zarr -----------------------------------------------------------------


def test_npy_is_memory_mapped(tmp_path):
    arr = RNG.normal(size=(3, 10, 12)).astype(np.float32)
    np.save(tmp_path / "a.npy", arr)
    out = read_image(tmp_path / "a.npy")
    assert isinstance(out.data, np.memmap)
    assert out.rgb is False
    assert np.array_equal(np.asarray(out.data[1]), arr[1])


@pytest.mark.parametrize("name", ["vol.zarr", "plain_folder"])
def test_zarr_array_directory(tmp_path, name):
    vol = RNG.integers(0, 1000, size=(4, 20, 16)).astype(np.uint16)
    arr = zarr.create_array(store=str(tmp_path / name), shape=vol.shape, chunks=(1, 20, 16),
                            dtype="uint16")
    arr[...] = vol
    out = read_image(tmp_path / name)
    assert isinstance(out.data, zarr.Array)
    assert out.rgb is False
    assert np.array_equal(np.asarray(out.data[2]), vol[2])
    # Opened read-only: the image cannot be changed through it.
    with pytest.raises(Exception):  # noqa: B017 - zarr's own read-only error
        out.data[0, 0, 0] = 1
    assert zarr.open_array(str(tmp_path / name), mode="r")[0, 0, 0] == vol[0, 0, 0]


def test_zarr_group_is_a_value_error(tmp_path):
    zarr.create_group(str(tmp_path / "g.zarr"))
    with pytest.raises(ValueError, match="cannot read image"):
        read_image(tmp_path / "g.zarr")


# -- read_image: errors ---------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.tif"):
        read_image(tmp_path / "nope.tif")


@pytest.mark.parametrize("name", ["notes.txt", "data.h5", "noext"])
def test_unsupported_suffix(tmp_path, name):
    (tmp_path / name).write_bytes(b"123")
    with pytest.raises(ValueError, match="unsupported image format"):
        read_image(tmp_path / name)


def test_bad_array_contents(tmp_path):
    np.save(tmp_path / "one.npy", np.zeros(5, np.uint8))
    with pytest.raises(ValueError, match=r"\(5,\)"):
        read_image(tmp_path / "one.npy")
    np.save(tmp_path / "empty.npy", np.zeros((0, 4), np.uint8))
    with pytest.raises(ValueError, match="2D or larger"):
        read_image(tmp_path / "empty.npy")
    np.save(tmp_path / "cplx.npy", np.zeros((3, 3), np.complex64))
    with pytest.raises(ValueError, match="complex64"):
        read_image(tmp_path / "cplx.npy")


# -- samples --------------------------------------------------------------------------------


def test_nuclei_2d_is_deterministic_and_has_14_objects():
    a, b = nuclei_2d(seed=5), nuclei_2d(seed=5)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.labels, b.labels)
    assert a.point == b.point
    c = nuclei_2d(seed=6)
    assert not np.array_equal(a.image, c.image)
    for s in (a, nuclei_2d()):
        assert s.name == "nuclei"
        assert s.image.shape == (256, 256) and s.image.dtype == np.uint16
        assert s.labels.shape == (256, 256) and s.labels.dtype == np.uint32
        assert np.array_equal(np.unique(s.labels), np.arange(15))
        assert s.point_plane == () and s.object_id == 1
        x, y = s.point
        assert s.labels[int(round(y)), int(round(x))] == 1
        # Nuclei are bright: the object under the point is far above the background.
        assert s.image[s.labels == 1].mean() > 3 * s.image[s.labels == 0].mean()


@pytest.mark.parametrize("depth", [24, 12])
def test_blob_volume_blob_lives_on_planes_2_to_depth_minus_3(depth):
    s = blob_volume(depth=depth)
    assert s.name == "volume"
    assert s.image.shape == (depth, 128, 128) and s.image.dtype == np.uint16
    assert s.labels.shape == (depth, 128, 128)
    present = [z for z in range(depth) if s.labels[z].any()]
    assert present == list(range(2, depth - 2))
    assert set(np.unique(s.labels).tolist()) == {0, 1}
    (z0,) = s.point_plane
    assert 2 <= z0 <= depth - 3
    x, y = s.point
    assert s.labels[z0, int(round(y)), int(round(x))] == 1
    assert s.object_id == 1
    assert np.array_equal(blob_volume(depth=depth).image, s.image)


def test_load_sample():
    assert set(SAMPLES) == {"nuclei", "volume"}
    assert load_sample("nuclei").image.shape == (256, 256)
    assert load_sample("volume").image.ndim == 3
    with pytest.raises(ValueError, match="'cells'"):
        load_sample("cells")


# -- overlay --------------------------------------------------------------------------------


def _scene():
    rgb = np.full((40, 50, 3), 100, np.uint8)
    rgb[:, :, 1] = np.arange(50, dtype=np.uint8)[None, :] + 60
    labels = np.zeros((40, 50), np.uint32)
    labels[5:15, 5:20] = 1
    labels[20:35, 25:45] = 7
    return rgb, labels


def test_render_overlay_changes_objects_only():
    rgb, labels = _scene()
    out = render_overlay(rgb, labels)
    assert out.shape == (40, 50, 3) and out.dtype == np.uint8
    bg = labels == 0
    assert np.array_equal(out[bg], rgb[bg])
    changed = np.any(out != rgb, axis=-1)
    assert changed[~bg].all()
    # Different objects get different colours (at their interiors).
    assert not np.array_equal(out[10, 10], out[27, 35])
    # Outlines are drawn in full object colour, distinct from the blended interior.
    assert not np.array_equal(out[5, 10], out[10, 10])
    assert np.array_equal(rgb, _scene()[0])  # the input is not modified


def test_render_overlay_alpha_zero_keeps_interior():
    rgb, labels = _scene()
    out = render_overlay(rgb, labels, alpha=0.0)
    assert np.array_equal(out[10, 10], rgb[10, 10])  # interior: no fill
    assert not np.array_equal(out[5, 10], rgb[5, 10])  # outline still drawn


def test_render_overlay_points_draw_yellow_crosses():
    rgb, labels = _scene()
    out = render_overlay(rgb, labels, points=np.array([[30.0, 8.0], [-5.0, 100.0]]))
    assert tuple(out[8, 30]) == (255, 255, 0)
    assert tuple(out[8, 27]) == (255, 255, 0) and tuple(out[11, 30]) == (255, 255, 0)
    assert np.array_equal(out[0, 0], rgb[0, 0])


def test_render_overlay_without_background():
    rgb = np.zeros((8, 8, 3), np.uint8)
    out = render_overlay(rgb, np.full((8, 8), 3, np.uint32))
    assert out.shape == (8, 8, 3)
    assert out.any()


@pytest.mark.parametrize(
    "rgb_shape, labels_shape",
    [((40, 50, 3), (40, 51)), ((40, 50, 3), (50, 40)), ((40, 50), (40, 50))],
)
def test_render_overlay_mismatched_shapes(rgb_shape, labels_shape):
    with pytest.raises(ValueError, match="do not match"):
        render_overlay(np.zeros(rgb_shape, np.uint8), np.zeros(labels_shape, np.uint32))


def test_label_colors_and_save_png(tmp_path):
    cols = label_colors(5)
    assert cols.shape == (6, 3) and cols.dtype == np.uint8
    assert tuple(cols[0]) == (0, 0, 0)
    assert len({tuple(c) for c in cols[1:]}) == 5
    rgb, labels = _scene()
    out = render_overlay(rgb, labels)
    save_png(tmp_path / "o.png", out)
    with Image.open(tmp_path / "o.png") as im:
        assert im.size == (50, 40) and im.mode == "RGB"
        assert np.array_equal(np.asarray(im), out)
