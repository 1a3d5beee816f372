"""DICOM in napari (under Xvfb): the reader opens a series with its voxel size as scale,
and the Cases panel drives a worklist (open next, mark, export)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from dicom_from_nifti import load_nifti, write_series
from napari_segany._napari import reader as nio_reader
from napari_segany.io import DicomVolume
from testdata import DATA

SPLEEN = DATA / "msd_spleen_crop" / "sub-spleen2_ct.nii.gz"


def _series(root: Path):
    """The MSD spleen CT crop as a DICOM series (a synthetic volume without the data)."""
    if SPLEEN.exists():
        vol, affine = load_nifti(SPLEEN)  # (26, 166, 164), 5 x 0.79 x 0.79 mm
    else:
        yy, xx = np.mgrid[0:166, 0:164]
        disc = ((yy - 83) ** 2 + (xx - 70) ** 2 < 40**2).astype(np.int16)
        vol = np.stack([disc * (100 + 4 * k) for k in range(26)])  # 0 HU around a disc
        affine = np.diag([0.7949219, 0.7949219, 5.0, 1.0])
    return write_series(root, vol, affine, window=(40.0, 400.0), description="abdomen"), vol


def test_reader_contribution_for_dicom_folders(tmp_path):
    w, vol = _series(tmp_path / "ct")
    (tmp_path / "plain").mkdir()
    assert nio_reader.get_reader(str(tmp_path / "plain")) is None
    reader = nio_reader.get_reader(str(tmp_path / "ct"))
    assert reader is nio_reader.read_dicom_folder
    import shutil

    (tmp_path / "one").mkdir()
    shutil.copy(w.files[0], tmp_path / "one" / "slice.dcm")  # one .dcm file: its series
    assert nio_reader.get_reader(str(tmp_path / "one" / "slice.dcm")) is \
        nio_reader.read_dicom_folder
    [(data, kwargs, kind)] = reader(str(tmp_path / "ct"))
    assert kind == "image" and isinstance(data, DicomVolume)
    np.testing.assert_allclose(kwargs["scale"], [5.0, 0.7949219, 0.7949219], rtol=1e-6)
    assert kwargs["contrast_limits"] == [-160.0, 240.0]
    assert kwargs["metadata"]["dicom_series_uid"] == w.series_uid
    broken = write_series(tmp_path / "ct", vol[:6], np.diag([0.5, 0.5, 2.0, 1.0]),
                          description="scout", number=9, prefix="s")
    broken.files[3].unlink()
    with pytest.warns(UserWarning, match=r'not opened: series 9 "scout".*missing'):
        layers = reader(str(tmp_path / "ct"))
    assert [k["name"] for _, k, _ in layers] == ["ct"]  # the good series still opens
    for f in (tmp_path / "ct").iterdir():
        if f.name.startswith("IM"):
            f.unlink()
    with pytest.raises(ValueError, match="slice"):
        reader(str(tmp_path / "ct"))  # nothing left that forms a volume


def test_napari_opens_a_dicom_series_with_its_scale(make_napari_viewer, qtbot, tmp_path):
    w, vol = _series(tmp_path / "ct")
    viewer = make_napari_viewer(show=True)  # a shown canvas renders the screenshot
    [layer] = viewer.open(str(tmp_path / "ct"), plugin="napari-segany")
    assert isinstance(layer.data, DicomVolume) and layer.data.shape == vol.shape
    np.testing.assert_allclose(layer.scale, [5.0, 0.7949219, 0.7949219], rtol=1e-6)
    extent = np.asarray(layer.extent.world)
    np.testing.assert_allclose(extent[1] - extent[0], (np.array(vol.shape) - 1) *
                               np.array(layer.scale), rtol=1e-6)  # centre to centre, mm
    viewer.dims.order = (1, 0, 2)  # a coronal view: z (5 mm) against x (0.79 mm)
    viewer.reset_view()
    qtbot.wait(200)
    shot = viewer.screenshot(canvas_only=True, flash=False)
    out = Path(os.environ.get("SEGANY_SCREENSHOTS", tmp_path))
    out.mkdir(parents=True, exist_ok=True)
    from PIL import Image

    Image.fromarray(shot).save(out / "dicom_coronal.png")
    gray = shot[..., :3].mean(axis=-1)
    rows = np.flatnonzero((gray > 8).any(axis=1))
    cols = np.flatnonzero((gray > 8).any(axis=0))
    height, width = rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1
    # 26 slices x 5 mm = 130 mm high, 164 x 0.79 mm = 130 mm wide: about square, not 26:164
    assert 0.8 < height / width < 1.25, (height, width)


def test_cases_panel_drives_a_worklist(make_napari_viewer, qtbot, tmp_path):
    from napari_segany._qt._cases import AUTO_WINDOW, CasesPanel
    from napari_segany.cases import Worklist
    from napari_segany.storage import LabelsStore

    rng = np.random.default_rng(0)
    for name in ("p1", "p2"):
        write_series(tmp_path / "img" / name, rng.integers(-50, 50, (5, 20, 16)).astype(
            np.int16), np.diag([0.5, 0.6, 3.0, 1.0]), window=(10.0, 100.0))
    Worklist.create(tmp_path / "img", tmp_path / "w", classes=["liver", "lesion"])
    viewer = make_napari_viewer()
    panel = CasesPanel(viewer, user="dr_gui")
    qtbot.addWidget(panel)
    opened = []
    panel.case_opened.connect(opened.append)
    assert panel.load(tmp_path / "w") and panel.table.rowCount() == 2
    assert panel.classes_label.text() == "1 liver · 2 lesion"
    panel.next_btn.click()
    assert [c.id for c in opened] == ["p1"] and panel.current.status == "in progress"
    layer = panel.image_layer()
    np.testing.assert_allclose(layer.scale, [3.0, 0.6, 0.5])
    assert list(layer.contrast_limits) == [-40.0, 60.0]  # the file's window
    panel.window_combo.setCurrentIndex(panel.window_combo.findData("ct_bone"))
    assert list(layer.contrast_limits) == [-500.0, 1300.0] and panel.window() == "ct_bone"
    panel.window_combo.setCurrentText(AUTO_WINDOW)
    assert panel.window() is None
    panel.done_btn.click()  # no labels yet: refused, said
    assert "no labels store yet" in panel.status_label.text()
    store = LabelsStore.create(opened[0].labels, (5, 20, 16))
    plane = np.zeros((20, 16), np.uint32)
    plane[3:8, 4:9] = 2
    store.write_plane((2,), plane)
    store.set_object(2, class_name="lesion")
    getattr(store, "close", lambda: None)()
    panel.open_case("p1")
    assert [x.name for x in panel.layers] == ["p1", "p1 labels (saved)"]
    panel.done_btn.click()
    assert panel.table.item(0, 1).text() == "done" and panel.table.item(0, 2).text() == "dr_gui"
    panel.export_btn.click()
    qtbot.waitUntil(lambda: not panel.busy, timeout=60_000)
    assert (tmp_path / "w" / "exports" / "p1.seg.dcm").is_file(), panel.status_label.text()
    assert "Exported 1 of 1" in panel.status_label.text()
    panel.next_btn.click()
    assert panel.current.id == "p2" and len(viewer.layers) == 1  # the last case's layers go


def test_cases_table_selects_one_whole_row_and_is_not_editable(make_napari_viewer, qtbot,
                                                               tmp_path):
    """The table's selection and edit behaviour (scoped Qt enums, as PyQt6 names them):
    a click on any cell selects its whole row, one row at a time, and nothing is edited."""
    from qtpy.QtCore import Qt

    from napari_segany._qt._cases import CasesPanel
    from napari_segany.cases import Worklist

    rng = np.random.default_rng(1)
    for name in ("p1", "p2", "p3"):
        write_series(tmp_path / "img" / name, rng.integers(0, 50, (3, 12, 10)).astype(np.int16),
                     np.diag([0.5, 0.5, 2.0, 1.0]))
    Worklist.create(tmp_path / "img", tmp_path / "w", classes=["liver"])
    panel = CasesPanel(make_napari_viewer(), user="dr_gui")
    qtbot.addWidget(panel)
    panel.show()
    assert panel.load(tmp_path / "w") and panel.table.rowCount() == 3
    table = panel.table

    def click(row: int, col: int, modifier=Qt.KeyboardModifier.NoModifier) -> None:
        rect = table.visualItemRect(table.item(row, col))
        qtbot.mouseClick(table.viewport(), Qt.MouseButton.LeftButton, modifier, rect.center())

    click(1, 3)  # the "when" cell of p2
    assert [i.row() for i in table.selectionModel().selectedRows()] == [1]
    assert {(i.row(), i.column()) for i in table.selectedItems()} == {(1, c) for c in range(4)}
    click(2, 0, Qt.KeyboardModifier.ControlModifier)  # no multi-selection, even with Ctrl
    assert [i.row() for i in table.selectionModel().selectedRows()] == [2]
    click(0, 0)  # a double click: press, release, then the double-click press
    qtbot.mouseDClick(table.viewport(), Qt.MouseButton.LeftButton,
                      Qt.KeyboardModifier.NoModifier,
                      table.visualItemRect(table.item(0, 0)).center())
    assert table.state() != table.State.EditingState  # a double click opens, never edits
    assert table.item(0, 0).text() == "p1" and panel.current.id == "p1"
    click(1, 2)
    assert panel.open_selected().id == "p2" and panel.current.id == "p2"
