"""Bad input through the API gets one clear error and changes nothing (the list "bad input
that still slips through" of "Never lose an annotation")."""

from __future__ import annotations

import errno

import numpy as np
import pytest

from blobs import GT1, VOL, center
from napari_segany.errors import PromptError
from napari_segany.exports import export_tiff
from napari_segany.prompts import ObjectPrompt, PromptSet
from napari_segany.session import Session
from rule_backend import RuleBackend


def test_too_many_points_for_one_object_are_refused_with_the_limit():
    with pytest.raises(PromptError, match=r"10000 points; at most 1024"):
        ObjectPrompt(points=np.zeros((10_000, 2)))
    ps = PromptSet()
    ps.add((), 1, ObjectPrompt(points=np.zeros((1000, 2))))
    with pytest.raises(PromptError, match="at most 1024"):  # merging cannot get round it
        ps.add((), 1, ObjectPrompt(points=np.zeros((100, 2))))


@pytest.mark.parametrize("plane", [1.5, True, "3", (2, 1)])
def test_a_plane_that_is_not_an_index_is_refused(tmp_path, plane):
    s = Session(VOL, RuleBackend())
    with pytest.raises(ValueError, match="plane"):
        s.segment(ObjectPrompt(points=center(GT1[14])), plane)


def test_a_dask_array_of_unknown_size_is_explained():
    da = pytest.importorskip("dask.array")
    x = da.from_array(VOL, chunks=(1, 96, 96))
    unknown = x[x[:, 0, 0] >= 0]  # boolean indexing: the length is not known
    with pytest.raises(TypeError, match="compute_chunk_sizes"):
        Session(unknown, RuleBackend())


def test_a_prompts_dict_with_a_bare_mask_says_what_is_wrong():
    bad = {"format": "napari-segany.prompts", "version": 1,
           "planes": [{"plane": [0], "objects": [{"id": 1, "points": [], "labels": [],
                                                   "box": None, "mask": [[1]]}]}]}
    with pytest.raises(PromptError, match=r"planes\[0\]\.objects\[0\]\.mask must be"):
        PromptSet.from_dict(bad)


def test_a_full_disk_during_a_tiff_export_names_the_file(tmp_path, monkeypatch):
    import tifffile

    def full(self, *a, **k):  # what numpy's tofile raises when the disk fills up
        raise OSError("65536 requested and 36688 written")

    monkeypatch.setattr(tifffile.TiffWriter, "write", full)
    with pytest.raises(OSError, match=r"could not write .*seg\.tif: the disk is full") as exc:
        export_tiff(np.ones((2, 8, 8), np.uint16), tmp_path / "seg.tif")
    assert exc.value.errno == errno.ENOSPC
    assert not list(tmp_path.iterdir())  # no half-written file, no temporary left
