"""densehead: CPU real-time 3D dense face alignment (3DDFA_V2 reimplemented on TFLite)."""
from __future__ import annotations

from .face import Face, StageTimes

__version__ = "0.1.0"


def __getattr__(name: str):
    # Pipeline pulls in the runtime and OpenCV; import it on first use so that light modules
    # (results, exporters) stay cheap to import.
    if name == "Pipeline":
        from .pipeline import Pipeline
        return Pipeline
    raise AttributeError(name)


__all__ = ["Face", "Pipeline", "StageTimes", "__version__"]
