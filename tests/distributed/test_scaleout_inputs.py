"""Inputs of a batch: folders, globs, manifests, shards; block geometry and the relabel
table (no cluster)."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_segany.distributed import BatchError, collect_inputs, parse_shard, shard
from napari_segany.distributed.blocks import BlockPlan, remove_small_fragments
from napari_segany.distributed.relabel import components, final_ids, link_pairs


def _images(folder, names):
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        tifffile.imwrite(folder / n, np.zeros((8, 8), np.uint8))


def test_folder_glob_and_manifest(tmp_path):
    _images(tmp_path / "in", ["b.tif", "a.tif", "notes.txt"])
    (tmp_path / "in" / "notes.txt").write_text("not an image")
    items = collect_inputs(tmp_path / "in", out_dir=tmp_path / "out")
    assert [it.key for it in items] == ["a", "b"]
    assert items[0].out == str(tmp_path / "out" / "a.zarr")
    glob = collect_inputs(str(tmp_path / "in" / "*.tif"), out_dir=tmp_path / "o",
                          suffix=".cache")
    assert [it.out.endswith(".cache") for it in glob] == [True, True]
    man = tmp_path / "m.csv"
    man.write_text("image,out,boxes\nin/a.tif,res/a_seg.zarr,a.csv\nin/b.tif,,\n")
    rows = collect_inputs(man, out_dir=tmp_path / "dflt")
    assert rows[0].out == str(tmp_path / "res" / "a_seg.zarr")
    assert rows[0].boxes == str(tmp_path / "a.csv")
    assert rows[1].out == str(tmp_path / "dflt" / "b.zarr") and rows[1].boxes is None


def test_same_names_in_different_folders_get_distinct_keys(tmp_path):
    _images(tmp_path / "p1", ["img.tif"])
    _images(tmp_path / "p2", ["img.tif"])
    items = collect_inputs(str(tmp_path / "p*" / "img.tif"), out_dir=tmp_path / "o")
    assert sorted(it.key for it in items) == ["p1__img", "p2__img"]


@pytest.mark.parametrize("source, match", [
    ("missing", "no such input"), ("*.nothing", "matched no images"),
])
def test_bad_inputs(tmp_path, monkeypatch, source, match):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(BatchError, match=match):
        collect_inputs(source, out_dir="o")


def test_bad_manifests(tmp_path):
    _images(tmp_path, ["a.tif"])
    bad = tmp_path / "bad.csv"
    bad.write_text("file,out\na.tif,x.zarr\n")
    with pytest.raises(BatchError, match="'image' column"):
        collect_inputs(bad)
    twice = tmp_path / "twice.csv"
    twice.write_text("image,out,key\na.tif,x.zarr,k1\na.tif,x.zarr,k2\n")
    with pytest.raises(BatchError, match="would both write"):
        collect_inputs(twice)
    noout = tmp_path / "noout.csv"
    noout.write_text("image\na.tif\n")
    with pytest.raises(BatchError, match="no output"):
        collect_inputs(noout)


def test_shards_are_disjoint_and_cover_everything():
    items = list(range(11))
    parts = [shard(items, i, 4) for i in range(4)]
    assert sorted(x for p in parts for x in p) == items
    assert parse_shard("3/8") == (3, 8)
    for bad in ("8/8", "-1/2", "1-2", "a/b"):
        with pytest.raises(BatchError):
            parse_shard(bad)


def test_block_plan_chunks_partition_the_plane():
    plan = BlockPlan((3, 300, 500), 128, 16, (100, 128))
    cover = np.zeros((300, 500), int)
    for y0, y1, x0, x1 in plan.chunk_regions():
        cover[y0:y1, x0:x1] += 1
    assert (cover == 1).all()
    assert plan.n_planes == 3 and len(list(plan.blocks())) == 3 * plan.n_tiles


def test_components_map_to_the_smallest_gid():
    edges = np.array([[5, 9], [9, 2], [40, 41]], np.uint64)
    nodes, roots = components(edges)
    assert dict(zip(nodes.tolist(), roots.tolist(), strict=True)) == {
        2: 2, 5: 2, 9: 2, 40: 40, 41: 40}


def test_links_are_one_to_one_by_total_iou():
    # object 1 overlaps 10 (IoU 0.5) and 11 (IoU 0.45); 2 overlaps only 11 (IoU 0.6)
    pairs = np.array([[1, 10], [1, 11], [2, 11]], np.uint64)
    inter = np.array([50, 45, 60])
    area = {1: 100, 2: 100, 10: 50, 11: 45 + 60}
    area[11] = 100
    iou = {(1, 10): 50 / 100, (1, 11): 45 / 155, (2, 11): 60 / 140}
    assert all(v >= 0.28 for v in iou.values())
    got = {tuple(p) for p in link_pairs(pairs, inter, area, min_iou=0.25).tolist()}
    assert got == {(1, 10), (2, 11)}
    gids, finals = final_ids(np.array([1, 2, 10, 11, 12], np.uint64),
                             np.array(sorted(got), np.uint64))
    assert dict(zip(gids.tolist(), finals.tolist(), strict=True)) == {
        1: 1, 2: 2, 10: 1, 11: 2, 12: 3}


def test_small_fragments_go_whatever_the_id_type():
    lab = np.zeros((10, 10), np.uint64)
    lab[0:3, 0:3] = 2**40
    lab[8, 8] = 2**40  # a 1-pixel fragment of the same object
    lab[5:7, 5:9] = 7
    out = remove_small_fragments(lab, 5)
    assert out[8, 8] == 0 and (out[0:3, 0:3] == 2**40).all() and (out[5:7, 5:9] == 7).all()
