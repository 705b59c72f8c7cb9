"""Compile the 3DDFA_V2 MobileNetV1 regressor (a PyTorch state dict) into a .tflite graph.

No torch and no tensorflow: batch norm is folded into the convolutions with numpy, the
de-normalisation of the 62 parameters (``param * std + mean``) is folded into the last
fully-connected layer, and the flatbuffer is written by densehead.weights.tflite_writer.

Graph: input uint8 [1, 120, 120, 3] NHWC, the BGR crop as it is, normalised inside to
(x - 127.5) / 128 (DEQUANTIZE, then ADD; exact in float32, so bit for bit what the network was
fed before); output float32 [1, 62] de-normalised 3DMM parameters (12 camera, 40 shape, 10
expression). The caller hands over a 4x smaller input and does no arithmetic on it.
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Iterator

import flatbuffers
import numpy as np

from ..core.layout import INPUT_SIZE, N_PARAMS
from ..core.options import INT8
from .assets import ModelFileError
from .checkpoint import load_checkpoint, load_pickle
from .hashing import file_sha256
from .int8_ranges import ranges_digest, stored_ranges
from .tflite_writer import (
    COMPILER_VERSION,
    Act,
    Graph,
    Op,
    Options,
    Padding,
    Quantization,
    TensorType,
    activation_options,
    cached_graph,
    conv_options,
    convert,
    fb,
    int8_quantization,
    int8_weights,
    pad,
)

BN_EPS = 1e-5  # PyTorch's BatchNorm2d default, which 3DDFA_V2 uses
# the network's input normalisation, (x - CROP_MEAN) * CROP_SCALE, as 3DDFA_V2 trained it
CROP_MEAN = 127.5
CROP_SCALE = 1.0 / 128.0
BASE_CHANNELS = 32  # conv1 width of MobileNetV1 at widen factor 1
# blocks that downsample; every other block of the network has stride 1
STRIDE2_BLOCKS = {"dw2_2", "dw3_2", "dw4_2", "dw5_6"}
KNOWN_BLOCKS = {"dw2_1", "dw2_2", "dw3_1", "dw3_2", "dw4_1", "dw4_2",
                "dw5_1", "dw5_2", "dw5_3", "dw5_4", "dw5_5", "dw5_6", "dw6"}


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


# ----------------------------------------------------------------------------- ops

def _conv_relu(g: Graph, x: int, weight: np.ndarray, bias: np.ndarray, stride: int,
               name: str, depthwise: bool = False, out_quant: Quantization | None = None) -> int:
    """3x3 or 1x1 conv (+ folded BN) + ReLU with PyTorch's symmetric padding k // 2.
    ``weight`` is in torch layout (O, I, kh, kw) or (C, 1, kh, kw) for depthwise. An int8
    input (a quantized ``x``) gives an int8 conv whose output has ``out_quant``."""
    n, h, w, _ = g.shape(x)
    k = weight.shape[-1]
    torch_pad = k // 2
    pads = explicit_padding(h, k, stride, torch_pad)
    if pads is not None:
        x = pad(g, x, np.array([(0, 0), pads, pads, (0, 0)]), name)
    padding = Padding.SAME if pads is None else Padding.VALID
    if depthwise:
        w_tfl = weight[:, 0].transpose(1, 2, 0)[None]  # [1, kh, kw, C]
    else:
        w_tfl = weight.transpose(0, 2, 3, 1)  # OHWI
    w_tfl = np.ascontiguousarray(w_tfl, dtype=np.float32)
    int8 = x in g.quantization
    if int8:
        w_t, b_t = int8_weights(g, name, w_tfl, bias, g.quantization[x], axis=3 if depthwise else 0)
    else:
        w_t, b_t = g.constant(f"{name}/weight", w_tfl), g.constant(f"{name}/bias", bias.astype(np.float32))
    out = _out_size(h, k, stride, torch_pad), _out_size(w, k, stride, torch_pad)
    y = g.activation(f"{name}/relu", (n, *out, weight.shape[0]), out_quant)
    code = Op.DEPTHWISE_CONV_2D if depthwise else Op.CONV_2D
    kind = Options.DepthwiseConv2DOptions if depthwise else Options.Conv2DOptions
    g.add(code, [x, w_t, b_t], [y], kind, conv_options(padding, stride, depthwise),
          version=3 if int8 else 1)   # 3: int8 with per-channel weight scales
    return y


def _global_mean(g: Graph, x: int, out_quant: Quantization | None = None) -> int:
    n, _, _, c = g.shape(x)
    axes = g.constant("pool/axes", np.array([1, 2], np.int32))
    y = g.activation("pool/mean", (n, c), out_quant)
    mod = fb("ReducerOptions")

    def options(b: flatbuffers.Builder) -> int:
        mod.ReducerOptionsStart(b)
        mod.ReducerOptionsAddKeepDims(b, False)
        return mod.ReducerOptionsEnd(b)
    g.add(Op.MEAN, [x, axes], [y], Options.ReducerOptions, options,
          version=1 if out_quant is None else 2)
    return y


def _fully_connected(g: Graph, x: int, weight: np.ndarray, bias: np.ndarray, name: str) -> int:
    w_t, b_t = g.constant(f"{name}/weight", weight), g.constant(f"{name}/bias", bias)
    y = g.activation(name, (g.shape(x)[0], weight.shape[0]))
    mod = fb("FullyConnectedOptions")

    def options(b: flatbuffers.Builder) -> int:
        mod.FullyConnectedOptionsStart(b)
        mod.FullyConnectedOptionsAddFusedActivationFunction(b, Act.NONE)
        return mod.FullyConnectedOptionsEnd(b)
    g.add(Op.FULLY_CONNECTED, [x, w_t, b_t], [y], Options.FullyConnectedOptions, options)
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

    g = Graph()
    x = _normalised_input(g)
    w, b = fold_batch_norm(state["conv1.weight"], state, "bn1", state.get("conv1.bias"))
    # conv1 stays float in the int8 graph: 3 input channels (27 products per output) leave most
    # of an int8 dot-product tile idle, while the float kernel runs it at full width; its
    # output is converted to int8 with its calibrated range
    x = _conv_relu(g, x, w, b, 2, "conv1")
    if ranges is not None:
        x = convert(g, x, quant("conv1/relu"), "conv1/int8")
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
        x = convert(g, x, None, "pool/float")
    fc_w, fc_b = final_layer(state, mean, std)
    y = _fully_connected(g, x, fc_w, fc_b, "params")
    g.outputs.append(y)
    kind = " int8" if ranges is not None else ""
    return g.finish(f"densehead MobileNetV1 x{widen_factor(state):g}{kind} regressor, "
                    f"compiler v{COMPILER_VERSION}")


def _normalised_input(g: Graph) -> int:
    """The uint8 crop as the graph's input, and the float tensor "input" the network reads:
    x * CROP_SCALE (DEQUANTIZE) - CROP_MEAN * CROP_SCALE (ADD). Both constants are exact in
    float32 and x * CROP_SCALE is exact, so each value is rounded once, as (x - 127.5) / 128."""
    scaled = Quantization(np.array([CROP_SCALE], np.float32), np.array([0], np.int64))
    pixels = g.activation("crop", (1, INPUT_SIZE, INPUT_SIZE, 3), scaled, TensorType.UINT8)
    g.inputs.append(pixels)
    x = g.activation("crop/scaled", (1, INPUT_SIZE, INPUT_SIZE, 3))
    g.add(Op.DEQUANTIZE, [pixels], [x])
    offset = g.constant("crop/offset", np.array([-CROP_MEAN * CROP_SCALE], np.float32))
    y = g.activation("input", (1, INPUT_SIZE, INPUT_SIZE, 3))
    g.add(Op.ADD, [x, offset], [y], Options.AddOptions, activation_options("AddOptions", Act.NONE))
    return y


def normalise_crop(pixels: np.ndarray) -> np.ndarray:
    """What the graph makes of a uint8 crop, in numpy (float32, the same bits): the input of
    a runtime given the same network without it (benchmark-peers' onnxruntime, tests' judge)."""
    x = np.multiply(pixels, np.float32(CROP_SCALE), dtype=np.float32)
    x -= np.float32(CROP_MEAN * CROP_SCALE)
    return x


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
    """Checkpoint hash, stats hash (folded into the graph), int8 or not with the hash of its
    calibration (a new calibration is a new graph), and compiler version. The cached file is
    ``<key>-<first 16 hex of its own sha256>.tflite``, so a damaged copy is noticed."""
    kind = f"{INT8}-r{ranges_digest(checkpoint)}" if int8 else ""
    return (f"{Path(checkpoint).stem}-{file_sha256(Path(checkpoint))[:16]}"
            f"-stats{file_sha256(Path(param_stats))[:8]}{kind}-u8-c{COMPILER_VERSION}")


def regressor_tflite(checkpoint: Path, param_stats: Path, cache_dir: Path, int8: bool = False) -> Path:
    """Path of the compiled regressor in ``cache_dir``, compiled on first use and again when the
    cached copy is damaged (densehead.weights.tflite_writer.cached_graph)."""
    return cached_graph(cache_dir, cache_key(checkpoint, param_stats, int8),
                        lambda: regressor_tflite_bytes(checkpoint, param_stats, int8),
                        f"regressor {Path(checkpoint).name} ({'int8' if int8 else 'float'})")
