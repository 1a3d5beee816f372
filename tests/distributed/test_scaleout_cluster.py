"""Batches and blocks on a LocalCluster of 2 worker processes: the same results as one
process, a killed worker changes nothing, reruns skip finished work, bad input is named."""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import tifffile
from scaleout_data import balls, discs

from napari_segany.auto import AutoSettings
from napari_segany.cli import main
from napari_segany.distributed import (
    BatchItem,
    ClusterError,
    JobOptions,
    WorkerModel,
    collect_inputs,
    open_cluster,
    run_batch,
    segment_blocks,
)
from napari_segany.errors import Cancelled
from napari_segany.storage import LabelsStore
from rule_backend import RuleBackend
from testdata import DATA

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]

RULE = WorkerModel(factory=RuleBackend)
SETTINGS = AutoSettings(points_per_side=12, generator="grid", min_area=16)


@pytest.fixture(scope="module")
def cluster():
    with open_cluster(n_workers=2, dashboard=False, memory_limit=None, timeout=30) as c:
        yield c


def _labels(path) -> np.ndarray:
    return np.asarray(LabelsStore.open(path, mode="r").array[...])


BLOCKS = dict(model=RULE, options=JobOptions(auto=SETTINGS), tile=128, halo=16, chunk_size=100)


@pytest.fixture(scope="module")
def volume(tmp_path_factory):
    """A (4, 200, 230) volume (24 blocks, 24 output chunks) and its one-process block run."""
    folder = tmp_path_factory.mktemp("volume")
    tifffile.imwrite(folder / "vol.tif", balls((4, 200, 230), 18, seed=6),
                     photometric="minisblack")
    ref = segment_blocks(str(folder / "vol.tif"), str(folder / "ref.zarr"), **BLOCKS)
    assert ref.objects > 5
    return folder / "vol.tif", _labels(folder / "ref.zarr"), ref


def test_unreachable_scheduler_fails_within_seconds(tmp_path):
    t0 = time.perf_counter()
    with pytest.raises(ClusterError, match="cannot reach the Dask scheduler"):
        with open_cluster(scheduler="tcp://127.0.0.1:9", timeout=2):
            pass
    assert time.perf_counter() - t0 < 15
    with pytest.raises(ClusterError, match="no scheduler file"):
        with open_cluster(scheduler_file=tmp_path / "none.json"):
            pass


@pytest.mark.data
def test_batch_over_nuclei_equals_single_process(cluster, tmp_path):
    if not all((DATA / "stardist" / n).exists() for n in ("img2d.tif", "tests_img2d.tif")):
        pytest.skip("shared data not available")
    folder = tmp_path / "nuclei"
    folder.mkdir()
    # mixed sizes and dtypes: 256 x 256 uint8 and a 200 x 240 uint16 crop of a 512 x 512 image
    shutil.copy(DATA / "stardist" / "tests_img2d.tif", folder / "a.tif")
    tifffile.imwrite(folder / "b.tif", tifffile.imread(DATA / "stardist" / "img2d.tif")
                     [100:300, 50:290])
    names = ["a.tif", "b.tif"]
    flags = ["--model", "sam_tiny", "--random-weights", "--points-per-side", "6",
             "--pred-iou-thresh", "0", "--stability-thresh", "0", "-q"]
    for n in names:
        assert main(["auto", str(folder / n), "--out", str(tmp_path / "ref" / f"{n}.zarr"),
                     *flags]) == 0
    items = collect_inputs(folder, out_dir=tmp_path / "out")
    opts = JobOptions(auto=AutoSettings(points_per_side=6, pred_iou_thresh=0,
                                        stability_score_thresh=0))
    result = run_batch(items, options=opts, model=WorkerModel("sam_tiny", random_weights=True,
                                                              device="cpu"),
                       client=cluster.client)
    assert result.ok and len(result.done) == 2
    for it in items:
        ref = _labels(tmp_path / "ref" / f"{Path(it.image).name}.zarr")
        got = _labels(it.out)
        np.testing.assert_array_equal(got, ref)
        assert ref.max() > 0
    # the perfect-model backend: many objects per image, still equal image by image
    rule = WorkerModel(factory=partial(RuleBackend, threshold=50))
    opts = JobOptions(auto=SETTINGS)
    one = [BatchItem(it.key, it.image, str(tmp_path / "one" / f"{it.key}.zarr")) for it in items]
    out = [BatchItem(it.key, it.image, str(tmp_path / "cl" / f"{it.key}.zarr")) for it in items]
    assert run_batch(one, options=opts, model=rule).ok  # one process
    assert run_batch(out, options=opts, model=rule, client=cluster.client).ok
    for a, b in zip(one, out, strict=True):
        la, lb = _labels(a.out), _labels(b.out)
        np.testing.assert_array_equal(la, lb)
        assert la.max() > 5


def test_blocks_on_the_cluster_equal_one_process(cluster, volume, tmp_path):
    tifffile.imwrite(tmp_path / "plane.tif", discs((260, 300), 20, seed=4, rmax=30))
    ref = segment_blocks(str(tmp_path / "plane.tif"), str(tmp_path / "plane_1.zarr"), **BLOCKS)
    got = segment_blocks(str(tmp_path / "plane.tif"), str(tmp_path / "plane_2.zarr"),
                         client=cluster.client, **BLOCKS)
    assert got.objects == ref.objects > 5
    np.testing.assert_array_equal(_labels(tmp_path / "plane_2.zarr"),
                                  _labels(tmp_path / "plane_1.zarr"))
    vol, want, one = volume
    got = segment_blocks(str(vol), str(tmp_path / "vol.zarr"), client=cluster.client, **BLOCKS)
    assert got.objects == one.objects
    np.testing.assert_array_equal(_labels(tmp_path / "vol.zarr"), want)


def _when(folder: Path, n: int, action, timeout: float = 120) -> threading.Thread:
    def watch():
        t0 = time.time()
        while time.time() - t0 < timeout:
            if folder.is_dir() and len(list(folder.glob("*.npz"))) >= n:
                action()
                return
            time.sleep(0.05)

    th = threading.Thread(target=watch, daemon=True)
    th.start()
    return th


def test_killing_a_worker_mid_run_gives_the_same_store(cluster, volume, tmp_path):
    vol, want, one = volume
    pids = cluster.client.run(os.getpid)
    victim = sorted(pids.values())[0]
    killed = []

    def kill():
        os.kill(victim, signal.SIGKILL)
        killed.append(victim)

    watcher = _when(tmp_path / "killed.zarr.run" / "A", 8, kill)
    got = segment_blocks(str(vol), str(tmp_path / "killed.zarr"), client=cluster.client,
                         **BLOCKS)
    watcher.join(1)
    assert killed == [victim]
    assert got.objects == one.objects
    np.testing.assert_array_equal(_labels(tmp_path / "killed.zarr"), want)
    cluster.client.wait_for_workers(2, timeout=60)  # the nanny restarted it


def test_rerun_after_an_interrupt_skips_finished_work(cluster, volume, tmp_path):
    vol, want, one = volume
    stop = threading.Event()
    _when(tmp_path / "out.zarr.run" / "A", 6, stop.set)
    with pytest.raises(Cancelled):
        segment_blocks(str(vol), str(tmp_path / "out.zarr"), cancel=stop,
                       client=cluster.client, **BLOCKS)
    done_before = len(list((tmp_path / "out.zarr.run" / "A").glob("*.npz")))
    again = segment_blocks(str(vol), str(tmp_path / "out.zarr"), client=cluster.client,
                           **BLOCKS)
    # (tasks already running when it was cancelled may finish and be recorded too)
    assert again.skipped["A"] >= done_before >= 6
    assert again.ran["A"] == again.blocks - again.skipped["A"] > 0
    np.testing.assert_array_equal(_labels(tmp_path / "out.zarr"), want)
    # a batch: interrupted after its first image, then rerun
    folder = tmp_path / "imgs"
    folder.mkdir()
    for k in range(5):
        tifffile.imwrite(folder / f"i{k}.tif", discs((64 + 16 * k, 96), 4, seed=k, rmax=20))
    items = collect_inputs(folder, out_dir=tmp_path / "o")
    halt = threading.Event()
    first = run_batch(items, options=JobOptions(auto=SETTINGS), model=RULE,
                      client=cluster.client, progress=lambda d, t: d >= 1 and halt.set(),
                      cancel=halt)
    assert first.cancelled and 1 <= len(first.done) < 5
    finished = {r["key"]: os.stat(Path(r["out"]) / "zarr.json").st_mtime_ns for r in first.done}
    second = run_batch(items, options=JobOptions(auto=SETTINGS), model=RULE,
                       client=cluster.client)
    assert second.ok and {r["key"] for r in second.skipped} >= set(finished)
    assert len(second.skipped) + len(second.done) == 5
    for key, mtime in finished.items():
        assert os.stat(tmp_path / "o" / f"{key}.zarr" / "zarr.json").st_mtime_ns == mtime


def test_bad_input_on_workers_is_named_and_fails_alone(cluster, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    tifffile.imwrite(folder / "good.tif", discs((64, 64), 3))
    tifffile.imwrite(folder / "small.tif", discs((32, 32), 2))
    (folder / "broken.tif").write_bytes(b"this is no TIFF")
    items = collect_inputs(folder, out_dir=tmp_path / "out")
    LabelsStore.create(tmp_path / "out" / "small.zarr", (10, 10)).close()  # another shape
    result = run_batch(items, options=JobOptions(auto=SETTINGS), model=RULE,
                       client=cluster.client)
    assert [r["key"] for r in result.done] == ["good"]
    errors = {r["key"]: r["error"] for r in result.failed}
    assert set(errors) == {"broken", "small"}
    assert "broken.tif" in errors["broken"]
    assert "shape" in errors["small"]
    assert _labels(tmp_path / "out" / "small.zarr").shape == (10, 10)  # left as it was
    with pytest.raises(ClusterError, match="cannot be read"):
        run_batch(items, options=JobOptions(), client=cluster.client,
                  model=WorkerModel("sam_tiny", checkpoint=str(tmp_path / "no-such.pt")))
