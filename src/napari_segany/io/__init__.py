"""Reading images without loading more than needed, and channel handling.

* :mod:`.read`: :func:`read_image` for TIFF (lazy above :data:`IN_MEMORY_MAX_BYTES`),
  PNG/JPEG, zarr, ``.npy`` (memory-mapped), NIfTI and frame folders.
* :mod:`.frames`: :class:`FrameFolder`, a folder of frames as a lazy stack.
* :mod:`.channels`: :class:`ChannelsLast`, a channel axis moved last as a lazy view.

The API, the command line and the napari reader use these alike.
"""

from .channels import ChannelsLast, channels_last
from .frames import FrameFolder
from .read import IN_MEMORY_MAX_BYTES, ImageData, file_stem, read_image

__all__ = ["ImageData", "read_image", "FrameFolder", "ChannelsLast", "channels_last",
           "file_stem", "IN_MEMORY_MAX_BYTES"]
