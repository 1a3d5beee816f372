"""The relabel table of a block run, built on the client from what the blocks reported.

Only compact per-object facts travel to the client: pairs of gids that are one object
(stitching pairs, linking pairs across planes), and the gids and pixel counts each output
chunk holds. The table maps every gid to its component's smallest gid
(:func:`components`), then every surviving object to its final id ``1..N``
(:func:`final_ids`). Each output chunk's rewrite task then gets only the rows of its own
gids (:func:`lut_for`), never the whole table.

Linking across planes (:func:`link_pairs`) is the single-process rule of
:func:`~napari_segany.auto.match_labels` (IoU >= ``link_iou``, one-to-one assignment
maximising the total IoU with the Hungarian method), computed on each connected group of
candidate pairs apart: the same optimum, without one dense matrix per plane.
"""

from __future__ import annotations

import numpy as np

__all__ = ["components", "link_pairs", "final_ids", "lut_for", "apply_lut"]


def components(edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(gids, roots)``: the nodes of ``edges`` (sorted) and their component's smallest gid.

    ``edges`` is ``(k, 2)`` uint64; gids outside it are their own roots.
    """
    edges = np.asarray(edges, np.uint64).reshape(-1, 2)
    if not len(edges):
        return np.zeros(0, np.uint64), np.zeros(0, np.uint64)
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    nodes = np.unique(edges)
    a, b = np.searchsorted(nodes, edges[:, 0]), np.searchsorted(nodes, edges[:, 1])
    n = len(nodes)
    graph = coo_matrix((np.ones(len(a), np.int8), (a, b)), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    first = np.full(comp.max() + 1, n, np.int64)
    np.minimum.at(first, comp, np.arange(n))  # nodes are sorted: the first is the smallest
    return nodes, nodes[first[comp]]


def link_pairs(pairs: np.ndarray, inter: np.ndarray, area: dict[int, int], *,
               min_iou: float) -> np.ndarray:
    """Matched ``(k, 2)`` (previous gid, current gid) of two consecutive planes.

    Parameters
    ----------
    pairs : (k, 2) uint64
        (gid on the previous plane, gid on the current plane) of overlapping objects.
    inter : (k,) int
        Their intersections (pixels).
    area : dict
        gid -> pixels of every object of the two planes.
    """
    pairs = np.asarray(pairs, np.uint64).reshape(-1, 2)
    if not len(pairs):
        return np.zeros((0, 2), np.uint64)
    from scipy.optimize import linear_sum_assignment

    aa = np.array([area[int(g)] for g in pairs[:, 0]], np.float64)
    ab = np.array([area[int(g)] for g in pairs[:, 1]], np.float64)
    iou = inter / (aa + ab - inter)
    ok = iou >= max(float(min_iou), 1e-12)
    pairs, iou = pairs[ok], iou[ok]
    if not len(pairs):
        return np.zeros((0, 2), np.uint64)
    # groups of pairs connected through shared objects (the two sides numbered apart)
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    ua, ia_all = np.unique(pairs[:, 0], return_inverse=True)
    ub, ib_all = np.unique(pairs[:, 1], return_inverse=True)
    n = len(ua) + len(ub)
    graph = coo_matrix((np.ones(len(pairs), np.int8), (ia_all, ib_all + len(ua))), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    group = comp[ia_all]
    out = []
    order = np.argsort(group, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(group[order]) != 0])
    for sel in np.split(order, starts[1:]):
        if len(sel) == 1:
            out.append(pairs[sel[0]])
            continue
        ra, ia = np.unique(pairs[sel, 0], return_inverse=True)
        rb, ib = np.unique(pairs[sel, 1], return_inverse=True)
        matrix = np.zeros((len(ra), len(rb)))
        matrix[ia, ib] = iou[sel]
        rows, cols = linear_sum_assignment(-matrix)
        out += [(ra[r], rb[c]) for r, c in zip(rows, cols, strict=True) if matrix[r, c] > 0]
    return np.array(out, np.uint64).reshape(-1, 2)


def final_ids(survivors: np.ndarray, links: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(gids, final ids)``: every surviving gid (sorted) and its object's id ``1..N``.

    Objects linked across planes (``links``) share an id; ids follow the order of each
    object's smallest gid, as the single-process run numbers them.
    """
    gids = np.unique(np.asarray(survivors, np.uint64))
    nodes, roots = components(links)
    track = gids.copy()
    if len(nodes):
        idx = np.minimum(np.searchsorted(nodes, gids), len(nodes) - 1)
        hit = nodes[idx] == gids
        track[hit] = roots[idx[hit]]
    firsts, rank = np.unique(track, return_inverse=True)
    finals = (rank + 1).astype(np.uint64)
    if len(firsts) > 2**32 - 1:
        raise ValueError(f"{len(firsts)} objects do not fit uint32 labels (at most "
                         f"{2**32 - 1})")
    return gids, finals


def lut_for(gids: np.ndarray, table: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """The final ids of ``gids`` (all in ``table``)."""
    keys, vals = table
    idx = np.searchsorted(keys, np.asarray(gids, np.uint64))
    return vals[idx].astype(np.uint32)


def apply_lut(block: np.ndarray, keys: np.ndarray, finals: np.ndarray) -> np.ndarray:
    """``block`` (uint64 gids, 0 background) mapped to uint32 final ids."""
    out = np.zeros(block.shape, np.uint32)
    fg = block > 0
    if fg.any():
        out[fg] = finals[np.searchsorted(keys, block[fg])]
    return out
