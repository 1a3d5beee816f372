"""The napari layers one segmentation works with, and reading prompts from them.

For an image layer ``<name>`` the widget uses (creating them when missing, reusing them
when they exist):

* ``<name> points`` (Points): clicks; feature ``positive`` (bool: green positive, red
  negative) and ``object_id`` (int, shown as text next to each point);
* ``<name> boxes`` (Shapes): rectangles, feature ``object_id``;
* ``<name> preview`` (Labels): the current object's mask on the current plane, one plane
  thick and translated onto that plane, so it costs one plane of memory; drawn in one
  highlight colour with a contour, unlike committed objects;
* ``<name> labels`` (Labels): the labels store's zarr array itself (lazy), committed
  objects in napari's random label colours;
* ``<name> review`` (Labels): the review area's array (lazy): automatic results awaiting
  acceptance, drawn as outlines in colours of their own.

All of them take the image layer's scale, translate and affine; prompts are converted
with :class:`napari_segany.prompts.Transform` of each layer, so layers the user rescales
still map onto the right pixels.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..prompts import PromptSet, Transform, merge_prompts, points_to_prompts, shapes_to_prompts

__all__ = ["LayerSet", "POSITIVE_COLOR", "NEGATIVE_COLOR", "PREVIEW_COLOR"]

POSITIVE_COLOR = "#32ff64"
NEGATIVE_COLOR = "#ff3232"
BOX_COLOR = "#ffd700"
PREVIEW_COLOR = "#ffe600"
REVIEW_SEED = 0.83  # a label colour sequence unlike the labels layer's (napari's 0.5)


def preview_display(mask: Any) -> tuple[np.ndarray, tuple[int, int]]:
    """The preview layer's data for ``mask``: the box around the mask (one pixel wider), with
    1 inside, 2 on its outline (about 1/256 of the plane's shorter side wide), 0 elsewhere,
    uint8; and the box's ``(row, column)`` origin in the plane. Pure numpy/scipy: the model
    thread computes it with the mask, and the GUI thread uploads only the box (a 2048 x 2048
    plane of uint32 labels cost the viewer a full-plane colour mapping at every click)."""
    from scipy import ndimage

    mask = np.asarray(mask, bool)
    if not mask.any():
        return np.zeros((1, 1), np.uint8), (0, 0)
    width = max(1, min(mask.shape[-2:]) // 256)
    rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    y0, y1 = max(0, rows[0] - 1), min(mask.shape[0], rows[-1] + 2)
    x0, x1 = max(0, cols[0] - 1), min(mask.shape[1], cols[-1] + 2)
    crop = mask[y0:y1, x0:x1]
    out = crop.astype(np.uint8)
    inner = ndimage.minimum_filter(crop.view(np.uint8), size=2 * width + 1, mode="constant")
    out[crop & (inner == 0)] = 2
    return out, (int(y0), int(x0))


def unwrap(layer: Any) -> Any:
    """The layer itself: napari hands plugins its viewer behind a ``PublicOnlyProxy``, whose
    ``add_*`` methods return proxies too, while layer events carry the layers themselves."""
    return getattr(layer, "__wrapped__", layer)


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
        self.review: Any = None

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
                np.zeros((1,) * (self.lead + 2), np.uint8), name=name, opacity=0.9,
                **_geometry(self.image))
        from napari.utils.colormaps import DirectLabelColormap

        # 1 = inside (the colour, faint), 2 = the outline (drawn by preview_display off the GUI
        # thread: napari's own contour costs over a second per 2048 x 2048 plane on a CPU)
        layer.colormap = DirectLabelColormap(color_dict={
            None: PREVIEW_COLOR, 0: "transparent", 1: PREVIEW_COLOR + "66", 2: PREVIEW_COLOR})
        layer.contour = 0
        return layer

    @property
    def layers(self) -> list[Any]:
        """Every layer of this set that is still in the viewer."""
        return [x for x in (self.points, self.boxes, self.preview, self.review, self.output)
                if _alive(self.viewer, x)]

    def missing(self) -> list[str]:
        """Names of this set's layers the user removed (Start recreates them)."""
        gone = [x.name for x in (self.points, self.boxes, self.output)
                if x is not None and not _alive(self.viewer, x)]
        return gone

    def remove_all(self) -> list[str]:
        """Remove every layer of this set from the viewer (the image went); their names."""
        names = []
        for layer in self.layers:
            names.append(layer.name)
            self.viewer.layers.remove(layer)
        return names

    def show_review(self, array: Any) -> Any:
        """Show the review area's array as ``<name> review`` (outlines, own colours)."""
        from napari.utils.colormaps import label_colormap

        name = f"{self.image.name} review"
        layer = self.review if _alive(self.viewer, self.review) else None
        layer = layer or _find(self.viewer, name, "Labels", len(self.shape))
        if layer is not None and tuple(layer.data.shape) == tuple(array.shape):
            layer.data = array
        else:
            layer = self.viewer.add_labels(array, name=name, opacity=0.9,
                                           **_geometry(self.image))
            self._below_prompts(layer)
        layer.colormap = label_colormap(49, seed=REVIEW_SEED)
        layer.contour = max(1, min(self.shape[-2:]) // 256)
        self.review = layer
        return layer

    def _below_prompts(self, layer: Any) -> None:
        """Keep the prompt and preview layers on top of ``layer``."""
        index = self.viewer.layers.index(layer)
        above = [self.viewer.layers.index(x) for x in (self.points, self.boxes, self.preview)
                 if _alive(self.viewer, x)]
        if above and index > min(above):
            self.viewer.layers.move(index, min(above))

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
            self._below_prompts(layer)
        self.output = layer
        return layer

    def refresh_output(self) -> None:
        for layer in (self.output, self.review):
            if _alive(self.viewer, layer):
                layer.refresh()

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

    def go_to(self, key: tuple[int, ...]) -> None:
        """Move the viewer to image plane ``key``."""
        if not key:
            return
        world = self.image.data_to_world([*key, 0, 0])
        offset = self.viewer.dims.ndim - len(self.shape)
        for axis, value in enumerate(world[: len(key)]):
            self.viewer.dims.set_point(offset + axis, value)

    def visible_region(self) -> tuple[int, int, int, int] | None:
        """The part of the current plane the canvas shows: (y0, y1, x0, x1) in pixels."""
        key = self.current_plane()
        canvas = getattr(self.viewer, "canvas", None)  # napari >= 0.9: (height, width)
        size = getattr(canvas, "size", None) or getattr(unwrap(self.viewer), "_canvas_size", None)
        if key is None or not size:
            return None
        scene = getattr(self.viewer, "scene", None)  # napari >= 0.9 keeps the camera there
        cam = scene.camera if scene is not None else self.viewer.camera
        h, w = (float(v) / max(cam.zoom, 1e-9) for v in size)
        cy, cx = cam.center[-2:]
        lead = list(np.asarray(self.viewer.dims.point)[-len(self.shape):-2])
        corners = [self.image.world_to_data([*lead, cy + dy * h / 2, cx + dx * w / 2])[-2:]
                   for dy in (-1, 1) for dx in (-1, 1)]
        (y0, x0), (y1, x1) = np.min(corners, axis=0), np.max(corners, axis=0)
        H, W = self.shape[-2:]
        y0, x0 = max(0, int(np.floor(y0))), max(0, int(np.floor(x0)))
        y1, x1 = min(H, int(np.ceil(y1)) + 1), min(W, int(np.ceil(x1)) + 1)
        return (y0, y1, x0, x1) if y1 > y0 and x1 > x0 else None

    # -- prompts ----------------------------------------------------------------------------
    def add_prompts(self, prompts: PromptSet) -> int:
        """Show recorded prompts as points and rectangles (per object, per plane); returns
        how many were added."""
        img_tf = Transform.from_layer(self.image)
        pts, pos, pid, rects, rid = [], [], [], [], []
        for key, objects in prompts.items():
            for oid, p in objects.items():
                for (x, y), label in zip(np.asarray(p.points).reshape(-1, 2),
                                         np.asarray(p.labels).reshape(-1), strict=True):
                    pts.append([*key, y, x])
                    pos.append(bool(label))
                    pid.append(int(oid))
                if p.box is not None:
                    x0, y0, x1, y1 = (float(v) for v in p.box)
                    rects.append([[*key, y0, x0], [*key, y0, x1], [*key, y1, x1],
                                  [*key, y1, x0]])
                    rid.append(int(oid))
        if pts and _alive(self.viewer, self.points):
            data = Transform.from_layer(self.points).to_data(img_tf.to_world(np.array(pts)))
            groups: dict[tuple[bool, int], list[int]] = {}
            for n, key in enumerate(zip(pos, pid, strict=True)):
                groups.setdefault(key, []).append(n)
            with self.points.events.data.blocker():
                defaults = dict(self.points.feature_defaults.iloc[0])
                for (positive, oid), rows in groups.items():  # one add per feature values
                    self.points.feature_defaults = {**defaults, "positive": positive,
                                                    "object_id": oid}
                    self.points.add(data[rows])
                self.points.feature_defaults = defaults
        if rects and _alive(self.viewer, self.boxes):
            tf = Transform.from_layer(self.boxes)
            with self.boxes.events.data.blocker():
                defaults = dict(self.boxes.feature_defaults.iloc[0])
                for corners, oid in zip(rects, rid, strict=True):
                    self.boxes.feature_defaults = {**defaults, "object_id": oid}
                    self.boxes.add_rectangles(tf.to_data(img_tf.to_world(np.array(corners))))
                self.boxes.feature_defaults = defaults
        return len(pts) + len(rects)

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
                     obj_id: int = 1, display: Any = None) -> None:
        """Show ``mask`` on ``plane`` in the highlight colour with its outline (``display``:
        :func:`preview_display` of it, computed beforehand off the GUI thread); no mask
        clears the preview.

        The layer holds only the box around the mask, translated onto its plane and place,
        so a click costs the viewer the box, not the whole plane."""
        layer = self.preview
        if not _alive(self.viewer, layer):
            return
        if mask is None or plane is None:
            if np.any(layer.data):
                layer.data = np.zeros((1,) * (self.lead + 2), np.uint8)
            return
        data, origin = display if display is not None else preview_display(mask)
        img = self.image
        offset = np.zeros(len(self.shape))
        offset[: self.lead] = np.asarray(plane)
        offset[self.lead:] = origin
        layer.translate = np.asarray(img.translate) + offset * np.asarray(img.scale)
        layer.data = data.reshape((1,) * self.lead + data.shape)

    def preview_plane(self) -> np.ndarray:
        """The preview as a whole plane (uint8, 0 outside the mask's box), for tests and
        screenshots."""
        out = np.zeros(self.shape[-2:], np.uint8)
        layer = self.preview
        data = np.asarray(layer.data).reshape(np.asarray(layer.data).shape[-2:])
        rel = (np.asarray(layer.translate) - np.asarray(self.image.translate))[-2:]
        y0, x0 = np.round(rel / np.asarray(self.image.scale)[-2:]).astype(int)
        h, w = min(data.shape[0], out.shape[0] - y0), min(data.shape[1], out.shape[1] - x0)
        out[y0:y0 + h, x0:x0 + w] = data[:h, :w]
        return out
