"""Writing .tflite graphs with the ``tflite`` package's generated flatbuffer builders, and the
cache of the graphs densehead writes (the compiled regressor, the rewritten detector).

A ``Graph`` holds tensors, constant buffers and operators of one subgraph and serialises them
in one pass. Cached graphs are named ``<key>-<first 16 hex of their own sha256>.tflite``, the
key holding the hashes of their sources and COMPILER_VERSION, so a damaged copy is noticed and
written again, and a new compiler rebuilds them.
"""
from __future__ import annotations

import glob
import hashlib
import importlib
import logging
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import flatbuffers
import numpy as np

from ..core.files import atomic_write
from .hashing import file_sha256

log = logging.getLogger(__name__)

# Bump whenever a graph densehead writes changes, so that cached files are rebuilt.
COMPILER_VERSION = 2


def fb(name: str):
    """A generated tflite schema module. ``import tflite.Model`` would give the class of the
    same name that the package namespace re-exports, hence import_module."""
    return importlib.import_module(f"tflite.{name}")


Op = fb("BuiltinOperator").BuiltinOperator
Options = fb("BuiltinOptions").BuiltinOptions
Padding = fb("Padding").Padding
Act = fb("ActivationFunctionType").ActivationFunctionType
TensorType = fb("TensorType").TensorType


@dataclass
class Operator:
    code: int
    inputs: list[int]
    outputs: list[int]
    options_type: int
    options: Callable[[flatbuffers.Builder], int] | None
    version: int = 1   # the operator's schema version (int8 kernels are newer versions)


@dataclass(frozen=True)
class Quantization:
    """How a tensor's integers map to real numbers: real = scale * (q - zero_point), one scale
    for the tensor or one per slice along ``axis`` (per output channel for weights)."""
    scale: np.ndarray
    zero_point: np.ndarray
    axis: int = 0


@dataclass
class Graph:
    """Tensors, constant buffers and operators of one subgraph, serialised by ``finish``."""

    buffers: list[bytes] = field(default_factory=lambda: [b""])  # buffer 0: empty sentinel
    tensors: list[tuple[str, tuple[int, ...], int, int]] = field(default_factory=list)
    quantization: dict[int, Quantization] = field(default_factory=dict)  # integer tensors
    operators: list[Operator] = field(default_factory=list)
    inputs: list[int] = field(default_factory=list)
    outputs: list[int] = field(default_factory=list)

    def constant(self, name: str, array: np.ndarray, quant: Quantization | None = None) -> int:
        kind = {np.dtype(np.float32): TensorType.FLOAT32, np.dtype(np.int32): TensorType.INT32,
                np.dtype(np.int8): TensorType.INT8}[array.dtype]
        self.buffers.append(np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes())
        self.tensors.append((name, tuple(array.shape), kind, len(self.buffers) - 1))
        return self._quantized(quant)

    def activation(self, name: str, shape: tuple[int, ...], quant: Quantization | None = None,
                   kind: int | None = None) -> int:
        """A computed tensor (or an input): float32, or int8 when it has a quantization, unless
        ``kind`` says otherwise (a uint8 input)."""
        if kind is None:
            kind = TensorType.FLOAT32 if quant is None else TensorType.INT8
        self.tensors.append((name, tuple(shape), kind, 0))
        return self._quantized(quant)

    def _quantized(self, quant: Quantization | None) -> int:
        index = len(self.tensors) - 1
        if quant is not None:
            self.quantization[index] = quant
        return index

    def shape(self, tensor: int) -> tuple[int, ...]:
        return self.tensors[tensor][1]

    def add(self, code: int, inputs: list[int], outputs: list[int], options_type: int = 0,
            options: Callable[[flatbuffers.Builder], int] | None = None, version: int = 1) -> None:
        self.operators.append(Operator(code, inputs, outputs, options_type, options, version))

    def finish(self, description: str) -> bytes:
        return _serialise(self, description)


def _int_vector(b: flatbuffers.Builder, values: list[int] | tuple[int, ...]) -> int:
    b.StartVector(4, len(values), 4)
    for v in reversed(values):
        b.PrependInt32(int(v))
    return b.EndVector()


def _offset_vector(b: flatbuffers.Builder, offsets: list[int]) -> int:
    b.StartVector(4, len(offsets), 4)
    for off in reversed(offsets):
        b.PrependUOffsetTRelative(off)
    return b.EndVector()


def _data_vector(b: flatbuffers.Builder, data: bytes) -> int:
    # 16-byte aligned so that the runtime can use weights in place (mmap) without copies
    b.StartVector(1, len(data), 16)
    b.head = b.head - len(data)
    b.Bytes[b.head:b.head + len(data)] = data
    return b.EndVector()


def _quantization(b: flatbuffers.Builder, quant: Quantization) -> int:
    Q = fb("QuantizationParameters")
    b.StartVector(4, len(quant.scale), 4)
    for v in reversed(quant.scale):
        b.PrependFloat32(float(v))
    scale = b.EndVector()
    b.StartVector(8, len(quant.zero_point), 8)
    for v in reversed(quant.zero_point):
        b.PrependInt64(int(v))
    zero_point = b.EndVector()
    Q.QuantizationParametersStart(b)
    Q.QuantizationParametersAddScale(b, scale)
    Q.QuantizationParametersAddZeroPoint(b, zero_point)
    Q.QuantizationParametersAddQuantizedDimension(b, quant.axis)
    return Q.QuantizationParametersEnd(b)


def _serialise(g: Graph, description: str) -> bytes:
    """The model as one flatbuffer, written back to front: the order of the parts below is part
    of the file's bytes (another order is another graph: bump COMPILER_VERSION)."""
    b = flatbuffers.Builder(sum(len(d) for d in g.buffers) + 65536)
    buffers = _buffers(b, g)
    tensors = _tensors(b, g)
    codes = sorted({op.code for op in g.operators})   # an operator names its code by index
    operators = _operators(b, g, codes)
    opcodes = _operator_codes(b, g, codes)
    subgraph = _subgraph(b, g, tensors, operators)
    b.Finish(_model(b, description, opcodes, subgraph, buffers), file_identifier=b"TFL3")
    return bytes(b.Output())


def _buffers(b: flatbuffers.Builder, g: Graph) -> list[int]:
    B = fb("Buffer")
    buffers = []
    for data in g.buffers:
        vec = _data_vector(b, data) if data else None
        B.BufferStart(b)
        if vec is not None:
            B.BufferAddData(b, vec)
        buffers.append(B.BufferEnd(b))
    return buffers


def _tensors(b: flatbuffers.Builder, g: Graph) -> list[int]:
    T = fb("Tensor")
    tensors = []
    for index, (name, shape, kind, buf) in enumerate(g.tensors):
        quant = g.quantization.get(index)
        quant_off = _quantization(b, quant) if quant is not None else None
        name_off, shape_off = b.CreateString(name), _int_vector(b, shape)
        T.TensorStart(b)
        T.TensorAddShape(b, shape_off)
        T.TensorAddType(b, kind)
        T.TensorAddBuffer(b, buf)
        T.TensorAddName(b, name_off)
        if quant_off is not None:
            T.TensorAddQuantization(b, quant_off)
        tensors.append(T.TensorEnd(b))
    return tensors


def _operators(b: flatbuffers.Builder, g: Graph, codes: list[int]) -> list[int]:
    O = fb("Operator")
    operators = []
    for op in g.operators:
        ins, outs = _int_vector(b, op.inputs), _int_vector(b, op.outputs)
        opts = op.options(b) if op.options else None
        O.OperatorStart(b)
        O.OperatorAddOpcodeIndex(b, codes.index(op.code))
        O.OperatorAddInputs(b, ins)
        O.OperatorAddOutputs(b, outs)
        if opts is not None:
            O.OperatorAddBuiltinOptionsType(b, op.options_type)
            O.OperatorAddBuiltinOptions(b, opts)
        operators.append(O.OperatorEnd(b))
    return operators


def _operator_codes(b: flatbuffers.Builder, g: Graph, codes: list[int]) -> list[int]:
    """One entry per operator kind, at the newest version any of its operators needs."""
    C = fb("OperatorCode")
    opcodes = []
    for code in codes:
        C.OperatorCodeStart(b)
        C.OperatorCodeAddDeprecatedBuiltinCode(b, min(code, 127))
        C.OperatorCodeAddBuiltinCode(b, code)
        C.OperatorCodeAddVersion(b, max(op.version for op in g.operators if op.code == code))
        opcodes.append(C.OperatorCodeEnd(b))
    return opcodes


def _subgraph(b: flatbuffers.Builder, g: Graph, tensors: list[int], operators: list[int]) -> int:
    S = fb("SubGraph")
    t_vec, o_vec = _offset_vector(b, tensors), _offset_vector(b, operators)
    in_vec, out_vec = _int_vector(b, g.inputs), _int_vector(b, g.outputs)
    sg_name = b.CreateString("main")
    S.SubGraphStart(b)
    S.SubGraphAddTensors(b, t_vec)
    S.SubGraphAddInputs(b, in_vec)
    S.SubGraphAddOutputs(b, out_vec)
    S.SubGraphAddOperators(b, o_vec)
    S.SubGraphAddName(b, sg_name)
    return S.SubGraphEnd(b)


def _model(b: flatbuffers.Builder, description: str, opcodes: list[int], subgraph: int,
           buffers: list[int]) -> int:
    M = fb("Model")
    codes_vec, sg_vec = _offset_vector(b, opcodes), _offset_vector(b, [subgraph])
    buf_vec, desc = _offset_vector(b, buffers), b.CreateString(description)
    M.ModelStart(b)
    M.ModelAddVersion(b, 3)
    M.ModelAddOperatorCodes(b, codes_vec)
    M.ModelAddSubgraphs(b, sg_vec)
    M.ModelAddDescription(b, desc)
    M.ModelAddBuffers(b, buf_vec)
    return M.ModelEnd(b)


# ----------------------------------------------------------------------------- ops

def conv_options(padding: int, stride: int, depthwise: bool, activation: int = Act.RELU,
                 dilation: int = 1, depth_multiplier: int = 1
                 ) -> Callable[[flatbuffers.Builder], int]:
    def build(b: flatbuffers.Builder) -> int:
        prefix = "DepthwiseConv2DOptions" if depthwise else "Conv2DOptions"
        mod = fb(prefix)
        getattr(mod, f"{prefix}Start")(b)
        getattr(mod, f"{prefix}AddPadding")(b, padding)
        getattr(mod, f"{prefix}AddStrideW")(b, stride)
        getattr(mod, f"{prefix}AddStrideH")(b, stride)
        if dilation != 1:
            getattr(mod, f"{prefix}AddDilationWFactor")(b, dilation)
            getattr(mod, f"{prefix}AddDilationHFactor")(b, dilation)
        if depthwise:
            mod.DepthwiseConv2DOptionsAddDepthMultiplier(b, depth_multiplier)
        getattr(mod, f"{prefix}AddFusedActivationFunction")(b, activation)
        return getattr(mod, f"{prefix}End")(b)
    return build


def activation_options(prefix: str, activation: int) -> Callable[[flatbuffers.Builder], int]:
    """The options of an op whose only option is its fused activation (ADD, MUL, ...)."""
    def build(b: flatbuffers.Builder) -> int:
        mod = fb(prefix)
        getattr(mod, f"{prefix}Start")(b)
        getattr(mod, f"{prefix}AddFusedActivationFunction")(b, activation)
        return getattr(mod, f"{prefix}End")(b)
    return build


def pad(g: Graph, x: int, paddings: np.ndarray, name: str) -> int:
    """Zero padding of an NHWC tensor; ``paddings`` is (4, 2): before and after each axis. An
    int8 tensor is padded with its zero point, i.e. with 0.0."""
    paddings = np.asarray(paddings, np.int32)
    shape = tuple(int(n + before + after) for n, (before, after) in zip(g.shape(x), paddings))
    amounts = g.constant(f"{name}/paddings", paddings)
    quant = g.quantization.get(x)
    y = g.activation(f"{name}/padded", shape, quant)
    mod = fb("PadOptions")
    g.add(Op.PAD, [x, amounts], [y], Options.PadOptions,
          lambda b: (mod.PadOptionsStart(b), mod.PadOptionsEnd(b))[1],
          version=1 if quant is None else 2)
    return y


def int8_weights(g: Graph, name: str, weight: np.ndarray, bias: np.ndarray,
                 in_quant: Quantization, axis: int) -> tuple[int, int]:
    """Weights as symmetric int8 with one scale per output channel (along ``axis``), and the
    bias as int32 in units of input scale x weight scale, as TFLite's int8 convolutions take
    them."""
    other = tuple(i for i in range(weight.ndim) if i != axis)
    w_scale = np.maximum(np.abs(weight).max(axis=other), 1e-12) / 127.0
    shape = [1] * weight.ndim
    shape[axis] = -1
    w_int8 = np.clip(np.round(weight / w_scale.reshape(shape)), -127, 127).astype(np.int8)
    b_scale = (float(in_quant.scale[0]) * w_scale).astype(np.float32)
    b_int32 = np.round(bias / b_scale).astype(np.int32)
    zeros = np.zeros(len(w_scale), np.int64)
    w_t = g.constant(f"{name}/weight", w_int8, Quantization(w_scale.astype(np.float32), zeros, axis))
    b_t = g.constant(f"{name}/bias", b_int32, Quantization(b_scale, zeros, 0))
    return w_t, b_t


def int8_quantization(low: float, high: float) -> Quantization:
    """Asymmetric int8 for values seen between ``low`` and ``high`` (widened to hold 0.0, which
    padding and ReLU need exactly)."""
    low, high = min(float(low), 0.0), max(float(high), 0.0)
    scale = max(high - low, 1e-8) / 255.0
    zero_point = int(np.clip(round(-128 - low / scale), -128, 127))
    return Quantization(np.array([scale], np.float32), np.array([zero_point], np.int64))


def convert(g: Graph, x: int, quant: Quantization | None, name: str) -> int:
    """float32 -> int8 (``quant`` given) or int8 -> float32 (QUANTIZE / DEQUANTIZE)."""
    y = g.activation(name, g.shape(x), quant)
    if quant is not None:
        g.add(Op.QUANTIZE, [x], [y], version=2)
    else:
        g.add(Op.DEQUANTIZE, [x], [y], version=2)
    return y


# ----------------------------------------------------------------------------- cache

STALE_DAYS = 30   # compiled graphs unused this long are removed when a new one is compiled
# the names `cached_graph` gives (key ending in the compiler version, then the digest): only
# these are ever removed, whatever else a cache folder holds
_COMPILED_NAME = re.compile(r".+-c\d+-[0-9a-f]{16}\.tflite")


def cached_graph(cache_dir: Path, key: str, build: Callable[[], bytes], what: str) -> Path:
    """Path of the graph ``key`` in ``cache_dir``, written by ``build`` on first use, and again
    when the cached copy no longer matches its digest (truncated, damaged, edited). Written to
    a temp file and renamed, so a concurrent reader never sees half a file. A graph is marked
    used (its mtime) whenever it is returned; compiling a new one removes those unused for
    STALE_DAYS, which no version of densehead sharing the cache asked for that long."""
    cache_dir = Path(cache_dir)
    for cached in sorted(cache_dir.glob(f"{glob.escape(key)}-*.tflite")):
        if _intact(cached):
            _mark_used(cached)
            return cached
        log.warning("compiled %s %s is damaged: compiling it again", what, cached)
        cached.unlink(missing_ok=True)
    (cache_dir / f"{key}.tflite").unlink(missing_ok=True)  # pre-digest name: unverifiable
    cache_dir.mkdir(parents=True, exist_ok=True)
    log.info("compiling the %s to TFLite (once; cached in %s)", what, cache_dir)
    data = build()
    path = atomic_write(cache_dir / f"{key}-{hashlib.sha256(data).hexdigest()[:16]}.tflite", data)
    _remove_unused(cache_dir, keep=path)
    return path


def _mark_used(path: Path) -> None:
    try:
        os.utime(path)
    except OSError:   # a cache this user may read but not write: used as it is
        pass


def _remove_unused(cache_dir: Path, keep: Path) -> None:
    cutoff = time.time() - STALE_DAYS * 86_400
    removed = []
    for path in cache_dir.glob("*.tflite"):
        if path == keep or not _COMPILED_NAME.fullmatch(path.name):
            continue
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
                removed.append(path.name)
        except OSError:   # gone already (another process), or not ours to remove
            continue
    if removed:
        log.info("removed %d compiled graph(s) unused for %d days from %s: %s", len(removed),
                 STALE_DAYS, cache_dir, ", ".join(sorted(removed)))


def _intact(path: Path) -> bool:
    return file_sha256(path)[:16] == path.stem.rsplit("-", 1)[-1]
