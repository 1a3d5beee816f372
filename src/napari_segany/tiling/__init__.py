"""Tiled embeddings and prompt routing for planes larger than the model's input.

A model sees its square input (1024 px for the real SAM/SAM2 models); a larger plane would be
shrunk to fit and small objects lost. Large planes are therefore cut into overlapping square
*windows* of the model's natural size, each embedded on its own, lazily, when first needed.

Geometry (:class:`TileGrid`)
----------------------------
Along each axis of length ``L`` windows of ``T = min(tile, L)`` pixels start at evenly spaced
positions from 0 to ``L - T`` with a stride of at most ``T - 2 * halo``, so neighbouring
windows overlap by at least ``2 * halo`` pixels. The *cores* partition the plane: the border
between two cores lies in the middle of their windows' overlap, so every core pixel is at
least ``halo`` pixels inside its window (except at the plane's edges). A plane no larger
than ``tile`` is one tile.

Prompt routing (:meth:`TileGrid.route`)
---------------------------------------
The extent of an object's prompts (its box, points and mask) is computed. If it fits in one
window, the object is segmented in the tile whose core holds most of it (ties: nearest core
centre). Otherwise (a box larger than a window, or points far apart) it is segmented in
every tile whose core meets the extent, with the prompts inside that window (the box clipped
to it); each piece is kept only inside its tile's core, and the pieces are joined.

Embeddings and caching (:class:`TiledEmbeddings`)
-------------------------------------------------
Tile embeddings are computed on first use and kept in a small in-memory LRU. With
``cache=PATH`` they are stored in an ordinary :class:`~napari_segany.storage.EmbeddingCache`
built over a virtual *tiles array* of shape ``lead + (rows, cols, T_y, T_x)``: each tile is
a "plane" keyed by ``plane + (row, col)``, and the cache signature records
``tiling={"scheme": "napari-segany.tiles", "version": 1, "tile": T, "halo": H}``. The same
folder thus resumes, is refused for other data, model, normalisation or tiling, and never
mixes with an untiled cache.

Stitching (:func:`stitch_tile_labels`)
--------------------------------------
Per-tile instance labels are cropped to the tile cores; objects on both sides of a core
border are joined when their masks agree (IoU >= ``min_iou``) in the overlap of the two
windows; where a tile saw background, an object of a neighbouring tile may extend into it,
so an object that one tile missed is not cut at the border.

The geometry and routing live in :mod:`._tiling_grid`, the stitching in
:mod:`._tiling_stitch`; their public names are re-exported here.

This module imports only numpy at import time.
"""

from .embeddings import TiledEmbeddings
from .grid import TILING_SCHEME, Tile, TileGrid
from .segment import TiledSegmentation, segment_tiled
from .stitch import stitch_tile_labels

__all__ = ["Tile", "TileGrid", "TiledEmbeddings", "TiledSegmentation", "segment_tiled",
           "stitch_tile_labels", "TILING_SCHEME"]
