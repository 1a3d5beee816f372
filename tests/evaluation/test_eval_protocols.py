"""The four protocols on synthetic data: the rule backend (exact answers) and tiny models."""

from __future__ import annotations

import numpy as np
import pytest

from blobs import GT1, GT2, VOL, disc
from napari_segany.auto import AutoSettings
from napari_segany.evaluation import (
    AutomaticSettings,
    InteractiveSettings,
    Sample,
    VideoSettings,
    VolumeSettings,
    evaluate,
)
from rule_backend import RuleBackend


def discs(n: int = 5, size: int = 96, seed: int = 0):
    """A uint8 image of ``n`` bright discs (the rule backend finds each) and its labels."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 40, (size, size)).astype(np.uint8)
    lab = np.zeros((size, size), np.uint16)
    yy, xx = np.mgrid[:size, :size]
    for i in range(n):
        cy, cx = 14 + (i % 3) * 32, 14 + (i // 3) * 40
        m = (yy - cy) ** 2 + (xx - cx) ** 2 <= 8 ** 2
        lab[m] = i + 1
        img[m] = 220
    return img, lab


class Recording(RuleBackend):
    """The rule backend, recording what each predict call was given."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.calls = []

    def predict(self, embedding, prompts, *, multimask=True):
        plist = list(prompts)
        self.calls.append({"n": len(plist), "multimask": multimask,
                           "points": {len(p.points) for p in plist},
                           "mask": {p.mask is not None for p in plist},
                           "box": {p.box is not None for p in plist}})
        return super().predict(embedding, prompts, multimask=multimask)


def test_interactive_rows_batches_and_one_embedding():
    img, lab = discs(5)
    rb = Recording()
    res = evaluate(Sample("discs", img, lab), [rb], protocol="interactive",
                   settings=InteractiveSettings(n_iterations=3, batch_size=2))
    assert len(res.rows) == 5 * 4
    assert all(r["iou"] == 1.0 for r in res.rows)  # the rule model finds each disc
    assert rb.embed_calls == 1
    assert [c["n"] for c in rb.calls] == [2, 2, 2, 2, 2, 2, 2, 2, 1, 1, 1, 1]
    first = [c for c in rb.calls if c["points"] == {1}]
    assert all(c["multimask"] for c in first) and len(first) == 3
    assert {frozenset(c["points"]) for c in rb.calls} == {frozenset({k}) for k in (1, 3, 5, 7)}
    assert not any(True in c["mask"] for c in rb.calls)
    row = res.rows[0]
    assert (row["protocol"], row["method"], row["plane"], row["dataset"]) == (
        "interactive", "point", "", "discs")
    assert sorted({r["clicks"] for r in res.rows}) == [1, 3, 5, 7]
    rec = res.records[0]
    assert rec["objects"] == 5 and rec["iou_by_iteration"] == [1.0] * 4


def test_interactive_box_start_and_logits_feedback():
    img, lab = discs(3)
    rb = Recording()
    evaluate(Sample("discs", img, lab), [rb], protocol="interactive",
             settings=InteractiveSettings(start="box", n_iterations=2, use_logits=True))
    assert [c["box"] for c in rb.calls] == [{True}] * 3
    assert [c["points"] for c in rb.calls] == [{0}, {2}, {4}]
    assert [c["mask"] for c in rb.calls] == [{False}, {True}, {True}]
    assert not any(c["multimask"] for c in rb.calls)


def test_box_start_evaluates_objects_one_pixel_thin(sam):
    """Thin objects at the border of an image tile are scored, not a PromptError."""
    img, lab = discs(3)
    lab[-1, 10:20] = 9  # a one-row sliver on the bottom edge
    img[-1, 10:20] = 255
    res = evaluate(Sample("slivers", img, lab), [sam], protocol="interactive",
                   settings=InteractiveSettings(start="box", n_iterations=1))
    assert 9 in {int(r["object_id"]) for r in res.rows}


def test_interactive_stack_planes_and_max_objects():
    img, lab = discs(4)
    stack, labels = np.stack([img, img, img]), np.stack([lab, np.zeros_like(lab), lab])
    res = evaluate(Sample("stack", stack, labels), [RuleBackend()], protocol="interactive",
                   settings=InteractiveSettings(n_iterations=0, max_objects=2))
    assert sorted({r["plane"] for r in res.rows}) == ["0", "2"]  # plane 1 has no object
    assert len(res.rows) == 4


def test_same_prompts_for_every_model_and_seeded_random_points(tmp_path):
    img, lab = discs(4)
    s = InteractiveSettings(n_iterations=2, point_mode="random", seed=7)
    one = evaluate(Sample("d", img, lab), [RuleBackend(name="a"), RuleBackend(
        threshold=250, name="b")], protocol="interactive", settings=s, out=tmp_path / "x")
    again = evaluate(Sample("d", img, lab), [RuleBackend(name="a")], protocol="interactive",
                     settings=s)
    assert [r["iou"] for r in one.rows if r["model"] == "a"] == [r["iou"] for r in again.rows]
    import json

    prompts = json.loads((tmp_path / "x" / "prompts.json").read_text())
    assert list(prompts) == ["d"] and len(prompts["d"]["planes"][0]["objects"]) == 4
    # model b (threshold 250) sees nothing: IoU 0 throughout, from the same first points
    assert all(r["iou"] == 0.0 for r in one.rows if r["model"] == "b")


def test_automatic_scores_with_the_point_grid():
    img, lab = discs(5)
    res = evaluate(Sample("discs", img, lab), [RuleBackend()], protocol="automatic",
                   settings=AutomaticSettings(auto=AutoSettings(points_per_side=16)))
    plane = next(r for r in res.rows if r["source"] == "plane")
    assert plane["msa"] == 1.0 and plane["n_pred"] == 5 and plane["f1"] == 1.0
    assert sorted(r["object_id"] for r in res.rows if r["source"] == "matched") == [1, 2, 3,
                                                                                  4, 5]
    rec = res.records[0]
    assert rec["method"] == "everything" and rec["planes"] == 1 and rec["msa"] == 1.0


def test_volume_slice_propagation_with_the_rule_backend():
    truth = GT1.astype(np.uint8) + 2 * GT2.astype(np.uint8)
    rb = RuleBackend()
    res = evaluate(Sample("blobs", VOL, truth, spacing=(2.0, 0.5, 0.5), unit="mm"), [rb],
                   protocol="volume", settings=VolumeSettings(tolerance=1.0))
    vols = {r["object_id"]: r for r in res.rows if r["source"] == "volume"}
    assert set(vols) == {1, 2}
    assert all(v["dice"] == 1.0 and v["nsd"] == 1.0 for v in vols.values())
    # planes 5..24 hold blobs; the walks look one plane further on each side (4 and 25)
    # and stop there: 22 planes, each embedded once although both walks pass most of them
    assert rb.embed_calls == 22
    assert "no SAM2 memory propagation" in " ".join(res.summary["notes"])
    assert {r["method"] for r in res.rows} == {"slice"}


def test_volume_corrections_add_prompts_on_the_worst_plane():
    truth = GT1.astype(np.uint8)
    # the rule backend with a high threshold loses the blob's dim edge planes
    img = VOL.copy()
    img[5:9][GT1[5:9]] = 120  # planes 5..8: below the threshold
    res = evaluate(Sample("blobs", img, truth), [RuleBackend()], protocol="volume",
                   settings=VolumeSettings(methods=("slice",), corrections=2))
    by_round = res.records[0]["dice_by_round"]
    assert len(by_round) == 3 and by_round[0] < 1.0
    prompted = [{int(r["plane"]) for r in res.rows if r["iteration"] == k
                 and r["source"] == "annotated"} for k in range(3)]
    assert len(prompted[1]) == 2 and len(prompted[2]) == 3  # one more plane per round
    assert prompted[0] < prompted[1] < prompted[2]


def test_video_tracking_from_the_first_frame_mask():
    t, h, w = 12, 64, 80
    truth = np.zeros((t, h, w), np.uint8)
    movie = np.full((t, h, w), 20, np.uint8)
    for i in range(t):
        m = disc(30, 20 + 3 * i, 9)[:h, :w]
        truth[i][m] = 1
        movie[i][m] = 220
        if i >= 3:
            m2 = disc(50, 60, 6)[:h, :w]  # a second object appearing at frame 3
            truth[i][m2] = 2
            movie[i][m2] = 220
    res = evaluate(Sample("movie", movie, truth), [RuleBackend()], protocol="video",
                   settings=VideoSettings(methods=("slice",)))
    assert all(r["j"] == 1.0 and r["f"] == 1.0 for r in res.rows)
    starts = {o: min(int(r["plane"]) for r in res.rows if r["object_id"] == o) for o in (1, 2)}
    assert starts == {1: 0, 2: 3}
    assert res.records[0]["frames"] == (t - 1) + (t - 4)
    assert res.records[0]["jf"] == 1.0


@pytest.mark.usefixtures("one_torch_thread")
def test_tiny_models_interactive_and_volume_embed_each_plane_once(sam, sam2):
    img, lab = discs(2, size=64)
    res = evaluate(Sample("discs", img, lab), [sam, sam2], protocol="interactive",
                   settings=InteractiveSettings(n_iterations=2))
    assert {r["model"] for r in res.rows} == {"sam_tiny", "sam2_tiny"}
    assert all(0.0 <= r["iou"] <= 1.0 for r in res.rows)
    assert res.summary["timing"]["sam_tiny"]["embeddings"]["computed"] == 1
    vol = VOL[8:14, ::2, ::2]
    truth = GT2[8:14, ::2, ::2].astype(np.uint8)
    res = evaluate(Sample("v", vol, truth), [sam2], protocol="volume",
                   settings=VolumeSettings(corrections=1))
    assert {r["method"] for r in res.rows} == {"slice", "sam2"}
    # both methods and both rounds share one embedding per plane
    assert res.summary["timing"]["sam2_tiny"]["embeddings"]["computed"] == vol.shape[0]
    vols = [r for r in res.rows if r["source"] == "volume"]
    assert len(vols) == 2 * 2 and all(0 <= r["dice"] <= 1 for r in vols)
