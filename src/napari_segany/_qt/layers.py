"""The napari layers one segmentation works with, and reading prompts from them.

For an image layer ``<name>`` the widget uses (creating them when missing, reusing them
when they exist):

* ``<name> points`` (Points): clicks; feature ``positive`` (bool: green positive, red
  negative) and ``object_id`` (int, shown as text next to each point);
* ``<name> boxes`` (Shapes): rectangles, feature ``object_id``;
* ``<name> preview`` (Labels): the current object's mask on the current plane, one plane
  thick and translated onto that plane, so it costs one plane of memory;
* ``<name> labels`` (Labels): the labels store's zarr array itself (lazy).

All of them take the image layer's scale, translate and affine; prompts are converted
with :class:`napari_segany.prompts.Transform` of each layer, so layers the user rescales
still map onto the right pixels.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..prompts import PromptSet, Transform, merge_prompts, points_to_prompts, shapes_to_prompts

__all__ = ["LayerSet", "POSITIVE_COLOR", "NEGATIVE_COLOR"]

POSITIVE_COLOR = "#32ff64"
NEGATIVE_COLOR = "#ff3232"
BOX_COLOR = "#ffd700"


def _alive(viewer: Any, layer: Any) -> bool:
    return layer is not None and layer in viewer.layers


def _find(viewer: Any, name: str, kind: str, ndim: int) -> Any:
    for layer in viewer.layers:
        if layer.name == name and type(layer).__name__ == kind and layer.ndim == ndim:
            return layer
    return None


def _add_columns(layer: Any, **defaults: Any) -> None:
    """Give a reused layer the feature columns the widget needs."""
    missing = {k: v for k, v in defaults.items() if k not in layer.features}
    if missing:
        f = layer.features.copy()
        for key, value in missing.items():
            f[key] = value
        layer.features = f


def _geometry(image: Any) -> dict[str, Any]:
    out = {"scale": np.asarray(image.scale), "translate": np.asarray(image.translate)}
    affine = np.asarray(image.affine.affine_matrix)
    if not np.array_equal(affine, np.eye(len(affine))):
        out["affine"] = affine
    return out


class LayerSet:
    """The prompt, preview and output layers belonging to one image layer.

    Parameters
    ----------
    viewer : napari.Viewer
    image : napari.layers.Image
    shape : tuple of int
        The image shape without an RGB axis, ``(*leading, H, W)``.
    """

    def __init__(self, viewer: Any, image: Any, shape: tuple[int, ...]) -> None:
        self.viewer, self.image, self.shape = viewer, image, tuple(shape)
        self.lead = len(self.shape) - 2
        self.points = self._points()
        self.boxes = self._boxes()
        self.preview = self._preview()
        self.output: Any = None

    # -- creation ---------------------------------------------------------------------------
    def _points(self) -> Any:
        import pandas as pd

        name, nd = f"{self.image.name} points", len(self.shape)
        layer = _find(self.viewer, name, "Points", nd)
        if layer is None:
            features = pd.DataFrame({"positive": pd.Series([], dtype=bool),
                                     "object_id": pd.Series([], dtype=np.int64)})
            layer = self.viewer.add_points(
                np.empty((0, nd)), ndim=nd, name=name, features=features,
                face_color="positive", face_color_cycle={True: POSITIVE_COLOR,
                                                         False: NEGATIVE_COLOR},
                border_color="white", size=max(4.0, min(self.shape[-2:]) / 40),
                text={"string": "{object_id}", "color": "white", "anchor": "upper_left",
                      "size": 9},
                **_geometry(self.image))
        _add_columns(layer, positive=True, object_id=1)
        layer.feature_defaults = {"positive": True, "object_id": 1}
        return layer

    def _boxes(self) -> Any:
        import pandas as pd

        name, nd = f"{self.image.name} boxes", len(self.shape)
        layer = _find(self.viewer, name, "Shapes", nd)
        if layer is None:
            layer = self.viewer.add_shapes(
                None, ndim=nd, name=name,
                features=pd.DataFrame({"object_id": pd.Series([], dtype=np.int64)}),
                edge_color=BOX_COLOR, face_color="transparent",
                edge_width=max(1.0, min(self.shape[-2:]) / 200),
                text={"string": "{object_id}", "color": BOX_COLOR, "anchor": "upper_left",
                      "size": 9},
                **_geometry(self.image))
        _add_columns(layer, object_id=1)
        layer.feature_defaults = {**dict(layer.feature_defaults.iloc[0]), "object_id": 1}
        return layer

    def _preview(self) -> Any:
        name = f"{self.image.name} preview"
        layer = _find(self.viewer, name, "Labels", len(self.shape))
        if layer is None:
            layer = self.viewer.add_labels(
                np.zeros((1,) * self.lead + self.shape[-2:], np.uint32), name=name,
                opacity=0.55, **_geometry(self.image))
        return layer

    def show_output(self, array: Any, metadata: dict[str, Any]) -> Any:
        """Show the labels store's array as ``<name> labels`` (replacing older data)."""
        name = f"{self.image.name} labels"
        layer = self.output if _alive(self.viewer, self.output) else None
        layer = layer or _find(self.viewer, name, "Labels", len(self.shape))
        if layer is not None and tuple(layer.data.shape) == tuple(array.shape):
            layer.data = array
            layer.metadata = {**layer.metadata, **metadata}
        else:
            layer = self.viewer.add_labels(array, name=name, metadata=metadata,
                                           **_geometry(self.image))
            # keep the prompt and preview layers on top of the labels
            index = self.viewer.layers.index(layer)
            first = min(self.viewer.layers.index(x) for x in (self.points, self.boxes,
                                                               self.preview)
                        if _alive(self.viewer, x))
            if index > first:
                self.viewer.layers.move(index, first)
        self.output = layer
        return layer

    def refresh_output(self) -> None:
        if _alive(self.viewer, self.output):
            self.output.refresh()

    # -- planes -----------------------------------------------------------------------------
    def plane_problem(self) -> str | None:
        """Why there is no current plane (None when there is one)."""
        if self.lead == 0:
            return None
        dims = self.viewer.dims
        if dims.ndisplay != 2:
            return "switch the viewer to 2D display to prompt on a plane"
        world = dims.ndim
        if tuple(dims.displayed) != (world - 2, world - 1):
            return "show the image's last two axes (y, x) to prompt on a plane"
        return None

    def current_plane(self) -> tuple[int, ...] | None:
        """The image plane the viewer shows: indices along the image's leading axes."""
        if self.lead == 0:
            return ()
        if self.plane_problem() is not None:
            return None
        nd = len(self.shape)
        point = np.asarray(self.viewer.dims.point, dtype=np.float64)[-nd:]
        data = Transform.from_layer(self.image).to_data(point)
        key = np.floor(data[: self.lead] + 0.5).astype(int)
        if np.any(key < 0) or np.any(key >= np.asarray(self.shape[: self.lead])):
            return None
        return tuple(int(k) for k in key)

    # -- prompts ----------------------------------------------------------------------------
    def prompts(self) -> PromptSet:
        """All prompts on the points and boxes layers (raises PromptError naming the problem)."""
        img_tf = Transform.from_layer(self.image)
        sets = []
        pts = self.points
        if _alive(self.viewer, pts) and len(pts.data):
            f = pts.features
            pos = f["positive"].to_numpy(bool) if "positive" in f else None
            oid = f["object_id"].to_numpy() if "object_id" in f else None
            sets.append(points_to_prompts(
                pts.data, image_shape=self.shape, labels=pos, object_ids=oid,
                points_transform=Transform.from_layer(pts), image_transform=img_tf))
        box = self.boxes
        if _alive(self.viewer, box) and len(box.data):
            f = box.features
            oid = f["object_id"].to_numpy() if "object_id" in f else None
            sets.append(shapes_to_prompts(
                box.data, image_shape=self.shape, shape_types=box.shape_type, object_ids=oid,
                shapes_transform=Transform.from_layer(box), image_transform=img_tf))
        return merge_prompts(*sets)

    def object_ids(self) -> set[int]:
        ids: set[int] = set()
        for layer in (self.points, self.boxes):
            if _alive(self.viewer, layer) and "object_id" in layer.features:
                ids.update(int(i) for i in layer.features["object_id"].to_numpy())
        return ids

    def set_defaults(self, *, object_id: int | None = None, positive: bool | None = None) -> None:
        """Feature values that newly added points and boxes get."""
        for layer in (self.points, self.boxes):
            if not _alive(self.viewer, layer):
                continue
            d = dict(layer.feature_defaults.iloc[0]) if len(layer.feature_defaults) else {}
            if object_id is not None:
                d["object_id"] = int(object_id)
            if positive is not None and layer is self.points:
                d["positive"] = bool(positive)
            layer.feature_defaults = d

    def flip_selected(self) -> bool:
        """Flip positive/negative of the selected points; False when none is selected."""
        pts = self.points
        sel = sorted(pts.selected_data) if _alive(self.viewer, pts) else []
        if not sel:
            return False
        f = pts.features.copy()
        col = f.columns.get_loc("positive")
        f.iloc[sel, col] = ~f.iloc[sel, col].astype(bool)
        pts.features = f
        pts.refresh_colors()
        return True

    def remove_object(self, obj_id: int) -> int:
        """Delete every point and box of ``obj_id`` (all planes); returns how many."""
        n = 0
        for layer in (self.points, self.boxes):
            if _alive(self.viewer, layer) and "object_id" in layer.features and len(layer.data):
                idx = np.flatnonzero(layer.features["object_id"].to_numpy() == obj_id)
                if idx.size:
                    layer.selected_data = set(idx.tolist())
                    layer.remove_selected()
                    n += int(idx.size)
        return n

    def drop_duplicate_boxes(self) -> None:
        """Keep only the newest box per (plane, object): SAM takes one box per object."""
        box = self.boxes
        if not _alive(self.viewer, box) or len(box.data) < 2 or "object_id" not in box.features:
            return
        img_tf, box_tf = Transform.from_layer(self.image), Transform.from_layer(box)
        ids = box.features["object_id"].to_numpy()
        seen, drop = set(), []
        for i in range(len(box.data) - 1, -1, -1):
            try:
                ps = shapes_to_prompts([box.data[i]], image_shape=self.shape, object_ids=[1],
                                       shapes_transform=box_tf, image_transform=img_tf)
            except ValueError:
                continue  # reported when the prompts are read
            key = (ps.planes()[0], int(ids[i]))
            if key in seen:
                drop.append(i)
            seen.add(key)
        if drop:
            box.selected_data = set(drop)
            box.remove_selected()

    # -- preview ----------------------------------------------------------------------------
    def show_preview(self, plane: tuple[int, ...] | None = None, mask: Any = None,
                     obj_id: int = 1) -> None:
        """Show ``mask`` as ``obj_id`` on ``plane``; no mask clears the preview."""
        layer = self.preview
        if not _alive(self.viewer, layer):
            return
        if mask is None or plane is None:
            if np.any(layer.data):
                layer.data = np.zeros_like(layer.data)
            return
        data = (np.asarray(mask, bool) * np.uint32(obj_id)).reshape(layer.data.shape)
        img = self.image
        offset = np.zeros(len(self.shape))
        offset[: self.lead] = np.asarray(plane) * np.asarray(img.scale)[: self.lead]
        layer.translate = np.asarray(img.translate) + offset
        layer.data = data
