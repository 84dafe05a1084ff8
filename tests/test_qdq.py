"""A model in QDQ form (as onnxruntime's quantize_static writes it) computes its Conv and MatMul layers in integers
(QLinearConv / QLinearMatMul) and matches onnxruntime on the quantized model to within one output quantum."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper

import emit
from emit.api import compile_program

from .helpers import init, make_model, ort_run, tensor

RNG = np.random.default_rng(7)


def _float_cnn() -> onnx.ModelProto:
    w1 = RNG.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.3
    w2 = RNG.standard_normal((16, 8, 3, 3)).astype(np.float32) * 0.2
    fc = RNG.standard_normal((16, 10)).astype(np.float32) * 0.3
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("GlobalAveragePool", ["r2"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("MatMul", ["f", "fc"], ["y"]),
    ]
    inits = [init("w1", w1), init("b1", RNG.standard_normal(8).astype(np.float32) * 0.1), init("w2", w2),
             init("b2", RNG.standard_normal(16).astype(np.float32) * 0.1), init("fc", fc)]
    return make_model(nodes, [tensor("x", [1, 3, 16, 16])], [tensor("y", [1, 10])], inits, opset=17)


class _Reader:
    def __init__(self) -> None:
        self.batches = iter([{"x": RNG.standard_normal((1, 3, 16, 16)).astype(np.float32)} for _ in range(16)])

    def get_next(self):
        return next(self.batches, None)


@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("activations", ["uint8", "int8"])
def test_qdq_model_runs_in_integers_and_matches_onnxruntime(tmp_path, per_channel, activations):
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    src, qpath = tmp_path / "float.onnx", tmp_path / "qdq.onnx"
    onnx.save(_float_cnn(), src)
    quantize_static(str(src), str(qpath), _Reader(), quant_format=QuantFormat.QDQ, per_channel=per_channel,
                    activation_type=QuantType.QUInt8 if activations == "uint8" else QuantType.QInt8,
                    weight_type=QuantType.QInt8)
    qmodel = onnx.load(qpath)
    assert sum(n.op_type == "QuantizeLinear" for n in qmodel.graph.node) >= 3

    ops = [n.op_type for n in compile_program(qmodel).nodes]
    assert ops.count("QLinearConv") == 2, ops  # both convolutions (with their Relu) in integers
    assert "Conv" not in ops and "Relu" not in ops, ops

    emit.export(qmodel, target="native", out=tmp_path / "out")
    m = emit.load(tmp_path / "out")
    for seed in range(3):
        x = np.random.default_rng(seed).standard_normal((1, 3, 16, 16)).astype(np.float32)
        got, ref = m.run({"x": x})["y"], ort_run(qmodel, {"x": x})[0]
        # the last DequantizeLinear's scale is one quantum of the output
        last_dq = [n for n in qmodel.graph.node if n.op_type == "DequantizeLinear"][-1]
        scale = float(onnx.numpy_helper.to_array(next(t for t in qmodel.graph.initializer if t.name == last_dq.input[1])))
        assert np.max(np.abs(got - ref)) <= scale * 1.001 + 1e-6, (got, ref)


def test_dequantized_constants_fold_when_no_pattern_takes_them(tmp_path):
    wq = np.arange(-6, 6, dtype=np.int8).reshape(3, 4)
    model = make_model(
        [helper.make_node("DequantizeLinear", ["wq", "s", "z"], ["w"], axis=0),
         helper.make_node("Add", ["x", "w"], ["y"])],
        [tensor("x", [3, 4])], [tensor("y", [3, 4])],
        [init("wq", wq), init("s", np.array([0.5, 0.25, 2.0], np.float32)), init("z", np.array([1, -2, 0], np.int8))],
    )
    prog = compile_program(model)
    assert [n.op_type for n in prog.nodes] == ["Add"]
    emit.export(model, target="native", out=tmp_path)
    x = np.ones((3, 4), np.float32)
    np.testing.assert_array_equal(emit.load(tmp_path).run({"x": x})["y"], ort_run(model, {"x": x})[0])
