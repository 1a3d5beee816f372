"""Tests for napari_segany.engine.weights against a real loopback HTTP server."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import socket
import threading
from pathlib import Path

import pytest

from napari_segany.engine.weights import (
    ENV_CACHE_DIR,
    ENV_OFFLINE,
    CheckpointError,
    DownloadError,
    default_cache_dir,
    fetch_checkpoint,
    file_sha256,
    load_state_dict,
)

PAYLOAD = os.urandom(300_000) + b"end"
SHA = hashlib.sha256(PAYLOAD).hexdigest()


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, payload: bytes):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.payload = payload
        self.ranges: list[str | None] = []  # Range header of every request
        self.cut_after: int | None = None  # first request: drop connection after N bytes
        self.ignore_range = False
        self.status: int | None = None  # force an HTTP error status

    def url(self, name: str = "model.pt") -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/{name}"


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep test output quiet
        pass

    def do_GET(self):
        srv: _Server = self.server
        rng = self.headers.get("Range")
        first = not srv.ranges
        srv.ranges.append(rng)
        if srv.status:
            self.send_error(srv.status)
            return
        data, start = srv.payload, 0
        if rng and not srv.ignore_range:
            start = int(rng.removeprefix("bytes=").rstrip("-"))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if first and srv.cut_after is not None:
            body = body[: srv.cut_after]
        self.wfile.write(body)
        self.wfile.flush()
        self.close_connection = True


@pytest.fixture
def server():
    srv = _Server(PAYLOAD)
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    monkeypatch.delenv(ENV_OFFLINE, raising=False)
    monkeypatch.delenv(ENV_CACHE_DIR, raising=False)


def test_download_verifies_and_caches(server, tmp_path):
    path = fetch_checkpoint(server.url(), sha256=SHA, cache_dir=tmp_path)
    assert path == tmp_path / "model.pt"
    assert path.read_bytes() == PAYLOAD
    assert not (tmp_path / "model.pt.part").exists()
    assert json.loads((tmp_path / "model.pt.sha256").read_text())["sha256"] == SHA
    assert fetch_checkpoint(server.url(), sha256=SHA.upper(), cache_dir=tmp_path) == path
    assert len(server.ranges) == 1  # second call made no request


def test_progress_is_monotonic_and_ends_at_total(server, tmp_path):
    calls = []
    fetch_checkpoint(
        server.url(), sha256=SHA, cache_dir=tmp_path, progress=lambda d, t: calls.append((d, t))
    )
    done = [d for d, _ in calls]
    assert done == sorted(done)
    assert calls[-1] == (len(PAYLOAD), len(PAYLOAD))


def test_sha_mismatch_leaves_nothing(server, tmp_path):
    with pytest.raises(CheckpointError, match="expected sha256") as info:
        fetch_checkpoint(server.url(), sha256="0" * 64, cache_dir=tmp_path)
    assert SHA in str(info.value) and server.url() in str(info.value)
    assert not (tmp_path / "model.pt").exists()
    assert not (tmp_path / "model.pt.part").exists()


def test_interrupted_download_resumes_with_range(server, tmp_path):
    server.cut_after = 100_000
    with pytest.raises(DownloadError, match="--checkpoint"):
        fetch_checkpoint(server.url(), sha256=SHA, cache_dir=tmp_path)
    part = tmp_path / "model.pt.part"
    assert part.read_bytes() == PAYLOAD[:100_000]
    assert not (tmp_path / "model.pt").exists()
    calls = []
    path = fetch_checkpoint(
        server.url(), sha256=SHA, cache_dir=tmp_path, progress=lambda d, t: calls.append((d, t))
    )
    assert server.ranges == [None, "bytes=100000-"]
    assert path.read_bytes() == PAYLOAD and not part.exists()
    assert calls[0][0] == 100_000 and calls[-1] == (len(PAYLOAD), len(PAYLOAD))


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    (tmp_path / "model.pt.part").write_bytes(b"x" * 5000)
    server.ignore_range = True
    path = fetch_checkpoint(server.url(), sha256=SHA, cache_dir=tmp_path)
    assert server.ranges == ["bytes=5000-"]
    assert path.read_bytes() == PAYLOAD


def test_unsatisfiable_range_restarts_from_zero(server, tmp_path):
    (tmp_path / "model.pt.part").write_bytes(b"x" * (len(PAYLOAD) + 10))
    path = fetch_checkpoint(server.url(), sha256=SHA, cache_dir=tmp_path)
    assert server.ranges == [f"bytes={len(PAYLOAD) + 10}-", None]
    assert path.read_bytes() == PAYLOAD


def test_http_error_is_download_error(server, tmp_path):
    server.status = 404
    with pytest.raises(DownloadError, match="404"):
        fetch_checkpoint(server.url(), sha256=SHA, cache_dir=tmp_path)
    assert not (tmp_path / "model.pt").exists()


def test_unreachable_server(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DownloadError, match="checkpoint=PATH"):
        fetch_checkpoint(f"http://127.0.0.1:{port}/m.pt", sha256=SHA, cache_dir=tmp_path, timeout=5)


def test_offline_without_file(server, tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_OFFLINE, "yes")
    with pytest.raises(DownloadError) as info:
        fetch_checkpoint(server.url(), sha256=SHA, cache_dir=tmp_path)
    msg = str(info.value)
    assert "--checkpoint" in msg and "model.pt" in msg and server.url() in msg
    assert str(tmp_path / "model.pt") in msg
    assert server.ranges == [] and not tmp_path.joinpath("model.pt.part").exists()


def test_offline_with_good_cached_file(server, tmp_path):
    (tmp_path / "weights.bin").write_bytes(PAYLOAD)
    path = fetch_checkpoint(
        server.url(), sha256=SHA, filename="weights.bin", cache_dir=tmp_path, offline=True
    )
    assert path == tmp_path / "weights.bin" and server.ranges == []


def test_corrupt_cached_file_is_reported_not_deleted(server, tmp_path):
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"tampered")
    with pytest.raises(CheckpointError, match="[Dd]elete") as info:
        fetch_checkpoint(server.url(), sha256=SHA, cache_dir=tmp_path)
    assert str(bad) in str(info.value) and SHA in str(info.value)
    assert bad.read_bytes() == b"tampered" and server.ranges == []


def test_env_cache_dir_is_used(server, tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_CACHE_DIR, str(tmp_path / "envcache"))
    path = fetch_checkpoint(server.url(), sha256=SHA)
    assert path == tmp_path / "envcache" / "model.pt" and path.read_bytes() == PAYLOAD


def test_file_url(tmp_path):
    src = tmp_path / "src.pt"
    src.write_bytes(PAYLOAD)
    path = fetch_checkpoint(src.as_uri(), sha256=SHA, cache_dir=tmp_path / "cache")
    assert path.read_bytes() == PAYLOAD


def test_rejects_other_schemes_and_bad_hash(tmp_path):
    with pytest.raises(ValueError, match="http"):
        fetch_checkpoint("ftp://example.org/m.pt", sha256=SHA, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="64"):
        fetch_checkpoint("http://127.0.0.1/m.pt", sha256="abc", cache_dir=tmp_path)


def test_default_cache_dir_precedence_and_no_creation(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "napari-segany" / "models"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "napari-segany" / "models"
    monkeypatch.setenv(ENV_CACHE_DIR, str(tmp_path / "env"))
    assert default_cache_dir() == tmp_path / "env"
    assert default_cache_dir(tmp_path / "arg") == tmp_path / "arg"
    assert list(tmp_path.iterdir()) == []


def test_file_sha256_sidecar(tmp_path, monkeypatch):
    f = tmp_path / "w.bin"
    f.write_bytes(PAYLOAD)
    assert file_sha256(f) == SHA and not (tmp_path / "w.bin.sha256").exists()
    assert file_sha256(f, write_sidecar=True) == SHA
    side = tmp_path / "w.bin.sha256"
    rec = json.loads(side.read_text())
    side.write_text(json.dumps({**rec, "sha256": "a" * 64}))
    assert file_sha256(f, chunk_size=7) == "a" * 64  # sidecar reused while size/mtime match
    f.write_bytes(b"changed")
    assert file_sha256(f) == hashlib.sha256(b"changed").hexdigest()

    def read_only(*args, **kwargs):
        raise PermissionError("read-only file system")

    side.unlink()
    monkeypatch.setattr(Path, "write_text", read_only)
    assert file_sha256(f, write_sidecar=True) == hashlib.sha256(b"changed").hexdigest()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.bin"]


# --- load_state_dict -------------------------------------------------------------------


class _Evil:
    """A custom class: unpickling it would import and run this module's code."""

    def __init__(self):
        self.payload = "arbitrary object"


@pytest.fixture
def torch():
    return pytest.importorskip("torch")


@pytest.fixture
def state_dict(torch):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Conv2d(4, 2, 1)).state_dict()


def _assert_same(torch, got, want):
    assert list(got) == list(want)
    assert all(torch.equal(got[k], want[k]) for k in want)


def test_load_plain_state_dict(torch, state_dict, tmp_path):
    path = tmp_path / "sd.pt"
    torch.save(state_dict, path)
    got = load_state_dict(path, expected_sha256=file_sha256(path))
    assert type(got) is dict
    _assert_same(torch, got, state_dict)


@pytest.mark.parametrize(
    "wrap", [lambda sd: {"model": sd}, lambda sd: {"state_dict": sd, "epoch": 3},
             lambda sd: {"model_state": sd}, lambda sd: {"model": {"state_dict": sd}}],
)
def test_load_unwraps_containers(torch, state_dict, tmp_path, wrap):
    torch.save(wrap(state_dict), tmp_path / "sd.pt")
    _assert_same(torch, load_state_dict(tmp_path / "sd.pt"), state_dict)


def test_load_strips_module_prefix(torch, state_dict, tmp_path):
    torch.save({"model": {f"module.{k}": v for k, v in state_dict.items()}}, tmp_path / "sd.pt")
    _assert_same(torch, load_state_dict(tmp_path / "sd.pt"), state_dict)


def test_load_rejects_sha_mismatch(torch, state_dict, tmp_path):
    path = tmp_path / "sd.pt"
    torch.save(state_dict, path)
    with pytest.raises(CheckpointError, match="expected sha256") as info:
        load_state_dict(path, expected_sha256="f" * 64)
    assert str(path) in str(info.value) and file_sha256(path) in str(info.value)


def test_load_refuses_pickled_code(torch, state_dict, tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": state_dict, "extra": _Evil()}, path)
    with pytest.raises(CheckpointError, match="weights_only") as info:
        load_state_dict(path)
    assert "trust" in str(info.value) and str(path) in str(info.value)


def test_load_truncated_file(torch, state_dict, tmp_path):
    path = tmp_path / "cut.pt"
    torch.save(state_dict, path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="truncated or not a PyTorch checkpoint"):
        load_state_dict(path)
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="truncated"):
        load_state_dict(path)


def test_load_non_state_dict_and_missing(torch, tmp_path):
    torch.save({"epoch": 3, "lr": 0.1}, tmp_path / "meta.pt")
    with pytest.raises(CheckpointError, match="'epoch', 'lr'"):
        load_state_dict(tmp_path / "meta.pt")
    with pytest.raises(CheckpointError, match="nope.pt"):
        load_state_dict(tmp_path / "nope.pt")
