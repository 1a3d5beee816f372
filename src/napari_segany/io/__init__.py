"""Reading images without loading more than needed, and channel handling.

* :mod:`.read`: :func:`read_image` for TIFF (lazy above :data:`IN_MEMORY_MAX_BYTES`),
  PNG/JPEG, zarr, ``.npy`` (memory-mapped), NIfTI, DICOM and frame folders.
* :mod:`.dicom`: :func:`read_dicom`, a DICOM series as a lazy :class:`DicomVolume`
  (slices ordered along the normal, rescaled, affine kept); :mod:`.dicom_series` finds
  the series from the headers, :mod:`.dicom_geometry` orders and checks their slices.
* :mod:`.frames`: :class:`FrameFolder`, a folder of frames as a lazy stack.
* :mod:`.video`: :class:`VideoFile`, a video (MP4, MOV, AVI, MKV, WebM) as a lazy
  ``(t, y, x, 3)`` array decoded with PyAV (keyframe index, LRU of decoded frames).
* :mod:`.channels`: :class:`ChannelsLast`, a channel axis moved last as a lazy view.

The API, the command line and the napari reader use these alike.
"""

from .channels import ChannelsLast, channels_last
from .dicom import DicomError, DicomVolume, SeriesInfo, is_dicom, list_series, read_dicom
from .frames import FrameFolder
from .read import IN_MEMORY_MAX_BYTES, ImageData, file_stem, read_image
from .video import VIDEO_SUFFIXES, VideoError, VideoFile, is_video, read_video

__all__ = ["ImageData", "read_image", "FrameFolder", "ChannelsLast", "channels_last",
           "file_stem", "IN_MEMORY_MAX_BYTES", "DicomError", "DicomVolume", "SeriesInfo",
           "read_dicom", "list_series", "is_dicom", "VideoFile", "VideoError", "read_video",
           "is_video", "VIDEO_SUFFIXES"]
