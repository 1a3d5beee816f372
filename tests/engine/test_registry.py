"""Tests for napari_segany.engine.registry: names, checkpoints, plugins and downloads."""

from __future__ import annotations

import hashlib
import http.server
import re
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_segany.engine import registry
from napari_segany.engine.registry import (
    ModelSpec,
    available_models,
    get_spec,
    infer_arch,
    load_model,
    register_family,
    register_model,
)
from napari_segany.engine.weights import CheckpointError, DownloadError


@pytest.fixture
def clean_registry(monkeypatch):
    """Restore registered models, families and the entry-point flag after the test."""
    models, families = dict(registry._MODELS), dict(registry._FAMILIES)
    monkeypatch.setattr(registry, "_entry_points_loaded", registry._entry_points_loaded)
    yield
    registry._MODELS.clear()
    registry._MODELS.update(models)
    registry._FAMILIES.clear()
    registry._FAMILIES.update(families)


@pytest.fixture(autouse=True)
def _no_offline_env(monkeypatch):
    monkeypatch.delenv("NAPARI_SEGANY_OFFLINE", raising=False)
    monkeypatch.delenv("NAPARI_SEGANY_CACHE_DIR", raising=False)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def sam_seed3():
    """A tiny SAM whose weights differ from the default seed-0 initialisation."""
    return load_model("sam_tiny", random_weights=True, device="cpu", seed=3)


@pytest.fixture(scope="module")
def sam_seed3_file(sam_seed3, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "sam_tiny_seed3.pth"
    torch.save(sam_seed3.model.state_dict(), path)
    return path


PARAM = "mask_decoder.iou_prediction_head.layers.0.weight"


# -- names --------------------------------------------------------------------------------


OFFICIAL = [
    "sam_vit_b", "sam_vit_l", "sam_vit_h",
    "sam2_hiera_tiny", "sam2_hiera_small", "sam2_hiera_base_plus", "sam2_hiera_large",
    "sam2.1_hiera_tiny", "sam2.1_hiera_small", "sam2.1_hiera_base_plus", "sam2.1_hiera_large",
]  # fmt: skip


def test_available_models_lists_official_and_tiny_models():
    names = available_models()
    assert names == sorted(names)
    for name in OFFICIAL + ["sam_tiny", "sam2_tiny"]:
        assert name in names
    assert registry.DEFAULT_MODEL in names


@pytest.mark.parametrize("name", OFFICIAL)
def test_official_specs_have_hash_and_https_url(name):
    spec = get_spec(name)
    assert spec.name == name
    assert re.fullmatch(r"[0-9a-f]{64}", spec.sha256)
    assert spec.url.startswith("https://")
    assert spec.filename == spec.url.rsplit("/", 1)[-1] and spec.filename.endswith((".pt", ".pth"))
    assert spec.size > 10_000_000
    assert spec.family == ("sam" if name.startswith("sam_") else "sam2")
    if spec.family == "sam":
        assert spec.arch == name.removeprefix("sam_")
    else:
        version = name.split("_hiera_")[0]
        assert spec.arch.startswith(version + "_hiera_")


def test_official_hashes_and_urls_are_distinct():
    specs = [get_spec(n) for n in OFFICIAL]
    assert len({s.sha256 for s in specs}) == len(specs)
    assert len({s.url for s in specs}) == len(specs)


def test_unknown_model_lists_names():
    with pytest.raises(ValueError, match="unknown model 'no_such_model'") as exc:
        load_model("no_such_model", device="cpu")
    for name in ("sam_vit_b", "sam2.1_hiera_tiny", "sam_tiny"):
        assert name in str(exc.value)
    with pytest.raises(ValueError, match="known models"):
        get_spec("no_such_model")


@pytest.mark.parametrize("name", ["sam_tiny", "sam2_tiny"])
def test_tiny_model_without_random_weights_has_no_published_weights(name, tmp_path):
    with pytest.raises(ValueError, match="no published weights") as exc:
        load_model(name, device="cpu", cache_dir=tmp_path)
    assert "random_weights=True" in str(exc.value) and "checkpoint=" in str(exc.value)
    assert list(tmp_path.iterdir()) == []


def test_register_model_refuses_duplicates(clean_registry):
    with pytest.raises(ValueError, match="already registered"):
        register_model(ModelSpec("sam_tiny", "sam", "tiny"))
    register_model(ModelSpec("sam_tiny", "sam", "tiny", description="replaced"), overwrite=True)
    assert get_spec("sam_tiny").description == "replaced"
    with pytest.raises(ValueError, match="already registered"):
        register_family("sam", lambda *a, **k: None)


# -- local checkpoints ----------------------------------------------------------------------


def test_checkpoint_loads_identical_weights(sam_seed3, sam_seed3_file):
    backend = load_model("sam_tiny", checkpoint=sam_seed3_file, device="cpu")
    default = load_model("sam_tiny", random_weights=True, device="cpu")  # seed 0
    got = backend.model.state_dict()
    want = sam_seed3.model.state_dict()
    assert got.keys() == want.keys()
    torch.testing.assert_close(got[PARAM], want[PARAM], rtol=0, atol=0)
    assert not torch.equal(got[PARAM], default.model.state_dict()[PARAM])
    assert all(torch.equal(got[k], want[k]) for k in want)
    assert backend.weights_id == "sha256:" + _sha(sam_seed3_file)
    assert backend.weights_id in backend.model_id
    assert backend.signature()["weights"] == backend.weights_id


def test_checkpoint_path_as_model_needs_arch(sam_seed3_file):
    # The tiny architecture cannot be inferred from a file: the error says to pass arch=.
    with pytest.raises(ValueError, match="arch="):
        load_model(sam_seed3_file, device="cpu")
    with pytest.raises(FileNotFoundError):
        load_model("sam_tiny", checkpoint=sam_seed3_file.with_name("missing.pth"), device="cpu")
    with pytest.raises(ValueError, match="either as model or as checkpoint"):
        load_model(sam_seed3_file, checkpoint=sam_seed3_file, device="cpu")


def test_wrapped_sam2_checkpoint_loads(tmp_path):
    src = load_model("sam2_tiny", random_weights=True, device="cpu", seed=5)
    path = tmp_path / "sam2_tiny_wrapped.pt"
    torch.save({"model": src.model.state_dict(), "epoch": torch.tensor(3)}, path)
    backend = load_model("sam2_tiny", checkpoint=path, device="cpu")
    want = src.model.state_dict()
    got = backend.model.state_dict()
    key = "sam_mask_decoder.iou_prediction_head.layers.0.weight"
    assert torch.equal(got[key], want[key])
    assert all(torch.equal(got[k], want[k]) for k in want)
    assert backend.weights_id == "sha256:" + _sha(path)
    # and it predicts like the original model
    img = np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8)
    from napari_segany.prompts import ObjectPrompt

    p = ObjectPrompt(points=[[20.0, 10.0]])
    a = src.predict(src.embed(img), p)
    b = backend.predict(backend.embed(img), p)
    np.testing.assert_array_equal(a.masks, b.masks)
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-6)


def test_checkpoint_of_another_architecture(sam_seed3_file):
    with pytest.raises(CheckpointError, match="'tiny' of 'sam2_tiny'") as exc:
        load_model("sam2_tiny", checkpoint=sam_seed3_file, device="cpu")
    assert "arch=" in str(exc.value)
    with pytest.raises(CheckpointError, match="sam2.1_hiera_t"):
        load_model(sam_seed3_file, arch="sam2.1_hiera_t", device="cpu")


def test_checkpoint_with_inferred_architecture_that_does_not_fit(tmp_path):
    sd = _sam2_fake(96, 12, v21=True)
    path = tmp_path / "fake_sam21_t.pt"
    torch.save(sd, path)
    with pytest.raises(CheckpointError, match="'sam2.1_hiera_t'"):
        load_model(path, device="cpu")


def test_unknown_arch_for_checkpoint(sam_seed3_file):
    with pytest.raises(ValueError, match="unknown architecture 'vit_q'"):
        load_model(sam_seed3_file, arch="vit_q", device="cpu")


_UNPICKLED: list[str] = []


def _record_unpickle(tag: str) -> str:
    _UNPICKLED.append(tag)
    return tag


class Sneaky:
    """Unpickling this object would call _record_unpickle (arbitrary code)."""

    def __reduce__(self):
        return (_record_unpickle, ("ran",))


def test_pickle_with_custom_object_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"model": {"w": torch.zeros(2)}, "extra": Sneaky()}, path)
    _UNPICKLED.clear()
    with pytest.raises(CheckpointError, match="refusing to load"):
        load_model("sam_tiny", checkpoint=path, device="cpu")
    assert _UNPICKLED == []


def test_non_state_dict_checkpoint_refused(tmp_path):
    path = tmp_path / "list.pth"
    torch.save([torch.zeros(2)], path)
    with pytest.raises(CheckpointError, match="not a state dict"):
        load_model("sam_tiny", checkpoint=path, device="cpu")


# -- infer_arch ---------------------------------------------------------------------------


def _sam_fake(dim: int) -> dict:
    return {"image_encoder.patch_embed.proj.weight": torch.zeros(dim, 3, 16, 16)}


def _sam2_fake(dim: int, blocks: int, *, v21: bool) -> dict:
    sd = {"image_encoder.trunk.patch_embed.proj.weight": torch.zeros(dim, 3, 7, 7)}
    for i in range(blocks):
        sd[f"image_encoder.trunk.blocks.{i}.norm1.weight"] = torch.zeros(dim)
        sd[f"image_encoder.trunk.blocks.{i}.norm1.bias"] = torch.zeros(dim)
    if v21:
        sd["no_obj_embed_spatial"] = torch.zeros(1, 64)
    return sd


@pytest.mark.parametrize("dim, arch", [(768, "vit_b"), (1024, "vit_l"), (1280, "vit_h")])
def test_infer_arch_sam(dim, arch):
    assert infer_arch(_sam_fake(dim)) == ("sam", arch)


@pytest.mark.parametrize(
    "dim, blocks, trunk",
    [(96, 12, "hiera_t"), (96, 16, "hiera_s"), (112, 24, "hiera_b+"), (144, 48, "hiera_l")],
)
@pytest.mark.parametrize("v21", [True, False])
def test_infer_arch_sam2(dim, blocks, trunk, v21):
    family, arch = infer_arch(_sam2_fake(dim, blocks, v21=v21))
    assert family == "sam2"
    assert arch == ("sam2.1_" if v21 else "sam2_") + trunk
    from napari_segany.engine.sam2 import SAM2_ARCHS

    assert arch in SAM2_ARCHS


@pytest.mark.parametrize(
    "sd",
    [
        {"foo.weight": torch.zeros(3)},
        _sam_fake(512),
        _sam2_fake(96, 7, v21=True),
        {},
    ],
    ids=["unrelated", "sam_dim512", "sam2_7_blocks", "empty"],
)
def test_infer_arch_unknown(sd):
    with pytest.raises(ValueError, match="pass arch="):
        infer_arch(sd)


def test_infer_arch_reads_real_key_names():
    """The keys infer_arch reads exist in real models (tiny ones are not inferable)."""
    sam = load_model("sam_tiny", random_weights=True, device="cpu").model.state_dict()
    sam2 = load_model("sam2_tiny", random_weights=True, device="cpu").model.state_dict()
    assert "image_encoder.patch_embed.proj.weight" in sam
    assert "image_encoder.trunk.patch_embed.proj.weight" in sam2
    assert "no_obj_embed_spatial" in sam2  # the tiny model is a SAM2.1
    assert any(k.startswith("image_encoder.trunk.blocks.0.") for k in sam2)
    for sd in (sam, sam2):
        with pytest.raises(ValueError):
            infer_arch(sd)


# -- third-party families and entry points --------------------------------------------------


class _DummyBackend:
    def __init__(self, spec, state_dict, kwargs):
        self.spec, self.state_dict, self.kwargs = spec, state_dict, kwargs


def test_register_family_and_model(clean_registry):
    calls = []

    def factory(spec, state_dict, **kwargs):
        calls.append((spec, state_dict, kwargs))
        return _DummyBackend(spec, state_dict, kwargs)

    register_family("dummy", factory)
    register_model(ModelSpec("dummy_model", "dummy", "x", description="third party"))
    assert "dummy_model" in available_models()
    backend = load_model("dummy_model", random_weights=True, device="cpu", seed=7)
    assert isinstance(backend, _DummyBackend) and len(calls) == 1
    assert backend.spec == get_spec("dummy_model") and backend.spec.arch == "x"
    assert backend.state_dict is None
    assert backend.kwargs["device"] == torch.device("cpu")
    assert backend.kwargs["seed"] == 7
    assert backend.kwargs["weights_id"] == "random-seed7"
    assert backend.kwargs["autocast_dtype"] is None


def test_model_of_unregistered_family(clean_registry):
    register_model(ModelSpec("orphan_model", "nobody", "x"))
    with pytest.raises(ValueError, match="no backend family 'nobody'"):
        load_model("orphan_model", random_weights=True, device="cpu")


def _fake_distribution(root: Path, dist: str, module: str, body: str) -> None:
    info = root / f"{dist}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        f"[napari_segany.models]\n{dist} = {module}:register\n"
    )
    (root / f"{module}.py").write_text(textwrap.dedent(body))


def test_entry_point_registers_model(clean_registry, tmp_path, monkeypatch):
    _fake_distribution(
        tmp_path,
        "fakeplug",
        "fakeplug_models_mod",
        """
        from napari_segany.engine.registry import ModelSpec, register_model

        def register():
            register_model(ModelSpec("fakeplug_tiny", "sam", "tiny", description="plugin"))
        """,
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "fakeplug_models_mod", raising=False)
    monkeypatch.setattr(registry, "_entry_points_loaded", False)
    assert "fakeplug_tiny" in available_models()
    assert get_spec("fakeplug_tiny").description == "plugin"
    backend = load_model("fakeplug_tiny", random_weights=True, device="cpu")
    assert backend.name == "fakeplug_tiny" and backend.family == "sam"
    available_models()  # entry points are loaded once: no "already registered" error
    monkeypatch.delitem(sys.modules, "fakeplug_models_mod", raising=False)


def test_broken_entry_point_warns(clean_registry, tmp_path, monkeypatch):
    _fake_distribution(
        tmp_path,
        "brokenplug",
        "brokenplug_models_mod",
        """
        def register():
            raise RuntimeError("plugin exploded")
        """,
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_entry_points_loaded", False)
    with pytest.warns(UserWarning, match="brokenplug.*plugin exploded"):
        names = available_models()
    assert "sam_vit_b" in names
    monkeypatch.delitem(sys.modules, "brokenplug_models_mod", raising=False)


# -- downloads through the registry -----------------------------------------------------------


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, files: dict[str, bytes]):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files = files
        self.requests: list[str] = []

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/{name}"


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        srv: _Server = self.server
        srv.requests.append(self.path)
        data = srv.files.get(self.path.lstrip("/"))
        if data is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def server(sam_seed3_file):
    srv = _Server({"served_tiny.pth": sam_seed3_file.read_bytes()})
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(5)


def test_download_through_registry(clean_registry, server, sam_seed3, sam_seed3_file, tmp_path):
    sha = _sha(sam_seed3_file)
    register_model(ModelSpec("served_tiny", "sam", "tiny", url=server.url("served_tiny.pth"),
                             sha256=sha))
    cache = tmp_path / "cache"
    seen = []
    backend = load_model("served_tiny", cache_dir=cache, device="cpu",
                         progress=lambda done, total: seen.append((done, total)))
    assert server.requests == ["/served_tiny.pth"]
    assert (cache / "served_tiny.pth").read_bytes() == sam_seed3_file.read_bytes()
    assert backend.weights_id == "sha256:" + sha
    assert backend.name == "served_tiny"
    assert torch.equal(backend.model.state_dict()[PARAM], sam_seed3.model.state_dict()[PARAM])
    size = sam_seed3_file.stat().st_size
    assert seen and seen[-1] == (size, size)
    # second load comes from the cache, even offline
    again = load_model("served_tiny", cache_dir=cache, device="cpu", offline=True)
    assert len(server.requests) == 1
    assert again.model_id == backend.model_id


def test_download_offline_with_empty_cache(clean_registry, server, sam_seed3_file, tmp_path):
    register_model(ModelSpec("served_tiny", "sam", "tiny", url=server.url("served_tiny.pth"),
                             sha256=_sha(sam_seed3_file)))
    cache = tmp_path / "cache"
    with pytest.raises(DownloadError, match="--checkpoint"):
        load_model("served_tiny", cache_dir=cache, device="cpu", offline=True)
    assert server.requests == []
    assert not cache.exists() or list(cache.iterdir()) == []


def test_download_offline_from_environment(clean_registry, server, sam_seed3_file, tmp_path,
                                           monkeypatch):
    register_model(ModelSpec("served_tiny", "sam", "tiny", url=server.url("served_tiny.pth"),
                             sha256=_sha(sam_seed3_file)))
    monkeypatch.setenv("NAPARI_SEGANY_OFFLINE", "1")
    with pytest.raises(DownloadError, match="offline"):
        load_model("served_tiny", cache_dir=tmp_path / "cache", device="cpu")
    assert server.requests == []


def test_download_with_wrong_sha256(clean_registry, server, sam_seed3_file, tmp_path):
    wrong = hashlib.sha256(b"something else").hexdigest()
    register_model(ModelSpec("served_tiny", "sam", "tiny", url=server.url("served_tiny.pth"),
                             sha256=wrong))
    cache = tmp_path / "cache"
    with pytest.raises(CheckpointError, match=wrong):
        load_model("served_tiny", cache_dir=cache, device="cpu")
    assert server.requests == ["/served_tiny.pth"]
    assert not cache.exists() or list(cache.iterdir()) == []


def test_download_http_error(clean_registry, server, tmp_path):
    register_model(ModelSpec("missing_tiny", "sam", "tiny", url=server.url("missing.pth"),
                             sha256="0" * 64))
    with pytest.raises(DownloadError, match="404"):
        load_model("missing_tiny", cache_dir=tmp_path / "cache", device="cpu")


def test_checkpoint_without_a_model_name_takes_the_files_architecture(sam_seed3_file):
    """``load_model(checkpoint=F)`` (API) and ``--checkpoint F`` (CLI) mean the same."""
    with pytest.raises(ValueError, match="arch="):  # the tiny test architecture is not inferable
        load_model(checkpoint=sam_seed3_file, device="cpu")
    with pytest.raises(CheckpointError, match="'vit_b'"):
        load_model(checkpoint=sam_seed3_file, arch="vit_b", device="cpu")
