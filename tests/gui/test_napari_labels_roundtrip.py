"""Labels saved by the plugin reopen as labels: napari writer -> reader -> Labels layer.

Saving a Labels layer as TIFF through the plugin's writer used to reopen as an Image layer
(the file is tagged ``napari_segany_labels``, but the reader ignored the tag). Also: a
labels store opened in napari stays on disk and napari's brush writes through it, and the
writer's OME-Zarr keeps the layer's geometry and never deletes an image or other labels.
Most tests need no display; the ``make_napari_viewer`` ones run a real viewer under Xvfb.
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_segany._napari import reader as nio_reader
from napari_segany._napari import writer as nio_writer
from napari_segany.exports import export_tiff

tifffile = pytest.importorskip("tifffile")


def _labels(shape=(4, 14, 11), dtype=np.uint16) -> np.ndarray:
    data = np.zeros(shape, dtype)
    data[0, 2:6, 3:8] = 3
    data[2, 5:12, 1:4] = 9
    data[3, 0:2, 0:11] = 70
    return data


def _read(path) -> tuple[np.ndarray, dict, str]:
    reader = nio_reader.get_reader(str(path))
    assert reader is not None, f"the plugin declined {path}"
    [(data, kwargs, kind)] = reader(str(path))
    return np.asarray(data), kwargs, kind


@pytest.mark.parametrize("name", ["cells.tif", "cells.tiff"])
def test_writer_tiff_reopens_as_labels_with_its_geometry(tmp_path, name):
    data = _labels()
    meta = {"name": "cells", "scale": (2.0, 0.5, 0.25), "translate": (1.0, -3.0, 4.5)}
    [out] = nio_writer.write_labels(str(tmp_path / name), data, meta)
    back, kwargs, kind = _read(out)
    assert kind == "labels"
    assert np.array_equal(back, data) and back.dtype == np.uint16
    assert kwargs["name"] == "cells"
    assert kwargs["scale"] == [2.0, 0.5, 0.25]
    assert kwargs["translate"] == [1.0, -3.0, 4.5]
    assert "rgb" not in kwargs  # a Labels layer takes no rgb argument
    assert kwargs["metadata"]["path"] == out


def test_writer_tiff_2d_wide_ids_and_streamed_planes(tmp_path, monkeypatch):
    plane = np.zeros((9, 12), np.int64)
    plane[1:4, 2:9] = 100_000  # above uint16: written as uint32
    [out] = nio_writer.write_labels(str(tmp_path / "one.tif"), plane, {})
    back, kwargs, kind = _read(out)
    assert kind == "labels" and back.dtype == np.uint32 and np.array_equal(back, plane)
    assert "scale" not in kwargs and "translate" not in kwargs
    monkeypatch.setattr(nio_writer, "IN_MEMORY_MAX_BYTES", 10)  # the streamed, raw path
    big = _labels()
    [out] = nio_writer.write_labels(str(tmp_path / "big.tif"), big, {"scale": [3, 1, 1]})
    back, kwargs, kind = _read(out)
    assert kind == "labels" and np.array_equal(back, big) and kwargs["scale"] == [3.0, 1.0, 1.0]


@pytest.mark.parametrize("imagej", [True, False])
def test_exported_tiff_reopens_as_labels(tmp_path, imagej):
    data = _labels()
    out = export_tiff(data, tmp_path / "seg.tif", spacing=(2.0, 0.5, 0.5), imagej=imagej)
    back, kwargs, kind = _read(out)
    assert kind == "labels" and np.array_equal(back, data)
    assert kwargs["scale"] == pytest.approx([2.0, 0.5, 0.5])


def test_other_tiffs_still_open_as_images(tmp_path):
    data = _labels()
    tifffile.imwrite(tmp_path / "plain.tif", data, photometric="minisblack")
    _, kwargs, kind = _read(tmp_path / "plain.tif")
    assert kind == "image" and kwargs["rgb"] is False
    rgb = np.zeros((8, 9, 3), np.uint8)  # tagged, but RGB: not labels
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb",
                     metadata={"napari_segany_labels": True})
    _, kwargs, kind = _read(tmp_path / "rgb.tif")
    assert kind == "image" and kwargs["rgb"] is True


def test_writer_zarr_store_reopens_as_labels(tmp_path):
    data = _labels()
    [out] = nio_writer.write_labels(str(tmp_path / "cells.zarr"), data,
                                    {"name": "cells", "scale": (2.0, 1.0, 1.0)})
    back, kwargs, kind = _read(out)
    assert kind == "labels" and np.array_equal(back, data)
    assert kwargs["name"] == "cells" and kwargs["scale"] == [2.0, 1.0, 1.0]


def test_napari_saves_and_reopens_labels(make_napari_viewer, tmp_path):
    """The whole loop in a viewer: save a Labels layer with the plugin, open it again."""
    import napari

    viewer = make_napari_viewer()
    data = _labels()
    layer = viewer.add_labels(data, name="cells", scale=(2.0, 0.5, 0.5))
    for name in ("cells.tif", "cells.zarr"):
        path = str(tmp_path / name)
        written = layer.save(path, plugin="napari-segany")
        assert written == [path]
        [back] = viewer.open(path, plugin="napari-segany")
        assert isinstance(back, napari.layers.Labels), f"{name} reopened as {type(back)}"
        assert np.array_equal(np.asarray(back.data), data)
        np.testing.assert_allclose(back.scale, [2.0, 0.5, 0.5])
        assert back.name.startswith("cells")  # napari numbers a repeated name: "cells [1]"
    pytest.importorskip("napari_ome_zarr")
    path = str(tmp_path / "cells.ome.zarr")  # OME-Zarr labels, opened by napari-ome-zarr
    assert layer.save(path, plugin="napari-segany") == [path]
    [back] = viewer.open(f"{path}/labels/cells", plugin="napari-ome-zarr")
    assert isinstance(back, napari.layers.Labels)
    assert np.array_equal(np.asarray(back.data[0] if back.multiscale else back.data), data)
    np.testing.assert_allclose(back.scale, [2.0, 0.5, 0.5])


def test_writer_ome_zarr_keeps_name_scale_and_offset(tmp_path):
    import json

    import zarr

    data = _labels()
    meta = {"name": "my cells", "scale": (2.0, 0.5, 0.5), "translate": (0.0, 3.0, 1.0)}
    [out] = nio_writer.write_labels(str(tmp_path / "cells.ome.zarr"), data, meta)
    group = tmp_path / "cells.ome.zarr" / "labels" / "my_cells"
    assert np.array_equal(zarr.open_array(str(group / "0"), mode="r")[...], data)
    [ds] = json.loads((group / ".zattrs").read_text())["multiscales"][0]["datasets"]
    assert ds["coordinateTransformations"] == [
        {"type": "scale", "scale": [2.0, 0.5, 0.5]},
        {"type": "translation", "translation": [0.0, 3.0, 1.0]}]
    assert nio_reader.get_reader(out) is None  # napari-ome-zarr's to open, not ours
    nio_writer.write_labels(out, data * 0, meta)  # saving again replaces it (napari asked)
    assert not zarr.open_array(str(group / "0"), mode="r")[...].any()


def test_napari_opens_a_store_lazily_and_paints_through_it(make_napari_viewer, tmp_path):
    """A store opened in napari (without the widget) stays on disk: the layer's data is the
    store's StoreArray, and napari's brush writes through the store as an operation."""
    import napari

    from napari_segany.storage import LabelsStore, StoreArray

    data = _labels().astype(np.uint32)
    [path] = nio_writer.write_labels(str(tmp_path / "cells.zarr"), data, {"name": "cells"})
    viewer = make_napari_viewer()
    [layer] = viewer.open(path, plugin="napari-segany")
    assert isinstance(layer, napari.layers.Labels) and isinstance(layer.data, StoreArray)
    store = layer.data.store
    before = len(store.history())
    viewer.dims.set_point(0, 1)  # plane 1 is empty
    layer.brush_size = 1
    layer.paint((1, 6, 6), 12, refresh=True)
    ops = store.history()[before:]
    assert [op.kind for op in ops] == ["edit"] and ops[0].pixels >= 1
    on_disk = LabelsStore.open(path, mode="r").read_plane(1)
    assert on_disk[6, 6] == 12 and int((on_disk == 12).sum()) == ops[0].pixels
    assert np.array_equal(on_disk[on_disk != 12], data[1][on_disk != 12])  # nothing else
    store.undo()
    assert np.array_equal(LabelsStore.open(path, mode="r").read_plane(1), data[1])


def test_writer_ome_zarr_never_deletes_an_image_or_other_labels(tmp_path):
    import hashlib

    import zarr

    from napari_segany.exports import export_ome_zarr

    def digest(folder) -> str:
        h = hashlib.sha256()
        for f in sorted(p for p in folder.rglob("*") if p.is_file()):
            h.update(str(f.relative_to(folder)).encode() + f.read_bytes())
        return h.hexdigest()

    data = _labels()
    with_image = export_ome_zarr(data, tmp_path / "img.ome.zarr", name="cells",
                                 image=np.ones(data.shape, np.uint8))
    other = export_ome_zarr(data, tmp_path / "other.ome.zarr", name="nuclei")
    for target, needle in ((with_image, "holds an image"), (other, r"other labels \(nuclei\)")):
        before = digest(target)
        with pytest.raises(ValueError, match=needle):
            nio_writer.write_labels(str(target), data * 0, {"name": "cells"})
        assert digest(target) == before  # byte for byte untouched
    [out] = nio_writer.write_labels(str(other), data * 0, {"name": "nuclei"})  # its own: replaced
    assert not zarr.open_array(f"{out}/labels/nuclei/0", mode="r")[...].any()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img.ome.zarr", "other.ome.zarr"]
