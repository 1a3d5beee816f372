"""Scale out on Dask: many images, or one image too large for one process, on a cluster.

Two kinds of run share one cluster, one model per worker and one record of finished work:

* **Batches** (:func:`run_batch`): ``embed``, ``auto``, ``boxes`` or ``propagate`` on every
  image of a folder, a glob or a CSV manifest (:func:`collect_inputs`), one task per image,
  each image at its own size into its own output;
* **Blocks** (:func:`segment_blocks`): segment everything on one large plane or volume cut
  into blocks; the blocks' objects are merged across block borders by a relabel table
  (connected components) applied by one rewrite pass per output chunk.

Where they run (:func:`open_cluster`): a ``distributed.LocalCluster`` started for the run
(workers = cores, one thread each, a memory limit per worker), or an existing scheduler
(``scheduler="tcp://..."``, a scheduler file); ``client=None`` runs the same tasks in this
process. Job arrays without a scheduler: ``shard_of=(i, n)`` for each array task, then
:func:`merge_batch` / ``segment_blocks(..., merge=True)``.

Example::

    from napari_segany.distributed import (JobOptions, WorkerModel, collect_inputs,
                                           open_cluster, run_batch)

    items = collect_inputs("plates/*.tif", out_dir="labels")
    with open_cluster(n_workers=4) as cluster:
        result = run_batch(items, options=JobOptions(mode="auto"),
                           model=WorkerModel("sam2.1_hiera_tiny"), client=cluster.client)

dask.distributed is imported only when a cluster is opened or a task runs; see
``docs/scale-out.md``.
"""

from ..errors import BatchError, ClusterError
from .batch import BatchResult, merge_batch, run_batch, write_summary
from .blocks import BlockPlan
from .cluster import Cluster, open_cluster
from .images import MODES, JobOptions
from .inputs import BatchItem, collect_inputs, parse_shard, shard
from .runfolder import run_folder_for
from .volume import BlockResult, segment_blocks
from .worker import WorkerModel, check_workers, worker_plugin

__all__ = ["BatchError", "ClusterError", "BatchItem", "BatchResult", "BlockPlan",
           "BlockResult", "Cluster", "JobOptions", "MODES", "WorkerModel", "check_workers",
           "collect_inputs", "merge_batch", "open_cluster", "parse_shard", "run_batch",
           "run_folder_for", "segment_blocks", "shard", "worker_plugin", "write_summary"]
