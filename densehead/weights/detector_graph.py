"""UltraFace RFB-320 as densehead runs it: the converter's graph (RFB-320.tflite, downloaded and
verified like every model file, stays the source) read with the ``tflite`` package and written
again by densehead.weights.tflite_writer, with the same weights and the same arithmetic, and:

- a uint8 BGR input, the letterboxed frame as it is: the first op, DEQUANTIZE with zero point
  PIXEL_MEAN and scale PIXEL_SCALE, is the network's (x - 127) / 128, and the first
  convolution takes its input channels in reverse, so the network still sees RGB. The caller
  neither converts colours nor normalises, and hands over a 4x smaller input;
- the converter's dilated convolution (SPACE_TO_BATCH_ND, CONV_2D, BATCH_TO_SPACE_ND, then its
  batch norm as MUL and ADD) as one CONV_2D with dilation and the batch norm folded in, and a
  MUL by a constant after a convolution folded into it;
- each head's dynamic reshape (SHAPE, STRIDED_SLICE, PACK, RESHAPE) as a RESHAPE to its
  constant shape.

XNNPACK takes neither the dynamic reshapes nor SPACE_TO_BATCH_ND, so the converter's graph runs
as four delegate partitions with TFLite's own kernels between them; this one is a single
partition. Cached beside the compiled regressor, keyed by the source's hash and
COMPILER_VERSION.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import flatbuffers
import numpy as np
import tflite

from .assets import ModelFileError
from .hashing import file_sha256
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
    fb,
)

# The network's input normalisation, (x - PIXEL_MEAN) * PIXEL_SCALE on RGB pixels: what the
# rewritten graph's DEQUANTIZE does, and what a caller of the source graph does itself.
PIXEL_MEAN = 127
PIXEL_SCALE = 1.0 / 128.0

_OP_NAMES = {code: name for name, code in vars(tflite.BuiltinOperator).items()
             if not name.startswith("_")}
_NUMPY = {TensorType.FLOAT32: np.float32, TensorType.INT32: np.int32}
_OPTIONS = {"CONV_2D": tflite.Conv2DOptions, "DEPTHWISE_CONV_2D": tflite.DepthwiseConv2DOptions,
            "ADD": tflite.AddOptions, "MUL": tflite.MulOptions,
            "CONCATENATION": tflite.ConcatenationOptions, "SOFTMAX": tflite.SoftmaxOptions}
# what a damaged flatbuffer raises when read with the generated accessors
_UNREADABLE = (IndexError, KeyError, ValueError, TypeError, AttributeError, struct.error)


class UnknownGraph(Exception):
    """The source is a valid graph, but not one this rewrite knows."""


@dataclass(frozen=True)
class _SourceOp:
    kind: str             # "CONV_2D", ...
    inputs: list[int]
    outputs: list[int]
    options: object       # the op's parsed options table (None for ops without options)


class _Source:
    """The converter's graph, read once: operators, tensor shapes and constants."""

    def __init__(self, data: bytes) -> None:
        model = tflite.Model.GetRootAsModel(data, 0)
        if model.SubgraphsLength() != 1:
            raise UnknownGraph(f"{model.SubgraphsLength()} subgraphs, expected 1")
        self.model, self.graph = model, model.Subgraphs(0)
        self.ops = [self._op(k) for k in range(self.graph.OperatorsLength())]
        self.consumers: dict[int, list[int]] = {}
        for k, op in enumerate(self.ops):
            for tensor in op.inputs:
                self.consumers.setdefault(tensor, []).append(k)
        self.inputs = [int(i) for i in self.graph.InputsAsNumpy()]
        self.outputs = [int(i) for i in self.graph.OutputsAsNumpy()]

    def _op(self, k: int) -> _SourceOp:
        op = self.graph.Operators(k)
        kind = _OP_NAMES.get(self.model.OperatorCodes(op.OpcodeIndex()).BuiltinCode(), "?")
        options = None
        if kind in _OPTIONS and op.BuiltinOptions() is not None:
            table = op.BuiltinOptions()
            options = _OPTIONS[kind]()
            options.Init(table.Bytes, table.Pos)
        return _SourceOp(kind, [int(i) for i in op.InputsAsNumpy()],
                         [int(i) for i in op.OutputsAsNumpy()], options)

    def name(self, tensor: int) -> str:
        # the converter joins every name a fused tensor had with ';': the first says enough
        return self.graph.Tensors(tensor).Name().decode().split(";")[0]

    def shape(self, tensor: int) -> tuple[int, ...]:
        t = self.graph.Tensors(tensor)
        return tuple(int(n) for n in t.ShapeAsNumpy()) if t.ShapeLength() else ()

    def constant(self, tensor: int) -> np.ndarray | None:
        t = self.graph.Tensors(tensor)
        data = self.model.Buffers(t.Buffer()).DataAsNumpy() if t.Buffer() else 0
        if isinstance(data, int) or len(data) == 0:
            return None
        if t.Type() not in _NUMPY:
            raise UnknownGraph(f"a constant of tensor type {t.Type()}")
        return np.frombuffer(data.tobytes(), _NUMPY[t.Type()]).reshape(self.shape(tensor))

    def only_consumer(self, tensor: int) -> tuple[int, _SourceOp] | None:
        users = self.consumers.get(tensor, [])
        if len(users) != 1 or tensor in self.outputs:
            return None
        return users[0], self.ops[users[0]]


class _Rewrite:
    """Writes the source's operators one by one into a new Graph (see the module docstring)."""

    def __init__(self, source: _Source) -> None:
        self.src = source
        self.g = Graph()
        self.new: dict[int, int] = {}     # source tensor -> new tensor
        self.done: set[int] = set()       # source ops already written as part of another
        self.rgb: set[int] = set()        # source tensors still holding the input's channels

    def run(self) -> bytes:
        if len(self.src.inputs) != 1 or len(self.src.shape(self.src.inputs[0])) != 4:
            raise UnknownGraph("expected one NHWC image input")
        self._uint8_input(self.src.inputs[0])
        for k, op in enumerate(self.src.ops):
            if k in self.done:
                continue
            write = getattr(self, f"_{op.kind.lower()}", None)
            if write is None:
                raise UnknownGraph(f"a {op.kind} operator")
            write(op)
        self.g.outputs.extend(self.new[i] for i in self.src.outputs)
        return self.g.finish(f"UltraFace RFB-320 with a uint8 BGR input, rewritten by densehead "
                             f"compiler v{COMPILER_VERSION}")

    # -- tensors -----------------------------------------------------------------------------
    def tensor(self, index: int, shape: tuple[int, ...] | None = None) -> int:
        """The new tensor of a source tensor: its constant copied, or a new activation (of the
        source's shape unless ``shape`` is given: the source's reshape outputs have none)."""
        if index not in self.new:
            name = self.src.name(index)
            if index in self.src.outputs:   # 'Identity' and 'Identity_1' keep their names
                name = self.src.graph.Tensors(index).Name().decode()
            value = self.src.constant(index)
            self.new[index] = (
                self.g.constant(name, np.ascontiguousarray(value)) if value is not None
                else self.g.activation(name, shape or self.src.shape(index)))
        return self.new[index]

    def _uint8_input(self, index: int) -> None:
        shape = self.src.shape(index)
        normalisation = Quantization(np.array([PIXEL_SCALE], np.float32),
                                     np.array([PIXEL_MEAN], np.int64))
        pixels = self.g.activation("image", shape, normalisation, TensorType.UINT8)
        self.g.inputs.append(pixels)
        self.g.add(Op.DEQUANTIZE, [pixels], [self.tensor(index)])
        self.rgb.add(index)

    # -- operators written as they are --------------------------------------------------------
    def _pad(self, op: _SourceOp) -> None:
        mod = fb("PadOptions")
        self.g.add(Op.PAD, [self.tensor(i) for i in op.inputs], [self.tensor(op.outputs[0])],
                   Options.PadOptions, lambda b: (mod.PadOptionsStart(b), mod.PadOptionsEnd(b))[1])
        if op.inputs[0] in self.rgb:
            self.rgb.add(op.outputs[0])

    def _depthwise_conv_2d(self, op: _SourceOp) -> None:
        o = op.options
        if op.inputs[0] in self.rgb:
            raise UnknownGraph("a depthwise convolution of the input")
        self.g.add(Op.DEPTHWISE_CONV_2D, [self.tensor(i) for i in op.inputs],
                   [self.tensor(op.outputs[0])], Options.DepthwiseConv2DOptions,
                   conv_options(o.Padding(), o.StrideH(), True, o.FusedActivationFunction(),
                                o.DilationHFactor(), o.DepthMultiplier()))

    def _add(self, op: _SourceOp) -> None:
        self._elementwise(op, Op.ADD, Options.AddOptions, "AddOptions")

    def _mul(self, op: _SourceOp) -> None:
        self._elementwise(op, Op.MUL, Options.MulOptions, "MulOptions")

    def _elementwise(self, op: _SourceOp, code: int, kind: int, prefix: str) -> None:
        self.g.add(code, [self.tensor(i) for i in op.inputs], [self.tensor(op.outputs[0])], kind,
                   activation_options(prefix, op.options.FusedActivationFunction()))

    def _concatenation(self, op: _SourceOp) -> None:
        parts = [self.tensor(i) for i in op.inputs]
        shapes = [self.g.shape(p) for p in parts]
        axis = op.options.Axis() % len(shapes[0])
        shape = list(shapes[0])
        shape[axis] = sum(s[axis] for s in shapes)
        act = op.options.FusedActivationFunction()

        def options(b: flatbuffers.Builder) -> int:
            mod = fb("ConcatenationOptions")
            mod.ConcatenationOptionsStart(b)
            mod.ConcatenationOptionsAddAxis(b, axis)
            mod.ConcatenationOptionsAddFusedActivationFunction(b, act)
            return mod.ConcatenationOptionsEnd(b)
        self.g.add(Op.CONCATENATION, parts, [self.tensor(op.outputs[0], tuple(shape))],
                   Options.ConcatenationOptions, options)

    def _softmax(self, op: _SourceOp) -> None:
        x = self.tensor(op.inputs[0])
        beta = op.options.Beta()

        def options(b: flatbuffers.Builder) -> int:
            mod = fb("SoftmaxOptions")
            mod.SoftmaxOptionsStart(b)
            mod.SoftmaxOptionsAddBeta(b, beta)
            return mod.SoftmaxOptionsEnd(b)
        self.g.add(Op.SOFTMAX, [x], [self.tensor(op.outputs[0], self.g.shape(x))],
                   Options.SoftmaxOptions, options)

    # -- the dynamic reshapes ------------------------------------------------------------------
    def _shape(self, op: _SourceOp) -> None:
        pass   # only computes a reshape's target, which _reshape knows

    _strided_slice = _pack = _shape

    def _reshape(self, op: _SourceOp) -> None:
        """[1, H, W, C] -> [1, H*W*C / last, last]: each head's rows of `last` values, the last
        size being the only one the source's reshape output states."""
        x = self.tensor(op.inputs[0])
        last = self.src.shape(op.outputs[0])[-1]
        size = int(np.prod(self.g.shape(x)))
        shape = (1, size // last, last)
        target = self.g.constant(f"{self.src.name(op.outputs[0])}/shape", np.array(shape, np.int32))
        self.g.add(Op.RESHAPE, [x, target], [self.tensor(op.outputs[0], shape)])

    # -- convolutions, with what follows them folded in ---------------------------------------
    def _conv_2d(self, op: _SourceOp) -> None:
        o = op.options
        weight, bias = self._weights(op)
        if op.inputs[0] in self.rgb:
            weight = weight[..., ::-1]   # the input is BGR; the network was trained on RGB
        self._write_conv(op.inputs[0], weight, bias, op.outputs[0], o.FusedActivationFunction(),
                         o.Padding(), o.StrideH(), o.DilationHFactor())

    def _space_to_batch_nd(self, op: _SourceOp) -> None:
        """SPACE_TO_BATCH_ND -> CONV_2D (VALID) -> BATCH_TO_SPACE_ND is a dilated convolution
        of the (already padded) input."""
        block, paddings = self.src.constant(op.inputs[1]), self.src.constant(op.inputs[2])
        conv = self.src.only_consumer(op.outputs[0])
        back = conv and self.src.only_consumer(conv[1].outputs[0])
        if (block is None or paddings is None or paddings.any() or conv is None
                or conv[1].kind != "CONV_2D" or back is None or back[1].kind != "BATCH_TO_SPACE_ND"
                or conv[1].options.StrideH() != 1 or conv[1].options.Padding() != Padding.VALID
                or len(set(block.tolist())) != 1
                or not np.array_equal(self.src.constant(back[1].inputs[1]), block)
                or self.src.constant(back[1].inputs[2]).any()):
            raise UnknownGraph("a SPACE_TO_BATCH_ND that is not a dilated convolution")
        self.done.update((conv[0], back[0]))
        weight, bias = self._weights(conv[1])
        self._write_conv(op.inputs[0], weight, bias, back[1].outputs[0],
                         conv[1].options.FusedActivationFunction(), Padding.VALID, 1, int(block[0]))

    def _weights(self, op: _SourceOp) -> tuple[np.ndarray, np.ndarray]:
        weight, bias = self.src.constant(op.inputs[1]), self.src.constant(op.inputs[2])
        if weight is None or bias is None:
            raise UnknownGraph("a convolution without constant weights")
        return weight.astype(np.float64), bias.astype(np.float64)

    def _write_conv(self, x: int, weight: np.ndarray, bias: np.ndarray, out: int, act: int,
                    padding: int, stride: int, dilation: int) -> None:
        weight, bias, out, act = self._fold_affine(weight, bias, out, act)
        name = self.src.name(out)
        w = self.g.constant(f"{name}/weight", np.ascontiguousarray(weight, np.float32))
        b = self.g.constant(f"{name}/bias", bias.astype(np.float32))
        self.g.add(Op.CONV_2D, [self.tensor(x), w, b], [self.tensor(out)], Options.Conv2DOptions,
                   conv_options(padding, stride, False, act, dilation))

    def _fold_affine(self, weight: np.ndarray, bias: np.ndarray, out: int,
                     act: int) -> tuple[np.ndarray, np.ndarray, int, int]:
        """Fold the MULs and ADDs by constants (per output channel or scalar) that follow a
        convolution without activation: (W x + b) * s + c = (s W) x + (s b + c)."""
        while act == Act.NONE and (nxt := self.src.only_consumer(out)) is not None:
            k, op = nxt
            value = self.src.constant(op.inputs[1]) if op.kind in ("MUL", "ADD") else None
            if value is None or value.size not in (1, len(bias)):
                break
            value = value.astype(np.float64).reshape(-1)
            if op.kind == "MUL":
                weight = weight * value.reshape(-1, 1, 1, 1)
                bias = bias * value
            else:
                bias = bias + value
            self.done.add(k)
            out, act = op.outputs[0], op.options.FusedActivationFunction()
        return weight, bias, out, act


def detector_tflite_bytes(source: Path) -> bytes:
    """The rewritten graph of ``source`` (RFB-320.tflite), without caching. Raises
    ModelFileError naming the file when it is not the graph this rewrite knows."""
    source = Path(source)
    try:
        return _Rewrite(_Source(source.read_bytes())).run()
    except UnknownGraph as e:
        raise ModelFileError(source, f"not the UltraFace RFB-320 graph densehead rewrites: it "
                             f"has {e}") from None
    except _UNREADABLE as e:
        raise ModelFileError(source, f"not a TFLite model densehead can read ({e!r})") from None


def detector_tflite(source: Path, cache_dir: Path) -> Path:
    """Path of the rewritten detector in ``cache_dir``, written on first use and again when the
    cached copy is damaged."""
    key = f"{Path(source).stem}-{file_sha256(Path(source))[:16]}-u8-c{COMPILER_VERSION}"
    return cached_graph(cache_dir, key, lambda: detector_tflite_bytes(source),
                        f"detector {Path(source).name}")

