"""Write-then-rename (napari_segany.storage.replacing): whole or not at all."""

from __future__ import annotations

import pytest

from napari_segany.storage import remove, replacing


def _siblings(folder):
    return sorted(p.name for p in folder.iterdir())


def test_new_file_appears_only_when_complete(tmp_path):
    target = tmp_path / "out.txt"
    with replacing(target) as tmp:
        tmp.write_text("new")
        assert not target.exists() and tmp.parent == tmp_path and tmp.name.startswith(".")
    assert target.read_text() == "new"
    assert _siblings(tmp_path) == ["out.txt"]


def test_failure_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), replacing(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert _siblings(tmp_path) == ["out.txt"]


def test_folder_replaces_folder_and_file(tmp_path):
    target = tmp_path / "store.zarr"
    target.mkdir()
    (target / "old").write_text("1")
    with replacing(target) as tmp:
        tmp.mkdir()
        (tmp / "new").write_text("2")
    assert _siblings(target) == ["new"]
    assert _siblings(tmp_path) == ["store.zarr"]
    plain = tmp_path / "x"
    plain.write_text("file")
    with replacing(plain) as tmp:
        tmp.mkdir()
    assert plain.is_dir() and _siblings(tmp_path) == ["store.zarr", "x"]


def test_interrupted_folder_write_keeps_the_old_folder(tmp_path):
    target = tmp_path / "store.zarr"
    target.mkdir()
    (target / "old").write_text("1")
    with pytest.raises(KeyboardInterrupt), replacing(target) as tmp:
        tmp.mkdir()
        raise KeyboardInterrupt
    assert _siblings(target) == ["old"] and _siblings(tmp_path) == ["store.zarr"]


def test_remove_files_folders_and_missing(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_text("x")
    (tmp_path / "f").write_text("x")
    remove(tmp_path / "d")
    remove(tmp_path / "f")
    remove(tmp_path / "missing")
    assert _siblings(tmp_path) == []
