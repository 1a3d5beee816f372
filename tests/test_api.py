"""The notebook API: Segmenter."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

import napari_segany as sa
from blobs import GT1, VOL, center, iou
from napari_segany.prompts import ObjectPrompt, PromptSet
from rule_backend import RuleBackend


class FakeViewer:
    def __init__(self):
        self.layers = []

    def add_image(self, data, **kw):
        self.layers.append(("image", data, kw))
        return self.layers[-1]

    def add_labels(self, data, **kw):
        self.layers.append(("labels", data, kw))
        return self.layers[-1]


@pytest.fixture
def nuclei():
    return sa.load_sample("nuclei")


def test_points_boxes_commit_show_export(nuclei, tmp_path):
    seg = sa.Segmenter(nuclei.image, model=RuleBackend(), labels=tmp_path / "l.zarr")
    mask = seg.segment(points=[nuclei.point])
    gt = nuclei.labels == nuclei.object_id
    assert mask.shape == gt.shape and iou(mask, gt) > 0.8
    assert seg.commit(class_name="nucleus") == 1
    boxes = []
    for oid in (2, 3):
        ys, xs = np.nonzero(nuclei.labels == oid)
        boxes.append([xs.min(), ys.min(), xs.max(), ys.max()])
    masks = seg.segment(boxes=boxes)
    assert masks.shape == (2,) + gt.shape
    assert seg.commit() == [2, 3]
    labels = seg.labels_numpy()
    assert set(np.unique(labels)) == {0, 1, 2, 3}
    assert seg.labels.provenance["objects"]["1"]["class_name"] == "nucleus"
    img = seg.show()
    assert img.size == (256, 256)
    out = seg.export(tmp_path / "labels.tif")
    np.testing.assert_array_equal(tifffile.imread(out), labels)
    with pytest.raises(ValueError, match="segment"):
        seg.commit()


def test_mask_prompt_and_napari(nuclei, tmp_path):
    seg = sa.Segmenter(nuclei.image, model=RuleBackend(), labels=tmp_path / "l.zarr")
    gt = nuclei.labels == 4
    mask = seg.segment(mask=gt)
    assert iou(mask, gt) > 0.8
    viewer = FakeViewer()
    image_layer, labels_layer = seg.to_napari(viewer)
    assert image_layer[0] == "image" and labels_layer[0] == "labels"
    assert labels_layer[1] is seg.labels_array  # zarr-backed, not loaded


def test_from_file_with_window(tmp_path):
    path = tmp_path / "vol.tif"
    tifffile.imwrite(path, VOL)
    seg = sa.Segmenter(path, model=RuleBackend(), labels=tmp_path / "l.zarr", percentiles=(0, 100))
    assert seg.shape == VOL.shape and seg.source.path == path
    ps = PromptSet()
    ps.add((14,), 1, ObjectPrompt(points=center(GT1[14]), labels=[1]))
    seg.propagate(ps)
    assert iou(seg.labels.read_plane((20,)) == 1, GT1[20]) >= 0.9


def test_segment_everything_and_boxes(nuclei, tmp_path):
    from napari_segany.auto import AutoSettings

    seg = sa.Segmenter(nuclei.image, model=RuleBackend(), labels=tmp_path / "l.zarr")
    result = seg.segment_everything(settings=AutoSettings(points_per_side=16))
    labels = seg.labels_numpy()
    assert len(result.object_ids) >= 10 and labels.max() >= 10
    seg2 = sa.Segmenter(nuclei.image, model=RuleBackend(), labels=tmp_path / "b.zarr")
    csv = tmp_path / "boxes.csv"
    ys, xs = np.nonzero(nuclei.labels == 5)
    csv.write_text(f"x0,y0,x1,y1,class\n{xs.min()},{ys.min()},{xs.max()},{ys.max()},nucleus\n")
    res = seg2.segment_boxes(csv)
    assert list(res.ids) == [1]
    assert iou(seg2.labels_numpy() == 1, nuclei.labels == 5) > 0.8
    assert seg2.labels.provenance["objects"]["1"]["class_name"] == "nucleus"
