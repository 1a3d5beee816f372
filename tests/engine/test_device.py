"""Tests for napari_segany.engine.device: device choice and mixed precision."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_segany.engine import device as device_mod
from napari_segany.engine.device import (
    ENV_PRECISION,
    PRECISIONS,
    autocast,
    cpu_has_native_bf16,
    precision_name,
    requested_precision,
    resolve_device,
    resolve_precision,
)


@pytest.fixture
def no_accelerator(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


@pytest.fixture
def fake_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)


@pytest.fixture
def fake_mps(monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)


# -- resolve_device ---------------------------------------------------------------------------


@pytest.mark.parametrize("device", [None, "auto", "AUTO", "Auto"])
def test_auto_is_cpu_without_accelerator(no_accelerator, device):
    dev = resolve_device(device)
    assert isinstance(dev, torch.device) and dev == torch.device("cpu")


def test_auto_is_cpu_on_this_machine():
    if torch.cuda.is_available() or torch.backends.mps.is_available():
        pytest.skip("this machine has an accelerator")
    assert resolve_device(None).type == "cpu"


@pytest.mark.parametrize("device", [None, "auto"])
def test_auto_prefers_cuda(no_accelerator, fake_cuda, fake_mps, device):
    assert resolve_device(device) == torch.device("cuda")


@pytest.mark.parametrize("device", [None, "auto"])
def test_auto_prefers_mps_after_cuda(no_accelerator, fake_mps, device):
    assert resolve_device(device) == torch.device("mps")


def test_explicit_devices(no_accelerator):
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


def test_explicit_cuda_when_available(no_accelerator, fake_cuda):
    assert resolve_device("cuda") == torch.device("cuda")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device(torch.device("cuda", 0)) == torch.device("cuda", 0)


@pytest.mark.parametrize("device", ["cuda", "cuda:0", torch.device("cuda")])
def test_cuda_unavailable(no_accelerator, device):
    with pytest.raises(ValueError, match="no CUDA GPU is available"):
        resolve_device(device)


def test_mps_unavailable(no_accelerator):
    with pytest.raises(ValueError, match="MPS is not available"):
        resolve_device("mps")


def test_explicit_mps_when_available(no_accelerator, fake_mps):
    assert resolve_device("mps") == torch.device("mps")


@pytest.mark.parametrize("device", ["gpu", "banana", "cuda:x", 3.5])
def test_bad_device(device):
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device(device)


def test_load_model_with_unavailable_cuda(no_accelerator):
    from napari_segany.engine import load_model

    with pytest.raises(ValueError, match="CUDA"):
        load_model("sam_tiny", random_weights=True, device="cuda")


# -- resolve_precision ---------------------------------------------------------------------


CPU = torch.device("cpu")
CUDA = torch.device("cuda")


@pytest.fixture
def native_bf16(monkeypatch):
    """Pretend the CPU has (True) or lacks (False) native bf16."""
    def set_(value: bool) -> None:
        monkeypatch.setattr(device_mod, "cpu_has_native_bf16", lambda: value)
    return set_


def test_auto_precision_on_cpu_follows_native_bf16(native_bf16):
    native_bf16(True)
    assert resolve_precision("auto", CPU) is torch.bfloat16
    native_bf16(False)
    assert resolve_precision("auto", CPU) is None


def test_auto_precision_on_mps_is_float32(native_bf16):
    native_bf16(True)
    assert resolve_precision("auto", torch.device("mps")) is None


def test_fp32_forces_float32_even_with_native_bf16(native_bf16):
    native_bf16(True)
    assert resolve_precision("fp32", CPU) is None


@pytest.fixture
def fresh_detection():
    cpu_has_native_bf16.cache_clear()
    yield
    cpu_has_native_bf16.cache_clear()


@pytest.mark.parametrize("avx512_bf16,amx,expected", [
    (True, False, True), (False, True, True), (False, False, False)])
def test_native_bf16_detected_through_torch(monkeypatch, fresh_detection, avx512_bf16, amx,
                                            expected):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16,
                        raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    monkeypatch.setattr(device_mod, "_cpuinfo_flags", lambda: frozenset({"avx512_bf16"}))
    assert cpu_has_native_bf16() is expected  # torch's answer wins over /proc/cpuinfo


@pytest.mark.parametrize("flags,expected", [
    ({"avx2", "avx512f", "avx512_bf16"}, True), ({"amx_bf16", "amx_tile"}, True),
    ({"avx2", "avx512f", "avx512_vnni"}, False), (set(), False)])
def test_native_bf16_from_cpuinfo_without_torch_checks(monkeypatch, fresh_detection, flags,
                                                       expected):
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported", raising=False)
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported", raising=False)
    monkeypatch.setattr(device_mod, "_cpuinfo_flags", lambda: frozenset(flags))
    assert cpu_has_native_bf16() is expected


def test_cpuinfo_flags_parsed(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512_bf16\nbugs\t: none\n")
    assert device_mod._cpuinfo_flags(str(info)) == {"fpu", "avx2", "avx512_bf16"}
    assert device_mod._cpuinfo_flags(str(tmp_path / "missing")) == frozenset()


def test_this_machine_detection_matches_its_flags():
    flags = device_mod._cpuinfo_flags()
    if not flags:
        pytest.skip("no /proc/cpuinfo flags here")
    assert cpu_has_native_bf16() is bool({"avx512_bf16", "amx_bf16"} & flags)


def test_requested_precision_from_environment(monkeypatch):
    monkeypatch.delenv(ENV_PRECISION, raising=False)
    assert requested_precision(None) == "auto"
    monkeypatch.setenv(ENV_PRECISION, "BF16 ")
    assert requested_precision(None) == "bf16"
    assert requested_precision("fp32") == "fp32"  # an explicit precision wins
    monkeypatch.setenv(ENV_PRECISION, "half")
    with pytest.raises(ValueError, match=r"\$NAPARI_SEGANY_PRECISION must be one of"):
        requested_precision(None)


def test_precision_names():
    assert precision_name(None) == "fp32"
    assert precision_name(torch.bfloat16) == "bf16"
    assert precision_name(torch.float16) == "fp16"


def test_load_model_records_its_precision(monkeypatch, native_bf16):
    from napari_segany.engine import load_model

    monkeypatch.setenv(ENV_PRECISION, "auto")
    native_bf16(True)
    auto = load_model("sam_tiny", random_weights=True, device="cpu")
    assert auto.precision == "bf16" and auto.signature()["precision"] == "bf16"
    assert "bf16" in repr(auto)
    forced = load_model("sam_tiny", random_weights=True, device="cpu", precision="fp32")
    assert forced.precision == "fp32" and forced.autocast_dtype is None
    native_bf16(False)
    assert load_model("sam_tiny", random_weights=True, device="cpu").precision == "fp32"
    monkeypatch.setenv(ENV_PRECISION, "bf16")
    assert load_model("sam_tiny", random_weights=True, device="cpu").precision == "bf16"


def test_auto_precision_on_cuda_prefers_bf16(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_precision("auto", CUDA) is torch.bfloat16
    assert resolve_precision("auto", torch.device("cuda", 1)) is torch.bfloat16


def test_auto_precision_on_old_cuda_falls_back_to_fp16(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert resolve_precision("auto", CUDA) is torch.float16


def test_explicit_precisions(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert resolve_precision("fp32", CPU) is None
    assert resolve_precision("fp32", CUDA) is None
    assert resolve_precision("bf16", CPU) is torch.bfloat16
    assert resolve_precision("bf16", CUDA) is torch.bfloat16
    assert resolve_precision("fp16", CUDA) is torch.float16


def test_fp16_on_cpu_refused():
    with pytest.raises(ValueError, match="fp16 autocast is not supported on the CPU"):
        resolve_precision("fp16", CPU)


@pytest.mark.parametrize("precision", ["int8", "FP32", "float32", "", None])
def test_invalid_precision(precision):
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision(precision, CPU)
    assert precision not in PRECISIONS


# -- autocast ------------------------------------------------------------------------------------


def test_autocast_none_is_plain_float32():
    a = torch.ones(4, 4)
    with autocast(CPU, None):
        assert (a @ a).dtype == torch.float32


def test_autocast_bf16_on_cpu():
    a = torch.ones(4, 4)
    with autocast(CPU, torch.bfloat16):
        assert (a @ a).dtype == torch.bfloat16
    assert (a @ a).dtype == torch.float32


# -- bf16 agrees with float32 ----------------------------------------------------------------------
#
# The tiny random-weight models run the real SAM and SAM2 code paths; official weights are
# compared on the shared data in test_bf16_real_weights_masks_agree_with_float32 when they are
# in the model cache. bf16 keeps about three significant digits, so features agree to a
# cosine of ~0.9999 and masks differ on a few boundary pixels.


def _cosine(a, b) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _iou(a, b) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def _blob_plane(size: int = 128) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size]
    rng = np.random.default_rng(3)
    plane = 40 + 160 * (((yy - 60) ** 2 + (xx - 70) ** 2) < 30 ** 2) + rng.normal(0, 8, yy.shape)
    return np.repeat(plane.clip(0, 255).astype(np.uint8)[..., None], 3, axis=-1)


@pytest.mark.parametrize("name", ["sam_tiny", "sam2_tiny"])
def test_bf16_embedding_and_masks_agree_with_float32(name):
    from napari_segany.engine import load_model
    from napari_segany.prompts import ObjectPrompt

    fp32 = load_model(name, random_weights=True, device="cpu", precision="fp32")
    bf16 = load_model(name, random_weights=True, device="cpu", precision="bf16")
    assert bf16.autocast_dtype is torch.bfloat16 and fp32.autocast_dtype is None
    plane = _blob_plane()
    e32, e16 = fp32.embed(plane), bf16.embed(plane)
    a32, a16 = e32.to_numpy(), e16.to_numpy()
    assert a16.keys() == a32.keys()
    for key in a32:
        assert a16[key].dtype == np.float32  # stored as float32 whatever the compute
        assert _cosine(a16[key], a32[key]) > 0.999, key
    prompts = [ObjectPrompt(points=[[70.0, 60.0]], labels=[1]),
               ObjectPrompt(box=[35.0, 25.0, 105.0, 95.0]),
               ObjectPrompt(points=[[70.0, 60.0], [10.0, 10.0]], labels=[1, 0],
                            box=[35.0, 25.0, 105.0, 95.0])]
    p32 = fp32.predict(e32, prompts, multimask=False)
    p16 = bf16.predict(e16, prompts, multimask=False)
    for k in range(len(prompts)):
        l32, l16 = p32.logits[k, 0], p16.logits[k, 0]
        assert np.corrcoef(l32.ravel(), l16.ravel())[0, 1] > 0.999, k
        assert _iou(p32.masks[k, 0], p16.masks[k, 0]) > 0.95, k
    np.testing.assert_allclose(p16.scores, p32.scores, atol=0.02)


def _official_cached(name: str):
    from napari_segany.engine.registry import get_spec
    from napari_segany.engine.weights import default_cache_dir

    spec = get_spec(name)
    path = default_cache_dir() / spec.filename if spec.filename else None
    return path if path is not None and path.is_file() else None


@pytest.mark.real_weights
@pytest.mark.parametrize("name", ["sam_vit_b", "sam2.1_hiera_tiny"])
def test_bf16_real_weights_masks_agree_with_float32(name, monkeypatch):
    """Trained weights on the shared CT data: bf16 masks as float32's (skipped when absent)."""
    from testdata import DATA

    if _official_cached(name) is None:
        pytest.skip(f"official {name} weights are not in the model cache")
    volume = DATA / "msd_spleen_crop" / "sub-spleen2_ct.nii.gz"
    if not volume.is_file():
        pytest.skip(f"shared data {volume} is absent")
    from napari_segany.engine import load_model
    from napari_segany.intensity import Normalizer
    from napari_segany.io import read_image
    from napari_segany.prompts import ObjectPrompt

    monkeypatch.setenv("NAPARI_SEGANY_OFFLINE", "1")
    ct = read_image(volume)
    gt = np.asarray(read_image(DATA / "msd_spleen_crop" /
                               "sub-spleen2_ct_seg-manual.nii.gz").data) > 0
    norm = Normalizer.fit(ct.data, mode="window", window="ct_soft_tissue")
    models = {p: load_model(name, device="cpu", precision=p) for p in ("fp32", "bf16")}
    for z in np.flatnonzero(gt.reshape(gt.shape[0], -1).any(1))[::4]:
        ys, xs = np.nonzero(gt[z])
        prompt = ObjectPrompt(box=[float(xs.min()), float(ys.min()),
                                   float(xs.max()), float(ys.max())])
        plane = norm(np.asarray(ct.data[z]))
        masks = {p: m.predict(m.embed(plane), prompt, multimask=False).masks[0, 0]
                 for p, m in models.items()}
        assert _iou(masks["bf16"], masks["fp32"]) > 0.97, z
