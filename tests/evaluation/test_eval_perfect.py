"""The perfect-model check on the real shared data (skipped when it is absent).

A backend that answers each prompt with the ground-truth object under it
(:mod:`truth_backend`) must score IoU 1.0 at iteration 0 of the interactive protocol and on
every prompted plane / frame of the volume and video protocols: any mix-up of (x, y), axes,
plane indices or object ids would show. Where the result depends on the protocol's rules
(propagated planes, the automatic point grid) it is compared with an expectation computed
here from the ground truth alone.
"""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from truth_backend import TruthBackend

from napari_segany.auto import AutoSettings
from napari_segany.evaluation import (
    AutomaticSettings,
    InteractiveSettings,
    VideoSettings,
    VolumeSettings,
    davis_pairs,
    evaluate,
    find_samples,
)
from napari_segany.evaluation.datasets import check_truth
from napari_segany.intensity import normalizer_from_options
from testdata import DATA

pytestmark = pytest.mark.data


def _need(*parts: str):
    path = DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not found: {path}")
    return path


def _truth_model(sample):
    truth = check_truth(sample)
    norm = normalizer_from_options(sample.image, rgb=sample.rgb)
    return TruthBackend(sample.image, truth, norm, rgb=sample.rgb), truth


@pytest.mark.parametrize("start", ["point", "box"])
@pytest.mark.parametrize("files", [("stardist", "tests_img2d.tif", "tests_mask2d.tif"),
                                   ("ctc_2d_nuclei", "N2DH-GOWT1", "img/t21.tif",
                                    "gt/man_seg21.tif")])
def test_interactive_first_prompt_is_perfect(files, start):
    *folder, img, lab = files
    sample = find_samples(_need(*folder, img), _need(*folder, lab))[0].load()
    backend, truth = _truth_model(sample)
    res = evaluate(sample, [backend], protocol="interactive",
                   settings=InteractiveSettings(start=start, n_iterations=2))
    first = [r for r in res.rows if r["iteration"] == 0]
    n_objects = len(np.unique(truth)) - 1
    assert len(first) == n_objects > 20
    assert all(r["iou"] == 1.0 for r in first), [r for r in first if r["iou"] < 1][:3]
    # the corrections keep a perfect mask perfect
    assert all(r["iou"] == 1.0 for r in res.rows)
    # all objects of the plane in batches of 32, one call per batch and iteration
    assert backend.embed_calls == 1
    assert max(backend.predict_calls) == min(32, n_objects)
    assert len(backend.predict_calls) == 3 * -(-n_objects // 32)


def _walk(areas: np.ndarray, start: int, step: int, min_area: int = 16,
          ratio: float = 2.5) -> list[int]:
    """Planes a slice-wise walk covers when every mask is the true one: it goes on while
    the object has at least ``min_area`` pixels and grows at most ``ratio`` times."""
    out, prev, z = [], areas[start], start + step
    while 0 <= z < len(areas) and areas[z] >= min_area and areas[z] <= ratio * prev:
        out.append(z)
        prev, z = areas[z], z + step
    return out


def test_volume_prompted_planes_are_perfect_and_propagation_as_expected():
    ct = _need("msd_spleen_crop", "sub-spleen2_ct.nii.gz")
    seg = _need("msd_spleen_crop", "sub-spleen2_ct_seg-manual.nii.gz")
    sample = find_samples(ct, seg)[0].load()
    assert sample.spacing == pytest.approx((5.0, 0.794922, 0.794922))
    backend, truth = _truth_model(sample)
    res = evaluate(sample, [backend], protocol="volume",
                   settings=VolumeSettings(methods=("slice",)))
    planes = [r for r in res.rows if r["source"] != "volume"]
    annotated = [r for r in planes if r["source"] == "annotated"]
    areas = (truth == 1).sum(axis=(1, 2))
    assert [int(r["plane"]) for r in annotated] == [int(np.argmax(areas))]
    assert annotated[0]["iou"] == 1.0
    # independent expectation: the true mask on every plane the walk reaches, nothing after
    z0 = int(np.argmax(areas))
    reached = {z0, *_walk(areas, z0, 1), *_walk(areas, z0, -1)}
    got = {int(r["plane"]): r for r in planes}
    for z in np.flatnonzero(areas):
        want = 1.0 if z in reached else 0.0
        assert got[int(z)]["iou"] == want, (z, got[int(z)])
    vol = next(r for r in res.rows if r["source"] == "volume")
    inter = sum(areas[z] for z in reached)
    assert vol["dice"] == pytest.approx(2 * inter / (areas.sum() + inter))
    if reached == set(np.flatnonzero(areas).tolist()):
        assert vol["nsd"] == 1.0


def test_volume_every_object_perfect_on_its_prompted_plane():
    img = _need("stardist", "img3d.tif")
    lab = _need("stardist", "mask3d.tif")
    sample = find_samples(img, lab)[0].load()
    backend, truth = _truth_model(sample)
    for how in ("largest", "middle"):
        res = evaluate(sample, [backend], protocol="volume",
                       settings=VolumeSettings(methods=("slice",), plane=how, prompt="box"))
        annotated = [r for r in res.rows if r["source"] == "annotated"]
        assert len(annotated) == len(np.unique(truth)) - 1 == 51
        assert all(r["iou"] == 1.0 for r in annotated)
        for r in annotated:  # the prompted plane is the one the rule names
            areas = (truth == r["object_id"]).sum(axis=(1, 2))
            present = np.flatnonzero(areas)
            if how == "largest":
                assert int(r["plane"]) == int(np.argmax(areas))
            else:
                mid = (present[0] + present[-1]) / 2
                assert abs(int(r["plane"]) - mid) == np.abs(present - mid).min()


@pytest.mark.parametrize("prompt", ["mask", "box", "point"])
def test_video_first_frame_perfect_and_tracking_as_expected(prompt):
    pair = davis_pairs(_need("davis_blackswan"))[0]
    sample = pair.load()
    assert sample.rgb and sample.shape == (50, 480, 854)
    backend, truth = _truth_model(sample)
    res = evaluate(sample, [backend], protocol="video",
                   settings=VideoSettings(prompt=prompt, methods=("slice",)))
    rows = sorted(res.rows, key=lambda r: int(r["plane"]))
    assert rows[0]["source"] == "annotated" and rows[0]["plane"] == "0"
    assert rows[0]["j"] == 1.0 and rows[0]["f"] == 1.0
    areas = (truth == 1).sum(axis=(1, 2))
    reached = {0, *_walk(areas, 0, 1)}
    for r in rows:
        t = int(r["plane"])
        assert r["j"] == (1.0 if t in reached else 0.0), t
    assert res.records[0]["jf"] == pytest.approx(
        np.mean([1.0 if t in reached else 0.0 for t in range(1, 50)]))


def test_automatic_finds_the_objects_under_the_grid():
    img = _need("stardist", "tests_img2d.tif")
    lab = _need("stardist", "tests_mask2d.tif")
    truth = tifffile.imread(lab).astype(np.int64)
    sample = find_samples(img, lab)[0].load()
    backend, _ = _truth_model(sample)
    n = 32
    res = evaluate(sample, [backend], protocol="automatic",
                   settings=AutomaticSettings(auto=AutoSettings(points_per_side=n)))
    # independent expectation: SAM's grid (cell centres, pixel centres at integers) hits
    # these objects; each is found whole if it has >= 16 px (min_area); nothing else
    h, w = truth.shape
    centres = (np.arange(n) + 0.5) / n
    xs = np.rint(np.clip(centres * w - 0.5, 0, w - 1)).astype(int)
    ys = np.rint(np.clip(centres * h - 0.5, 0, h - 1)).astype(int)
    hit = set(np.unique(truth[np.ix_(ys, xs)]).tolist()) - {0}
    areas = np.bincount(truth.ravel())
    found = {o for o in hit if areas[o] >= 16}
    n_true = len(np.unique(truth)) - 1
    plane = next(r for r in res.rows if r["source"] == "plane")
    assert plane["n_true"] == n_true and plane["n_pred"] == len(found)
    assert plane["precision"] == 1.0
    assert plane["recall"] == pytest.approx(len(found) / n_true)
    assert plane["msa"] == pytest.approx(len(found) / n_true)
    matched = {r["object_id"] for r in res.rows if r["source"] == "matched"}
    assert matched == found
    assert all(r["iou"] == 1.0 for r in res.rows if r["source"] == "matched")
