"""Compile the 3DDFA_V2 MobileNetV1 regressor (a PyTorch state dict) into a .tflite graph.

No torch and no tensorflow: batch norm is folded into the convolutions with numpy, the
de-normalisation of the 62 parameters (``param * std + mean``) is folded into the last
fully-connected layer, and the flatbuffer is written with the ``tflite`` package's generated
builder functions.

Graph: input float32 [1, 120, 120, 3] NHWC (BGR crop, (x - 127.5) / 128), output float32
[1, 62] de-normalised 3DMM parameters (12 camera, 40 shape, 10 expression).
"""
from __future__ import annotations

import glob
import hashlib
import importlib
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import flatbuffers
import numpy as np

from ..core.files import atomic_write
from ..core.layout import INPUT_SIZE, N_PARAMS
from ..core.options import INT8
from .assets import ModelFileError, file_sha256
from .checkpoint import load_checkpoint, load_pickle
from .int8_ranges import stored_ranges

log = logging.getLogger(__name__)

# Bump whenever the emitted graph changes, so that cached files are rebuilt.
COMPILER_VERSION = 2

BN_EPS = 1e-5  # PyTorch's BatchNorm2d default, which 3DDFA_V2 uses
BASE_CHANNELS = 32  # conv1 width of MobileNetV1 at widen factor 1
# blocks that downsample; every other block of the network has stride 1
STRIDE2_BLOCKS = {"dw2_2", "dw3_2", "dw4_2", "dw5_6"}
KNOWN_BLOCKS = {"dw2_1", "dw2_2", "dw3_1", "dw3_2", "dw4_1", "dw4_2",
                "dw5_1", "dw5_2", "dw5_3", "dw5_4", "dw5_5", "dw5_6", "dw6"}


def _fb(name: str):
    """A generated tflite schema module. ``import tflite.Model`` would give the class of the
    same name that the package namespace re-exports, hence import_module."""
    return importlib.import_module(f"tflite.{name}")


_Op = _fb("BuiltinOperator").BuiltinOperator
_Options = _fb("BuiltinOptions").BuiltinOptions
_Padding = _fb("Padding").Padding
_Act = _fb("ActivationFunctionType").ActivationFunctionType
_Type = _fb("TensorType").TensorType


# ----------------------------------------------------------------------------- weights

def widen_factor(state: dict[str, np.ndarray]) -> float:
    """Width multiplier of the network, from conv1's output channels (32 at 1.0)."""
    return state["conv1.weight"].shape[0] / BASE_CHANNELS


def fold_batch_norm(weight: np.ndarray, state: dict[str, np.ndarray], bn: str,
                    bias: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Fold an eval-mode BatchNorm into the preceding conv (weight is O-first, torch layout)."""
    scale = state[f"{bn}.weight"] / np.sqrt(state[f"{bn}.running_var"].astype(np.float64) + BN_EPS)
    conv_bias = np.zeros(weight.shape[0]) if bias is None else bias.astype(np.float64)
    folded_w = weight.astype(np.float64) * scale.reshape(-1, *([1] * (weight.ndim - 1)))
    folded_b = (conv_bias - state[f"{bn}.running_mean"]) * scale + state[f"{bn}.bias"]
    return folded_w.astype(np.float32), folded_b.astype(np.float32)


def block_names(state: dict[str, np.ndarray]) -> list[str]:
    """Depthwise-separable blocks in network order, from the state dict's own keys."""
    names = [m.group(1) for k in state if (m := re.match(r"^(dw\d+(?:_\d+)?)\.conv_dw\.weight$", k))]
    unknown = set(names) - KNOWN_BLOCKS
    if unknown:
        raise ValueError(f"unexpected blocks in the checkpoint: {sorted(unknown)}")
    return sorted(names, key=lambda n: tuple(int(x) for x in n[2:].split("_")))


def final_layer(state: dict[str, np.ndarray], mean: np.ndarray,
                std: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """fc_param with the de-normalisation folded in: (W x + b) * std + mean."""
    w = state["fc_param.weight"].astype(np.float64)
    b = state["fc_param.bias"].astype(np.float64)
    std = std.astype(np.float64).ravel()
    mean = mean.astype(np.float64).ravel()
    return (w * std[:, None]).astype(np.float32), (b * std + mean).astype(np.float32)


# ----------------------------------------------------------------------------- padding

def explicit_padding(size: int, kernel: int, stride: int, pad: int) -> tuple[int, int] | None:
    """None if TFLite SAME padding equals PyTorch's symmetric ``pad`` for this input size;
    otherwise the (before, after) zero padding that a VALID conv needs to match PyTorch."""
    out = (size + 2 * pad - kernel) // stride + 1
    same_out = math.ceil(size / stride)
    same_total = max((same_out - 1) * stride + kernel - size, 0)
    if out == same_out and same_total // 2 == pad:
        return None
    after = max((out - 1) * stride + kernel - size - pad, 0)  # rows PyTorch actually reads
    return pad, after


def _out_size(size: int, kernel: int, stride: int, pad: int) -> int:
    return (size + 2 * pad - kernel) // stride + 1


# ----------------------------------------------------------------------------- graph

@dataclass
class _Operator:
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
class _Graph:
    """Tensors, constant buffers and operators of one subgraph, serialised by ``finish``."""

    buffers: list[bytes] = field(default_factory=lambda: [b""])  # buffer 0: empty sentinel
    tensors: list[tuple[str, tuple[int, ...], int, int]] = field(default_factory=list)
    quantization: dict[int, Quantization] = field(default_factory=dict)  # integer tensors
    operators: list[_Operator] = field(default_factory=list)
    inputs: list[int] = field(default_factory=list)
    outputs: list[int] = field(default_factory=list)

    def constant(self, name: str, array: np.ndarray, quant: Quantization | None = None) -> int:
        kind = {np.dtype(np.float32): _Type.FLOAT32, np.dtype(np.int32): _Type.INT32,
                np.dtype(np.int8): _Type.INT8}[array.dtype]
        self.buffers.append(np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes())
        self.tensors.append((name, tuple(array.shape), kind, len(self.buffers) - 1))
        return self._quantized(quant)

    def activation(self, name: str, shape: tuple[int, ...],
                   quant: Quantization | None = None) -> int:
        """A computed tensor: float32, or int8 when it has a quantization."""
        self.tensors.append((name, tuple(shape), _Type.FLOAT32 if quant is None else _Type.INT8, 0))
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
        self.operators.append(_Operator(code, inputs, outputs, options_type, options, version))

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
    Q = _fb("QuantizationParameters")
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


def _serialise(g: _Graph, description: str) -> bytes:
    M, T, B, O, S, C = (_fb(n) for n in ("Model", "Tensor", "Buffer", "Operator", "SubGraph",
                                         "OperatorCode"))
    b = flatbuffers.Builder(sum(len(d) for d in g.buffers) + 65536)

    buffers = []
    for data in g.buffers:
        vec = _data_vector(b, data) if data else None
        B.BufferStart(b)
        if vec is not None:
            B.BufferAddData(b, vec)
        buffers.append(B.BufferEnd(b))

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

    codes = sorted({op.code for op in g.operators})
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

    opcodes = []
    for code in codes:
        C.OperatorCodeStart(b)
        C.OperatorCodeAddDeprecatedBuiltinCode(b, min(code, 127))
        C.OperatorCodeAddBuiltinCode(b, code)
        C.OperatorCodeAddVersion(b, max(op.version for op in g.operators if op.code == code))
        opcodes.append(C.OperatorCodeEnd(b))

    t_vec, o_vec = _offset_vector(b, tensors), _offset_vector(b, operators)
    in_vec, out_vec = _int_vector(b, g.inputs), _int_vector(b, g.outputs)
    sg_name = b.CreateString("main")
    S.SubGraphStart(b)
    S.SubGraphAddTensors(b, t_vec)
    S.SubGraphAddInputs(b, in_vec)
    S.SubGraphAddOutputs(b, out_vec)
    S.SubGraphAddOperators(b, o_vec)
    S.SubGraphAddName(b, sg_name)
    subgraph = S.SubGraphEnd(b)

    codes_vec, sg_vec = _offset_vector(b, opcodes), _offset_vector(b, [subgraph])
    buf_vec, desc = _offset_vector(b, buffers), b.CreateString(description)
    M.ModelStart(b)
    M.ModelAddVersion(b, 3)
    M.ModelAddOperatorCodes(b, codes_vec)
    M.ModelAddSubgraphs(b, sg_vec)
    M.ModelAddDescription(b, desc)
    M.ModelAddBuffers(b, buf_vec)
    b.Finish(M.ModelEnd(b), file_identifier=b"TFL3")
    return bytes(b.Output())


# ----------------------------------------------------------------------------- ops

def _conv_options(padding: int, stride: int, depthwise: bool) -> Callable[[flatbuffers.Builder], int]:
    def build(b: flatbuffers.Builder) -> int:
        mod = _fb("DepthwiseConv2DOptions" if depthwise else "Conv2DOptions")
        prefix = "DepthwiseConv2DOptions" if depthwise else "Conv2DOptions"
        getattr(mod, f"{prefix}Start")(b)
        getattr(mod, f"{prefix}AddPadding")(b, padding)
        getattr(mod, f"{prefix}AddStrideW")(b, stride)
        getattr(mod, f"{prefix}AddStrideH")(b, stride)
        if depthwise:
            mod.DepthwiseConv2DOptionsAddDepthMultiplier(b, 1)
        getattr(mod, f"{prefix}AddFusedActivationFunction")(b, _Act.RELU)
        return getattr(mod, f"{prefix}End")(b)
    return build


def _pad(g: _Graph, x: int, pads: tuple[int, int], name: str) -> int:
    n, h, w, c = g.shape(x)
    paddings = g.constant(f"{name}/paddings", np.array([[0, 0], pads, pads, [0, 0]], np.int32))
    quant = g.quantization.get(x)   # int8: pads with the zero point, i.e. with 0.0
    y = g.activation(f"{name}/padded", (n, h + sum(pads), w + sum(pads), c), quant)
    mod = _fb("PadOptions")
    g.add(_Op.PAD, [x, paddings], [y], _Options.PadOptions,
          lambda b: (mod.PadOptionsStart(b), mod.PadOptionsEnd(b))[1], version=1 if quant is None else 2)
    return y


def _conv_relu(g: _Graph, x: int, weight: np.ndarray, bias: np.ndarray, stride: int,
               name: str, depthwise: bool = False, out_quant: Quantization | None = None) -> int:
    """3x3 or 1x1 conv (+ folded BN) + ReLU with PyTorch's symmetric padding k // 2.
    ``weight`` is in torch layout (O, I, kh, kw) or (C, 1, kh, kw) for depthwise. An int8
    input (a quantized ``x``) gives an int8 conv whose output has ``out_quant``."""
    n, h, w, _ = g.shape(x)
    k = weight.shape[-1]
    pad = k // 2
    pads = explicit_padding(h, k, stride, pad)
    if pads is not None:
        x = _pad(g, x, pads, name)
    padding = _Padding.SAME if pads is None else _Padding.VALID
    if depthwise:
        w_tfl = weight[:, 0].transpose(1, 2, 0)[None]  # [1, kh, kw, C]
    else:
        w_tfl = weight.transpose(0, 2, 3, 1)  # OHWI
    w_tfl = np.ascontiguousarray(w_tfl, dtype=np.float32)
    int8 = x in g.quantization
    if int8:
        w_t, b_t = _int8_weights(g, name, w_tfl, bias, g.quantization[x], axis=3 if depthwise else 0)
    else:
        w_t, b_t = g.constant(f"{name}/weight", w_tfl), g.constant(f"{name}/bias", bias.astype(np.float32))
    out = _out_size(h, k, stride, pad), _out_size(w, k, stride, pad)
    y = g.activation(f"{name}/relu", (n, *out, weight.shape[0]), out_quant)
    code = _Op.DEPTHWISE_CONV_2D if depthwise else _Op.CONV_2D
    kind = _Options.DepthwiseConv2DOptions if depthwise else _Options.Conv2DOptions
    g.add(code, [x, w_t, b_t], [y], kind, _conv_options(padding, stride, depthwise),
          version=3 if int8 else 1)   # 3: int8 with per-channel weight scales
    return y


def _int8_weights(g: _Graph, name: str, weight: np.ndarray, bias: np.ndarray,
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


def _global_mean(g: _Graph, x: int, out_quant: Quantization | None = None) -> int:
    n, _, _, c = g.shape(x)
    axes = g.constant("pool/axes", np.array([1, 2], np.int32))
    y = g.activation("pool/mean", (n, c), out_quant)
    mod = _fb("ReducerOptions")

    def options(b: flatbuffers.Builder) -> int:
        mod.ReducerOptionsStart(b)
        mod.ReducerOptionsAddKeepDims(b, False)
        return mod.ReducerOptionsEnd(b)
    g.add(_Op.MEAN, [x, axes], [y], _Options.ReducerOptions, options,
          version=1 if out_quant is None else 2)
    return y


def _convert(g: _Graph, x: int, quant: Quantization | None, name: str) -> int:
    """float32 -> int8 (``quant`` given) or int8 -> float32 (QUANTIZE / DEQUANTIZE)."""
    y = g.activation(name, g.shape(x), quant)
    if quant is not None:
        g.add(_Op.QUANTIZE, [x], [y], version=2)
    else:
        g.add(_Op.DEQUANTIZE, [x], [y], version=2)
    return y


def _fully_connected(g: _Graph, x: int, weight: np.ndarray, bias: np.ndarray, name: str) -> int:
    w_t, b_t = g.constant(f"{name}/weight", weight), g.constant(f"{name}/bias", bias)
    y = g.activation(name, (g.shape(x)[0], weight.shape[0]))
    mod = _fb("FullyConnectedOptions")

    def options(b: flatbuffers.Builder) -> int:
        mod.FullyConnectedOptionsStart(b)
        mod.FullyConnectedOptionsAddFusedActivationFunction(b, _Act.NONE)
        return mod.FullyConnectedOptionsEnd(b)
    g.add(_Op.FULLY_CONNECTED, [x, w_t, b_t], [y], _Options.FullyConnectedOptions, options)
    return y


# ----------------------------------------------------------------------------- network

# Activation ranges of an int8 graph: tensor name (as in the float graph) -> (low, high)
Ranges = dict[str, tuple[float, float]]


def build_regressor(state: dict[str, np.ndarray], mean: np.ndarray, std: np.ndarray,
                    ranges: Ranges | None = None) -> bytes:
    """The .tflite bytes of the MobileNetV1 regressor described by ``state``. With the
    activation ``ranges`` of its float graph (densehead.weights.int8_ranges) the convolutions
    after conv1 and the pooling run in int8; conv1 stays float (see below), and the last layer
    too, because its 62 outputs span five orders of magnitude, more than one int8 scale can
    hold."""
    def quant(name: str) -> Quantization | None:
        return int8_quantization(*ranges[name]) if ranges is not None else None

    g = _Graph()
    x = g.activation("input", (1, INPUT_SIZE, INPUT_SIZE, 3))
    g.inputs.append(x)
    w, b = fold_batch_norm(state["conv1.weight"], state, "bn1", state.get("conv1.bias"))
    # conv1 stays float in the int8 graph: 3 input channels (27 products per output) leave most
    # of an int8 dot-product tile idle, while the float kernel runs it at full width; its
    # output is converted to int8 with its calibrated range
    x = _conv_relu(g, x, w, b, 2, "conv1")
    if ranges is not None:
        x = _convert(g, x, quant("conv1/relu"), "conv1/int8")
    for block in block_names(state):
        stride = 2 if block in STRIDE2_BLOCKS else 1
        for part, depthwise in (("dw", True), ("sep", False)):
            conv = f"{block}.conv_{part}"
            w, b = fold_batch_norm(state[f"{conv}.weight"], state, f"{block}.bn_{part}",
                                   state.get(f"{conv}.bias"))
            x = _conv_relu(g, x, w, b, stride if depthwise else 1, f"{block}/{part}",
                           depthwise=depthwise, out_quant=quant(f"{block}/{part}/relu"))
    x = _global_mean(g, x, quant("pool/mean"))
    if ranges is not None:
        x = _convert(g, x, None, "pool/float")
    fc_w, fc_b = final_layer(state, mean, std)
    y = _fully_connected(g, x, fc_w, fc_b, "params")
    g.outputs.append(y)
    kind = " int8" if ranges is not None else ""
    return g.finish(f"densehead MobileNetV1 x{widen_factor(state):g}{kind} regressor, "
                    f"compiler v{COMPILER_VERSION}")


def load_param_stats(param_stats: Path) -> tuple[np.ndarray, np.ndarray]:
    """The 62 means and standard deviations that de-normalise the regressor's output."""
    stats = load_pickle(param_stats)
    if not isinstance(stats, dict) or not {"mean", "std"} <= stats.keys():
        raise ModelFileError(param_stats, f"holds {_kind(stats)}, not a dict with 'mean' and "
                             "'std'")
    out = []
    for key in ("mean", "std"):
        value = stats[key]
        if not (isinstance(value, np.ndarray) and value.size == N_PARAMS
                and np.issubdtype(value.dtype, np.number) and np.isfinite(value).all()):
            raise ModelFileError(param_stats, f"'{key}' is {_kind(value)}, not {N_PARAMS} "
                                 "finite numbers")
        out.append(value.astype(np.float32).ravel())
    return out[0], out[1]


def _kind(value: object) -> str:
    if isinstance(value, np.ndarray):
        return f"a {value.dtype} array of shape {value.shape}"
    return f"a {type(value).__name__}"


def state_problem(state: dict[str, np.ndarray]) -> str | None:
    """What makes ``state`` unusable as a 3DDFA_V2 MobileNetV1 regressor, or None: every layer
    present with shapes that chain, finite weights, non-negative variances. Checked before
    compiling so that a wrong file is named as such instead of failing somewhere inside."""
    return next(_state_problems(state), None)


def _state_problems(state: dict[str, np.ndarray]) -> Iterator[str]:
    def check(key: str, shape: tuple[int, ...]) -> Iterator[str]:
        value = state.get(key)
        if value is None:
            yield f"{key} is missing"
        elif value.shape != shape or not np.issubdtype(value.dtype, np.floating):
            yield f"{key} is {_kind(value)}, expected float {shape}"
        elif not np.isfinite(value).all():
            yield f"{key} holds NaN or infinite weights"
        elif key.endswith("running_var") and (value < 0).any():
            yield f"{key} holds negative variances"

    def conv_bn(conv: str, bn: str, shape: tuple[int, ...]) -> Iterator[str]:
        yield from check(f"{conv}.weight", shape)
        for name in ("weight", "bias", "running_mean", "running_var"):
            yield from check(f"{bn}.{name}", shape[:1])
        if f"{conv}.bias" in state:
            yield from check(f"{conv}.bias", shape[:1])

    conv1 = state.get("conv1.weight")
    if conv1 is None or conv1.ndim != 4:
        yield "conv1.weight is missing or not a 4-d convolution weight"
        return
    channels = conv1.shape[0]
    yield from conv_bn("conv1", "bn1", (channels, 3, 3, 3))
    blocks = block_names(state)  # ValueError for blocks it does not know: caught by the caller
    if not blocks:
        yield "no depthwise-separable blocks (dw2_1.conv_dw.weight, ...)"
    for block in blocks:
        yield from conv_bn(f"{block}.conv_dw", f"{block}.bn_dw", (channels, 1, 3, 3))
        sep = state.get(f"{block}.conv_sep.weight")
        out = sep.shape[0] if sep is not None and sep.ndim == 4 else channels
        yield from conv_bn(f"{block}.conv_sep", f"{block}.bn_sep", (out, channels, 1, 1))
        channels = out
    yield from check("fc_param.weight", (N_PARAMS, channels))
    yield from check("fc_param.bias", (N_PARAMS,))


def regressor_tflite_bytes(checkpoint: Path, param_stats: Path, int8: bool = False) -> bytes:
    """Compile without caching (tests, one-off use); ``int8`` with the checkpoint's stored
    calibration. Raises ModelFileError naming the file when either input is not what it
    should be, or when an int8 graph is asked of a checkpoint that was never calibrated."""
    mean, std = load_param_stats(Path(param_stats))
    state = load_checkpoint(checkpoint)
    try:
        problem = state_problem(state)
    except ValueError as e:  # block_names: blocks this network does not have
        problem = str(e)
    if problem is not None:
        raise ModelFileError(checkpoint, f"not a 3DDFA_V2 MobileNetV1 regressor: {problem}")
    if not int8:
        return build_regressor(state, mean, std)
    return build_regressor(state, mean, std, stored_ranges(checkpoint))


def cache_key(checkpoint: Path, param_stats: Path, int8: bool = False) -> str:
    """Checkpoint hash, stats hash (folded into the graph), int8 or not, and compiler version.
    The cached file is ``<key>-<first 16 hex of its own sha256>.tflite``, so a damaged copy is
    noticed."""
    return (f"{Path(checkpoint).stem}-{file_sha256(Path(checkpoint))[:16]}"
            f"-stats{file_sha256(Path(param_stats))[:8]}{INT8 if int8 else ''}-c{COMPILER_VERSION}")


def _intact(path: Path) -> bool:
    return file_sha256(path)[:16] == path.stem.rsplit("-", 1)[-1]


def regressor_tflite(checkpoint: Path, param_stats: Path, cache_dir: Path, int8: bool = False) -> Path:
    """Path of the compiled regressor in ``cache_dir``, compiling it on first use, and again
    when the cached copy no longer matches its digest (truncated, damaged, edited).
    Written to a temp file and renamed, so a concurrent reader never sees half a file."""
    cache_dir = Path(cache_dir)
    key = cache_key(checkpoint, param_stats, int8)
    for cached in sorted(cache_dir.glob(f"{glob.escape(key)}-*.tflite")):
        if _intact(cached):
            return cached
        log.warning("compiled regressor %s is damaged: compiling it again", cached)
        cached.unlink(missing_ok=True)
    (cache_dir / f"{key}.tflite").unlink(missing_ok=True)  # pre-digest name: unverifiable
    cache_dir.mkdir(parents=True, exist_ok=True)
    log.info("compiling %s to TFLite (once; cached in %s)", Path(checkpoint).name, cache_dir)
    data = regressor_tflite_bytes(checkpoint, param_stats, int8)
    target = cache_dir / f"{key}-{hashlib.sha256(data).hexdigest()[:16]}.tflite"
    return atomic_write(target, data)
