"""Training with the tiny real architectures (random init): the loss falls, the right weights
change, the checkpoint loads back, resume equals an uninterrupted run, bad input is refused."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from ftdata import FAST, dataset, discs

from napari_segany.engine import load_model
from napari_segany.finetune import FinetuneError, TrainableModel, finetune, read_metadata
from napari_segany.prompts import ObjectPrompt
from napari_segany.storage.labels import LabelsStore

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _changed(before, model):
    after = model.state_dict()
    return {k for k in before if not torch.equal(before[k], after[k])}


@pytest.fixture(scope="module")
def sam_run(tmp_path_factory, sam):
    out = tmp_path_factory.mktemp("sam-decoder")
    data = dataset(2)
    before = _weights(sam.model)
    res = finetune(data, sam, out=out, val=data, settings=replace(FAST, epochs=3))
    return res, before, out


def test_decoder_mode_lowers_the_loss_and_keeps_the_encoder(sam_run, sam):
    res, before, _ = sam_run
    losses = [r["train_loss"] for r in res.log[1:]]
    assert losses[-1] < losses[0] - 0.15, losses  # measured: 1.67 -> 1.38
    assert res.log[-1]["val_iou"] > res.log[0]["val_iou"] + 0.05  # measured: 0.04 -> 0.18
    changed = _changed(before, res.backend.model)
    assert changed and all(k.startswith(("mask_decoder.", "prompt_encoder.")) for k in changed)
    enc = [k for k in before if k.startswith("image_encoder.")]
    assert not set(enc) & changed  # every image-encoder weight bit-identical
    assert not _changed(before, sam.model)  # the given backend was copied, not changed


def test_sam_checkpoint_loads_like_any_sam_checkpoint_and_predicts_the_same(sam_run):
    res, _, out = sam_run
    assert res.checkpoint == out / "model.pt" and not list(out.glob(".*partial*"))
    sd = torch.load(res.checkpoint, weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in sd.values())  # plain state dict
    from napari_segany.engine.sam import build_sam_model

    build_sam_model("tiny").load_state_dict(sd, strict=True)  # segment-anything's own layout
    loaded = load_model("sam_tiny", checkpoint=res.checkpoint, device="cpu")
    assert loaded.model_id == res.backend.model_id
    img, _ = discs(seed=0)
    rgb = np.repeat(img[..., None], 3, -1)
    prompts = [ObjectPrompt(points=[[12.0, 12.0]], labels=[1]), ObjectPrompt(box=[3, 3, 20, 20])]
    a = loaded.predict(loaded.embed(rgb), prompts)
    b = res.backend.predict(res.backend.embed(rgb), prompts)
    assert np.array_equal(a.masks, b.masks) and np.allclose(a.scores, b.scores)
    # the path alone: the architecture comes from the training record beside the file
    # (the tiny test architecture cannot be told from the weights' shapes)
    alone = load_model(res.checkpoint, device="cpu")
    assert alone.arch == "tiny" and alone.model_id == res.backend.model_id
    c = alone.predict(alone.embed(rgb), prompts)
    assert np.array_equal(c.masks, b.masks)
    meta = read_metadata(res.checkpoint)
    assert meta["base"]["name"] == "sam_tiny" and meta["mode"] == "decoder"
    assert meta["validation"]["before"]["epoch"] == 0 and meta["encoder_unchanged"]
    rows = (out / "training_log.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,steps,train_loss") and len(rows) == 1 + len(res.log)
    assert (out / "training.png").read_bytes()[:4] == b"\x89PNG"


def test_sam2_decoder_raises_the_iou_on_its_objects_and_keeps_embedding_weights(tmp_path, sam2):
    data = dataset(2)
    before = _weights(sam2.model)
    res = finetune(data, sam2, out=tmp_path, val=data, settings=replace(FAST, epochs=2))
    first, last = res.log[0], res.log[-1]
    assert last["train_loss"] < res.log[1]["train_loss"]
    # measured: 0.02 -> 0.23 on these discs (the decoder learns the bright foreground)
    assert last["val_iou"] > first["val_iou"] + 0.1, res.log
    changed = _changed(before, res.backend.model)
    tm = TrainableModel(sam2, "decoder")
    assert changed and not any(tm.is_embedding_weight(k) for k in changed)
    assert not any(k.startswith(("sam_mask_decoder.conv_s0", "sam_mask_decoder.conv_s1"))
                   for k in changed)
    obj = torch.load(res.checkpoint, weights_only=True)
    assert set(obj) == {"model", "napari_segany"} and obj["napari_segany"]["mode"] == "decoder"
    from sam2.build_sam import _load_checkpoint

    from napari_segany.engine.sam2 import build_sam2_model

    _load_checkpoint(build_sam2_model("tiny"), str(res.checkpoint))  # sam2's own loader
    loaded = load_model("sam2_tiny", checkpoint=res.checkpoint, device="cpu")
    img, _ = discs(seed=1)
    rgb = np.repeat(img[..., None], 3, -1)
    p = [ObjectPrompt(points=[[12.0, 12.0], [40.0, 40.0]], labels=[1, 0])]
    a, b = loaded.predict(loaded.embed(rgb), p), res.backend.predict(res.backend.embed(rgb), p)
    assert np.array_equal(a.masks, b.masks)


def test_resume_continues_exactly(tmp_path, sam, sam_run):
    whole, _, _ = sam_run
    data = dataset(2)
    s = replace(FAST, epochs=3)
    seen = []

    def progress(stage, done, total, **info):
        if "row" in info:
            seen.append(info["row"]["epoch"])

    part = finetune(data, sam, out=tmp_path, val=data, settings=s, progress=progress,
                    cancel=lambda: bool(seen) and seen[-1] >= 1)
    assert part.cancelled and part.checkpoint is None and not (tmp_path / "model.pt").exists()
    assert len(part.log) == 2 and (tmp_path / "state.pt").exists()
    rest = finetune(data, sam, out=tmp_path, val=data, settings=s, resume=True)
    assert [r["train_loss"] for r in rest.log] == pytest.approx(
        [r["train_loss"] for r in whole.log], nan_ok=True, rel=0, abs=0)
    a, b = whole.backend.model.state_dict(), rest.backend.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(FinetuneError, match="state of another training run"):
        finetune(data, sam, out=tmp_path, val=data, settings=replace(s, lr=5e-4), resume=True)


def test_lora_trains_adapters_only_in_the_encoder_and_saves_merged(tmp_path, sam):
    before = _weights(sam.model)
    import copy

    probe = copy.deepcopy(sam)
    tm = TrainableModel(probe, "lora", lora_rank=2)
    names = [n for n in tm.trainable() if n.startswith("image_encoder.")]
    assert names and all("lora_" in n for n in names)
    frozen = {n for n, p in probe.model.named_parameters() if not p.requires_grad}
    assert any(n.startswith("image_encoder.") for n in frozen)
    res = finetune(dataset(1), sam, out=tmp_path, settings=replace(FAST, mode="lora",
                                                                    epochs=1, lora_rank=2))
    after = res.backend.model.state_dict()
    assert set(after) == set(before)  # merged: the official layout, no adapter keys
    changed = _changed(before, res.backend.model)
    enc = {k for k in changed if k.startswith("image_encoder.")}
    assert enc and all(".attn.qkv." in k for k in enc)  # only where adapters were merged
    load_model("sam_tiny", checkpoint=res.checkpoint, device="cpu")


def test_full_mode_trains_the_encoder(tmp_path, sam):
    before = _weights(sam.model)
    res = finetune(dataset(1), sam, out=tmp_path, settings=replace(FAST, mode="full",
                                                                    epochs=1))
    changed = _changed(before, res.backend.model)
    assert any(k.startswith("image_encoder.") for k in changed)
    assert not read_metadata(res.checkpoint)["encoder_unchanged"]


def test_output_is_never_a_labels_store_and_never_replaced_silently(tmp_path, sam):
    img, lab = discs(2)
    with LabelsStore.create(tmp_path / "s.zarr", img.shape) as store:
        store.write_plane((), lab.astype(np.uint32))
    with pytest.raises(FinetuneError, match="never writes into labels stores"):
        finetune((img, lab), sam, out=tmp_path / "s.zarr" / "ft", settings=FAST)
    (tmp_path / "ft").mkdir()
    (tmp_path / "ft" / "model.pt").write_bytes(b"x")
    with pytest.raises(FinetuneError, match="exists already"):
        finetune((img, lab), sam, out=tmp_path / "ft", settings=FAST)
    assert (tmp_path / "ft" / "model.pt").read_bytes() == b"x"
    with pytest.raises(ValueError, match="too few for a validation split"):
        finetune((img, lab), sam, out=tmp_path / "ft2", settings=replace(FAST, val_fraction=0.2))
    assert not (tmp_path / "ft2").exists()
    with pytest.raises(ValueError, match="mode must be one of"):
        replace(FAST, mode="adapters")


def test_metadata_is_json(sam_run):
    _, _, out = sam_run
    meta = json.loads((out / "model.json").read_text())
    assert meta["data"]["train_objects"] == 8 and len(meta["data"]["fingerprint"]) == 64


def test_caches_of_the_base_model_serve_a_decoder_checkpoint_not_a_full_one(
        tmp_path, sam, sam_run):
    """Embedding caches are keyed on the image encoder's weights: a ``decoder`` checkpoint
    reads the base model's planes without recomputing them; an encoder change is refused."""
    from napari_segany.intensity import Normalizer
    from napari_segany.storage import CacheMismatchError, EmbeddingCache

    res, _, _ = sam_run
    img = np.stack([discs(seed=s)[0] for s in range(2)])
    norm = Normalizer.fit(img)
    base = EmbeddingCache(tmp_path / "c.zarr", backend=sam, normalizer=norm, data=img)
    base.precompute()
    ref = base.get(1).tensors["image_embed"]
    decoder = load_model("sam_tiny", checkpoint=res.checkpoint, device="cpu")
    assert decoder.weights_id != sam.weights_id  # another checkpoint file ...
    assert decoder.encoder_weights_id == sam.encoder_weights_id  # ... with the same encoder
    again = EmbeddingCache(tmp_path / "c.zarr", backend=decoder, normalizer=norm, data=img)
    assert torch.equal(again.get(1).tensors["image_embed"], ref)
    assert again.stats == {"computed": 0, "loaded": 1}
    full = finetune(dataset(1), sam, out=tmp_path / "full",
                    settings=replace(FAST, mode="full", epochs=1))
    assert full.backend.encoder_weights_id != sam.encoder_weights_id
    with pytest.raises(CacheMismatchError, match="model: encoder .* weights"):
        EmbeddingCache(tmp_path / "c.zarr", backend=full.backend, normalizer=norm, data=img)


def test_encoder_id_follows_in_place_changes_and_old_caches_still_compare_the_checkpoint(
        tmp_path, sam):
    import copy
    import json

    from napari_segany.intensity import Normalizer
    from napari_segany.storage import CacheMismatchError, EmbeddingCache

    probe = copy.deepcopy(sam)
    before = probe.encoder_weights_id
    assert probe.encoder_weights_id == before  # memoised, stable
    with torch.no_grad():
        next(probe.model.mask_decoder.parameters()).add_(1.0)
    assert probe.encoder_weights_id == before  # the decoder is not part of it
    with torch.no_grad():
        next(probe.model.image_encoder.parameters()).add_(1.0)
    assert probe.encoder_weights_id != before  # an in-place change is seen
    img = discs(seed=0)[0]
    norm = Normalizer.fit(img)
    EmbeddingCache(tmp_path / "old.zarr", backend=sam, normalizer=norm, data=img)
    meta_file = tmp_path / "old.zarr" / "zarr.json"
    meta = json.loads(meta_file.read_text())
    (attrs,) = [v for v in meta["attributes"].values() if "signature" in v]
    del attrs["signature"]["model"]["encoder"]  # a cache written before encoder ids
    meta_file.write_text(json.dumps(meta))
    EmbeddingCache(tmp_path / "old.zarr", backend=sam, normalizer=norm, data=img)  # same file
    other = copy.deepcopy(sam)
    other.weights_id = "sha256:" + "0" * 64  # another checkpoint, same encoder
    with pytest.raises(CacheMismatchError, match="model: weights"):
        EmbeddingCache(tmp_path / "old.zarr", backend=other, normalizer=norm, data=img)
