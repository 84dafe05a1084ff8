"""The three synthetic models of the benchmark set, built with onnx.helper from a fixed seed.

They stand for the small dense nets that ONNX-to-C generators are usually judged on: an MLP (pure GEMM),
a LeNet-style CNN (small convolutions, pooling, GEMM head) and a MobileNet-style net (depthwise + pointwise
convolutions with BatchNormalization and Relu6 as Clip, the pattern of mobile vision models).
Weights are random but scaled (He initialisation) so activations neither vanish nor overflow through the
layers: a comparison of outputs that are all ~0 or ~inf would check nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
# onnxruntime-web 1.30 reads IR versions up to 13, while onnx.helper stamps its newest IR (14 with onnx 1.23);
# IR 8 covers every feature used here and every runtime of the benchmark.
IR_VERSION = 8


class _Graph:
    """Accumulates nodes and initializers with unique names, so the builders below read like the nets."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._n = 0

    def name(self, stem: str) -> str:
        self._n += 1
        return f"{stem}{self._n}"

    def const(self, stem: str, value: np.ndarray) -> str:
        n = self.name(stem)
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(value), n))
        return n

    def node(self, op: str, inputs: list[str], stem: str | None = None, **attrs) -> str:
        out = self.name(stem or op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def he(self, shape: tuple[int, ...], fan_in: int) -> np.ndarray:
        return (self.rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)

    def gemm(self, x: str, n_in: int, n_out: int) -> str:
        # transB=1: the (out, in) weight layout PyTorch exports, the common case for Gemm in real models
        w = self.const("W", self.he((n_out, n_in), n_in))
        b = self.const("B", (self.rng.standard_normal(n_out) * 0.01).astype(np.float32))
        return self.node("Gemm", [x, w, b], transB=1)

    def conv(self, x: str, c_in: int, c_out: int, k: int, stride: int = 1, pad: int = 0, group: int = 1,
             bias: bool = True) -> str:
        w = self.const("W", self.he((c_out, c_in // group, k, k), (c_in // group) * k * k))
        ins = [x, w]
        if bias:
            ins.append(self.const("B", (self.rng.standard_normal(c_out) * 0.01).astype(np.float32)))
        return self.node("Conv", ins, kernel_shape=[k, k], strides=[stride, stride], pads=[pad] * 4, group=group)

    def bn(self, x: str, c: int) -> str:
        # running statistics of a trained net: variance well away from 0, so folding BN into the conv is exact enough
        scale = self.const("gamma", self.rng.uniform(0.5, 1.5, c).astype(np.float32))
        shift = self.const("beta", (self.rng.standard_normal(c) * 0.1).astype(np.float32))
        mean = self.const("mean", (self.rng.standard_normal(c) * 0.1).astype(np.float32))
        var = self.const("var", self.rng.uniform(0.5, 1.5, c).astype(np.float32))
        return self.node("BatchNormalization", [x, scale, shift, mean, var], epsilon=1e-5)

    def relu6(self, x: str) -> str:
        # opset >= 11 Clip takes its bounds as inputs: the form exporters write for ReLU6
        lo = self.const("zero", np.array(0.0, np.float32))
        hi = self.const("six", np.array(6.0, np.float32))
        return self.node("Clip", [x, lo, hi])

    def model(self, name: str, inp: tuple[str, list[int]], out: tuple[str, list[int]], last: str) -> onnx.ModelProto:
        # rename the last tensor to the declared output name
        self.nodes[-1].output[0] = out[0]
        assert self.nodes[-1].name == last
        graph = helper.make_graph(
            self.nodes, name,
            [helper.make_tensor_value_info(inp[0], TensorProto.FLOAT, inp[1])],
            [helper.make_tensor_value_info(out[0], TensorProto.FLOAT, out[1])],
            self.inits,
        )
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="onnx-emit bench")
        m.ir_version = IR_VERSION
        onnx.checker.check_model(m, full_check=True)
        return m


def mlp(seed: int = 0) -> onnx.ModelProto:
    """784-512-512-10, ReLU between the layers (an MNIST-sized MLP)."""
    g = _Graph(seed)
    h = g.node("Relu", [g.gemm("x", 784, 512)])
    h = g.node("Relu", [g.gemm(h, 512, 512)])
    y = g.gemm(h, 512, 10)
    return g.model("mlp", ("x", [1, 784]), ("logits", [1, 10]), y)


def lenet(seed: int = 0) -> onnx.ModelProto:
    """LeNet-5 on 1x1x28x28: conv5x5(6, pad 2) relu maxpool, conv5x5(16) relu maxpool, 400-120-84-10."""
    g = _Graph(seed)
    h = g.node("Relu", [g.conv("x", 1, 6, 5, pad=2)])
    h = g.node("MaxPool", [h], kernel_shape=[2, 2], strides=[2, 2])          # 6x14x14
    h = g.node("Relu", [g.conv(h, 6, 16, 5)])                                # 16x10x10
    h = g.node("MaxPool", [h], kernel_shape=[2, 2], strides=[2, 2])          # 16x5x5
    h = g.node("Flatten", [h], axis=1)
    h = g.node("Relu", [g.gemm(h, 400, 120)])
    h = g.node("Relu", [g.gemm(h, 120, 84)])
    y = g.gemm(h, 84, 10)
    return g.model("lenet", ("x", [1, 1, 28, 28]), ("logits", [1, 10]), y)


# MobileNet v1's depthwise-separable stack, (output channels, stride) per block, cut at 512 channels so the
# 112x112 input ends at 7x7 like the full net does at 224x224 with one more stride.
_MOBILENET_BLOCKS = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1), (512, 1)]


def mobilenet(seed: int = 0) -> onnx.ModelProto:
    """MobileNet-v1-style on 1x3x112x112: conv3x3 s2 + BN + ReLU6, then depthwise 3x3 + BN + ReLU6 and pointwise
    1x1 + BN + ReLU6 blocks, global average pool, a 1000-way classifier."""
    g = _Graph(seed)
    h = g.relu6(g.bn(g.conv("x", 3, 32, 3, stride=2, pad=1, bias=False), 32))   # 32x56x56
    c = 32
    for c_out, stride in _MOBILENET_BLOCKS:
        h = g.relu6(g.bn(g.conv(h, c, c, 3, stride=stride, pad=1, group=c, bias=False), c))  # depthwise
        h = g.relu6(g.bn(g.conv(h, c, c_out, 1, bias=False), c_out))                          # pointwise
        c = c_out
    h = g.node("GlobalAveragePool", [h])
    h = g.node("Flatten", [h], axis=1)
    y = g.gemm(h, c, 1000)
    return g.model("mobilenet", ("x", [1, 3, 112, 112]), ("logits", [1, 1000]), y)


BUILDERS: dict[str, Callable[[int], onnx.ModelProto]] = {"mlp": mlp, "lenet": lenet, "mobilenet": mobilenet}


def write(model_id: str, folder: Path, seed: int = 0) -> tuple[Path, dict[str, tuple[tuple[int, ...], str]]]:
    """Build `model_id` into folder/<id>.onnx; returns the path and the input shapes in get_entry's form."""
    m = BUILDERS[model_id](seed)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{model_id}.onnx"
    onnx.save(m, str(path))
    shapes = {}
    for vi in m.graph.input:
        dims = tuple(d.dim_value for d in vi.type.tensor_type.shape.dim)
        shapes[vi.name] = (dims, helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type).name)
    return path, shapes
