"""densehead: CPU real-time 3D dense face alignment (3DDFA_V2 reimplemented on TFLite).

    import densehead
    pipe = densehead.Pipeline()                      # or Pipeline(densehead.PipelineOptions(...))
    result = pipe(densehead.read_image("photo.jpg"))  # a FrameResult: .faces and .times
"""
from __future__ import annotations

from . import draw, tracking, video
from .assets import MissingAssetsError
from .face import Face, FrameResult, StageTimes
from .image import ImageError, read_image
from .options import OptionsError, PipelineOptions, TrackerOptions
from .pipeline import Pipeline
from .tracking import FaceTracker
from .video import VideoError, iter_frames

__version__ = "0.1.0"

__all__ = ["Face", "FaceTracker", "FrameResult", "ImageError", "MissingAssetsError",
           "OptionsError", "Pipeline", "PipelineOptions", "StageTimes", "TrackerOptions",
           "VideoError", "__version__", "draw", "iter_frames", "read_image", "tracking", "video"]
