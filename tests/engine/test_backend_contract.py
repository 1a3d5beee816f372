"""One behavioural contract run against every backend (SAM and SAM2 tiny random-weight models).

Each backend is checked against its raw library (segment-anything's ``SamPredictor`` and
sam2's ``SAM2ImagePredictor``) on the very same torch model, so the napari-segany layer
(batching, prompt grouping, mask inputs, embedding round trips) must reproduce the library.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from napari_segany.engine import Backend, Embedding, Prediction, load_model
from napari_segany.prompts import ObjectPrompt

H, W = 120, 200  # non-square on purpose: exercises SAM's padding and SAM2's squashing
DISCS = [  # (cy, cx, radius, RGB)
    (40, 50, 18, (230, 200, 180)),
    (80, 130, 25, (250, 250, 250)),
    (30, 160, 12, (160, 220, 90)),
    (95, 35, 14, (200, 120, 240)),
]
# Boxes around the discs, (x0, y0, x1, y1).
BOXES = [(cx - r - 2, cy - r - 2, cx + r + 2, cy + r + 2) for cy, cx, r, _ in DISCS]


def make_image(h: int = H, w: int = W, discs=DISCS, seed: int = 0) -> np.ndarray:
    """Bright discs on a dark, slightly noisy background, (h, w, 3) uint8."""
    rng = np.random.default_rng(seed)
    img = rng.integers(5, 30, size=(h, w, 3), dtype=np.uint8)
    yy, xx = np.mgrid[:h, :w]
    for cy, cx, r, rgb in discs:
        inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2
        img[inside] = rgb
    return img


def disc_mask(i: int, h: int = H, w: int = W) -> np.ndarray:
    cy, cx, r, _ = DISCS[i]
    yy, xx = np.mgrid[:h, :w]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2


IMAGE = make_image()
IMAGE2 = make_image(90, 70, [(45, 35, 20, (255, 255, 255)), (10, 10, 6, (128, 255, 0))], seed=1)


@pytest.fixture(scope="module")
def sam_backend():
    return load_model("sam_tiny", random_weights=True, device="cpu")


@pytest.fixture(scope="module")
def sam2_backend():
    return load_model("sam2_tiny", random_weights=True, device="cpu")


def assert_same_prediction(a: Prediction, b: Prediction, *, atol: float = 1e-5) -> None:
    assert a.masks.shape == b.masks.shape
    np.testing.assert_array_equal(a.masks, b.masks)
    np.testing.assert_allclose(a.scores, b.scores, atol=atol, rtol=0)
    np.testing.assert_allclose(a.logits, b.logits, atol=max(atol, 1e-4), rtol=0)


def assert_masks_match(a: np.ndarray, b: np.ndarray, what: str = "") -> None:
    """Masks from differently batched (but equivalent) computations: equal up to a few pixels
    whose logit sits at the threshold, where float rounding of another batch size may flip them.
    The logits are compared tightly next to this."""
    assert a.shape == b.shape and a.dtype == b.dtype == bool, what
    differ = int(np.count_nonzero(a != b))
    assert differ <= max(2, a.size // 5000), f"{what}: {differ} of {a.size} mask pixels differ"


# Prompts compared with the raw library: name -> kwargs of ObjectPrompt.
RAW_CASES = {
    "one_point": dict(points=[[130.0, 80.0]], labels=[1]),
    "pos_neg_points": dict(points=[[50.0, 40.0], [130.0, 80.0], [160.0, 30.0]], labels=[1, 0, 1]),
    "box": dict(box=BOXES[1]),
    "points_and_box": dict(points=[[50.0, 40.0], [60.0, 30.0]], labels=[1, 0], box=BOXES[0]),
    "edge_point": dict(points=[[W - 1.0, H - 1.0]], labels=[1]),
}


class BackendContract:
    """Tests shared by all backends; subclasses provide ``backend`` and the raw predictor."""

    #: Feature name -> shape for the tiny models' 256 px input.
    feature_shapes: dict[str, tuple[int, ...]] = {}

    @pytest.fixture(scope="class")
    @classmethod
    def backend(cls):  # pragma: no cover - overridden
        raise NotImplementedError

    @staticmethod
    def raw_predictor(backend):  # pragma: no cover - overridden
        raise NotImplementedError

    @staticmethod
    def expected_input_size(h: int, w: int, image_size: int) -> tuple[int, int]:
        raise NotImplementedError  # pragma: no cover - overridden

    @pytest.fixture(scope="class")
    @classmethod
    def other_seed_backend(cls, backend):
        return load_model(backend.name, random_weights=True, device="cpu", seed=1)

    @pytest.fixture(scope="class")
    @classmethod
    def emb(cls, backend) -> Embedding:
        return backend.embed(IMAGE)

    @pytest.fixture(scope="class")
    @classmethod
    def raw(cls, backend):
        """The raw library predictor on the same model, with IMAGE set."""
        pred = cls.raw_predictor(backend)
        pred.set_image(IMAGE)
        return pred

    def raw_predict(self, raw, prompt: ObjectPrompt, multimask: bool, mask_input=None):
        masks, scores, logits = raw.predict(
            point_coords=prompt.points if len(prompt.points) else None,
            point_labels=prompt.labels if len(prompt.points) else None,
            box=prompt.box,
            mask_input=None if mask_input is None else mask_input[None],
            multimask_output=multimask,
        )
        return np.asarray(masks) > 0.5, np.asarray(scores), np.asarray(logits)

    # -- identity ---------------------------------------------------------------------------
    def test_is_a_backend_with_json_signature(self, backend):
        assert isinstance(backend, Backend)
        sig = backend.signature()
        assert json.loads(json.dumps(sig)) == sig
        assert sig["family"] == backend.family and sig["image_size"] == backend.image_size == 256
        assert sig["weights"] == backend.weights_id == "random-seed0"
        assert backend.family in backend.model_id and backend.weights_id in backend.model_id

    def test_other_seed_has_other_identity(self, backend, other_seed_backend):
        assert other_seed_backend.model_id != backend.model_id
        assert other_seed_backend.signature()["weights"] == "random-seed1"

    # -- embedding --------------------------------------------------------------------------
    def test_embedding_shapes_and_sizes(self, backend, emb):
        assert emb.original_size == (H, W)
        assert emb.input_size == self.expected_input_size(H, W, backend.image_size)
        assert emb.model_id == backend.model_id
        assert {k: tuple(t.shape) for k, t in emb.tensors.items()} == self.feature_shapes
        arrays = emb.to_numpy()
        assert all(a.dtype == np.float32 for a in arrays.values())
        assert emb.nbytes == sum(a.nbytes for a in arrays.values())
        assert all(np.isfinite(a).all() for a in arrays.values())

    def test_embedding_depends_on_image(self, backend, emb):
        other = backend.embed(make_image(seed=5)[:, ::-1].copy())
        assert not np.allclose(other.to_numpy()["image_embed"], emb.to_numpy()["image_embed"])

    def test_embedding_matches_raw_library(self, backend, emb, raw):
        feats = raw.features if hasattr(raw, "features") else raw._features["image_embed"]
        np.testing.assert_allclose(
            emb.to_numpy()["image_embed"], feats.detach().cpu().numpy(), atol=1e-5, rtol=0
        )

    def test_embed_batch_equals_embed_one_by_one(self, backend):
        images = [IMAGE, IMAGE2, IMAGE[::-1].copy()]
        batch = backend.embed_batch(images)
        assert len(batch) == len(images)
        for im, e in zip(images, batch, strict=True):
            single = backend.embed(im)
            assert e.original_size == single.original_size == im.shape[:2]
            assert e.input_size == single.input_size
            assert e.input_size == self.expected_input_size(*im.shape[:2], backend.image_size)
            a, b = e.to_numpy(), single.to_numpy()
            assert a.keys() == b.keys()
            for k in a:
                assert a[k].shape == b[k].shape
                np.testing.assert_allclose(a[k], b[k], atol=1e-4, rtol=0, err_msg=k)
        assert backend.embed_batch([]) == []

    # -- prediction against the raw library ---------------------------------------------------
    @pytest.mark.parametrize("multimask", [True, False])
    @pytest.mark.parametrize("case", sorted(RAW_CASES))
    def test_predict_matches_raw_library(self, backend, emb, raw, case, multimask):
        prompt = ObjectPrompt(**RAW_CASES[case])
        pred = backend.predict(emb, prompt, multimask=multimask)
        m = 3 if multimask else 1
        assert pred.masks.shape == (1, m, H, W) and pred.masks.dtype == bool
        assert pred.scores.shape == (1, m) and pred.scores.dtype == np.float32
        lr = backend.image_size // 4
        assert pred.logits.shape == (1, m, lr, lr) and pred.logits.dtype == np.float32
        masks, scores, logits = self.raw_predict(raw, prompt, multimask)
        np.testing.assert_array_equal(pred.masks[0], masks)
        np.testing.assert_allclose(pred.scores[0], scores, atol=1e-5, rtol=0)
        np.testing.assert_allclose(pred.logits[0], logits, atol=1e-4, rtol=0)

    def test_mask_input_from_logits_matches_raw_library(self, backend, emb, raw):
        first = backend.predict(emb, ObjectPrompt(points=[[130.0, 80.0]]))
        _, _, logits = first.best()
        prompt = ObjectPrompt(points=[[130.0, 80.0], [50.0, 40.0]], labels=[1, 0], mask=logits[0])
        pred = backend.predict(emb, prompt, multimask=False)
        assert pred.masks.shape == (1, 1, H, W)
        masks, scores, raw_logits = self.raw_predict(raw, prompt, False, mask_input=logits[0])
        np.testing.assert_array_equal(pred.masks[0], masks)
        np.testing.assert_allclose(pred.scores[0], scores, atol=1e-5, rtol=0)
        np.testing.assert_allclose(pred.logits[0], raw_logits, atol=1e-4, rtol=0)

    def test_binary_mask_input_matches_raw_library_with_mask_to_logits(self, backend, emb, raw):
        binary = disc_mask(1)
        prompt = ObjectPrompt(points=[[130.0, 80.0]], mask=binary)
        pred = backend.predict(emb, prompt)
        assert pred.masks.shape == (1, 3, H, W)
        masks, scores, _ = self.raw_predict(
            raw, prompt, True, mask_input=backend.mask_to_logits(binary, emb)
        )
        np.testing.assert_array_equal(pred.masks[0], masks)
        np.testing.assert_allclose(pred.scores[0], scores, atol=1e-5, rtol=0)

    # -- prediction behaviour -------------------------------------------------------------------
    def test_multimask_candidates(self, backend, emb):
        p = ObjectPrompt(points=[[50.0, 40.0]])
        three = backend.predict(emb, p, multimask=True)
        one = backend.predict(emb, p, multimask=False)
        assert three.masks.shape == (1, 3, H, W) and three.scores.shape == (1, 3)
        assert one.masks.shape == (1, 1, H, W) and one.scores.shape == (1, 1)
        assert len(three) == len(one) == 1

    def test_predict_is_deterministic_and_stateless(self, backend, emb):
        p = ObjectPrompt(points=[[50.0, 40.0]], box=BOXES[0])
        a = backend.predict(emb, p)
        other = backend.embed(IMAGE2)
        backend.predict(other, ObjectPrompt(points=[[35.0, 45.0]]))
        b = backend.predict(emb, p)
        assert_same_prediction(a, b, atol=0)

    def test_many_boxes_batched_equal_one_at_a_time(self, backend, emb):
        prompts = [ObjectPrompt(box=b) for b in BOXES]
        batched = backend.predict(emb, prompts)
        assert batched.masks.shape == (len(BOXES), 3, H, W)
        assert batched.scores.shape == (len(BOXES), 3)
        for i, p in enumerate(prompts):
            single = backend.predict(emb, p)
            assert_masks_match(batched.masks[i], single.masks[0], f"box {i}")
            np.testing.assert_allclose(batched.scores[i], single.scores[0], atol=1e-5, rtol=0)
            np.testing.assert_allclose(batched.logits[i], single.logits[0], atol=1e-4, rtol=0)
        # different boxes really give different outputs (the batch is not one box repeated)
        assert not np.allclose(batched.logits[0], batched.logits[1])

    def test_mixed_prompt_list_keeps_order(self, backend, emb):
        prompts = [
            ObjectPrompt(points=[[50.0, 40.0]]),
            ObjectPrompt(box=BOXES[2]),
            ObjectPrompt(points=[[130.0, 80.0], [35.0, 95.0]], labels=[1, 0]),
            ObjectPrompt(points=[[160.0, 30.0]], box=BOXES[2]),
            ObjectPrompt(box=BOXES[3]),
            ObjectPrompt(points=[[35.0, 95.0]]),
            ObjectPrompt(mask=disc_mask(3)),
        ]
        together = backend.predict(emb, prompts, multimask=False)
        assert together.masks.shape == (len(prompts), 1, H, W)
        for i, p in enumerate(prompts):
            single = backend.predict(emb, p, multimask=False)
            assert_masks_match(together.masks[i], single.masks[0], str(i))
            np.testing.assert_allclose(together.scores[i], single.scores[0], atol=1e-5, rtol=0)

    def test_several_mask_only_prompts(self, backend, emb):
        prompts = [ObjectPrompt(mask=disc_mask(i)) for i in range(3)]
        together = backend.predict(emb, prompts)
        assert together.masks.shape == (3, 3, H, W)
        for i, p in enumerate(prompts):
            single = backend.predict(emb, p)
            assert_masks_match(together.masks[i], single.masks[0], str(i))
            np.testing.assert_allclose(together.logits[i], single.logits[0], atol=1e-4, rtol=0)
        assert not np.allclose(together.logits[0], together.logits[1])

    def test_batched_prompts_with_mask_inputs(self, backend, emb):
        groups = [
            [ObjectPrompt(points=[[50.0, 40.0]], mask=disc_mask(0)),
             ObjectPrompt(points=[[130.0, 80.0]], mask=disc_mask(1))],
            [ObjectPrompt(points=[[50.0, 40.0]], box=BOXES[0], mask=disc_mask(0)),
             ObjectPrompt(points=[[160.0, 30.0]], box=BOXES[2], mask=disc_mask(2))],
        ]
        for prompts in groups:
            together = backend.predict(emb, prompts)
            assert together.masks.shape == (2, 3, H, W)
            for i, p in enumerate(prompts):
                single = backend.predict(emb, p)
                assert_masks_match(together.masks[i], single.masks[0], str(i))
                np.testing.assert_allclose(together.logits[i], single.logits[0], atol=1e-4, rtol=0)

    def test_integer_binary_mask_on_low_res_sized_plane(self, backend):
        lr = backend.image_size // 4
        image = make_image(lr, lr, [(30, 28, 15, (240, 240, 240))])
        emb = backend.embed(image)
        binary = np.zeros((lr, lr), bool)
        binary[15:45, 13:43] = True
        pts = [[28.0, 30.0]]
        as_bool = backend.predict(emb, ObjectPrompt(points=pts, mask=binary))
        as_uint8 = backend.predict(emb, ObjectPrompt(points=pts, mask=binary.astype(np.uint8)))
        np.testing.assert_allclose(as_uint8.logits, as_bool.logits, atol=1e-5)

    def test_integer_binary_mask_equals_bool_mask(self, backend, emb):
        """The same check on a plane of another size, where it works."""
        binary = disc_mask(1)
        pts = [[130.0, 80.0]]
        as_bool = backend.predict(emb, ObjectPrompt(points=pts, mask=binary))
        as_uint8 = backend.predict(emb, ObjectPrompt(points=pts, mask=binary.astype(np.uint8)))
        np.testing.assert_allclose(as_uint8.logits, as_bool.logits, atol=1e-5)

    def test_negative_points_accepted_and_change_the_result(self, backend, emb):
        pts = [[130.0, 80.0], [50.0, 40.0]]
        pos = backend.predict(emb, ObjectPrompt(points=pts, labels=[1, 1]))
        neg = backend.predict(emb, ObjectPrompt(points=pts, labels=[1, 0]))
        assert neg.masks.shape == pos.masks.shape == (1, 3, H, W)
        assert not np.allclose(pos.logits, neg.logits)

    def test_points_and_box_together_differ_from_either(self, backend, emb):
        pts = dict(points=[[50.0, 40.0]], labels=[1])
        both = backend.predict(emb, ObjectPrompt(**pts, box=BOXES[0]))
        only_pts = backend.predict(emb, ObjectPrompt(**pts))
        only_box = backend.predict(emb, ObjectPrompt(box=BOXES[0]))
        assert both.masks.shape == (1, 3, H, W)
        assert not np.allclose(both.logits, only_pts.logits)
        assert not np.allclose(both.logits, only_box.logits)

    def test_binary_mask_input_equals_its_logits(self, backend, emb):
        binary = disc_mask(0)
        pts = [[50.0, 40.0]]
        from_mask = backend.predict(emb, ObjectPrompt(points=pts, mask=binary))
        logits = backend.mask_to_logits(binary, emb)
        from_logits = backend.predict(emb, ObjectPrompt(points=pts, mask=logits))
        no_mask = backend.predict(emb, ObjectPrompt(points=pts))
        lr = backend.image_size // 4
        assert from_mask.masks.shape == (1, 3, H, W) and from_mask.logits.shape == (1, 3, lr, lr)
        assert_same_prediction(from_mask, from_logits, atol=0)
        assert not np.allclose(from_mask.logits, no_mask.logits)  # the mask input is used

    def test_previous_low_res_logits_as_mask_input(self, backend, emb):
        first = backend.predict(emb, ObjectPrompt(points=[[130.0, 80.0]]))
        masks, scores, logits = first.best()
        lr = backend.image_size // 4
        assert logits.shape == (1, lr, lr)
        for mask in (logits[0], logits[0][None]):  # (lr, lr) and (1, lr, lr) both accepted
            prompt = ObjectPrompt(points=[[130.0, 80.0]])
            prompt.mask = mask  # ObjectPrompt itself only takes 2D masks; set it directly
            nxt = backend.predict(emb, prompt, multimask=False)
            assert nxt.masks.shape == (1, 1, H, W) and nxt.logits.shape == (1, 1, lr, lr)
            assert np.isfinite(nxt.logits).all()

    def test_mask_to_logits_full_and_empty_mask(self, backend, emb):
        lr = backend.image_size // 4
        full = backend.mask_to_logits(np.ones((H, W), bool), emb)
        assert full.shape == (lr, lr) and full.dtype == np.float32
        rows = emb.input_size[0] * lr / backend.image_size
        cols = emb.input_size[1] * lr / backend.image_size
        assert (full[: math.floor(rows), : math.floor(cols)] > 0).all()
        assert (full[math.ceil(rows) :, :] < 0).all()
        assert (full[:, math.ceil(cols) :] < 0).all()
        empty = backend.mask_to_logits(np.zeros((H, W), np.uint8), emb)
        assert (empty < 0).all()

    def test_mask_to_logits_follows_the_mask(self, backend, emb):
        lr = backend.image_size // 4
        left = np.zeros((H, W), bool)
        left[:, : W // 2] = True
        logits = backend.mask_to_logits(left, emb)
        cols = emb.input_size[1] * lr / backend.image_size
        rows = math.floor(emb.input_size[0] * lr / backend.image_size)
        half = cols / 2
        assert (logits[:rows, : math.floor(half) - 1] > 0).all()
        assert (logits[:rows, math.ceil(half) + 1 :] < 0).all()

    # -- errors -------------------------------------------------------------------------------
    @pytest.mark.parametrize("point", [(W + 5.0, 10.0), (10.0, -3.0), (10.0, H + 0.0)])
    def test_point_outside_plane(self, backend, emb, point):
        with pytest.raises(ValueError, match="outside"):
            backend.predict(emb, [ObjectPrompt(points=[[5.0, 5.0]]), ObjectPrompt(points=[point])])

    # Inherited by one class per backend, hence "different executors" by design.
    @settings(max_examples=12, deadline=None,
              suppress_health_check=[HealthCheck.differing_executors])
    @given(
        x=st.floats(-0.5, W - 0.5), y=st.floats(-0.5, H - 0.5),
        dx=st.floats(0.01, 50), outside_x=st.booleans(), negative=st.booleans(),
    )
    def test_point_bounds_property(self, backend, emb, x, y, dx, outside_x, negative):
        """Every point of the plane (pixel edges included) is accepted, any other refused."""
        pred = backend.predict(emb, ObjectPrompt(points=[[x, y]]), multimask=False)
        assert pred.masks.shape == (1, 1, H, W)
        if outside_x:
            x = -0.5 - dx if negative else W - 0.5 + dx
        else:
            y = -0.5 - dx if negative else H - 0.5 + dx
        with pytest.raises(ValueError, match="outside"):
            backend.predict(emb, ObjectPrompt(points=[[x, y]]))

    def test_empty_prompt(self, backend, emb):
        with pytest.raises(ValueError, match="empty"):
            backend.predict(emb, ObjectPrompt())
        with pytest.raises(ValueError, match="at least one prompt"):
            backend.predict(emb, [])

    @pytest.mark.parametrize("box", [(10, 10, 10, 40), (10, 40, 60, 40), (60, 10, 20, 40)])
    def test_empty_or_inverted_box(self, backend, emb, box):
        p = ObjectPrompt(box=(0, 0, 1, 1))
        p.box = np.asarray(box, float)  # ObjectPrompt refuses inverted boxes itself
        with pytest.raises(ValueError, match="empty"):
            backend.predict(emb, p)

    def test_inverted_box_refused_by_object_prompt(self):
        with pytest.raises(ValueError, match="x0<=x1"):
            ObjectPrompt(box=(60, 10, 20, 40))

    @pytest.mark.parametrize(
        "image, match",
        [
            (IMAGE.astype(np.float32), "uint8"),
            (IMAGE[..., 0], r"\(H, W, 3\)"),
            (IMAGE[..., :2], r"\(H, W, 3\)"),
            (np.zeros((0, 10, 3), np.uint8), "empty"),
        ],
        ids=["float", "2d", "two_channels", "empty"],
    )
    def test_bad_image(self, backend, image, match):
        with pytest.raises(ValueError, match=match):
            backend.embed(image)
        with pytest.raises(ValueError, match=match):
            backend.embed_batch([IMAGE, image])

    def test_mask_of_wrong_shape(self, backend, emb):
        with pytest.raises(ValueError, match="mask input of shape"):
            backend.predict(emb, ObjectPrompt(points=[[5.0, 5.0]], mask=np.ones((W, H), bool)))
        lr = backend.image_size // 4
        with pytest.raises(ValueError, match="mask input of shape"):
            backend.predict(emb, ObjectPrompt(mask=np.zeros((lr // 2, lr // 2), np.float32)))
        with pytest.raises(ValueError, match="does not match the plane"):
            backend.mask_to_logits(np.ones((H + 1, W), bool), emb)

    def test_embedding_from_other_seed_refused(self, backend, other_seed_backend):
        foreign = other_seed_backend.embed(IMAGE)
        with pytest.raises(ValueError, match="embed the plane again"):
            backend.predict(foreign, ObjectPrompt(points=[[5.0, 5.0]]))

    # -- embedding round trip ---------------------------------------------------------------------
    def test_embedding_from_numpy_round_trip(self, backend, emb):
        arrays = emb.to_numpy()
        back = backend.embedding_from_numpy(
            arrays, original_size=emb.original_size, input_size=emb.input_size
        )
        assert back.model_id == emb.model_id
        assert back.original_size == emb.original_size and back.input_size == emb.input_size
        prompts = [ObjectPrompt(points=[[50.0, 40.0]]), ObjectPrompt(box=BOXES[1])]
        a, b = backend.predict(emb, prompts), backend.predict(back, prompts)
        assert_same_prediction(a, b, atol=0)

    def test_embedding_from_numpy_missing_keys(self, backend, emb):
        arrays = emb.to_numpy()
        arrays.pop("image_embed")
        with pytest.raises(ValueError, match="image_embed"):
            backend.embedding_from_numpy(arrays, original_size=(H, W), input_size=emb.input_size)

    def test_best_is_argmax_of_scores(self, backend, emb):
        prompts = [ObjectPrompt(points=[[50.0, 40.0]]), ObjectPrompt(box=BOXES[1])]
        pred = backend.predict(emb, prompts)
        masks, scores, logits = pred.best()
        assert masks.shape == (2, H, W) and scores.shape == (2,) and logits.shape[0] == 2
        for i in range(2):
            j = int(np.argmax(pred.scores[i]))
            assert scores[i] == pred.scores[i].max()
            np.testing.assert_array_equal(masks[i], pred.masks[i, j])
            np.testing.assert_array_equal(logits[i], pred.logits[i, j])


class TestSamTiny(BackendContract):
    feature_shapes = {"image_embed": (1, 256, 16, 16)}

    @pytest.fixture(scope="class")
    @classmethod
    def backend(cls, sam_backend):
        return sam_backend

    @staticmethod
    def raw_predictor(backend):
        from segment_anything import SamPredictor

        return SamPredictor(backend.model)

    @staticmethod
    def expected_input_size(h, w, image_size):
        scale = image_size / max(h, w)  # resize the longest side, keep the aspect ratio
        return int(h * scale + 0.5), int(w * scale + 0.5)

    def test_input_size_matches_raw_library(self, emb, raw):
        assert emb.input_size == tuple(raw.input_size)
        assert emb.original_size == tuple(raw.original_size)


class TestSam2Tiny(BackendContract):
    feature_shapes = {
        "image_embed": (1, 256, 16, 16),
        "high_res_feats_0": (1, 32, 64, 64),
        "high_res_feats_1": (1, 64, 32, 32),
    }

    @pytest.fixture(scope="class")
    @classmethod
    def backend(cls, sam2_backend):
        return sam2_backend

    @staticmethod
    def raw_predictor(backend):
        from sam2.sam2_image_predictor import SAM2ImagePredictor

        pred = SAM2ImagePredictor(backend.model)
        s = backend.model.image_size
        pred._bb_feat_sizes = [(s // 4, s // 4), (s // 8, s // 8), (s // 16, s // 16)]
        return pred

    @staticmethod
    def expected_input_size(h, w, image_size):
        return image_size, image_size  # SAM2 resizes to the square input without padding

    def test_high_res_features_match_raw_library(self, emb, raw):
        for i, feat in enumerate(raw._features["high_res_feats"]):
            np.testing.assert_allclose(
                emb.to_numpy()[f"high_res_feats_{i}"], feat.cpu().numpy(), atol=1e-5, rtol=0
            )


def test_embedding_from_other_family_refused(sam_backend, sam2_backend):
    sam_emb = sam_backend.embed(IMAGE)
    sam2_emb = sam2_backend.embed(IMAGE)
    prompt = ObjectPrompt(points=[[50.0, 40.0]])
    with pytest.raises(ValueError, match="embed the plane again"):
        sam2_backend.predict(sam_emb, prompt)
    with pytest.raises(ValueError, match="embed the plane again"):
        sam_backend.predict(sam2_emb, prompt)


def test_prediction_best_on_known_scores():
    scores = np.array([[0.1, 0.9, 0.3], [0.7, 0.2, 0.1], [0.0, 0.1, 0.5]], np.float32)
    masks = np.zeros((3, 3, 4, 5), bool)
    logits = np.zeros((3, 3, 2, 2), np.float32)
    for b in range(3):
        for m in range(3):
            masks[b, m, b, m] = True
            logits[b, m] = 10 * b + m
    pred = Prediction(masks=masks, scores=scores, logits=logits)
    np.testing.assert_array_equal(pred.best_index(), [1, 0, 2])
    best_masks, best_scores, best_logits = pred.best()
    np.testing.assert_array_equal(best_scores, scores[[0, 1, 2], [1, 0, 2]])
    np.testing.assert_array_equal(best_logits[:, 0, 0], [1, 10, 22])
    assert [tuple(np.argwhere(m)[0]) for m in best_masks] == [(0, 1), (1, 0), (2, 2)]
