"""What each worker holds: the model, loaded once per worker process, and open outputs.

:class:`WorkerModel` says which model to build (a registry name or a checkpoint, device,
random weights, or any picklable ``factory()`` returning a backend). :func:`worker_plugin`
wraps it in a ``distributed.WorkerPlugin``: registered once with the client, it builds the
model when each worker starts (and on workers that join later or are restarted), so a task
never loads a model. Tasks reach it with :func:`worker_state`; outside a worker (a shard
of a job array run without a scheduler) the same state lives in the process.

A model that cannot be built on a worker (an unreadable or corrupt checkpoint, weights
not in the read-only cache, an unknown name) is reported once by
:func:`check_workers` as a :class:`~napari_segany.errors.ClusterError` naming the worker.
"""

from __future__ import annotations

import hashlib
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..engine.registry import load_model
from ..errors import ClusterError

__all__ = ["WorkerModel", "WorkerState", "worker_plugin", "worker_state", "check_workers",
           "PLUGIN_NAME"]

PLUGIN_NAME = "napari-segany-model"


@dataclass(frozen=True, eq=False)
class WorkerModel:
    """The model every worker builds (the arguments of :func:`~napari_segany.load_model`).

    Attributes
    ----------
    name : str, optional
        Registry name (default model when None and no checkpoint).
    checkpoint : path, optional
        Weights file, read on the worker (a shared file system path).
    arch, device, random_weights, cache_dir, precision
        As for :func:`~napari_segany.load_model`; ``cache_dir`` may be a read-only shared
        weights cache.
    factory : callable, optional
        ``factory() -> Backend`` instead of the registry (third-party and test backends);
        must be picklable.
    """

    name: str | None = None
    checkpoint: str | None = None
    arch: str | None = None
    device: str = "auto"
    random_weights: bool = False
    cache_dir: str | None = None
    precision: str | None = None
    factory: Callable[[], Any] | None = None

    def _key(self) -> tuple:
        """What identifies the model (a factory by its pickled bytes, so that copies sent
        to a worker name the same model)."""
        fac = None
        if self.factory is not None:
            import cloudpickle

            fac = hashlib.sha256(cloudpickle.dumps(self.factory)).hexdigest()
        return (self.name, self.checkpoint, self.arch, self.device, self.random_weights,
                self.cache_dir, self.precision, fac)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WorkerModel) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def build(self) -> Any:
        if self.factory is not None:
            return self.factory()
        if self.checkpoint is not None and not os.access(self.checkpoint, os.R_OK):
            raise ClusterError(f"the model file {self.checkpoint} cannot be read on this "
                               "worker: put it on a file system every worker mounts, "
                               "readable by the worker's user")
        return load_model(self.name, checkpoint=None if self.checkpoint is None
                          else Path(self.checkpoint), arch=self.arch, device=self.device,
                          random_weights=self.random_weights, precision=self.precision,
                          cache_dir=None if self.cache_dir is None else Path(self.cache_dir))

    def describe(self) -> str:
        if self.factory is not None:
            return getattr(self.factory, "__name__", repr(self.factory))
        what = self.checkpoint or self.name or "the default model"
        return f"{what}{' (random weights)' if self.random_weights else ''}"


class WorkerState:
    """A worker's model (built once) and the arrays its tasks keep open (inputs, scratch
    arrays and outputs of a block run, by name)."""

    def __init__(self, model: WorkerModel) -> None:
        self.model = model
        self._backend: Any = None
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        self.images: dict[str, Any] = {}

    def backend(self) -> Any:
        """The model (built at the first call; a build error is raised at every call)."""
        with self._lock:
            if self._backend is None and self._error is None:
                try:
                    self._backend = self.model.build()
                except BaseException as exc:  # kept: every task then says the same
                    self._error = exc
            if self._error is not None:
                raise ClusterError(f"the model {self.model.describe()} cannot be built on "
                                   f"worker {_where()}: {self._error}") from self._error
            return self._backend

    def close(self) -> None:
        self.images.clear()
        self._backend = None


def _current_worker() -> Any:
    """The dask worker running this code, or None (dask not even imported: no worker)."""
    if "distributed" not in sys.modules:
        return None
    from distributed import get_worker

    try:
        return get_worker()
    except ValueError:
        return None


def _where() -> str:
    worker = _current_worker()
    return str(worker.address) if worker is not None else f"process {os.getpid()}"


#: The state of this process when it runs tasks outside a worker (job-array shards).
_LOCAL: dict[WorkerModel, WorkerState] = {}


def worker_plugin(model: WorkerModel) -> Any:
    """A ``distributed.WorkerPlugin`` building ``model`` once on every worker."""
    from distributed.diagnostics.plugin import WorkerPlugin

    class SeganyModelPlugin(WorkerPlugin):
        name = PLUGIN_NAME
        idempotent = False

        def __init__(self, model: WorkerModel) -> None:
            self.model = model
            self.state: WorkerState | None = None

        def setup(self, worker: Any) -> None:
            self.state = WorkerState(self.model)
            try:
                self.state.backend()
            except ClusterError:
                pass  # kept in the state: check_workers and every task report it

        def teardown(self, worker: Any) -> None:
            if self.state is not None:
                self.state.close()

    return SeganyModelPlugin(model)


def worker_state(model: WorkerModel) -> WorkerState:
    """The state of the worker running this task (or of this process, outside workers)."""
    worker = _current_worker()
    if worker is not None:
        plugin = worker.plugins.get(PLUGIN_NAME)
        state = getattr(plugin, "state", None)
        if state is not None and state.model == model:
            return state
    return _LOCAL.setdefault(model, WorkerState(model))


def _probe(model: WorkerModel) -> dict[str, Any]:
    backend = worker_state(model).backend()
    return {"image_size": int(getattr(backend, "image_size", 1024)),
            "model_id": str(getattr(backend, "model_id", type(backend).__name__)),
            "name": str(getattr(backend, "name", type(backend).__name__)),
            "device": str(getattr(backend, "device", "cpu"))}


def check_workers(client: Any, model: WorkerModel) -> dict[str, Any]:
    """Register the model plugin and check that every worker built the model.

    Returns the model's ``image_size``, ``model_id``, ``name`` and ``device`` (as a
    worker sees them). Raises :class:`ClusterError` naming a worker that could not build
    it, or when the cluster has no workers.
    """
    if client is None:
        return _probe(model)
    client.register_plugin(worker_plugin(model))
    workers = list(client.scheduler_info(n_workers=-1).get("workers", {}))
    if not workers:
        raise ClusterError(f"the cluster at {client.scheduler.address} has no workers: start "
                           "some ('dask worker ADDRESS') and run again")
    try:
        infos = client.run(lambda: _safe_probe(model))
    except Exception as exc:
        raise ClusterError(f"could not ask the workers for the model: {exc}") from exc
    for address, info in sorted(infos.items()):
        if "error" in info:
            raise ClusterError(f"worker {address}: {info['error']}")
    return next(iter(infos.values()))


def _safe_probe(model: WorkerModel) -> dict[str, Any]:
    try:
        return _probe(model)
    except ClusterError as exc:
        return {"error": str(exc)}
