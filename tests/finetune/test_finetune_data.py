"""Training data: planes from arrays, files, labels stores; the seeded split; bad input."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from ftdata import discs

from napari_segany.finetune import split_planes, training_planes
from napari_segany.storage.labels import LabelsStore


def test_planes_from_arrays_keep_objects_and_map_intensities():
    img, lab = discs(3)
    (p,) = training_planes((img, lab))
    assert p.rgb.shape == (64, 64, 3) and p.rgb.dtype == np.uint8
    assert np.array_equal(p.labels, lab) and list(p.object_ids) == [1, 2, 3]
    assert p.rgb[lab > 0].mean() > p.rgb[lab == 0].mean() + 100  # discs stay bright


def test_volume_planes_without_objects_and_small_objects_are_left_out():
    img, lab = discs(2)
    vol = np.stack([img, img, img])
    labs = np.stack([lab, np.zeros_like(lab), lab])
    labs[2][:2, :2] = 9  # a 4-pixel object
    planes = training_planes((vol, labs), min_area=10)
    assert [p.plane for p in planes] == [(0,), (2,)]
    assert 9 not in planes[1].labels


def test_labels_store_with_its_image_and_from_its_provenance(tmp_path):
    img, lab = discs(3)
    tifffile.imwrite(tmp_path / "img.tif", img)
    with LabelsStore.create(tmp_path / "cells.zarr", img.shape) as store:
        store.write_plane((), lab.astype(np.uint32))
        store.update_provenance(source={"path": str(tmp_path / "img.tif")})
    before = sorted((p.relative_to(tmp_path), p.stat().st_mtime_ns)
                    for p in (tmp_path / "cells.zarr").rglob("*") if p.is_file())
    (a,) = training_planes(str(tmp_path / "cells.zarr"))
    (b,) = training_planes((str(tmp_path / "img.tif"), str(tmp_path / "cells.zarr")))
    assert np.array_equal(a.labels, lab) and np.array_equal(a.rgb, b.rgb)
    after = sorted((p.relative_to(tmp_path), p.stat().st_mtime_ns)
                   for p in (tmp_path / "cells.zarr").rglob("*") if p.is_file())
    assert after == before  # read-only


def test_labels_store_without_its_image_says_to_give_it(tmp_path):
    img, lab = discs(2)
    with LabelsStore.create(tmp_path / "s.zarr", img.shape) as store:
        store.write_plane((), lab.astype(np.uint32))
    with pytest.raises(ValueError, match="does not record its image; give the image"):
        training_planes(str(tmp_path / "s.zarr"))
    tifffile.imwrite(tmp_path / "small.tif", img[:32])
    with pytest.raises(ValueError, match="has shape .* but its image small.tif has shape"):
        training_planes((str(tmp_path / "small.tif"), str(tmp_path / "s.zarr")))


def test_bad_labels_are_named():
    img, lab = discs(2)
    with pytest.raises(ValueError, match="do not match"):
        training_planes((img, lab[:30]))
    with pytest.raises(ValueError, match="no objects"):
        training_planes((img, np.zeros_like(lab)))
    with pytest.raises(ValueError, match="no object of at least 1000 pixels"):
        training_planes((img, lab), min_area=1000)


def test_files_and_folders_are_read_like_the_evaluation(tmp_path):
    (tmp_path / "im").mkdir()
    (tmp_path / "lab").mkdir()
    for i in range(3):
        img, lab = discs(2, seed=i)
        tifffile.imwrite(tmp_path / "im" / f"c{i}.tif", img)
        tifffile.imwrite(tmp_path / "lab" / f"c{i}_mask.tif", lab)
    planes = training_planes((str(tmp_path / "im"), str(tmp_path / "lab")))
    assert [p.image for p in planes] == ["c0", "c1", "c2"]


def test_split_by_image_is_seeded_and_disjoint():
    planes = training_planes({f"i{k}": discs(2, seed=k) for k in range(5)})
    tr, va = split_planes(planes, val_fraction=0.4, seed=3)
    tr2, va2 = split_planes(planes, val_fraction=0.4, seed=3)
    assert [p.name for p in va] == [p.name for p in va2] and len(va) == 2 and len(tr) == 3
    assert not {p.image for p in tr} & {p.image for p in va}
    others = [tuple(p.name for p in split_planes(planes, val_fraction=0.4, seed=s)[1])
              for s in range(6)]
    assert len(set(others)) > 1  # the seed matters
    assert split_planes(planes, val_fraction=0)[1] == []


def test_split_of_one_volume_falls_back_to_planes_and_one_plane_cannot_split():
    img, lab = discs(2)
    planes = training_planes((np.stack([img] * 4), np.stack([lab] * 4)))
    tr, va = split_planes(planes, val_fraction=0.25)
    assert len(tr) == 3 and len(va) == 1
    with pytest.raises(ValueError, match="too few for a validation split"):
        split_planes(planes[:1], val_fraction=0.2)
