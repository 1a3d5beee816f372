"""The hub: one image, one model, its embeddings, one labels store, undo, and review.

The napari widget, the notebook API and the command line all drive a :class:`Session`:
interactive segmentation on a plane (:meth:`Session.segment`), committing a mask
(:meth:`Session.commit`, :meth:`Session.undo`, :meth:`Session.redo`), propagation through a
stack (:meth:`Session.propagate`), automatic segmentation (:meth:`Session.auto_segment`)
and boxes to masks (:meth:`Session.segment_boxes`), directly or staged in a review area
(``review=True``; :meth:`Session.accept`, :meth:`Session.discard`). The algorithms
compute; the session writes what they yield. It never imports napari or Qt.

* :mod:`.core`: :class:`Session` and :class:`Segmentation`;
* :mod:`.writes`: the writing loops (one store operation per run);
* :mod:`.review`: the review area beside the labels store.
"""

from .core import Segmentation, Session
from .review import REVIEW_SUFFIX, AcceptResult, ReviewArea, review_path

__all__ = ["Session", "Segmentation", "ReviewArea", "AcceptResult", "REVIEW_SUFFIX",
           "review_path"]
