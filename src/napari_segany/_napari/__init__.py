"""napari contributions that need no Qt: the npe2 reader, writer and sample data.

Listed in ``napari.yaml``; they return napari layer data tuples and never import napari.
"""
