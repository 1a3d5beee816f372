"""Tests for napari_segany.engine.device: device choice and mixed precision."""

from __future__ import annotations

import pytest
import torch

from napari_segany.engine.device import PRECISIONS, autocast, resolve_device, resolve_precision


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


def test_auto_precision_on_cpu_and_mps():
    assert resolve_precision("auto", CPU) is None
    assert resolve_precision("auto", torch.device("mps")) is None


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
