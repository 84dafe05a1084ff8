"""Runtime values that set an intermediate's shape, with the shape read off a declared tensor downstream
(emit/importer/hints.py): Reduce* with runtime axes, Range with a runtime limit; Unique with its count
bound by --shape; training-mode Dropout with a seed. Values match onnxruntime (Dropout: onnx's
reference, whose numpy draws it reproduces); a runtime value that disagrees with the compiled shape
makes the run return 1."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

import emit
from emit.errors import UnsupportedError

from .helpers import check_strict_c99, make_model, ort_run, tensor

F32, I64 = TensorProto.FLOAT, TensorProto.INT64
RNG = np.random.default_rng(11)


def _axes_model():
    nodes = [
        # keepdims=0: (3, 2, 2) -> (3, 2) may reduce axis 1 or axis 2; the C picks by the runtime axes
        helper.make_node("ReduceSum", ["x", "a0"], ["s0"], keepdims=0),
        helper.make_node("Sqrt", ["s0"], ["s1"]),
        helper.make_node("Mul", ["s1", "two"], ["y0"]),
        # keepdims=1 into a broadcast with a known operand: the reduced axis is the one of size 1
        helper.make_node("ReduceMax", ["z", "a1"], ["m0"], keepdims=1),
        helper.make_node("Exp", ["m0"], ["m1"]),
        helper.make_node("Cast", ["m1"], ["y1"], to=F32),
        # Range with a runtime limit, through shape-preserving ops into a declared output
        helper.make_node("Cast", ["n"], ["nf"], to=F32),
        helper.make_node("Range", ["zero", "nf", "one"], ["r0"]),
        helper.make_node("Mul", ["r0", "two"], ["r1"]),
        helper.make_node("Cos", ["r1"], ["y2"]),
    ]
    inits = [helper.make_tensor("two", F32, [], [2.0]), helper.make_tensor("zero", F32, [], [0.0]), helper.make_tensor("one", F32, [], [1.0])]
    return make_model(
        nodes,
        [tensor("x", [3, 2, 2]), tensor("a0", [1], I64), tensor("z", [3, 5, 4]), tensor("a1", [1], I64), tensor("n", [], I64)],
        [tensor("y0", [3, 2]), tensor("y1", [3, 1, 4]), tensor("y2", [10])],
        inits,
        opset=18,
    )


@pytest.fixture(scope="module")
def axes_built(tmp_path_factory):
    model = _axes_model()
    out = tmp_path_factory.mktemp("rt_axes")
    emit.export(model, target="native", out=out, name="rtaxes")
    return model, emit.load(out)


def _feeds(a0: int, a1: int, n: int) -> dict:
    return {
        "x": RNG.uniform(0, 2, (3, 2, 2)).astype(np.float32),
        "a0": np.array([a0], np.int64),
        "z": RNG.standard_normal((3, 5, 4)).astype(np.float32),
        "a1": np.array([a1], np.int64),
        "n": np.array(n, np.int64),
    }


@pytest.mark.parametrize("a0,a1", [(1, 1), (2, -2), (-1, 1), (-2, -2)])
def test_runtime_axes_match_onnxruntime(axes_built, a0, a1):
    model, m = axes_built
    f = _feeds(a0, a1, 10)
    got = m.run(f)
    for o, r in zip(model.graph.output, ort_run(model, f)):
        np.testing.assert_allclose(got[o.name], r, rtol=1e-5, atol=1e-6, err_msg=o.name)


@pytest.mark.parametrize("a0,a1,n", [(0, 1, 10), (3, 1, 10), (1, 2, 10), (1, 0, 10), (1, 7, 10), (1, 1, 9), (1, 1, 11)])
def test_disagreeing_runtime_value_returns_1(axes_built, a0, a1, n):
    # axis 0 would give (2, 2), axis 3 is out of range, ...; a Range limit of 9 or 11 gives another length
    _, m = axes_built
    with pytest.raises(RuntimeError, match="error code 1"):
        m.run(_feeds(a0, a1, n))


@pytest.mark.parametrize("cc", ["gcc", "clang"])
def test_runtime_axes_strict_c99(tmp_path, cc):
    check_strict_c99(_axes_model(), tmp_path, cc, "rtaxes")


def test_open_shape_without_a_declared_consumer_names_the_tensor():
    # ReduceSum into an Add with a tensor of the reduced size: the reduced shape is ambiguous
    nodes = [helper.make_node("ReduceSum", ["x", "a"], ["s"], keepdims=1), helper.make_node("Add", ["s", "x"], ["y"])]
    model = make_model(nodes, [tensor("x", [3, 4]), tensor("a", [1], I64)], [tensor("y", [3, 4])], opset=18)
    with pytest.raises(UnsupportedError, match="output 's' has no static shape"):
        emit.export(model, target="c", out="/tmp/unused_rt_axes")


def _unique_model(axis: int | None, sorted_: int):
    kw = {"sorted": sorted_} | ({"axis": axis} if axis is not None else {})
    node = helper.make_node("Unique", ["x"], ["uy", "ui", "uv", "uc"], **kw)
    shape = [8] if axis is None else [2, 6, 2]
    y_shape = ["k"] if axis is None else [2, "k", 2]
    outs = [helper.make_tensor_value_info("uy", F32, y_shape)]
    outs += [helper.make_tensor_value_info(n, I64, [d]) for n, d in (("ui", "k"), ("uv", shape[axis or 0]), ("uc", "k"))]
    return make_model([node], [tensor("x", shape)], outs, opset=18)


@pytest.mark.parametrize("axis,sorted_", [(None, 1), (None, 0), (1, 1), (1, 0)])
def test_unique_with_bound_count_matches_onnxruntime(tmp_path, axis, sorted_):
    model = _unique_model(axis, sorted_)
    if axis is None:
        x = np.array([3, 1, 7, 3, -2, 1, 0.5, -2], np.float32)  # (NaN: onnxruntime drops it, numpy keeps one)
        bound = {"uy": (5,)}
    else:
        x = RNG.integers(0, 2, (2, 6, 2)).astype(np.float32)
        x[:, 3] = x[:, 0]
        x[:, 5] = x[:, 1]
        count = np.unique(x, axis=1).shape[1]
        bound = {"uy": (2, count, 2)}
    emit.export(model, target="native", out=tmp_path, name="uniq", shapes=bound)
    m = emit.load(tmp_path)
    got = m.run({"x": x})
    ref = ort_run(model, {"x": x})
    for name, r in zip(("uy", "ui", "uv", "uc"), ref):
        np.testing.assert_array_equal(got[name], r, err_msg=name)
    with pytest.raises(RuntimeError, match="error code 1"):
        m.run({"x": np.zeros_like(x)})  # one unique item, not the compiled count


def test_unique_without_a_bound_names_the_reason():
    with pytest.raises(UnsupportedError, match="how many elements Unique returns depends on the input's values"):
        emit.export(_unique_model(None, 1), target="c", out="/tmp/unused_rt_unique")


def test_training_dropout_reproduces_onnx_reference(tmp_path):
    from onnx.reference import ReferenceEvaluator

    node = helper.make_node("Dropout", ["x", "r", "t"], ["y", "mask"], seed=1234)
    model = make_model(
        [node], [tensor("x", [7, 200]), tensor("r", [], F32), tensor("t", [], TensorProto.BOOL)],
        [tensor("y", [7, 200]), tensor("mask", [7, 200], TensorProto.BOOL)], opset=13,
    )
    emit.export(model, target="native", out=tmp_path, name="drop")
    m = emit.load(tmp_path)
    x = RNG.standard_normal((7, 200)).astype(np.float32)
    for ratio, training in ((0.3, True), (0.75, True), (0.3, False)):
        f = {"x": x, "r": np.array(ratio, np.float32), "t": np.array(training)}
        got = m.run(f)
        ref = ReferenceEvaluator(model).run(None, f)
        np.testing.assert_array_equal(got["mask"], ref[1])
        np.testing.assert_allclose(got["y"], ref[0], rtol=1e-6)


def test_training_dropout_without_seed_is_refused(tmp_path):
    node = helper.make_node("Dropout", ["x", "r", "t"], ["y"])
    inits = [helper.make_tensor("r", F32, [], [0.5]), helper.make_tensor("t", TensorProto.BOOL, [], [True])]
    model = make_model([node], [tensor("x", [4])], [tensor("y", [4])], inits, opset=13)
    with pytest.raises(UnsupportedError, match="without a seed attribute draws a random mask"):
        emit.export(model, target="c", out=tmp_path)
