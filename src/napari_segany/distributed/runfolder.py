"""The run folder of a block run: what the run is, its scratch arrays, what has finished.

Beside the output (``OUT.zarr.run/`` by default)::

    run.json        the run: image fingerprint, model, settings, tiling, output chunks
    tiles.zarr      uint32 (planes, tiles, T, T): every block's own labels (one chunk each)
    stitched.zarr   uint64 (planes, H, W), chunked like the output: merged gids per chunk
    A/ B/ C/ L/ D/  one record per finished task (block labels, stitching pairs, chunk
                    objects, linking pairs, chunk written), each written whole (a
                    temporary file, then a rename)

A task is done exactly when its record exists, so a rerun (after an interrupt, a crash, or
in the merge step of a job array) runs only what has none. The scratch arrays are not
labels stores: nobody opens them but the run, and each of their chunks is written by one
task. The folder is removed once the output is complete (``keep=True`` keeps it).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BatchError
from ..storage.atomic import remove

__all__ = ["RunFolder", "run_folder_for"]

FORMAT = 1
PHASES = ("A", "B", "C", "L", "D")


def run_folder_for(out: str | os.PathLike) -> Path:
    """The default run folder of an output store."""
    out = Path(out)
    return out.with_name(out.name + ".run")


def _atomic_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


class RunFolder:
    """A block run's folder (see the module notes).

    Parameters
    ----------
    path : path
    meta : dict
        The run's description; an existing folder must hold the same (else
        :class:`~napari_segany.errors.BatchError` naming what differs).
    arrays : dict, optional
        ``name -> (shape, chunks, dtype)`` of the scratch arrays, created if missing.
    """

    def __init__(self, path: str | os.PathLike, meta: dict[str, Any] | None = None, *,
                 arrays: dict[str, tuple] | None = None) -> None:
        self.path = Path(path)
        if meta is None:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / ".lock", "a+") as fh:  # shards of a job array start together
            fcntl.flock(fh, fcntl.LOCK_EX)
            file = self.path / "run.json"
            want = json.loads(json.dumps({"format": FORMAT, **meta}, default=str))
            if file.exists():
                have = json.loads(file.read_text())
                diff = sorted(k for k in set(have) | set(want) if have.get(k) != want.get(k))
                if diff:
                    raise BatchError(
                        f"the run folder {self.path} belongs to another run (it differs in "
                        f"{', '.join(diff)}); remove it to start again, or give the same "
                        "options to resume it")
            else:
                _atomic_bytes(file, json.dumps(want, indent=1).encode())
            for name, (shape, chunks, dtype) in (arrays or {}).items():
                self._create(name, shape, chunks, dtype)
            for ph in PHASES:
                (self.path / ph).mkdir(exist_ok=True)

    def _create(self, name: str, shape, chunks, dtype) -> None:
        import zarr

        where = self.path / name
        if (where / "zarr.json").exists():
            return
        zarr.create_array(store=str(where), shape=tuple(shape), chunks=tuple(chunks),
                          dtype=dtype, fill_value=0, zarr_format=3)

    def array(self, name: str) -> Any:
        import zarr

        return zarr.open_array(str(self.path / name), mode="r+")

    # -- records -------------------------------------------------------------------------------
    def _file(self, phase: str, name: str) -> Path:
        return self.path / phase / f"{name}.npz"

    def has(self, phase: str, name: str) -> bool:
        return self._file(phase, name).exists()

    def done(self, phase: str) -> set[str]:
        folder = self.path / phase
        return {p.name[:-4] for p in folder.glob("*.npz")} if folder.is_dir() else set()

    def write(self, phase: str, name: str, **arrays: Any) -> None:
        import io

        buf = io.BytesIO()
        np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
        _atomic_bytes(self._file(phase, name), buf.getvalue())

    def read(self, phase: str, name: str) -> dict[str, np.ndarray]:
        with np.load(self._file(phase, name)) as f:
            return {k: f[k] for k in f.files}

    def remove(self) -> None:
        remove(self.path)
