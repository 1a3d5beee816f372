"""npe2 manifest, reader and writer contributions (no display needed)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import zarr

from napari_segany._napari import reader as nio_reader
from napari_segany._napari import writer as nio_writer
from napari_segany.session import Session
from napari_segany.storage import LabelsStore, StoreArray

MANIFEST = Path(nio_reader.__file__).parents[1] / "napari.yaml"


# ---------------------------------------------------------------------------------- manifest
def test_manifest_is_valid_and_complete():
    npe2 = pytest.importorskip("npe2")
    pm = npe2.PluginManifest.from_file(MANIFEST)
    pm.validate_imports()  # every python_name imports (the widget's needs Qt)
    contrib = pm.contributions
    assert [w.display_name for w in contrib.widgets] == ["Segment Anything"]
    assert {s.key for s in contrib.sample_data} == {"nuclei", "volume"}
    reader = contrib.readers[0]
    assert reader.accepts_directories
    assert {"*.zarr", "*.tif", "*.tiff", "*.nii", "*.nii.gz"} <= set(reader.filename_patterns)
    writer = contrib.writers[0]
    assert writer.layer_types == ["labels"]
    assert {".zarr", ".tif", ".tiff", ".ome.zarr"} <= set(writer.filename_extensions)
    assert writer.filename_extensions[0] == ".zarr"  # napari's default: a labels store


def test_npe2_validate_command():
    npe2_cli = pytest.importorskip("npe2.cli")
    typer_testing = pytest.importorskip("typer.testing")
    result = typer_testing.CliRunner().invoke(npe2_cli.app, ["validate", "napari-segany"])
    assert result.exit_code == 0, result.output
    assert "valid" in result.output


# ---------------------------------------------------------------------------------- reader
def _store(tmp_path: Path, shape=(5, 16, 20)) -> LabelsStore:
    store = LabelsStore.create(tmp_path / "seg.zarr", shape,
                               provenance={"layer": {"scale": [3.0, 0.5, 0.5],
                                                     "translate": [1.0, 2.0, 3.0]}})
    plane = np.zeros(shape[-2:], np.uint32)
    plane[2:6, 3:9] = 7
    store.write_plane((2,), plane)
    store.set_object(7, class_name="cell")
    return store


def test_reader_opens_labels_stores_lazily(tmp_path):
    """The layer's data is the store's StoreArray: planes read on demand, writes as operations."""
    _store(tmp_path)
    path = str(tmp_path / "seg.zarr")
    reader = nio_reader.get_reader(path)
    assert reader is nio_reader.read_labels_store
    [(data, kwargs, kind)] = reader(path)
    assert kind == "labels" and isinstance(data, StoreArray)  # a view, not loaded into memory
    assert isinstance(data.store.array, zarr.Array) and data.store.path == tmp_path / "seg.zarr"
    assert data.shape == (5, 16, 20) and data.dtype == np.uint32
    assert data.chunks == (1, 16, 20)  # one chunk per plane: a plane is one read
    plane = data[2]
    assert isinstance(plane, np.ndarray) and plane.shape == (16, 20) and int(plane.max()) == 7
    assert kwargs["name"] == "seg"
    assert kwargs["scale"] == [3.0, 0.5, 0.5] and kwargs["translate"] == [1.0, 2.0, 3.0]
    assert kwargs["metadata"]["napari_segany"]["objects"]["7"] == {"class_name": "cell"}
    assert kwargs["metadata"]["path"] == path
    assert nio_reader.get_reader([path]) is nio_reader.read_labels_store
    # an edit made in napari (a brush stroke writes layer.data[...]) is one store operation:
    # on disk at once, in the history, and undone by the store's undo
    before = len(data.store.history())
    data[4, 0:2, 0:3] = 5
    assert [op.kind for op in data.store.history()[before:]] == ["edit"]
    assert data.store.history()[-1].pixels == 6
    on_disk = LabelsStore.open(tmp_path / "seg.zarr", mode="r")
    assert int((on_disk.read_plane(4) == 5).sum()) == 6
    assert data.store.undo() is not None
    assert not on_disk.read_plane(4).any() and int(data[2].max()) == 7


def test_reader_shows_an_unwritable_store_read_only(tmp_path, monkeypatch):
    _store(tmp_path)
    opened = LabelsStore.open

    def no_write(path, *, mode="r+", **kw):
        if mode != "r":
            raise PermissionError(f"{path}: read-only file system")
        return opened(path, mode=mode, **kw)

    monkeypatch.setattr(LabelsStore, "open", staticmethod(no_write))
    [(data, kwargs, kind)] = nio_reader.read_labels_store(str(tmp_path / "seg.zarr"))
    assert kind == "labels" and isinstance(data, zarr.Array) and data.read_only
    assert int(np.asarray(data[2]).max()) == 7 and kwargs["scale"] == [3.0, 0.5, 0.5]
    with pytest.raises(ValueError, match="read-only"):  # zarr refuses: nothing is written
        data[0, 0, 0] = 1
    assert not np.asarray(opened(tmp_path / "seg.zarr", mode="r").read_plane(0)).any()


def test_reader_declines_what_it_does_not_handle(tmp_path):
    other = zarr.create_array(store=str(tmp_path / "plain.zarr"), shape=(4, 4), dtype="u1")
    assert other is not None
    assert nio_reader.get_reader(str(tmp_path / "plain.zarr")) is None  # napari's own reader
    (tmp_path / "notes.txt").write_text("x")
    assert nio_reader.get_reader(str(tmp_path / "notes.txt")) is None
    assert nio_reader.get_reader(str(tmp_path / "missing.tif")) is None
    assert nio_reader.get_reader([str(tmp_path / "a.tif"), str(tmp_path / "b.tif")]) is None


def test_reader_tiff_with_imagej_spacing(tmp_path, monkeypatch):
    tifffile = pytest.importorskip("tifffile")
    from napari_segany import io

    vol = np.arange(4 * 10 * 12, dtype=np.uint16).reshape(4, 10, 12)
    path = tmp_path / "vol.tif"
    tifffile.imwrite(path, vol, imagej=True, resolution=(1 / 0.25, 1 / 0.5),
                     metadata={"spacing": 2.0, "unit": "um", "axes": "ZYX"})
    monkeypatch.setattr(io.read, "IN_MEMORY_MAX_BYTES", 100)  # force the lazy path
    reader = nio_reader.get_reader(str(path))
    assert reader is nio_reader.read_tiff
    [(data, kwargs, kind)] = reader(str(path))
    assert kind == "image" and not isinstance(data, np.ndarray)
    assert np.array_equal(np.asarray(data[2]), vol[2])
    assert kwargs["scale"] == pytest.approx([2.0, 0.5, 0.25])
    assert kwargs["name"] == "vol" and kwargs["rgb"] is False


def test_reader_rgb_tiff_without_metadata(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    rgb = np.zeros((8, 9, 3), np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tiff", rgb, photometric="rgb")
    path = str(tmp_path / "rgb.tiff")
    [(data, kwargs, kind)] = nio_reader.get_reader(path)(path)
    assert kwargs["rgb"] is True and "scale" not in kwargs and data.shape == (8, 9, 3)


@pytest.mark.parametrize("name", ["cells.ome.tif", "cells.ome.tiff", "cells.tif"])
def test_reader_layer_name_drops_the_whole_extension(tmp_path, name):
    tifffile = pytest.importorskip("tifffile")
    tifffile.imwrite(tmp_path / name, np.zeros((3, 8, 9), np.uint16), photometric="minisblack")
    [(_data, kwargs, _kind)] = nio_reader.get_reader(str(tmp_path / name))(str(tmp_path / name))
    assert kwargs["name"] == "cells"


@pytest.mark.parametrize("name", ["head.nii", "head.nii.gz"])
def test_reader_nifti_scale_from_voxel_spacing(tmp_path, name):
    nib = pytest.importorskip("nibabel")
    xyz = np.random.default_rng(0).integers(0, 100, (6, 7, 5)).astype(np.int16)  # (x, y, z)
    img = nib.Nifti1Image(xyz, np.diag([0.8, 0.9, 2.5, 1.0]))
    img.header.set_zooms((0.8, 0.9, 2.5))
    nib.save(img, tmp_path / name)
    reader = nio_reader.get_reader(str(tmp_path / name))
    assert reader is nio_reader.read_nifti
    [(data, kwargs, kind)] = reader(str(tmp_path / name))
    assert kind == "image" and data.shape == (5, 7, 6)  # (z, y, x)
    assert np.array_equal(data, xyz.T)
    assert kwargs["scale"] == pytest.approx([2.5, 0.9, 0.8])
    assert kwargs["name"] == "head"
    assert np.allclose(kwargs["metadata"]["nifti_affine"], np.diag([0.8, 0.9, 2.5, 1.0]))


# ---------------------------------------------------------------------------------- writer
def _labels(shape=(3, 12, 10)) -> np.ndarray:
    data = np.zeros(shape, np.int32)
    data[0, 1:4, 2:5] = 3
    data[2, 5:9, 1:3] = 9
    return data


def test_writer_zarr_round_trip(tmp_path):
    data = _labels()
    meta = {"name": "cells", "scale": (2.0, 1.0, 0.5), "translate": (0, 1, 2)}
    out = tmp_path / "cells.zarr"
    assert nio_writer.write_labels(str(out), data, meta) == [str(out)]
    store = LabelsStore.open(out, mode="r")
    assert np.array_equal(np.asarray(store.array[:]), data)
    prov = store.provenance
    assert set(prov["objects"]) == {"3", "9"}
    assert prov["planes"] == [[0], [2]]  # empty planes are not written
    assert prov["layer"]["scale"] == [2.0, 1.0, 0.5]
    # it reads back as a labels layer with the same geometry
    [(_, kwargs, _kind)] = nio_reader.read_labels_store(str(out))
    assert kwargs["scale"] == [2.0, 1.0, 0.5] and kwargs["translate"] == [0.0, 1.0, 2.0]
    assert [p.name for p in tmp_path.iterdir()] == ["cells.zarr"]  # no leftovers


def test_writer_zarr_replaces_a_store_and_reads_lazy_input(tmp_path):
    out = tmp_path / "seg.zarr"
    _store(tmp_path)
    source = LabelsStore.open(out, mode="r").array  # writing a store onto itself
    expected = np.asarray(source[:])
    nio_writer.write_labels(str(out), source, {"name": "seg"})
    assert np.array_equal(np.asarray(LabelsStore.open(out).array[:]), expected)
    nio_writer.write_labels(str(out), _labels((5, 16, 20)), {"name": "seg"})
    assert int(np.asarray(LabelsStore.open(out).array[:]).max()) == 9


def test_writer_never_damages_existing_data(tmp_path):
    plain = tmp_path / "plain.zarr"
    plain.mkdir()
    (plain / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a napari-segany labels store"):
        nio_writer.write_labels(str(plain), _labels(), {})
    assert (plain / "keep.txt").read_text() == "mine"
    _store(tmp_path)
    before = np.asarray(LabelsStore.open(tmp_path / "seg.zarr").array[:])
    bad = _labels((5, 16, 20))
    bad[4, 0, 0] = -1
    with pytest.raises(ValueError, match="outside"):
        nio_writer.write_labels(str(tmp_path / "seg.zarr"), bad, {})
    assert np.array_equal(np.asarray(LabelsStore.open(tmp_path / "seg.zarr").array[:]), before)
    with pytest.raises(ValueError, match="outside"):
        nio_writer.write_labels(str(tmp_path / "bad.tif"), bad, {})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain.zarr", "seg.zarr"]
    with pytest.raises(ValueError, match="use a .zarr, .ome.zarr or .tif"):
        nio_writer.write_labels(str(tmp_path / "x.png"), _labels(), {})


def test_writer_tiff_round_trip(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    data = _labels().astype(np.uint16)
    out = tmp_path / "cells.tif"
    nio_writer.write_labels(str(out), data, {"scale": [2.0, 1.0, 0.5]})
    back = tifffile.imread(out)
    assert back.dtype == np.uint16 and np.array_equal(back, data)
    [(img, kwargs, _)] = nio_reader.read_tiff(str(out))
    assert kwargs["scale"] == [2.0, 1.0, 0.5]
    nio_writer.write_labels(str(tmp_path / "wide.tiff"), _labels().astype(np.int64), {})
    assert tifffile.imread(tmp_path / "wide.tiff").dtype == np.uint32


def test_writer_tiff_streams_large_labels(tmp_path, monkeypatch):
    tifffile = pytest.importorskip("tifffile")
    monkeypatch.setattr(nio_writer, "IN_MEMORY_MAX_BYTES", 10)
    data = _labels()
    nio_writer.write_labels(str(tmp_path / "big.tif"), data, {})
    assert np.array_equal(tifffile.imread(tmp_path / "big.tif"), data)


# ------------------------------------------------------------------- Session.has_embedding
def test_session_has_embedding(tmp_path):
    import sys

    sys.path.insert(0, str(Path(__file__).parents[1]))
    from rule_backend import RuleBackend

    vol = np.zeros((3, 16, 16), np.uint8)
    vol[:, 4:9, 4:9] = 200
    backend = RuleBackend()
    session = Session(vol, backend, cache=tmp_path / "cache.zarr")
    assert not session.has_embedding((1,))
    assert backend.embed_calls == 0  # asking never embeds
    session.embedding((1,))
    assert session.has_embedding((1,)) and not session.has_embedding((0,))
    # a new session on the same cache finds it on disk
    again = Session(vol, backend, cache=tmp_path / "cache.zarr")
    assert again.has_embedding((1,)) and not again.has_embedding((2,))
    plain = Session(vol, RuleBackend())
    plain.embedding(2)
    assert plain.has_embedding(2) and not plain.has_embedding(0)
    with pytest.raises(ValueError, match="does not exist"):
        plain.has_embedding((5,))
    assert os.path.isdir(tmp_path / "cache.zarr")


def test_npe2_validate_command_passes():
    """The same check as `npe2 validate napari-segany --imports` (every command imports)."""
    import subprocess
    import sys

    pytest.importorskip("npe2")
    proc = subprocess.run([sys.executable, "-m", "npe2", "validate", "napari-segany", "--imports"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "valid" in proc.stdout
