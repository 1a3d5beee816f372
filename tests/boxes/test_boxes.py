"""Boxes to masks in batch: box files (CSV, JSON), Shapes layers, detector arrays, batched
decoding, the overlap policy, classes in the store, stacks, and real nuclei images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_segany.boxes import (
    BoxError,
    BoxTable,
    boxes_from_shapes,
    boxes_to_labels,
    read_boxes,
    segment_boxes,
)
from napari_segany.engine import load_model
from napari_segany.engine.base import Prediction
from napari_segany.prompts import Transform
from napari_segany.session import Session
from napari_segany.storage import LabelsStore
from rule_backend import RuleBackend
from testdata import DATA

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def squares(n: int = 6, shape=(80, 200)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` bright 14 x 14 squares in a row: image, labels, XYXY boxes."""
    gt = np.zeros(shape, np.int32)
    boxes = []
    for i in range(n):
        x0 = 4 + 30 * i
        gt[20:34, x0:x0 + 14] = i + 1
        boxes.append([x0, 20, x0 + 13, 33])
    return np.where(gt > 0, 230, 25).astype(np.uint8), gt, np.array(boxes, float)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# ----------------------------------------------------------------------------------- reading
def test_csv_with_planes_classes_ids_and_scores(tmp_path):
    p = write(tmp_path / "b.csv", "plane,x0,y0,x1,y1,class,id,score\n"
                                  "0,1,2,10,12,nucleus,,0.9\n"
                                  "2, 5, 5, 20, 25 ,cell,7,\n\n"
                                  "1,0,0,3,3,,,\n")
    t = read_boxes(p)
    assert len(t) == 3 and t.boxes.tolist()[1] == [5, 5, 20, 25]
    assert t.planes == [(0,), (2,), (1,)] and t.classes == ["nucleus", "cell", None]
    assert t.ids.tolist() == [0, 7, 0] and t.scores[0] == 0.9 and np.isnan(t.scores[1])
    assert t.rows[1] == "b.csv line 3"


def test_csv_aliases_xywh_and_two_leading_axes(tmp_path):
    t = read_boxes(write(tmp_path / "a.csv", "xmin;ymin;xmax;ymax;label\n1;2;3;4;a\n"))
    assert t.boxes.tolist() == [[1, 2, 3, 4]] and t.classes == ["a"] and t.planes == [None]
    t = read_boxes(write(tmp_path / "w.csv", "plane,x,y,width,height\n3:12,10,20,5,6\n"))
    assert t.boxes.tolist() == [[10, 20, 15, 26]] and t.planes == [(3, 12)]


def test_json_forms(tmp_path):
    records = [{"box": [1, 2, 30, 40], "plane": 1, "class": "a", "id": 3},
               {"bbox": [5, 5, 10, 20], "plane": [2], "score": 0.5},
               {"x0": 0, "y0": 0, "x1": 4, "y1": 4, "plane": 0}]
    t = read_boxes(write(tmp_path / "l.json", json.dumps(records)))
    assert t.boxes.tolist() == [[1, 2, 30, 40], [5, 5, 15, 25], [0, 0, 4, 4]]
    assert t.planes == [(1,), (2,), (0,)] and t.ids.tolist() == [3, 0, 0]
    doc = {"format": "napari-segany.boxes", "version": 1, "boxes": records[:1]}
    assert len(read_boxes(write(tmp_path / "d.json", json.dumps(doc)))) == 1


@pytest.mark.parametrize("name,text,match", [
    ("h.csv", "a,b,c,d\n1,2,3,4\n", "lacks box columns"),
    ("n.csv", "x0,y0,x1,y1\n1,2,x,4\n", "n.csv line 2"),
    ("e.csv", "x0,y0,x1,y1\n", "no boxes"),
    ("p.csv", "plane,x0,y0,x1,y1\n-1,1,2,3,4\n", "non-negative"),
    ("i.csv", "x0,y0,x1,y1,id\n1,2,3,4,0\n", "id"),
    ("j.json", "{not json", "not valid JSON"),
    ("k.json", '[{"plane": 1}]', "no box"),
    ("f.json", '{"format": "other", "boxes": []}', "expected a list"),
    ("b.txt2", "x0,y0,x1,y1\n", "must end in"),
])
def test_bad_box_files_say_what_is_wrong(tmp_path, name, text, match):
    with pytest.raises(BoxError, match=match):
        read_boxes(write(tmp_path / name, text))


def test_boxes_are_checked_against_the_image():
    t = BoxTable.from_array([[-5, -5, 10, 10], [90, 40, 120, 70]])
    v = t.validated((50, 100))
    assert v.boxes.tolist() == [[0, 0, 10, 10], [90, 40, 99, 49]] and v.planes == [(), ()]
    with pytest.raises(BoxError, match="leading axes"):
        t.validated((3, 50, 100))
    with pytest.raises(BoxError, match="outside"):
        BoxTable.from_array([[200, 0, 210, 5]]).validated((50, 100))
    with pytest.raises(BoxError, match="x1 > x0"):
        BoxTable.from_array([[5, 5, 5, 9]]).validated((50, 100))
    with pytest.raises(BoxError, match="2D image takes no plane"):
        BoxTable.from_array([[1, 1, 5, 5]], planes=0).validated((50, 100))
    with pytest.raises(BoxError, match="does not fit"):
        BoxTable.from_array([[1, 1, 5, 5]], planes=[3]).validated((3, 50, 100))
    with pytest.raises(BoxError, match="one box per plane"):
        BoxTable.from_array([[1, 1, 5, 5]] * 2, planes=1, ids=[4, 4]).validated((3, 50, 100))
    with pytest.raises(BoxError, match="class"):
        BoxTable.from_array([[1, 1, 5, 5]] * 2, planes=[0, 1], ids=[4, 4],
                            classes=["a", "b"]).validated((3, 50, 100))
    with pytest.raises(BoxError, match="3 classes for 2 boxes"):
        BoxTable.from_array([[1, 1, 5, 5]] * 2, classes=["a", "b", "c"])


def test_detector_arrays_and_shapes_layers():
    t = BoxTable.from_array(np.array([[10, 20, 5, 6]]), box_format="xywh", classes="cell",
                            scores=[0.8])
    assert t.boxes.tolist() == [[10, 20, 15, 26]] and t.classes == ["cell"]
    # a (z, y, x) Shapes layer with scale 2 in x, on an image with scale 2 in x as well
    rect = np.array([[1, 10, 20], [1, 10, 40], [1, 30, 40], [1, 30, 20]], float)
    tf = Transform(scale=(1, 1, 2))
    t = boxes_from_shapes([rect, rect + [1, 0, 0]], image_shape=(3, 64, 64),
                          classes=["a", "b"], shapes_transform=tf, image_transform=tf)
    assert t.planes == [(1,), (2,)] and t.boxes.tolist()[0] == [20, 10, 40, 30]
    assert t.classes == ["a", "b"] and t.rows == ["shape 0", "shape 1"]


# ----------------------------------------------------------------------------------- segmenting
def test_one_id_per_box_in_batched_decoder_calls():
    img, gt, boxes = squares(6)
    backend = RuleBackend()
    rgb = np.repeat(img[..., None], 3, -1)
    labels, scores = boxes_to_labels(backend, rgb, boxes, chunk_size=4, ids=[10, 11, 12, 13,
                                                                              14, 15])
    assert backend.predict_calls == [4, 2]
    assert labels.dtype == np.uint32 and np.array_equal(labels, np.where(gt > 0, gt + 9, 0))
    assert scores.tolist() == [1.0] * 6


class ScoredRule(RuleBackend):
    """Rule masks, scored by the width of the box (wider boxes score higher)."""

    def predict(self, embedding, prompts, *, multimask=True):
        pred = super().predict(embedding, prompts, multimask=multimask)
        widths = np.array([(p.box[2] - p.box[0]) / 1000 for p in prompts], np.float32)
        return Prediction(pred.masks, np.repeat(widths[:, None], pred.scores.shape[1], 1),
                          pred.logits)


def test_overlap_policies():
    img, gt, _ = squares(1)
    rgb = np.repeat(img[..., None], 3, -1)
    # two boxes on the same square: both masks are the square
    boxes = [[4, 20, 10, 33], [4, 20, 17, 33]]
    by_score, s = boxes_to_labels(ScoredRule(), rgb, boxes)
    assert np.all(by_score[gt == 1] == 2) and s[1] > s[0]  # the wider box scores higher
    by_order, _ = boxes_to_labels(ScoredRule(), rgb, boxes, overlap="order")
    assert np.all(by_order[gt == 1] == 1)
    ties, _ = boxes_to_labels(RuleBackend(), rgb, boxes)  # equal scores: the earlier row
    assert np.all(ties[gt == 1] == 1)
    with pytest.raises(BoxError, match="overlap"):
        boxes_to_labels(RuleBackend(), rgb, boxes, overlap="biggest")


def test_boxes_on_a_stack_with_classes_and_ids(tmp_path):
    img, gt, boxes = squares(3)
    vol = np.stack([img, img, img])
    store = LabelsStore.create(tmp_path / "l.zarr", vol.shape)
    store.write_plane(2, np.where(gt == 3, 40, 0))  # an object committed earlier
    store.set_object(40, class_name="old")
    session = Session(vol, RuleBackend(), labels=store)
    table = BoxTable.from_array(np.concatenate([boxes, boxes[:2]]),
                                planes=[0, 0, 0, 2, 2], ids=[0, 0, 5, 0, 5],
                                classes=["a", "a", "b", None, "b"])
    seen = []
    res = segment_boxes(session, table, chunk_size=2, progress=lambda d, t: seen.append((d, t)))
    assert res.ids.tolist() == [41, 42, 5, 43, 5]  # new ids after the store's, explicit kept
    assert res.planes == [(0,), (2,)] and np.all(res.areas == 14 * 14)
    p0, p2 = store.read_plane(0), store.read_plane(2)
    assert np.array_equal(p0, np.select([gt == 1, gt == 2, gt == 3], [41, 42, 5]))
    assert np.array_equal(p2, np.select([gt == 1, gt == 2, gt == 3], [43, 5, 40]))
    assert not store.read_plane(1).any()
    objects = store.provenance["objects"]
    assert objects["41"] == {"source": "boxes", "class_name": "a"}
    assert objects["5"]["class_name"] == "b" and "class_name" not in objects["43"]
    assert objects["40"] == {"class_name": "old"}
    assert seen[0] == (0, 5) and seen[-1] == (5, 5)
    with pytest.raises(BoxError, match="BoxTable carries"):
        segment_boxes(session, table, plane=0)


def test_cancel_leaves_the_plane_untouched(tmp_path):
    img, _, boxes = squares(6)
    session = Session(img, RuleBackend(), labels=tmp_path / "c.zarr")
    res = segment_boxes(session, boxes, chunk_size=2, cancel=lambda: True)
    assert res.cancelled and res.planes == [] and not session.labels.read_plane().any()


@pytest.mark.parametrize("model", ["sam_tiny", "sam2_tiny"])
def test_tiny_models_segment_boxes_in_batches(tmp_path, model):
    backend = load_model(model, random_weights=True, device="cpu")
    img, _, boxes = squares(6)
    session = Session(img, backend, labels=tmp_path / "m.zarr")
    res = segment_boxes(session, boxes, classes="square", chunk_size=4, multimask=True)
    plane = session.labels.read_plane()
    assert plane.dtype == np.uint32 and set(np.unique(plane)) <= {0, 1, 2, 3, 4, 5, 6}
    assert res.ids.tolist() == [1, 2, 3, 4, 5, 6] and np.all(np.isfinite(res.scores))
    assert len(session.labels.provenance["objects"]) == 6


# ----------------------------------------------------------------------------------- real data
def _gt_boxes(gt: np.ndarray) -> tuple[list[int], np.ndarray]:
    found = [(i + 1, s) for i, s in enumerate(ndi.find_objects(gt)) if s is not None]
    return [i for i, _ in found], np.array(
        [[s[1].start, s[0].start, s[1].stop - 1, s[0].stop - 1] for _, s in found], float)


def _otsu_rule(image: np.ndarray) -> RuleBackend:
    from skimage.filters import threshold_otsu

    from napari_segany.intensity import Normalizer

    return RuleBackend(threshold=float(threshold_otsu(Normalizer.fit(image)(image)[..., 0])))


needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"real data folder {DATA} is absent")


@pytest.mark.data
@needs_data
@pytest.mark.parametrize("model", ["rule", "sam_tiny"])
def test_real_stardist_nuclei_from_ground_truth_boxes(tmp_path, model):
    from napari_segany.io import read_image

    img = np.asarray(read_image(DATA / "stardist" / "img2d.tif").data)
    gt = np.asarray(read_image(DATA / "stardist" / "mask2d.tif").data)
    assert img.shape == (512, 512) and img.dtype == np.uint16
    ids, boxes = _gt_boxes(gt)
    backend = (_otsu_rule(img) if model == "rule"
               else load_model(model, random_weights=True, device="cpu"))
    session = Session(img, backend, labels=tmp_path / "nuclei.zarr")
    res = segment_boxes(session, boxes, classes="nucleus")
    store = LabelsStore.open(tmp_path / "nuclei.zarr")
    labels = store.read_plane()
    assert res.ids.tolist() == list(range(1, len(ids) + 1))
    assert set(np.unique(labels)) <= {0, *res.ids.tolist()}
    assert len(res.empty) < len(ids)
    assert len(store.provenance["objects"]) == len(ids)
    if model == "rule":  # isolated nuclei come out right
        ious = [((labels == r) & (gt == i)).sum() / ((labels == r) | (gt == i)).sum()
                for r, i in zip(res.ids, ids, strict=True)]
        assert np.mean(np.array(ious) > 0.5) > 0.3


@pytest.mark.data
@needs_data
def test_real_ctc_nuclei_tiled(tmp_path):
    from PIL import Image  # these TIFFs are LZW-compressed: tifffile needs imagecodecs

    from napari_segany.tiling import TiledEmbeddings

    folder = DATA / "ctc_2d_nuclei" / "N2DH-GOWT1"
    img = np.asarray(Image.open(folder / "img" / "t01.tif"))
    gt = np.asarray(Image.open(folder / "gt" / "man_seg01.tif")).astype(np.int32)
    assert img.shape == (1024, 1024)
    ids, boxes = _gt_boxes(gt)
    session = Session(img, _otsu_rule(img), labels=tmp_path / "ctc.zarr")
    tiled = TiledEmbeddings.from_session(session, tile=256, halo=32, cache=tmp_path / "tiles")
    res = segment_boxes(session, boxes, classes="nucleus", tiled=tiled)
    labels = LabelsStore.open(tmp_path / "ctc.zarr").read_plane()
    assert labels.shape == (1024, 1024) and len(res.ids) == len(ids)
    assert len(res.empty) < len(ids) / 2
    assert len(tiled.cache.computed_planes()) <= 25
