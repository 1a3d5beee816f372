"""Many inputs on a cluster: one task per image, outputs recorded, reruns skip finished work.

:func:`run_batch` submits one task per :class:`~.inputs.BatchItem` (an image and its
output) to a ``distributed.Client`` (or runs them in this process with ``client=None``).
Each worker builds the model once (:mod:`.worker`) and runs
:func:`~.images.run_image`. Outputs already finished by the same job are skipped before
anything is submitted; a task whose worker dies is run again elsewhere by the scheduler
and gives the same output (each task writes only its own output, from scratch); a task
that fails (an unreadable input, an output of another shape) fails alone, the others go
on, and the result lists it.

Job arrays (``shard=(i, n)``): each array task runs the share ``i`` of ``n`` and writes a
shard record; :func:`merge_batch` checks after the last one that every shard and every
item finished, and writes the summary table.
"""

from __future__ import annotations

import csv
import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._progress import Cancel, is_cancelled
from ..errors import BatchError
from ..storage.atomic import replacing
from .images import JobOptions, item_status, run_image
from .inputs import BatchItem, shard
from .worker import WorkerModel, check_workers, worker_state

__all__ = ["BatchResult", "run_batch", "merge_batch", "write_summary", "RECORDS"]

#: Folder of shard records, beside the outputs.
RECORDS = ".segany-batch"


@dataclass
class BatchResult:
    """What a batch did.

    Attributes
    ----------
    job : str
        The job's signature (model and options).
    done, skipped, failed : list of dict
        Items finished now, finished before (skipped), and failed (with ``error``).
    seconds : float
    cancelled : bool
    """

    job: str
    done: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    cancelled: bool = False

    @property
    def ok(self) -> bool:
        return not self.failed and not self.cancelled

    def rows(self) -> list[dict[str, Any]]:
        return sorted(self.done + self.skipped + self.failed, key=lambda r: r["key"])


def _task(item: BatchItem, opts: JobOptions, model: WorkerModel, job: str) -> dict[str, Any]:
    """Run on a worker: the worker's model, one image."""
    backend = worker_state(model).backend()
    return run_image(item, opts, backend, job)


def _failure(item: BatchItem, exc: BaseException) -> dict[str, Any]:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return {"key": item.key, "out": item.out, "status": "failed",
            "error": f"{type(exc).__name__}: {text}"}


def run_batch(
    items: Iterable[BatchItem],
    *,
    options: JobOptions,
    model: WorkerModel,
    client: Any = None,
    shard_of: tuple[int, int] | None = None,
    records: str | os.PathLike | None = None,
    progress: Callable[[int, int], Any] | None = None,
    dask_progress: bool = False,
    cancel: Cancel = None,
) -> BatchResult:
    """Run ``options.mode`` on every item (or on a shard of them).

    Parameters
    ----------
    items : iterable of BatchItem
        From :func:`~.inputs.collect_inputs`.
    options : JobOptions
    model : WorkerModel
    client : distributed.Client, optional
        Where to run (see :func:`~.cluster.open_cluster`); None runs the items one after the
        other in this process (the same code, for single machines and tests).
    shard_of : (i, n), optional
        Only the share ``i`` of ``n`` (job arrays); a shard record is written to
        ``records``.
    records : path, optional
        Folder of shard records (default: ``.segany-batch`` beside the first output).
    progress : callable, optional
        ``progress(done, total)`` over the items to run.
    dask_progress : bool
        Draw dask's text progress bar (on stdout) while the tasks run.
    cancel : threading.Event or callable, optional
        Stop submitting and cancel what has not started; finished outputs are kept.
    """
    t0 = time.perf_counter()
    todo_all = sorted(items, key=lambda it: it.key)
    if not todo_all:
        raise BatchError("no inputs to run")
    chosen = shard(todo_all, *shard_of) if shard_of else todo_all
    info = check_workers(client, model)
    job = options.signature(info["model_id"])
    result = BatchResult(job)
    todo = []
    for it in chosen:
        if item_status(it, job, options.mode) == "done":
            result.skipped.append({"key": it.key, "out": it.out, "status": "skipped"})
        else:
            todo.append(it)
    total = len(todo)
    if progress is not None:
        progress(0, total)
    if client is None:
        _run_here(todo, options, model, job, result, progress, cancel)
    else:
        _run_on(client, todo, options, model, job, result, progress, dask_progress, cancel)
    result.seconds = time.perf_counter() - t0
    if shard_of:
        _write_record(records, todo_all, result, shard_of, options.mode)
    return result


def _run_here(todo, options, model, job, result, progress, cancel) -> None:
    for n, it in enumerate(todo):
        if is_cancelled(cancel):
            result.cancelled = True
            break
        try:
            result.done.append(_task(it, options, model, job))
        except Exception as exc:  # one bad input fails alone
            result.failed.append(_failure(it, exc))
        if progress is not None:
            progress(n + 1, len(todo))


def _run_on(client, todo, options, model, job, result, progress, dask_progress, cancel) -> None:
    from distributed import as_completed

    futures = {client.submit(_task, it, options, model, job, key=f"segany-{it.key}-{job}",
                             pure=False): it for it in todo}
    if dask_progress and futures:
        from distributed.diagnostics.progressbar import progress as bar

        bar(list(futures), notebook=False, scheduler=client.scheduler.address)
        print(flush=True)
    n = 0
    try:
        for fut in as_completed(list(futures), loop=client.loop):
            it = futures[fut]
            if fut.status == "finished":
                result.done.append(fut.result())
            elif fut.status == "error":
                result.failed.append(_failure(it, fut.exception()))
            n += 1
            if progress is not None:
                progress(n, len(todo))
            if is_cancelled(cancel):
                result.cancelled = True
                break
    except KeyboardInterrupt:
        result.cancelled = True
        raise
    finally:
        if result.cancelled or n < len(futures):
            client.cancel([f for f in futures if not f.done()])


def _record_dir(records: Any, items: list[BatchItem]) -> Path:
    return Path(records) if records is not None else Path(items[0].out).parent / RECORDS


def _write_record(records, items, result: BatchResult, shard_of, mode: str) -> None:
    folder = _record_dir(records, items)
    folder.mkdir(parents=True, exist_ok=True)
    i, n = shard_of
    rec = {"job": result.job, "mode": mode, "shard": [i, n], "items": len(items),
           "rows": result.rows(), "cancelled": result.cancelled,
           "seconds": round(result.seconds, 3)}
    with replacing(folder / f"shard-{i}-of-{n}.json") as tmp:
        Path(tmp).write_text(json.dumps(rec, indent=1))


def merge_batch(items: Iterable[BatchItem], *, records: str | os.PathLike | None = None,
                mode: str = "auto") -> BatchResult:
    """After a job array: check every shard and every item, return the whole batch.

    Reads the shard records (all ``n`` must be there, of one job) and the items' outputs
    (each must be finished by that job). Items not finished are listed in ``failed``
    (``error`` says whether they failed or never ran), so rerunning their shard finishes
    them.
    """
    items = sorted(items, key=lambda it: it.key)
    if not items:
        raise BatchError("no inputs to merge")
    folder = _record_dir(records, items)
    recs = [json.loads(p.read_text()) for p in sorted(folder.glob("shard-*-of-*.json"))]
    if not recs:
        raise BatchError(f"no shard records in {folder}: run the shards (--shard I/N) first")
    jobs = {r["job"] for r in recs}
    counts = {r["shard"][1] for r in recs}
    if len(jobs) > 1 or len(counts) > 1:
        raise BatchError(f"the shard records in {folder} come from different runs (jobs "
                         f"{sorted(jobs)}, shard counts {sorted(counts)}); remove the stale "
                         "ones and rerun")
    job, n = jobs.pop(), counts.pop()
    have = {r["shard"][0] for r in recs}
    errors = {row["key"]: row.get("error") for r in recs for row in r["rows"]
              if row.get("status") == "failed"}
    result = BatchResult(job, seconds=sum(r.get("seconds", 0) for r in recs))
    for k, it in enumerate(items):
        row = {"key": it.key, "out": it.out}
        if item_status(it, job, mode) == "done":
            result.done.append({**row, "status": "done"})
        else:
            why = errors.get(it.key) or (f"shard {k % n} of {n} has not run" if k % n not in have
                                         else "not finished")
            result.failed.append({**row, "status": "failed", "error": why})
    return result


def write_summary(path: str | os.PathLike, result: BatchResult) -> None:
    """The batch as a CSV table: key, out, status, objects, seconds, error."""
    cols = ["key", "out", "status", "objects", "seconds", "error"]
    with replacing(Path(path)) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for row in result.rows():
            w.writerow(row)
