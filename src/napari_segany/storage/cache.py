"""A persistent, resumable on-disk cache of plane embeddings (one zarr v3 group per image).

Embedding a plane is the slow step of SAM/SAM2; prompting is fast. Each plane is embedded once,
written to disk and read from there in this and later sessions; a volume can be embedded ahead
of time (:meth:`EmbeddingCache.precompute`) and the work resumed after a cancel or a crash.

Layout of the group at ``path``
-------------------------------
* attributes ``"napari_segany_cache"``: format version, storage dtype and the
  :func:`cache_signature` (data fingerprint, model, normalisation, tiling). Reopening with any
  other signature raises :class:`CacheMismatchError` naming the parts that differ.
* ``features/<key>``: one array per feature of the model (SAM: ``image_embed``; SAM2 adds
  ``high_res_feats_0`` and ``high_res_feats_1``), shaped ``lead + feature_shape`` (e.g.
  ``(Z, 256, 64, 64)``), one chunk per plane, created when the first plane is computed.
* ``sizes``: int32 ``lead + (4,)``: ``original_size`` (H, W) then ``input_size`` (h, w).
* ``done``: uint8 over ``lead``; set to 1 only AFTER all of a plane's chunks are written, so a
  crash mid-plane leaves 0 and the plane is computed again. zarr writes every chunk to a
  temporary file and renames it into place, so no chunk is ever half written.

``lead`` is the image shape without the two spatial axes (and without the RGB axis when
``rgb=True``); planes are keyed by tuples of leading indices (``()`` for a 2D image).

Features are compressed with Blosc (LZ4, byte shuffle): on SAM2.1-tiny features it writes
a plane in less than half the time of zarr's default Zstandard and stores it slightly smaller.
Caches written with another codec open and read as before (the codec is in the metadata).

Precision: features are stored as float16 by default, halving the disk use. The rounding
(relative error about 5e-4) changes masks negligibly (a few boundary pixels at most); use
``dtype="float32"`` for identical results. :meth:`EmbeddingCache.get` always returns the stored
precision, so a plane segments the same in this session and later ones.

The compute precision of the model (``"fp32"``, ``"bf16"``: :attr:`Backend.signature`) is
recorded, not compared: bf16 and float32 embeddings differ by rounding of the order of the
float16 storage above, so a cache made on a CPU with native bf16 serves one without (and the
reverse). ``precisions`` in the attributes lists the precisions its planes were computed at.

The model part records the checkpoint (``weights``) and, for the SAM and SAM2 backends, the
sha256 of the image-encoder weights (``encoder``). Two signatures that both have ``encoder``
compare it instead of the checkpoint, so a checkpoint from a ``decoder`` fine-tune (or any
checkpoint whose image encoder is unchanged) reuses the base model's caches.

One process should write a cache at a time. This module imports only numpy and zarr.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from .._planes import check_plane, iter_keys
from .._progress import is_cancelled
from ..engine.base import Backend, Embedding
from ..errors import CacheMismatchError

__all__ = ["EmbeddingCache", "CacheMismatchError", "data_fingerprint", "cache_signature"]

ATTRS_KEY = "napari_segany_cache"
FORMAT_VERSION = 1
_ABSENT = object()


def _feature_compressors() -> tuple[Any, ...]:
    from zarr.codecs import BloscCodec

    return (BloscCodec(cname="lz4", clevel=5, shuffle="shuffle"),)


def _split_shape(shape: tuple[int, ...], rgb: bool) -> tuple[int, ...]:
    nsp = 3 if rgb else 2
    if len(shape) < nsp or 0 in shape:
        want = "(..., H, W, C) image (rgb=True)" if rgb else "(..., H, W) image"
        raise ValueError(f"data of shape {shape} is not a non-empty {want}; check the data "
                         "and the rgb= option")
    return shape[:-nsp]


def data_fingerprint(
    data: Any, *, rgb: bool = False, max_planes: int = 8, max_bytes: int = 8 << 20
) -> dict:
    """Identify an image cheaply: shape, dtype and a sha256 of a bounded sample.

    Parameters
    ----------
    data : array-like, shape (..., H, W) or (..., H, W, C) with ``rgb=True``
        numpy, zarr, dask or anything with ``.shape`` and numpy-style ``__getitem__``.
    rgb : bool
        The last axis holds colour channels.
    max_planes : int
        At most this many planes are sampled, evenly spaced over the leading axes (the first
        and last plane always).
    max_bytes : int
        Each sampled plane is strided equally in Y and X so the sample stays under this size.

    Returns
    -------
    dict
        JSON-serialisable: ``shape``, ``dtype``, ``rgb``, ``planes`` (number sampled),
        ``stride`` and ``sha256``. The whole volume is never read, so changes that fall only
        in unsampled planes or between strided pixels are not detected.
    """
    shape = tuple(int(s) for s in data.shape)
    lead = _split_shape(shape, rgb)
    n = math.prod(lead)
    k = max(1, min(int(max_planes), n))
    flat = np.unique(np.round(np.linspace(0, n - 1, k)).astype(np.int64))
    h, w = shape[-3:-1] if rgb else shape[-2:]
    per_px = (shape[-1] if rgb else 1) * np.dtype(getattr(data, "dtype", "float64")).itemsize
    budget = max(1, int(max_bytes) // (len(flat) * per_px))
    lo, hi = 1, max(h, w)  # smallest stride whose strided plane fits the budget
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if -(-h // mid) * -(-w // mid) <= budget else (mid + 1, hi)
    step = slice(None, None, lo)
    dtype = str(np.dtype(data.dtype)) if hasattr(data, "dtype") else None
    digest = hashlib.sha256(json.dumps([shape, bool(rgb), lo, flat.tolist()]).encode())
    for f in flat:
        idx = tuple(int(i) for i in np.unravel_index(int(f), lead)) if lead else ()
        sample = np.asarray(data[idx + (step, step)])
        dtype = dtype or str(sample.dtype)  # array-likes without .dtype
        if sample.dtype.byteorder == ">":
            sample = sample.astype(sample.dtype.newbyteorder("<"))
        digest.update(np.ascontiguousarray(sample).tobytes())
    return {"shape": list(shape), "dtype": dtype, "rgb": bool(rgb), "planes": len(flat),
            "stride": lo, "sha256": digest.hexdigest()}


def cache_signature(
    *, backend: Backend, normalizer: Any, data: Any, rgb: bool = False, tiling: dict | None = None
) -> dict:
    """Everything an embedding depends on, as a JSON-serialisable dict.

    Returns
    -------
    dict
        ``{"fingerprint": data_fingerprint(data), "model": backend.signature(),
        "normalization": normalizer.to_dict(), "tiling": tiling or None, "format": 1}``.
    """
    model = dict(backend.signature())
    encoder = getattr(backend, "encoder_weights_id", None)
    if encoder:
        model["encoder"] = encoder
    return {
        "fingerprint": data_fingerprint(data, rgb=rgb),
        "model": model,
        "normalization": normalizer.to_dict(),
        "tiling": tiling or None,
        "format": FORMAT_VERSION,
    }


def _compared(old: Any, new: Any) -> tuple[Any, Any]:
    """The parts of two signatures that must match on reopening: all but the precision,
    and, where both record the image encoder's weights, those instead of the checkpoint's
    (a checkpoint that changed only the decoder computes the same embeddings; caches made
    before the encoder was recorded still need the same checkpoint)."""
    models = [s.get("model") if isinstance(s, dict) else None for s in (old, new)]
    if not all(isinstance(m, dict) for m in models):
        return old, new
    drop = {"precision"}
    if not all(m.get("encoder") for m in models):
        drop.add("encoder")
    elif models[0]["encoder"] == models[1]["encoder"]:
        drop |= {"weights", "name"}  # a mismatch still names both checkpoints
    return tuple({**s, "model": {k: v for k, v in m.items() if k not in drop}}
                 for s, m in zip((old, new), models, strict=True))


def _fmt(v: Any) -> str:
    if v is _ABSENT:
        return "(absent)"
    if isinstance(v, list):
        return str(tuple(_fmt(x) if isinstance(x, list) else x for x in v))
    if isinstance(v, str) and len(v) == 64:  # a sha256
        return v[:12] + "…"
    return str(v)


def _diff(old: Any, new: Any, where: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """``(part, "field old vs new")`` for every leaf that differs between two signatures."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [d for k in sorted(set(old) | set(new), key=str)
                for d in _diff(old.get(k, _ABSENT), new.get(k, _ABSENT), where + (str(k),))]
    if old == new:
        return []
    field = " ".join(where[1:]) + " " if len(where) > 1 else ""
    return [(where[0] if where else "signature", f"{field}{_fmt(old)} vs {_fmt(new)}")]


def _describe(diffs: list[tuple[str, str]]) -> str:
    parts: dict[str, list[str]] = {}
    for part, text in diffs:
        parts.setdefault(part, []).append(text)
    return "; ".join(f"{part}: {', '.join(texts)}" for part, texts in parts.items())


class EmbeddingCache:
    """Plane embeddings of one image for one model, computed lazily and kept on disk.

    Parameters
    ----------
    path : str or path
        Directory of the zarr v3 group. A new (or empty) directory is created as a cache; an
        existing cache is reopened and must have been made with the same signature.
    backend : Backend
        The model (see :func:`napari_segany.load_model`).
    normalizer : Normalizer
        Intensity mapping applied to each plane before embedding.
    data : array-like, shape (..., H, W) or (..., H, W, C) with ``rgb=True``
        The image; planes are read one at a time.
    rgb : bool
        The last axis of `data` holds colour channels.
    tiling : dict, optional
        JSON-serialisable tiling settings, recorded in the signature.
    dtype : {"float16", "float32"}
        Storage precision of the features of a NEW cache (a reopened cache keeps its own).
    create : bool
        Create the cache when `path` does not exist (else raise FileNotFoundError).

    Attributes
    ----------
    lead_shape : tuple of int
        Shape of the plane-indexing axes.
    stats : dict
        ``computed`` (embeddings computed by the backend) and ``loaded`` (read from disk).

    Raises
    ------
    CacheMismatchError
        `path` holds a cache for other inputs (the message lists what differs) or is no cache.
    """

    #: Write a batch's features in a background thread while the next batch is embedded.
    overlap_writes: bool = True

    def __init__(self, path: str | os.PathLike, *, backend: Backend, normalizer: Any, data: Any,
                 rgb: bool = False, tiling: dict | None = None, dtype: str = "float16",
                 create: bool = True) -> None:
        import zarr

        self.path, self.backend, self.normalizer = Path(path), backend, normalizer
        self.data, self.rgb = data, bool(rgb)
        self.lead_shape = _split_shape(tuple(int(s) for s in data.shape), self.rgb)
        sig = cache_signature(backend=backend, normalizer=normalizer, data=data, rgb=rgb,
                              tiling=tiling)
        self.signature = json.loads(json.dumps(sig))
        self.stats = {"computed": 0, "loaded": 0}
        fix = f"use another cache path, or delete {self.path} to rebuild it"
        if (self.path / "zarr.json").exists():
            try:
                self._group = zarr.open_group(str(self.path), mode="r+", zarr_format=3)
                meta = dict(self._group.attrs[ATTRS_KEY])
            except Exception as exc:
                raise CacheMismatchError(
                    f"{self.path} is not a napari-segany embedding cache ({exc}); {fix}") from exc
            diffs = _diff(*_compared(meta.get("signature"), self.signature))
            if diffs:
                raise CacheMismatchError(
                    f"the embedding cache at {self.path} was made for other inputs (cache vs "
                    f"now): {_describe(diffs)}. Its embeddings would be wrong here: {fix}")
            self.dtype = np.dtype(meta["dtype"])
        elif self.path.exists() and (not self.path.is_dir() or any(self.path.iterdir())):
            raise CacheMismatchError(f"{self.path} exists but is not an embedding cache; {fix}")
        elif not create:
            raise FileNotFoundError(f"no embedding cache at {self.path}; pass create=True")
        else:
            self.dtype = np.dtype(dtype)
            if self.dtype not in (np.float16, np.float32):
                raise ValueError(f"dtype must be 'float16' or 'float32', got {dtype!r}")
            meta = {"format": FORMAT_VERSION, "dtype": self.dtype.name, "signature": self.signature}
            self._group = zarr.open_group(str(self.path), mode="w", zarr_format=3,
                                          attributes={ATTRS_KEY: meta})
        #: Compute precisions this cache's planes were computed at (recorded, not compared).
        self.precisions = list(meta.get("precisions", []))
        lead = self.lead_shape
        self._done = self._array("done", lead, lead, "uint8")
        self._sizes = self._array("sizes", lead + (4,), (1,) * len(lead) + (4,), "int32")

    def _array(self, name: str, shape: tuple[int, ...], chunks: tuple[int, ...], dtype: Any) -> Any:
        if name in self._group:
            arr = self._group[name]
            if tuple(arr.shape) != tuple(shape):
                raise CacheMismatchError(
                    f"{self.path}/{name} has shape {tuple(arr.shape)}, expected {tuple(shape)}; "
                    f"delete {self.path} to rebuild the cache")
            return arr
        compressors = _feature_compressors() if name.startswith("features/") else "auto"
        return self._group.create_array(name, shape=shape, chunks=chunks, dtype=dtype,
                                        fill_value=0, compressors=compressors)

    # -- planes -------------------------------------------------------------------------------
    def _key(self, plane: Any) -> tuple[int, ...]:
        return check_plane(plane, self.lead_shape, error=IndexError)

    def has(self, plane: Any) -> bool:
        """Whether the plane's embedding is complete on disk."""
        return bool(self._done[self._key(plane)])

    def computed_planes(self) -> list[tuple[int, ...]]:
        """Keys of all planes whose embeddings are complete on disk, in C order."""
        done = np.asarray(self._done[...])
        return [tuple(int(i) for i in ix) for ix in np.argwhere(done)] if done.ndim else (
            [()] if done else [])

    def get(self, plane: Any = None) -> Embedding:
        """The plane's embedding: read from disk, or computed, stored and returned.

        Parameters
        ----------
        plane : int, tuple of int or None
            Leading indices (None or ``()`` for a 2D image).
        """
        key = self._key(plane)
        if bool(self._done[key]):
            self.stats["loaded"] += 1
            feats = self._group["features"]
            arrays = {k: np.asarray(feats[k][key + (Ellipsis,)])[None].astype(np.float32)
                      for k in feats.array_keys()}
            s = [int(v) for v in np.asarray(self._sizes[key + (Ellipsis,)])]
            return self.backend.embedding_from_numpy(arrays, original_size=s[:2],
                                                     input_size=s[2:])
        emb = self.backend.embed(self._plane_rgb(key))
        self.stats["computed"] += 1
        stored = self._write(key, emb, keep=True)
        return self.backend.embedding_from_numpy(
            stored, original_size=emb.original_size, input_size=emb.input_size)

    def _plane_rgb(self, key: tuple[int, ...]) -> np.ndarray:
        return self.normalizer(np.asarray(self.data[key]))

    def _write(self, key: tuple[int, ...], emb: Embedding, *, keep: bool = False
               ) -> dict[str, np.ndarray]:
        """Store one plane (features, sizes, then ``done``).

        With `keep`, return the features as stored (rounded to the cache dtype, as float32),
        so a plane computed now and one read back later give the same predictions.
        """
        try:
            return self._write_plane(key, emb, keep)
        except OSError as exc:  # full disk, read-only file system: name the cache
            msg = (f"could not write the embedding of plane {key} to the cache {self.path}: "
                   f"{exc.strerror or exc} (check free disk space and write permission; "
                   "the plane is not marked done and will be recomputed)")
            raise (OSError(msg) if exc.errno is None else OSError(exc.errno, msg)) from exc

    def _write_plane(self, key: tuple[int, ...], emb: Embedding, keep: bool
                     ) -> dict[str, np.ndarray]:
        precision = self.signature["model"].get("precision")
        if precision is not None and precision not in self.precisions:  # before its 1st plane
            self.precisions.append(precision)
            self._group.attrs[ATTRS_KEY] = {**dict(self._group.attrs[ATTRS_KEY]),
                                            "precisions": list(self.precisions)}
        stored: dict[str, np.ndarray] = {}
        for name, feat in emb.to_numpy().items():
            feat = feat[0] if feat.ndim and feat.shape[0] == 1 else feat
            lead = (1,) * len(self.lead_shape)
            arr = self._array(f"features/{name}", self.lead_shape + feat.shape,
                              lead + feat.shape, self.dtype)
            value = feat.astype(self.dtype)
            if not np.all(np.isfinite(value)) and np.all(np.isfinite(feat)):
                raise ValueError(f"feature {name!r} of plane {key} overflows {self.dtype}; "
                                 "create the cache with dtype='float32'")
            arr[key + (Ellipsis,)] = value
            if keep:
                stored[name] = value[None].astype(np.float32)
        self._sizes[key + (Ellipsis,)] = [*emb.original_size, *emb.input_size]
        self._done[key] = 1  # last: only now is the plane complete
        return stored

    def precompute(self, planes: Iterable[Any] | None = None, *, batch_size: int = 1,
                   progress: Callable[[int, int], Any] | None = None,
                   cancel: Any = None) -> int:
        """Compute and store every plane (or the given ones) not yet cached.

        Planes are embedded in order, `batch_size` per ``backend.embed_batch`` call, so at most
        `batch_size` planes and their features are in memory at once. Planes already on disk
        are skipped, so calling this again resumes an interrupted run.

        Parameters
        ----------
        planes : iterable of plane keys, optional
            Default: all planes in C order.
        batch_size : int
            Planes per forward pass (larger is faster on a GPU, uses more memory).
        progress : callable, optional
            ``progress(done, total)`` with ``total`` the number of planes to compute now;
            called with 0 first and after every batch is embedded (its write to disk
            overlaps the next batch; all writes are complete when this method returns).
        cancel : threading.Event or callable, optional
            Checked before each batch; once set (or returning True) no further batch starts.
            Cancelling raises nothing: the finished planes stay cached and the count is returned.

        Returns
        -------
        int
            Number of planes computed by this call.
        """
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
        keys = list(iter_keys(self.lead_shape)) if planes is None else [
            self._key(p) for p in planes]
        done = np.asarray(self._done[...])
        todo = list(dict.fromkeys(k for k in keys if not done[k]))
        total, n = len(todo), 0
        if progress is not None:
            progress(0, total)
        if not total:
            return 0

        def write(batch: list[tuple[int, ...]], embs: list[Embedding]) -> None:
            for k, emb in zip(batch, embs, strict=True):
                self._write(k, emb)  # features, sizes, then the plane's done flag

        # The writes of one batch overlap the embedding of the next (one writer thread,
        # planes written in order); every write has finished (or raised) before returning.
        from concurrent.futures import ThreadPoolExecutor

        pending = None
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="segany-cache") as pool:
            try:
                for start in range(0, total, int(batch_size)):
                    if is_cancelled(cancel):
                        break
                    batch = todo[start:start + int(batch_size)]
                    embs = self.backend.embed_batch([self._plane_rgb(k) for k in batch])
                    if pending is not None:
                        pending.result()  # a failed write stops here, naming the plane
                    pending = (pool.submit(write, batch, embs) if self.overlap_writes
                               else write(batch, embs))
                    self.stats["computed"] += len(batch)
                    n += len(batch)
                    if progress is not None:
                        progress(n, total)
            finally:
                if pending is not None:
                    pending.result()
        return n

    def __repr__(self) -> str:
        return (f"<EmbeddingCache {self.path} planes={len(self.computed_planes())}/"
                f"{math.prod(self.lead_shape)} {self.dtype.name}>")
