"""The napari dock widget (the only package that imports Qt, magicgui or napari's GUI).

Opened from napari's plugin menu (Plugins > napari-segany > Segment Anything) or with
``viewer.window.add_plugin_dock_widget("napari-segany", "Segment Anything")``.
"""

from .widget import SegmentAnythingWidget

__all__ = ["SegmentAnythingWidget"]
