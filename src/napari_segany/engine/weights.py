"""Obtain, verify and safely load model checkpoints.

Downloads are resumable and verified (SHA-256) before they appear in the cache; loading
uses ``torch.load(..., weights_only=True)`` so a checkpoint cannot run code.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import pickle
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..errors import CheckpointError, DownloadError

__all__ = [
    "ENV_CACHE_DIR", "ENV_OFFLINE", "CheckpointError", "DownloadError",
    "default_cache_dir", "file_sha256", "fetch_checkpoint", "load_state_dict",
]  # fmt: skip

ENV_CACHE_DIR = "NAPARI_SEGANY_CACHE_DIR"
ENV_OFFLINE = "NAPARI_SEGANY_OFFLINE"

_TRUE = {"1", "true", "yes"}
_WRAPPER_KEYS = ("model", "state_dict", "model_state")
_CHUNK = 1 << 20


def default_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """Return the directory where downloaded checkpoints are kept (never creates it).

    Parameters
    ----------
    cache_dir : str or path-like, optional
        Explicit directory. Otherwise ``$NAPARI_SEGANY_CACHE_DIR``, else
        ``$XDG_CACHE_HOME/napari-segany/models``, else ``~/.cache/napari-segany/models``.

    Returns
    -------
    pathlib.Path
    """
    if cache_dir is not None and str(cache_dir) != "":
        return Path(cache_dir).expanduser()
    if os.environ.get(ENV_CACHE_DIR):
        return Path(os.environ[ENV_CACHE_DIR]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "napari-segany" / "models"
    return Path.home() / ".cache" / "napari-segany" / "models"


def _write_sidecar(path: Path, digest: str) -> None:
    """Record ``digest`` for ``path`` in ``<path>.sha256``; skip if not writable."""
    side = path.with_name(path.name + ".sha256")
    tmp = side.with_name(side.name + f".{os.getpid()}.tmp")
    try:
        st = path.stat()
        rec = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}
        tmp.write_text(json.dumps(rec))
        os.replace(tmp, side)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def _hasher(path: Path, chunk_size: int = _CHUNK):
    """Return a sha256 object fed with the contents of ``path``."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk_size):
            h.update(block)
    return h


def file_sha256(
    path: str | os.PathLike, *, chunk_size: int = _CHUNK, write_sidecar: bool = False
) -> str:
    """Return the hex SHA-256 of a file, reusing a valid ``<file>.sha256`` sidecar.

    Parameters
    ----------
    path : str or path-like
        File to hash.
    chunk_size : int, optional
        Bytes read at a time.
    write_sidecar : bool, optional
        Store ``{size, mtime_ns, sha256}`` in ``<file>.sha256`` so that a large file
        is not re-hashed next time (skipped when the directory is read-only). A
        sidecar is trusted only while the file's size and mtime are unchanged.

    Returns
    -------
    str
        Lower-case hexadecimal digest.
    """
    path = Path(path)
    st = path.stat()
    try:
        rec = json.loads(path.with_name(path.name + ".sha256").read_text())
        if (rec["size"], rec["mtime_ns"]) == (st.st_size, st.st_mtime_ns) and re.fullmatch(
            r"[0-9a-f]{64}", rec["sha256"]
        ):
            return rec["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    digest = _hasher(path, chunk_size).hexdigest()
    if write_sidecar:
        _write_sidecar(path, digest)
    return digest


def _check_sha(sha256: str) -> str:
    if not isinstance(sha256, str) or not re.fullmatch(r"[0-9a-fA-F]{64}", sha256.strip()):
        raise ValueError(f"sha256 must be a 64-character hex digest, got {sha256!r}")
    return sha256.strip().lower()


def _how_to_work_offline(name: str, url: str, target: Path) -> str:
    return (
        f"To work without network access, download {url} yourself and place it at "
        f"{target}, or pass a local checkpoint file instead of {name!r}: "
        f"checkpoint=PATH in Python, --checkpoint PATH on the command line. "
        f"The cache folder can be changed with ${ENV_CACHE_DIR}."
    )


def fetch_checkpoint(
    url: str,
    *,
    sha256: str,
    filename: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    offline: bool | None = None,
    progress: Callable[[int, int | None], Any] | None = None,
    timeout: float = 60.0,
) -> Path:
    """Return the path of a verified checkpoint, downloading it if needed.

    Parameters
    ----------
    url : str
        ``http(s)://`` or ``file://`` address of the checkpoint.
    sha256 : str
        Expected hex SHA-256 of the file.
    filename, cache_dir : optional
        Name in the cache (default: last URL path component) and cache folder
        (see :func:`default_cache_dir`).
    offline : bool, optional
        Never touch the network. Defaults to ``$NAPARI_SEGANY_OFFLINE`` (1/true/yes).
    progress : callable, optional
        Called as ``progress(done_bytes, total_bytes_or_None)`` while downloading.
    timeout : float, optional
        Socket timeout in seconds.

    Returns
    -------
    pathlib.Path
        The verified file in the cache (no network access when it is already there).

    Raises
    ------
    CheckpointError
        The cached or downloaded file does not have the expected hash.
    DownloadError
        The file is missing and could not be downloaded; a partial download is
        kept as ``<file>.part`` and resumed (HTTP Range) next time.
    """
    expected = _check_sha(sha256)
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in ("http", "https", "file"):
        raise ValueError(f"only http(s):// and file:// URLs are supported, got {url!r}")
    name = filename or urllib.parse.unquote(urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1])
    if not name or name in (".", "..") or "/" in name or os.sep in name:
        raise ValueError(f"cannot derive a file name from {url!r}; pass filename='model.pt'")
    target = default_cache_dir(cache_dir) / name
    if target.is_file():
        actual = file_sha256(target, write_sidecar=True)
        if actual != expected:
            raise CheckpointError(
                f"cached checkpoint {target} is corrupt or has been modified: expected "
                f"sha256 {expected}, found {actual}. Delete it to download it again."
            )
        return target
    if offline is None:
        offline = os.environ.get(ENV_OFFLINE, "").strip().lower() in _TRUE
    if offline:
        raise DownloadError(
            f"model file {name} is not in the cache and offline mode is on "
            f"(offline=True or ${ENV_OFFLINE}). " + _how_to_work_offline(name, url, target)
        )
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(
            f"cannot create the cache folder {target.parent}: {exc}. Pass cache_dir= or set "
            f"${ENV_CACHE_DIR} to a writable folder."
        ) from exc
    part = target.with_name(target.name + ".part")
    try:
        actual = _download(url, part, progress=progress, timeout=timeout)
    except (OSError, http.client.HTTPException) as exc:
        reason = f"HTTP {exc.code} {exc.reason}" if isinstance(exc, urllib.error.HTTPError) else exc
        raise DownloadError(
            f"could not download model file {name} from {url}: {reason}. "
            + (f"The partial download is kept in {part} and resumed next time. "
               if part.exists() else "")
            + _how_to_work_offline(name, url, target)
        ) from exc
    if actual != expected:
        part.unlink(missing_ok=True)
        raise CheckpointError(
            f"downloaded {url} does not match its expected checksum: expected sha256 "
            f"{expected}, got {actual}. The download was discarded; the URL or the "
            f"expected hash may be wrong, or the file was altered in transit."
        )
    os.replace(part, target)
    _write_sidecar(target, actual)
    return target


def _download(url: str, part: Path, *, progress, timeout: float) -> str:
    """Stream ``url`` into ``part``, resuming a partial file when possible; return its sha256."""
    while True:
        done = part.stat().st_size if part.is_file() else 0
        request = urllib.request.Request(url, headers={"User-Agent": "napari-segany"})
        if done:
            request.add_header("Range", f"bytes={done}-")
        try:
            resp = urllib.request.urlopen(request, timeout=timeout)
        except urllib.error.HTTPError as exc:
            if exc.code != 416 or not done:
                raise
            exc.close()
            part.unlink()  # range not satisfiable: the partial file is useless, start over
            continue
        with resp:
            length = resp.headers.get("Content-Length", "")
            length = int(length) if length.isdigit() else None
            rng = re.fullmatch(r"bytes (\d+)-\d+/(\d+|\*)", resp.headers.get("Content-Range", ""))
            if done and getattr(resp, "status", None) == 206:
                if rng is not None and int(rng[1]) != done:
                    part.unlink()  # the server sent another range than asked: start over
                    continue
                mode, h = "ab", _hasher(part)
                total = int(rng[2]) if rng and rng[2] != "*" else None
                total = total if total is not None or length is None else done + length
            else:  # full body (200, file:// or no partial file): start from zero
                mode, h, done, total = "wb", hashlib.sha256(), 0, length
            with open(part, mode) as f:
                if progress is not None:
                    progress(done, total)
                while block := resp.read(_CHUNK):
                    f.write(block)
                    h.update(block)
                    done += len(block)
                    if progress is not None:
                        progress(done, total)
        if total is not None and done < total:
            raise http.client.IncompleteRead(b"", total - done)
        return h.hexdigest()


def _describe(obj: Any) -> str:
    if isinstance(obj, Mapping):
        keys = [repr(k) for k in list(obj)[:10]]
        more = ", ..." if len(obj) > 10 else ""
        return f"a {type(obj).__name__} with top-level keys [{', '.join(keys)}{more}]"
    return f"an object of type {type(obj).__module__}.{type(obj).__qualname__}"


def load_state_dict(
    path: str | os.PathLike, *, expected_sha256: str | None = None, map_location: Any = "cpu"
) -> dict:
    """Load a plain ``{name: tensor}`` state dict without executing code.

    Parameters
    ----------
    path : str or path-like
        Checkpoint written by ``torch.save``.
    expected_sha256 : str, optional
        Verify the file against this hex SHA-256 before loading.
    map_location : optional
        Passed to :func:`torch.load`.

    Returns
    -------
    dict
        Flat mapping of parameter names to tensors. Containers such as
        ``{"model": sd}``, ``{"state_dict": sd}`` and ``{"model_state": sd}``
        (also nested once) are unwrapped, and a ``module.`` prefix shared by
        all keys is removed.

    Raises
    ------
    CheckpointError
        Missing, mismatching, unreadable or unsafe file, or not a state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}. Check the path.")
    if expected_sha256 is not None:
        expected = _check_sha(expected_sha256)
        actual = file_sha256(path)
        if actual != expected:
            raise CheckpointError(
                f"checkpoint {path} does not match its expected checksum: expected sha256 "
                f"{expected}, found {actual}. The file is corrupt or not the expected model."
            )
    import torch

    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError, KeyError...
        msg = str(exc)
        unsafe = (isinstance(exc, (pickle.UnpicklingError, RuntimeError))
                  and re.search(r"weights.only", msg, re.IGNORECASE)
                  and not re.search(r"Unsupported operand", msg))  # garbage, not objects
        if not unsafe:
            first = (msg.strip().splitlines() or [""])[0].rstrip(".")
            if re.search(r"Unsupported operand", msg):
                first = "its bytes are not a checkpoint torch can parse"
            if len(first) > 200:
                first = first[:199] + "…"
            raise CheckpointError(
                f"cannot read checkpoint {path} (truncated or not a PyTorch checkpoint): "
                f"{type(exc).__name__}: {first}. If it was downloaded, delete it and download "
                f"it again; if it is your own file, save it again from the model."
            ) from exc
        why = re.search(r"Unsupported global: GLOBAL \S+", msg)
        raise CheckpointError(
            f"refusing to load {path}: it contains Python objects other than tensors "
            f"(weights_only=True{'; ' + why[0] if why else ''}). Such a file can run "
            f"arbitrary code; load only checkpoints you trust, and re-save it as a plain "
            f"state dict (torch.save(model.state_dict(), path))."
        ) from exc
    found = _describe(obj)
    for _ in range(2):
        if isinstance(obj, Mapping):
            inner = next((obj[k] for k in _WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
            if inner is not None:
                obj = inner
    if not (
        isinstance(obj, Mapping)
        and obj
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    ):
        raise CheckpointError(
            f"{path} is not a state dict of tensors: found {found}"
            + (f", unwrapped to {_describe(obj)}" if _describe(obj) != found else "")
            + ". Expected {name: tensor}, optionally inside 'model', 'state_dict' or "
            "'model_state'."
        )
    if all(k.startswith("module.") for k in obj):
        return {k[len("module.") :]: v for k, v in obj.items()}
    return dict(obj)
