"""Where a distributed run computes: an embedded ``LocalCluster`` or an existing scheduler.

:func:`open_cluster` is a context manager yielding a :class:`Cluster` (a connected
``distributed.Client``, the dashboard address, how many workers). Without an address it
starts a ``distributed.LocalCluster`` on this machine (one worker process per core, one
thread each, a memory limit per worker) and shuts it down at the end; with
``scheduler="tcp://host:8786"`` or ``scheduler_file=`` it connects to a cluster someone
else started (``dask scheduler`` / ``dask worker``, ``dask-jobqueue``, a Kubernetes
operator) and leaves it running.

An address that does not answer is a :class:`~napari_segany.errors.ClusterError` within
``timeout`` seconds, never a hang. dask.distributed is imported here only when a cluster is
opened (``import napari_segany`` stays light).
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ClusterError

__all__ = ["Cluster", "open_cluster", "DEFAULT_TIMEOUT"]

#: Seconds to wait for a scheduler (and, on a local cluster, for its workers).
DEFAULT_TIMEOUT = 10.0


@dataclass
class Cluster:
    """A connected cluster.

    Attributes
    ----------
    client : distributed.Client
    address : str
        The scheduler's address.
    dashboard : str or None
        The dashboard's address (None when it is off, or bokeh is not installed).
    local : bool
        Started by :func:`open_cluster` (and shut down by it).
    """

    client: Any
    address: str
    dashboard: str | None
    local: bool

    @property
    def n_workers(self) -> int:
        return len(self.client.scheduler_info(n_workers=-1).get("workers", {}))

    def describe(self) -> str:
        """One line: where, how many workers, the dashboard."""
        kind = "local cluster" if self.local else "cluster"
        dash = f"; dashboard {self.dashboard}" if self.dashboard else ""
        return f"{kind} {self.address}: {self.n_workers} worker(s){dash}"


def _dashboard(client: Any) -> str | None:
    if importlib.util.find_spec("bokeh") is None:
        return None
    try:
        link = client.dashboard_link
    except Exception:  # no dashboard service (disabled by the cluster's owner)
        return None
    return link or None


@contextlib.contextmanager
def open_cluster(
    *,
    scheduler: str | None = None,
    scheduler_file: str | os.PathLike | None = None,
    n_workers: int | None = None,
    threads: int = 1,
    memory_limit: str | float | None = "auto",
    dashboard: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
) -> Iterator[Cluster]:
    """Connect to a cluster, or start one on this machine, for the ``with`` block.

    Parameters
    ----------
    scheduler : str, optional
        Address of a running scheduler (``tcp://host:8786``).
    scheduler_file : path, optional
        A scheduler file written by ``dask scheduler --scheduler-file`` (shared file
        systems on HPC).
    n_workers : int, optional
        Worker processes of a local cluster (default: the CPU cores available).
    threads : int
        Threads per local worker, and torch threads in it (``OMP_NUM_THREADS``): 1 by
        default, so that workers = cores do not oversubscribe the CPUs.
    memory_limit : str or float or None
        Per local worker (``"4GiB"``, bytes, ``"auto"``: the machine's memory divided
        among the workers; None: no limit). A worker beyond it is restarted and its task
        retried elsewhere.
    dashboard : bool
        Serve the dashboard of a local cluster (on port 8787, or a free one).
    timeout : float
        Seconds to wait for the scheduler before :class:`ClusterError`.

    Yields
    ------
    Cluster
    """
    if scheduler and scheduler_file:
        raise ClusterError("give a scheduler address or a scheduler file, not both")
    from distributed import Client

    if scheduler or scheduler_file:
        if scheduler_file is not None and not Path(scheduler_file).is_file():
            raise ClusterError(f"no scheduler file at {scheduler_file}: start the scheduler "
                               "with 'dask scheduler --scheduler-file FILE' first, or check "
                               "the path")
        where = scheduler or f"the scheduler of {scheduler_file}"
        try:
            client = Client(scheduler, scheduler_file=None if scheduler_file is None
                            else str(scheduler_file), timeout=f"{float(timeout)}s",
                            set_as_default=False)
        except (OSError, TimeoutError, ValueError) as exc:
            raise ClusterError(
                f"cannot reach the Dask scheduler at {where} within {timeout:g} s ({exc}); "
                "check the address and that the scheduler runs, or leave out --scheduler "
                "to run on a local cluster") from None
        try:
            yield Cluster(client, client.scheduler.address, _dashboard(client), local=False)
        finally:
            client.close()
        return
    cluster = _local_cluster(n_workers, threads, memory_limit, dashboard, timeout)
    try:
        client = Client(cluster, set_as_default=False, timeout=f"{float(timeout)}s")
        try:
            yield Cluster(client, cluster.scheduler_address,
                          _dashboard(client) if dashboard else None, local=True)
        finally:
            client.close()
    finally:
        cluster.close()


def _local_cluster(n_workers: int | None, threads: int, memory_limit: Any, dashboard: bool,
                   timeout: float) -> Any:
    from distributed import LocalCluster

    n = int(n_workers) if n_workers else max(1, len(os.sched_getaffinity(0))
                                               if hasattr(os, "sched_getaffinity")
                                               else (os.cpu_count() or 1))
    if n < 1 or int(threads) < 1:
        raise ClusterError(f"a local cluster needs >= 1 worker and >= 1 thread, got {n} "
                           f"worker(s) of {threads} thread(s)")
    env = {k: str(int(threads)) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                          "OPENBLAS_NUM_THREADS")}
    try:
        return LocalCluster(n_workers=n, threads_per_worker=int(threads), processes=True,
                            memory_limit=memory_limit, silence_logs=logging.ERROR,
                            dashboard_address=":8787" if dashboard else None,
                            env=env, death_timeout=float(timeout) * 3)
    except Exception as exc:  # ports, memory limits the machine cannot give, ...
        raise ClusterError(f"could not start a local Dask cluster of {n} worker(s): {exc}") \
            from exc
