"""The TFLite interpreter, the one place that knows which runtime package is installed."""
from __future__ import annotations

import importlib.metadata
import threading
from pathlib import Path

import numpy as np

from ..weights.assets import ModelFileError

try:  # the maintained successor of tflite-runtime
    from ai_edge_litert.interpreter import Interpreter
    RUNTIME_PACKAGE = "ai-edge-litert"
except ImportError:  # pragma: no cover - only where the old runtime is what is installed
    from tflite_runtime.interpreter import Interpreter  # type: ignore[no-redef]
    RUNTIME_PACKAGE = "tflite-runtime"


def runtime_version() -> str:
    """The installed runtime and its version ("ai-edge-litert 2.3.0"): its kernels decide how
    fast each graph runs."""
    return f"{RUNTIME_PACKAGE} {importlib.metadata.version(RUNTIME_PACKAGE)}"


class TFLiteRunner:
    """One .tflite graph with one input (float, or uint8 pixels); calls are serialised by a lock because an
    interpreter must not be entered from two threads at once."""

    def __init__(self, path: str | Path, num_threads: int = 2) -> None:
        self.path = Path(path)
        self.num_threads = num_threads
        if not self.path.is_file():
            raise FileNotFoundError(f"no such model file: {self.path}")
        try:  # the runtime verifies the flatbuffer and each operator's shapes
            self._interpreter = Interpreter(model_path=str(self.path), num_threads=num_threads)
            self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise ModelFileError(self.path, f"not a TFLite model the runtime can load ({e})") \
                from None
        if not self._interpreter.get_input_details():
            raise ModelFileError(self.path, "the TFLite model has no input")
        self._read_details()
        self._lock = threading.Lock()

    def _read_details(self) -> None:
        self._input = self._interpreter.get_input_details()[0]
        self._outputs = self._interpreter.get_output_details()
        self._shape = tuple(int(n) for n in self._input["shape"])   # compared on every call

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self._shape

    @property
    def input_dtype(self) -> np.dtype:
        return np.dtype(self._input["dtype"])

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        """Run the graph on `x` (already shaped and typed for the input); returns copies of
        every output, in the graph's output order."""
        x = np.ascontiguousarray(x, dtype=self._input["dtype"])
        with self._lock:
            if x.shape != self._shape:
                self._interpreter.resize_tensor_input(self._input["index"], list(x.shape))
                self._interpreter.allocate_tensors()
                self._read_details()
            self._interpreter.set_tensor(self._input["index"], x)
            self._interpreter.invoke()
            return [self._interpreter.get_tensor(d["index"]).copy() for d in self._outputs]
