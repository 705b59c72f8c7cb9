"""densehead: CPU real-time 3D dense face alignment (3DDFA_V2 reimplemented on TFLite).

    import densehead
    pipe = densehead.Pipeline()                      # or Pipeline(densehead.PipelineOptions(...))
    result = pipe(densehead.read_image("photo.jpg"))  # a FrameResult: .faces and .times
"""
from __future__ import annotations

import importlib.metadata

from .core.errors import ImageError, OptionsError, VideoError
from .core.face import Face, FrameResult, StageTimes
from .core.options import PipelineOptions, TrackerOptions
from .engine import tracking
from .engine.pipeline import Pipeline
from .engine.tracking import FaceTracker
from .io import video
from .io.image import read_image
from .io.video import iter_frames
from .render import draw
from .weights.assets import MissingAssetsError

# pyproject.toml has the version; pip records it in the metadata of every install
__version__ = importlib.metadata.version("densehead")

__all__ = ["Face", "FaceTracker", "FrameResult", "ImageError", "MissingAssetsError",
           "OptionsError", "Pipeline", "PipelineOptions", "StageTimes", "TrackerOptions",
           "VideoError", "__version__", "draw", "iter_frames", "read_image", "tracking", "video"]
