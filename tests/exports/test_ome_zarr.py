"""The OME-Zarr labels export (NGFF 0.4 image-label): layout, axes, levels, metadata,
refusals, and reading back with ome-zarr-py and napari-ome-zarr."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr

from napari_segany.cli import main
from napari_segany.exports import (
    ExportError,
    export_labels,
    export_ome_zarr,
    format_from_path,
    resolve_format,
)
from napari_segany.storage import LabelsStore

ome_reader = pytest.importorskip("ome_zarr.reader")


def make_labels() -> np.ndarray:
    lab = np.zeros((3, 40, 28), np.uint32)
    lab[0, 2:9, 3:11] = 1
    lab[1, 10:30, 5:20] = 2
    lab[2, 0:5, 0:28] = 7
    lab[2, 33:40, 20:27] = 1
    return lab


@pytest.fixture
def store(tmp_path) -> LabelsStore:
    lab = make_labels()
    s = LabelsStore.create(tmp_path / "cells.zarr", lab.shape,
                           provenance={"layer": {"scale": [2.0, 0.5, 0.25],
                                                 "translate": [0.0, 4.0, 8.0]}})
    for z in range(lab.shape[0]):
        s.write_plane(z, lab[z])
    s.set_object(1, class_name="nucleus")
    s.set_object(2, class_name="cell", source="auto")
    s.set_object(7)
    return s


def attrs(path: Path) -> dict:
    return json.loads((path / ".zattrs").read_text())


def tree_digest(path: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(path)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


class PlaneReader:
    """An array that refuses to be read other than one plane at a time."""

    def __init__(self, data: np.ndarray) -> None:
        self.data, self.shape, self.dtype, self.ndim = data, data.shape, data.dtype, data.ndim
        self.reads: list = []

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        assert len(key) == self.ndim - 2 and all(isinstance(k, int) for k in key), key
        self.reads.append(key)
        return self.data[key]

    def __array__(self, *a, **k):  # pragma: no cover - must never be called
        raise AssertionError("the whole array was read")


# ------------------------------------------------------------------------------ layout
def test_round_trip_layout_and_zarr_format_2(tmp_path, store):
    out = export_labels(store, tmp_path / "cells.ome.zarr")  # format from the ending
    assert out == tmp_path / "cells.ome.zarr"
    assert json.loads((out / ".zgroup").read_text()) == {"zarr_format": 2}
    assert attrs(out / "labels") == {"labels": ["cells"]}
    arr = zarr.open_array(str(out / "labels" / "cells" / "0"), mode="r")
    assert arr.dtype == np.uint32 and arr.shape == (3, 40, 28) and arr.chunks == (1, 40, 28)
    assert np.array_equal(arr[...], make_labels())
    zarray = json.loads((out / "labels" / "cells" / "0" / ".zarray").read_text())
    assert zarray["dimension_separator"] == "/" and zarray["compressor"]["id"] == "blosc"
    assert (out / "labels" / "cells" / "0" / "1" / "0" / "0").is_file()  # nested chunk keys
    ms = attrs(out / "labels" / "cells")["multiscales"][0]
    assert ms["version"] == "0.4" and ms["name"] == "cells"
    assert ms["datasets"][0]["coordinateTransformations"] == [
        {"type": "scale", "scale": [2.0, 0.5, 0.25]},  # the napari layer's, as recorded
        {"type": "translation", "translation": [0.0, 4.0, 8.0]}]
    assert "multiscales" not in attrs(out)  # labels only: no image at the root
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_formats_and_aliases():
    assert format_from_path("a/seg.ome.zarr") == "ome-zarr"
    assert format_from_path("a/seg.zarr") == "zarr"  # still the labels store copy
    for alias in ("ome-zarr", "OME-Zarr", "ngff", ".ome.zarr", "omezarr"):
        assert resolve_format(alias, "x") == "ome-zarr"


# ------------------------------------------------------------------------------ axes
@pytest.mark.parametrize("shape, axes, expect", [
    ((12, 10), None, "yx"), ((3, 12, 10), None, "zyx"), ((2, 3, 12, 10), None, "tzyx"),
    ((3, 12, 10), "TYX", "tyx"), ((2, 3, 12, 10), "tcyx", "tcyx")])
def test_axes_names_and_types(tmp_path, shape, axes, expect):
    lab = np.zeros(shape, np.uint16)
    lab[(0,) * (len(shape) - 2) + (slice(2, 5), slice(1, 4))] = 4
    out = export_ome_zarr(lab, tmp_path / "a.ome.zarr", axes=axes, spacing=[1.5] * len(shape),
                          unit="um")
    ms = attrs(out / "labels" / "labels")["multiscales"][0]
    types = {"t": "time", "c": "channel", "z": "space", "y": "space", "x": "space"}
    assert [a["name"] for a in ms["axes"]] == list(expect)
    assert [a["type"] for a in ms["axes"]] == [types[a] for a in expect]
    assert all(a.get("unit") == ("micrometer" if a["type"] == "space" else None)
               for a in ms["axes"])
    back = zarr.open_array(str(out / "labels" / "labels" / "0"), mode="r")[...]
    assert np.array_equal(back, lab)


@pytest.mark.parametrize("kwargs, needle", [
    ({"axes": "xyz"}, "order t, c, z, y, x"), ({"axes": "zy"}, "each of the 3"),
    ({"axes": "qyx"}, "order t, c, z, y, x"), ({"unit": "furlong"}, "unknown unit"),
    ({"levels": 0}, "levels must be"), ({"levels": 9}, "levels must be"),
    ({"name": "a/b"}, "labels name"), ({"spacing": [1, 2]}, "spacing must be"),
    ({"translate": [0, float("nan"), 0]}, "translate must be"),
    ({"image": np.zeros((3, 40, 27))}, "does not fit"),
    ({"image": True}, "records none")])
def test_bad_options_write_nothing(tmp_path, store, kwargs, needle):
    with pytest.raises(ExportError, match=needle):
        export_ome_zarr(store, tmp_path / "bad.ome.zarr", **kwargs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cells.zarr"]


def test_six_axes_and_huge_ids_are_refused(tmp_path):
    with pytest.raises(ExportError, match="2 to 5 axes"):
        export_ome_zarr(np.zeros((1, 1, 1, 1, 4, 4), np.uint8), tmp_path / "six.ome.zarr")
    wide = np.zeros((2, 4, 4), np.int64)
    wide[1, 0, 0] = 2**33
    with pytest.raises(ExportError, match="above uint32"):
        export_ome_zarr(wide, tmp_path / "wide.ome.zarr")
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------ levels
def test_multiscale_shapes_scales_and_striding(tmp_path):
    lab = np.random.default_rng(0).integers(0, 5, (2, 64, 41)).astype(np.uint32)
    src = PlaneReader(lab)
    out = export_ome_zarr(src, tmp_path / "m.ome.zarr", levels=3, spacing=(3.0, 0.5, 0.5))
    assert src.reads == [(0,), (1,)]  # each plane read once, for every level
    group = out / "labels" / "labels"
    shapes = [zarr.open_array(str(group / str(k)), mode="r").shape for k in range(3)]
    assert shapes == [(2, 64, 41), (2, 32, 21), (2, 16, 11)]
    for k in range(3):
        level = zarr.open_array(str(group / str(k)), mode="r")[...]
        assert np.array_equal(level, lab[:, :: 2**k, :: 2**k])  # nearest: every 2**k-th pixel
    ds = attrs(group)["multiscales"][0]["datasets"]
    assert [d["path"] for d in ds] == ["0", "1", "2"]
    assert [d["coordinateTransformations"][0]["scale"] for d in ds] == [
        [3.0, 0.5, 0.5], [3.0, 1.0, 1.0], [3.0, 2.0, 2.0]]  # z is never downsampled


def test_automatic_levels_stop_at_512_pixels(tmp_path):
    lab = np.zeros((1100, 300), np.uint8)
    out = export_ome_zarr(lab, tmp_path / "big.ome.zarr")
    ds = attrs(out / "labels" / "labels")["multiscales"][0]["datasets"]
    assert len(ds) == 3  # 1100 -> 550 -> 275
    small = export_ome_zarr(np.zeros((512, 512), np.uint8), tmp_path / "small.ome.zarr")
    assert len(attrs(small / "labels" / "labels")["multiscales"][0]["datasets"]) == 1
    assert zarr.open_array(str(out / "labels" / "labels" / "0"), mode="r").chunks == (1024, 300)


# ------------------------------------------------------------------------------ metadata
def test_image_label_colors_and_properties_from_the_object_table(tmp_path, store):
    out = export_ome_zarr(store, tmp_path / "c.ome.zarr")
    il = attrs(out / "labels" / "cells")["image-label"]
    assert il["version"] == "0.4" and "source" not in il  # no image written
    lab = make_labels()
    props = {p["label-value"]: p for p in il["properties"]}
    assert props[1] == {"label-value": 1, "class": "nucleus", "pixels": int((lab == 1).sum())}
    assert props[2] == {"label-value": 2, "class": "cell", "pixels": int((lab == 2).sum()),
                        "source": "auto"}
    assert props[7] == {"label-value": 7, "pixels": int((lab == 7).sum())}
    colors = {c["label-value"]: c["rgba"] for c in il["colors"]}
    assert set(colors) == {1, 2, 7}  # every id present has a colour (viewers hide the rest)
    assert all(len(c) == 4 and c[3] == 255 for c in colors.values())
    assert len({tuple(c) for c in colors.values()}) == 3


def test_class_options_and_no_colours_without_classes(tmp_path, store):
    out = export_ome_zarr(store, tmp_path / "t.ome.zarr", class_names={7: "debris"},
                          classes={1: {"name": "nucleus", "color": "#102030"}})
    il = attrs(out / "labels" / "cells")["image-label"]
    assert {p["label-value"]: p.get("class") for p in il["properties"]} == {
        1: "nucleus", 2: "cell", 7: "debris"}
    assert {c["label-value"]: c["rgba"] for c in il["colors"]}[1] == [16, 32, 48, 255]
    plain = export_ome_zarr(make_labels(), tmp_path / "p.ome.zarr")  # an array: no classes
    il = attrs(plain / "labels" / "labels")["image-label"]
    assert "colors" not in il and [p["label-value"] for p in il["properties"]] == [1, 2, 7]
    one = export_ome_zarr(make_labels(), tmp_path / "o.ome.zarr", class_names="cell")
    il = attrs(one / "labels" / "labels")["image-label"]
    assert {p["class"] for p in il["properties"]} == {"cell"} and len(il["colors"]) == 3


def test_with_the_image_at_the_root(tmp_path, store):
    img = (np.arange(3 * 40 * 28) % 200).astype(np.uint16).reshape(3, 40, 28)
    tifffile.imwrite(tmp_path / "raw.tif", img, photometric="minisblack")
    out = export_ome_zarr(store, tmp_path / "i.ome.zarr", image=tmp_path / "raw.tif",
                          levels=2)
    root = attrs(out)
    ms = root["multiscales"][0]
    assert ms["name"] == "raw" and [a["name"] for a in ms["axes"]] == ["z", "y", "x"]
    assert ms["datasets"] == attrs(out / "labels" / "cells")["multiscales"][0]["datasets"]
    assert root["omero"]["channels"][0]["window"] == {"min": 0.0, "max": 199.0,
                                                      "start": 0.0, "end": 199.0}
    level1 = zarr.open_array(str(out / "1"), mode="r")
    assert level1.dtype == np.uint16 and np.array_equal(level1[...], img[:, ::2, ::2])
    assert attrs(out / "labels" / "cells")["image-label"]["source"] == {"image": "../../"}


def test_rgb_image_gets_a_channel_axis(tmp_path):
    lab = make_labels()[:2, :12, :10]
    rgb = np.random.default_rng(1).integers(0, 255, (2, 12, 10, 3)).astype(np.uint8)
    out = export_ome_zarr(lab, tmp_path / "rgb.ome.zarr", image=rgb, axes="tyx")
    ms = attrs(out)["multiscales"][0]
    assert [(a["name"], a["type"]) for a in ms["axes"]] == [
        ("t", "time"), ("c", "channel"), ("y", "space"), ("x", "space")]
    back = zarr.open_array(str(out / "0"), mode="r")[...]
    assert back.shape == (2, 3, 12, 10) and np.array_equal(back, np.moveaxis(rgb, -1, 1))
    assert [c["color"] for c in attrs(out)["omero"]["channels"]] == ["FF0000", "00FF00",
                                                                     "0000FF"]


def test_bool_and_nan_images_and_a_second_channel_axis(tmp_path):
    lab = make_labels()
    mask = lab > 0
    out = export_ome_zarr(lab, tmp_path / "b.ome.zarr", image=mask)
    back = zarr.open_array(str(out / "0"), mode="r")
    assert back.dtype == np.uint8 and np.array_equal(back[...], mask)
    ct = np.full(lab.shape, np.nan, np.float32)
    ct[1] = np.linspace(-100, 300, lab.shape[1] * lab.shape[2]).reshape(lab.shape[1:])
    out = export_ome_zarr(lab, tmp_path / "f.ome.zarr", image=ct)
    window = attrs(out)["omero"]["channels"][0]["window"]  # NaN never reaches the JSON
    assert (window["start"], window["end"]) == pytest.approx((-100.0, 300.0))
    with pytest.raises(ExportError, match="already have a channel axis"):
        export_ome_zarr(lab[None], tmp_path / "c.ome.zarr", axes="czyx",
                        image=np.zeros((1, *lab.shape, 3), np.uint8))
    assert not (tmp_path / "c.ome.zarr").exists()


def test_image_true_takes_the_recorded_source(tmp_path):
    img = np.full((2, 8, 9), 5, np.uint8)
    tifffile.imwrite(tmp_path / "src.tif", img, photometric="minisblack")
    s = LabelsStore.create(tmp_path / "s.zarr", img.shape,
                           provenance={"source": {"path": str(tmp_path / "src.tif")}})
    out = export_ome_zarr(s, tmp_path / "s.ome.zarr", image=True)
    assert np.array_equal(zarr.open_array(str(out / "0"), mode="r")[...], img)
    (tmp_path / "src.tif").unlink()
    with pytest.raises(ExportError, match="no longer exists"):
        export_ome_zarr(s, tmp_path / "t.ome.zarr", image=True)


# ------------------------------------------------------------------------------ refusals
def test_existing_output_is_refused_and_left_byte_identical(tmp_path, store):
    out = export_ome_zarr(store, tmp_path / "x.ome.zarr")
    before = tree_digest(out)
    with pytest.raises(ExportError, match="already exists"):
        export_ome_zarr(make_labels() * 0, out)
    assert tree_digest(out) == before
    mine = tmp_path / "mine.ome.zarr"  # someone's folder that is not a zarr store
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    for overwrite in (False, True):
        with pytest.raises(ExportError):
            export_ome_zarr(store, mine, overwrite=overwrite)
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    export_ome_zarr(make_labels() * 0, out, overwrite=True)  # explicitly replaced
    assert tree_digest(out) != before
    assert int(zarr.open_array(str(out / "labels" / "labels" / "0"), mode="r")[...].max()) == 0


# ------------------------------------------------------------------------------ readers
def test_ome_zarr_py_reads_labels_and_image(tmp_path, store):
    from ome_zarr.io import parse_url

    img = np.ones((3, 40, 28), np.uint8)
    out = export_ome_zarr(store, tmp_path / "r.ome.zarr", image=img, levels=2)
    nodes = list(ome_reader.Reader(parse_url(str(out)))())
    image = next(n for n in nodes if not n.first(ome_reader.Label))
    label = next(n for n in nodes if n.first(ome_reader.Label))
    assert [d.shape for d in image.data] == [(3, 40, 28), (3, 20, 14)]
    assert np.array_equal(np.asarray(label.data[0]), make_labels())
    assert label.metadata["properties"][1]["class"] == "nucleus"
    assert set(label.metadata["color"]) == {1, 2, 7}


def test_napari_ome_zarr_opens_it_as_labels(tmp_path, store):
    reader = pytest.importorskip("napari_ome_zarr._reader")
    out = export_ome_zarr(store, tmp_path / "n.ome.zarr", image=np.ones((3, 40, 28), np.uint8))
    with contextlib.redirect_stdout(io.StringIO()):  # it prints the root's attributes
        layers = reader.napari_get_reader(str(out))(str(out))
    kinds = {kind: (data, meta) for data, meta, kind in layers}
    assert set(kinds) == {"image", "labels"}
    data, meta = kinds["labels"]
    assert np.array_equal(np.asarray(data[0]), make_labels())
    assert meta["axis_labels"] == ("z", "y", "x") and meta["scale"] == [2.0, 0.5, 0.25]
    assert meta["properties"]["class"][meta["properties"]["index"].index(1)] == "nucleus"
    labels_only = export_ome_zarr(store, tmp_path / "l.ome.zarr")
    path = str(labels_only / "labels" / "cells")  # without an image: open the labels
    with contextlib.redirect_stdout(io.StringIO()):
        [(data, meta, kind)] = reader.napari_get_reader(path)(path)
    assert kind == "labels" and np.array_equal(np.asarray(data[0]), make_labels())


# ------------------------------------------------------------------------------ command line
def test_command_line_export(tmp_path, store, capsys):
    img = np.zeros((3, 40, 28), np.uint8)
    tifffile.imwrite(tmp_path / "raw.tif", img, photometric="minisblack")
    out = tmp_path / "cli.ome.zarr"
    code = main(["export", str(store.path), "--out", str(out), "--image",
                 str(tmp_path / "raw.tif"), "--levels", "2", "--label-name", "seg",
                 "--spacing", "4,1,1", "--unit", "nm", "--class-name", "7=debris"])
    stdout, err = capsys.readouterr()
    assert code == 0, err
    assert f"wrote {out} (ome-zarr" in stdout
    ms = attrs(out / "labels" / "seg")["multiscales"][0]
    assert len(ms["datasets"]) == 2 and ms["axes"][0]["unit"] == "nanometer"
    assert ms["datasets"][0]["coordinateTransformations"][0]["scale"] == [4.0, 1.0, 1.0]
    props = attrs(out / "labels" / "seg")["image-label"]["properties"]
    assert {p["label-value"]: p.get("class") for p in props}[7] == "debris"
    assert "multiscales" in attrs(out)
    code = main(["export", str(store.path), "--out", str(tmp_path / "x.tif"), "--levels", "2"])
    assert code == 2 and "--levels applies to --format ome-zarr, not tif" in capsys.readouterr().err


def test_command_line_image_option_errors(tmp_path, store, capsys):
    out = tmp_path / "e.ome.zarr"
    code = main(["export", str(store.path), "--out", str(out), "--image",
                 str(tmp_path / "nowhere.tif")])
    assert code == 2 and "--image not found" in capsys.readouterr().err
    code = main(["export", str(store.path), "--out", str(out), "--image", "source"])
    assert code == 2 and "records none" in capsys.readouterr().err  # no source recorded
    code = main(["export", str(store.path), "--out", str(out), "--fps", "5"])
    assert code == 2 and "--fps applies to --format mp4, not ome-zarr" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cells.zarr"]
    code = main(["export", str(store.path), "--out", str(out), "--format", "ngff"])
    assert code == 0 and attrs(out / "labels") == {"labels": ["cells"]}
