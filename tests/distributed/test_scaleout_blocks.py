"""Blocks of one large plane or volume, run in this process (``client=None``): the same
objects, with the same ids, as the single-process tiled run on the same grid."""

from __future__ import annotations

import json
from functools import partial

import numpy as np
import pytest
import tifffile
from scaleout_data import balls, discs

from napari_segany.auto import AutoSettings, segment_everything, segment_everything_tiled
from napari_segany.distributed import (
    BatchError,
    BatchItem,
    JobOptions,
    WorkerModel,
    collect_inputs,
    run_batch,
    segment_blocks,
)
from napari_segany.intensity import normalizer_from_options
from napari_segany.prompts import ObjectPrompt, PromptSet
from napari_segany.storage import LabelsStore
from napari_segany.tiling import TiledEmbeddings, TileGrid
from rule_backend import RuleBackend
from testdata import DATA

RULE = WorkerModel(factory=RuleBackend)
SETTINGS = AutoSettings(points_per_side=12, generator="grid", min_area=16)


def _labels(path) -> np.ndarray:
    return np.asarray(LabelsStore.open(path, mode="r").array[...])


def test_large_plane_in_blocks_equals_the_tiled_run(tmp_path):
    img = discs((300, 330), 30, seed=1, rmax=30)
    tifffile.imwrite(tmp_path / "plane.tif", img)
    tiled = TiledEmbeddings(img, RuleBackend(), normalizer=normalizer_from_options(img),
                            tile=128, halo=16)
    ref = segment_everything_tiled(tiled, (), settings=SETTINGS)
    res = segment_blocks(str(tmp_path / "plane.tif"), str(tmp_path / "out.zarr"), model=RULE,
                         options=JobOptions(auto=SETTINGS), tile=128, halo=16, chunk_size=96)
    assert res.status == "done" and res.objects == int(ref.max()) > 10
    got = _labels(tmp_path / "out.zarr")
    np.testing.assert_array_equal(got, ref)
    store = LabelsStore.open(tmp_path / "out.zarr", mode="r")
    assert store.chunks == (96, 96)
    assert store.provenance["distributed"]["status"] == "done"
    assert sorted(int(k) for k in store.objects) == list(range(1, res.objects + 1))
    # the chunk tasks wrote the zarr array directly; the log knows every pixel they wrote
    ids, counts = np.unique(got[got > 0], return_counts=True)
    assert {r.id: r.pixels for r in store.object_table()} == dict(
        zip(ids.tolist(), counts.tolist(), strict=True))
    assert store.written_planes() == [()]
    assert not (tmp_path / "out.zarr.run").exists()  # removed once complete
    again = segment_blocks(str(tmp_path / "plane.tif"), str(tmp_path / "out.zarr"),
                           model=RULE, options=JobOptions(auto=SETTINGS), tile=128, halo=16,
                           chunk_size=96)
    assert again.status == "skipped"


def test_volume_in_blocks_equals_the_tiled_linked_run(tmp_path):
    vol = balls((3, 200, 230), 14, seed=2)
    tifffile.imwrite(tmp_path / "vol.tif", vol, photometric="minisblack")
    opts = JobOptions(auto=SETTINGS, tile=128, halo=16)
    ref = run_batch([BatchItem("vol", str(tmp_path / "vol.tif"), str(tmp_path / "ref.zarr"))],
                    options=opts, model=RULE)
    assert ref.ok and ref.done[0]["objects"] > 5
    res = segment_blocks(str(tmp_path / "vol.tif"), str(tmp_path / "out.zarr"), model=RULE,
                         options=opts, tile=128, halo=16, chunk_size=100)
    np.testing.assert_array_equal(_labels(tmp_path / "out.zarr"), _labels(tmp_path / "ref.zarr"))
    assert res.ran["L"] == 2 * 6  # 2 plane pairs x 6 chunks
    store = LabelsStore.open(tmp_path / "out.zarr", mode="r")
    got = _labels(tmp_path / "out.zarr")
    table = {(r.id, p): None for r in store.object_table() for p in r.planes}
    assert table.keys() == {(int(i), (z,)) for z in range(3) for i in np.unique(got[z]) if i}


def test_an_existing_output_of_another_shape_is_refused(tmp_path):
    tifffile.imwrite(tmp_path / "plane.tif", discs((200, 200), 5))
    LabelsStore.create(tmp_path / "out.zarr", (100, 100)).close()
    with pytest.raises(BatchError, match="shape"):
        segment_blocks(str(tmp_path / "plane.tif"), str(tmp_path / "out.zarr"), model=RULE,
                       options=JobOptions(auto=SETTINGS), tile=128, halo=16)
    assert _labels(tmp_path / "out.zarr").shape == (100, 100)
    assert not (tmp_path / "out.zarr.run").exists()


def test_shards_then_merge(tmp_path):
    img = discs((220, 220), 14, seed=3, rmax=30)
    tifffile.imwrite(tmp_path / "p.tif", img)
    kw = dict(model=RULE, options=JobOptions(auto=SETTINGS), tile=128, halo=16)
    first = segment_blocks(str(tmp_path / "p.tif"), str(tmp_path / "o.zarr"), shard_of=(0, 2),
                           **kw)
    assert first.status == "shard" and 0 < first.ran["A"] < first.blocks
    with pytest.raises(BatchError, match="not segmented yet"):
        segment_blocks(str(tmp_path / "p.tif"), str(tmp_path / "o.zarr"), merge=True, **kw)
    assert not (tmp_path / "o.zarr").exists()  # nothing written before every block is done
    one = segment_blocks(str(tmp_path / "p.tif"), str(tmp_path / "o.zarr"), shard_of=(1, 2),
                         **kw)
    assert one.status == "shard"
    done = segment_blocks(str(tmp_path / "p.tif"), str(tmp_path / "o.zarr"), merge=True, **kw)
    assert done.ran["A"] == 0 and done.skipped["A"] == done.blocks
    ref = segment_blocks(str(tmp_path / "p.tif"), str(tmp_path / "r.zarr"), **kw)
    np.testing.assert_array_equal(_labels(tmp_path / "o.zarr"), _labels(tmp_path / "r.zarr"))
    assert ref.objects == done.objects


@pytest.mark.data
def test_perfect_model_on_real_nuclei_in_blocks(tmp_path):
    full = DATA / "stardist" / "img2d.tif"
    if not full.exists():
        pytest.skip("shared data not available")
    img = tifffile.imread(full)[:256, :336]  # 3 x 4 blocks of 128 (halo 24)
    src = tmp_path / "nuclei.tif"
    tifffile.imwrite(src, img)
    opts = JobOptions(auto=SETTINGS, tile=128, halo=24)
    nuclei = WorkerModel(factory=partial(RuleBackend, threshold=50))  # nuclei are ~40-70
    run_batch([BatchItem("n", str(src), str(tmp_path / "ref.zarr"))], options=opts,
              model=nuclei)
    res = segment_blocks(str(src), str(tmp_path / "out.zarr"), model=nuclei, options=opts,
                         tile=128, halo=24, chunk_size=128)
    got = _labels(tmp_path / "out.zarr")
    np.testing.assert_array_equal(got, _labels(tmp_path / "ref.zarr"))
    assert res.objects > 15
    # an object crossing a block border is one object: the whole-plane result's objects
    # that cross a core border are each covered by one object of the block run
    whole = segment_everything(RuleBackend(threshold=50),
                               normalizer_from_options(img)(img),
                               settings=AutoSettings(points_per_side=32, generator="grid",
                                                     min_area=16))
    borders = np.zeros(img.shape, bool)
    for y0, _, x0, _ in (t.core for t in TileGrid(img.shape, tile=128, halo=24)):
        borders[y0, :] |= y0 > 0
        borders[:, x0] |= x0 > 0
    crossing = [i for i in np.unique(whole[borders]) if i]
    assert len(crossing) > 5
    one = 0
    for i in crossing:
        ids, counts = np.unique(got[whole == i], return_counts=True)
        one += counts.max() >= 0.9 * counts.sum() and ids[np.argmax(counts)] != 0
    assert one >= 0.9 * len(crossing)


def test_boxes_propagate_and_embed_batches_here(tmp_path):
    yy, xx = np.mgrid[:80, :80]
    disc_a = (yy - 20) ** 2 + (xx - 20) ** 2 <= 64
    disc_b = (yy - 55) ** 2 + (xx - 55) ** 2 <= 100
    img = np.where(disc_a | disc_b, 220, 10).astype(np.uint8)
    tifffile.imwrite(tmp_path / "a.tif", img)
    tifffile.imwrite(tmp_path / "v.tif", np.stack([img] * 4), photometric="minisblack")
    (tmp_path / "a.csv").write_text("x0,y0,x1,y1,class\n10,10,30,30,small\n43,43,67,67,big\n")
    prompts = PromptSet()
    prompts.add((1,), 7, ObjectPrompt(np.array([[55.0, 55.0]]), [1]))
    (tmp_path / "v.json").write_text(json.dumps(prompts.to_dict()))
    (tmp_path / "m.csv").write_text("image,boxes,prompts\na.tif,a.csv,\nv.tif,,v.json\n")
    items = collect_inputs(tmp_path / "m.csv", out_dir=tmp_path / "o")
    boxes = run_batch(items[:1], options=JobOptions(mode="boxes"), model=RULE)
    assert boxes.ok and boxes.done[0]["objects"] == 2
    store = LabelsStore.open(tmp_path / "o" / "a.zarr", mode="r")
    got = np.asarray(store.array[...])
    assert {store.objects[int(got[20, 20])]["class_name"],
            store.objects[int(got[55, 55])]["class_name"]} == {"small", "big"}
    np.testing.assert_array_equal(got > 0, disc_a | disc_b)
    prop = run_batch(items[1:], options=JobOptions(mode="propagate"), model=RULE)
    assert prop.ok and prop.done[0]["objects"] == 1
    vol = _labels(tmp_path / "o" / "v.zarr")
    assert all((vol[z] == np.where(disc_b, 7, 0)).all() for z in range(4))
    # a 2D image has nothing to propagate: it fails alone, named
    bad = run_batch([BatchItem("a", str(tmp_path / "a.tif"), str(tmp_path / "p.zarr"),
                               prompts=str(tmp_path / "v.json"))],
                    options=JobOptions(mode="propagate"), model=RULE)
    assert not bad.ok and "2D image" in bad.failed[0]["error"]
    assert not (tmp_path / "p.zarr").exists()
    emb = [BatchItem("v", str(tmp_path / "v.tif"), str(tmp_path / "v.cache"))]
    first = run_batch(emb, options=JobOptions(mode="embed"), model=RULE)
    again = run_batch(emb, options=JobOptions(mode="embed"), model=RULE)
    assert first.done[0]["computed"] == 4 and again.done[0]["computed"] == 0
