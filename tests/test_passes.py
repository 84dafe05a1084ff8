"""Graph passes: BatchNormalization folded into the layer before it, activations fused into kernel
epilogues; the folded / fused models still compute what onnxruntime computes."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

import emit
from emit.importer import import_model
from emit.passes import optimize

from .helpers import init, make_model, ort_run, tensor
from .test_runtime_kernels import ref_conv

RNG = np.random.default_rng(7)


def rand(*shape, lo=-1.0, hi=1.0):
    return RNG.uniform(lo, hi, shape).astype(np.float32)


def bn_inits(prefix: str, c: int) -> list:
    return [
        init(f"{prefix}_s", rand(c, lo=0.5, hi=1.5)),
        init(f"{prefix}_b", rand(c)),
        init(f"{prefix}_m", rand(c)),
        init(f"{prefix}_v", rand(c, lo=0.1, hi=2.0)),
    ]


def bn_node(prefix: str, x: str, y: str, **attrs):
    return helper.make_node("BatchNormalization", [x, f"{prefix}_s", f"{prefix}_b", f"{prefix}_m", f"{prefix}_v"], [y], **attrs)


def run_both(model, feeds: dict, tmp_path, rtol=1e-5, atol=1e-5):
    emit.export(model, target="native", out=tmp_path, name="m")
    got = emit.load(tmp_path).run(feeds)
    refs = ort_run(model, feeds)
    for o, ref in zip(model.graph.output, refs):
        np.testing.assert_allclose(got[o.name], ref, rtol=rtol, atol=atol)
    return got


def passes(model):
    return optimize(import_model(model))


def conv_bn_relu():
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        bn_node("bn", "c", "n", epsilon=1e-3),
        helper.make_node("Relu", ["n"], ["y"]),
    ]
    inits = [init("w", rand(4, 3, 3, 3)), init("b", rand(4))] + bn_inits("bn", 4)
    return make_model(nodes, [tensor("x", [1, 3, 6, 6])], [tensor("y", [1, 4, 6, 6])], inits)


def test_conv_bn_relu_becomes_one_node(tmp_path):
    model = conv_bn_relu()
    prog = passes(model)
    assert [n.op_type for n in prog.nodes] == ["Conv"]
    assert prog.nodes[0].attrs["__act__"] == ("relu", ())
    assert prog.nodes[0].outputs == ["y"]
    run_both(model, {"x": rand(1, 3, 6, 6)}, tmp_path)


def test_conv_without_bias_bn_folds(tmp_path):
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], strides=[2, 2]), bn_node("bn", "c", "y")]
    model = make_model(nodes, [tensor("x", [2, 3, 7, 7])], [tensor("y", [2, 5, 3, 3])],
                       [init("w", rand(5, 3, 3, 3))] + bn_inits("bn", 5))
    assert [n.op_type for n in passes(model).nodes] == ["Conv"]
    run_both(model, {"x": rand(2, 3, 7, 7)}, tmp_path)


def test_depthwise_conv_bn_clip_folds(tmp_path):
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], group=4, pads=[1, 1, 1, 1]),
        bn_node("bn", "c", "n"),
        helper.make_node("Clip", ["n", "lo", "hi"], ["y"]),
    ]
    inits = [init("w", rand(4, 1, 3, 3)), init("b", rand(4)), init("lo", np.float32(0)), init("hi", np.float32(0.5))]
    model = make_model(nodes, [tensor("x", [1, 4, 5, 5])], [tensor("y", [1, 4, 5, 5])], inits + bn_inits("bn", 4))
    prog = passes(model)
    assert [n.op_type for n in prog.nodes] == ["Conv"]
    assert prog.nodes[0].attrs["__act__"] == ("clip", (0.0, 0.5))
    run_both(model, {"x": rand(1, 4, 5, 5, lo=-3, hi=3)}, tmp_path)


def test_conv_transpose_grouped_bn_folds_on_output_channels(tmp_path):
    # W is (C, M/group, k...): BN's channel is the weight's axis 1 within each group
    nodes = [
        helper.make_node("ConvTranspose", ["x", "w", "b"], ["c"], group=2, strides=[2, 2]),
        bn_node("bn", "c", "y"),
    ]
    inits = [init("w", rand(4, 3, 2, 2)), init("b", rand(6))] + bn_inits("bn", 6)
    model = make_model(nodes, [tensor("x", [1, 4, 3, 3])], [tensor("y", [1, 6, 6, 6])], inits)
    assert [n.op_type for n in passes(model).nodes] == ["ConvTranspose"]
    run_both(model, {"x": rand(1, 4, 3, 3)}, tmp_path)


@pytest.mark.parametrize("trans_b,c_shape", [(0, None), (1, [6]), (0, [3, 6]), (1, [3, 1])])
def test_gemm_bn_folds(tmp_path, trans_b, c_shape):
    ins = ["a", "w"] + (["c"] if c_shape else [])
    nodes = [helper.make_node("Gemm", ins, ["g"], transB=trans_b, alpha=0.5, beta=2.0), bn_node("bn", "g", "y")]
    inits = [init("w", rand(6, 5) if trans_b else rand(5, 6))] + bn_inits("bn", 6)
    if c_shape:
        inits.append(init("c", rand(*c_shape)))
    model = make_model(nodes, [tensor("a", [3, 5])], [tensor("y", [3, 6])], inits)
    assert [n.op_type for n in passes(model).nodes] == ["Gemm"]
    run_both(model, {"a": rand(3, 5)}, tmp_path)


def test_conv_transpose_bias_add_bn_relu_become_one_node(tmp_path):
    """paddle2onnx writes a ConvTranspose's bias as an Add of a (1, C, 1, 1) constant: it folds like a BN, so the BN
    after it folds and the Relu fuses."""
    nodes = [
        helper.make_node("ConvTranspose", ["x", "w"], ["c"], strides=[2, 2]),
        helper.make_node("Add", ["c", "bias"], ["a"]),
        bn_node("bn", "a", "n"),
        helper.make_node("Relu", ["n"], ["y"]),
    ]
    inits = [init("w", rand(4, 5, 2, 2)), init("bias", rand(1, 5, 1, 1))] + bn_inits("bn", 5)
    model = make_model(nodes, [tensor("x", [1, 4, 3, 3])], [tensor("y", [1, 5, 6, 6])], inits)
    prog = passes(model)
    assert [n.op_type for n in prog.nodes] == ["ConvTranspose"]
    assert prog.nodes[0].attrs["__act__"] == ("relu", ())
    run_both(model, {"x": rand(1, 4, 3, 3)}, tmp_path)


@pytest.mark.parametrize("op, const_first, shape", [
    ("Add", False, [6, 1, 1]), ("Add", True, [1, 6, 1, 1]), ("Mul", False, [1, 6, 1, 1]), ("Mul", True, []),
    ("Add", False, [1]),
])
def test_per_channel_constant_folds_into_conv(tmp_path, op, const_first, shape):
    ins = ["k", "c"] if const_first else ["c", "k"]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]), helper.make_node(op, ins, ["y"])]
    k = rand(*shape) if shape else np.float32(-1.5)
    model = make_model(nodes, [tensor("x", [2, 3, 5, 5])], [tensor("y", [2, 6, 5, 5])],
                       [init("w", rand(6, 3, 3, 3)), init("b", rand(6)), init("k", k)])
    assert [n.op_type for n in passes(model).nodes] == ["Conv"]
    run_both(model, {"x": rand(2, 3, 5, 5)}, tmp_path)


def test_gemm_bias_add_folds(tmp_path):
    nodes = [helper.make_node("Gemm", ["a", "w"], ["g"], transB=1), helper.make_node("Add", ["g", "k"], ["y"])]
    model = make_model(nodes, [tensor("a", [3, 5])], [tensor("y", [3, 6])], [init("w", rand(6, 5)), init("k", rand(6))])
    assert [n.op_type for n in passes(model).nodes] == ["Gemm"]
    run_both(model, {"a": rand(3, 5)}, tmp_path)


@pytest.mark.parametrize("shape, out", [([1, 6, 5, 1], [1, 6, 5, 5]), ([2, 6, 1, 1], [2, 6, 5, 5]),
                                        ([1, 1, 1, 5], [1, 6, 5, 5])])
def test_constant_varying_off_the_channel_axis_does_not_fold(shape, out):
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Add", ["c", "k"], ["y"])]
    model = make_model(nodes, [tensor("x", [1, 3, 5, 5])], [tensor("y", out)],
                       [init("w", rand(6, 3, 3, 3)), init("k", rand(*shape))])
    assert [n.op_type for n in passes(model).nodes] == ["Conv", "Add"]


def test_bn_with_runtime_statistics_is_lowered_on_its_own(tmp_path):
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["y"])]
    model = make_model(
        nodes,
        [tensor("x", [1, 2, 4, 4]), tensor("s", [3]), tensor("b", [3]), tensor("m", [3]), tensor("v", [3])],
        [tensor("y", [1, 3, 4, 4])],
        [init("w", rand(3, 2, 1, 1))],
    )
    assert [n.op_type for n in passes(model).nodes] == ["Conv", "BatchNormalization"]
    feeds = {"x": rand(1, 2, 4, 4), "s": rand(3), "b": rand(3), "m": rand(3), "v": rand(3, lo=0.5, hi=1)}
    run_both(model, feeds, tmp_path)


def test_conv_output_read_twice_is_not_folded_or_fused(tmp_path):
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"]),
        helper.make_node("Relu", ["c"], ["r"]),
        bn_node("bn", "c", "n"),
        helper.make_node("Add", ["r", "n"], ["y"]),
    ]
    model = make_model(nodes, [tensor("x", [1, 2, 3, 3])], [tensor("y", [1, 3, 3, 3])],
                       [init("w", rand(3, 2, 1, 1))] + bn_inits("bn", 3))
    prog = passes(model)
    assert [n.op_type for n in prog.nodes] == ["Conv", "Relu", "BatchNormalization", "Add"]
    assert "__act__" not in prog.nodes[0].attrs
    run_both(model, {"x": rand(1, 2, 3, 3)}, tmp_path)


def test_graph_output_producer_keeps_its_activation_separate(tmp_path):
    nodes = [helper.make_node("MatMul", ["a", "w"], ["m"]), helper.make_node("Relu", ["m"], ["y"])]
    model = make_model(nodes, [tensor("a", [2, 4])], [tensor("m", [2, 3]), tensor("y", [2, 3])], [init("w", rand(4, 3))])
    assert [n.op_type for n in passes(model).nodes] == ["MatMul", "Relu"]
    run_both(model, {"a": rand(2, 4)}, tmp_path)


ACTIVATIONS = [
    ("Relu", {}, ("relu", ())),
    ("Sigmoid", {}, ("sigmoid", ())),
    ("HardSigmoid", {"alpha": 0.3, "beta": 0.4}, ("hardsigmoid", (0.30000001192092896, 0.4000000059604645))),
    ("HardSwish", {}, ("hardswish", ())),
    ("LeakyRelu", {"alpha": 0.2}, ("leakyrelu", (0.20000000298023224,))),
]


# every activation once, every producer at least once (each case is a native build)
PAIRS = [(a, p) for a, p in zip(ACTIVATIONS, ["MatMul", "Gemm", "Conv", "ConvTranspose", "MatMul"])]
PAIRS += [(ACTIVATIONS[0], p) for p in ("Gemm", "ConvTranspose")]


@pytest.mark.parametrize("activation,producer", PAIRS, ids=[f"{a[0]}-{p}" for a, p in PAIRS])
def test_activation_fused_into_producer(tmp_path, activation, producer):
    act, attrs, fused = activation
    if producer == "MatMul":
        layer = helper.make_node("MatMul", ["x", "w"], ["p"])
        x_shape, w, y_shape = [2, 3, 5], rand(5, 4), [2, 3, 4]
    elif producer == "Gemm":
        layer = helper.make_node("Gemm", ["x", "w"], ["p"], transB=1)
        x_shape, w, y_shape = [3, 5], rand(4, 5), [3, 4]
    elif producer == "Conv":
        layer = helper.make_node("Conv", ["x", "w"], ["p"], pads=[1, 1, 1, 1])
        x_shape, w, y_shape = [1, 2, 4, 4], rand(3, 2, 3, 3), [1, 3, 4, 4]
    else:
        layer = helper.make_node("ConvTranspose", ["x", "w"], ["p"], strides=[2, 2])
        x_shape, w, y_shape = [1, 2, 3, 3], rand(2, 3, 2, 2), [1, 3, 6, 6]
    model = make_model([layer, helper.make_node(act, ["p"], ["y"], **attrs)], [tensor("x", x_shape)], [tensor("y", y_shape)],
                       [init("w", w)], opset=17)
    prog = passes(model)
    assert [n.op_type for n in prog.nodes] == [producer]
    assert prog.nodes[0].attrs["__act__"] == fused
    run_both(model, {"x": rand(*x_shape, lo=-4, hi=4)}, tmp_path)


@pytest.mark.parametrize("producer", ["Conv", "Add"])
def test_sigmoid_mul_becomes_silu(tmp_path, producer):
    """x * Sigmoid(x) (YOLO's SiLU): a Conv's SiLU epilogue, or one Swish node when x comes from elsewhere; the values
    stay onnxruntime's (the vectorised exp of gemm.c)."""
    if producer == "Conv":
        first = helper.make_node("Conv", ["x", "w"], ["p"], pads=[1, 1, 1, 1])
        inits = [init("w", rand(3, 2, 3, 3))]
    else:
        first = helper.make_node("Add", ["x", "x"], ["p"])
        inits = []
    y_shape = [1, 3, 5, 5] if producer == "Conv" else [1, 2, 5, 5]
    nodes = [first, helper.make_node("Sigmoid", ["p"], ["s"]), helper.make_node("Mul", ["p", "s"], ["y"])]
    model = make_model(nodes, [tensor("x", [1, 2, 5, 5])], [tensor("y", y_shape)], inits, opset=17)
    prog = passes(model)
    if producer == "Conv":
        assert [n.op_type for n in prog.nodes] == ["Conv"] and prog.nodes[0].attrs["__act__"] == ("silu", ())
    else:
        assert [n.op_type for n in prog.nodes] == ["Add", "Swish"]
    run_both(model, {"x": rand(1, 2, 5, 5, lo=-30, hi=30)}, tmp_path)


def test_clip_with_runtime_bounds_is_not_fused(tmp_path):
    nodes = [helper.make_node("MatMul", ["x", "w"], ["p"]), helper.make_node("Clip", ["p", "lo"], ["y"])]
    model = make_model(nodes, [tensor("x", [2, 3]), tensor("lo", [])], [tensor("y", [2, 2])], [init("w", rand(3, 2))])
    assert [n.op_type for n in passes(model).nodes] == ["MatMul", "Clip"]


def test_clip_opset6_attributes_fuse(tmp_path):
    nodes = [helper.make_node("MatMul", ["x", "w"], ["p"]), helper.make_node("Clip", ["p"], ["y"], min=-0.25, max=0.5)]
    model = make_model(nodes, [tensor("x", [2, 3])], [tensor("y", [2, 2])], [init("w", rand(3, 2))], opset=10)
    prog = passes(model)
    assert prog.nodes[0].attrs["__act__"] == ("clip", (-0.25, 0.5))
    run_both(model, {"x": rand(2, 3, lo=-3, hi=3)}, tmp_path)


def test_double_conv_bn_relu_vs_numpy(tmp_path):
    # onnxruntime has no float64 Conv: numpy is the oracle here
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[0, 1, 0, 1]),
        helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["n"]),
        helper.make_node("Relu", ["n"], ["y"]),
    ]
    d = lambda *s, lo=-1, hi=1: RNG.uniform(lo, hi, s)  # noqa: E731
    w, sc, b, m, v = d(3, 2, 2, 3), d(3), d(3), d(3), d(3, lo=0.5)
    inits = [init("w", w), init("s", sc), init("b", b), init("m", m), init("v", v)]
    model = make_model(nodes, [tensor("x", [1, 2, 5, 5], TensorProto.DOUBLE)], [tensor("y", [1, 3, 4, 5], TensorProto.DOUBLE)], inits)
    assert [n.op_type for n in passes(model).nodes] == ["Conv"]
    x = d(1, 2, 5, 5)
    emit.export(model, target="native", out=tmp_path, name="m")
    got = emit.load(tmp_path).run({"x": x})["y"]
    c = ref_conv(x, w, None, (1, 1), (1, 1), (0, 1), (4, 5))
    k = (sc / np.sqrt(v + 1e-5)).reshape(1, 3, 1, 1)
    ref = np.maximum((c - m.reshape(1, 3, 1, 1)) * k + b.reshape(1, 3, 1, 1), 0)
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)


def test_im2col_scratch_lives_in_the_arena_for_its_node_only(tmp_path, monkeypatch):
    from emit.api import compile_program
    from emit.ir import ARENA
    from emit.ops import conv
    from emit.passes.plan_memory import liveness

    monkeypatch.setattr(conv, "IM2COL_BUDGET", 200)  # force several im2col chunks per image
    monkeypatch.setattr(conv, "HARD_BUDGET", 200)
    monkeypatch.setattr(conv, "MIN_TILE", 1)
    monkeypatch.setattr(conv.ConvGeometry, "by_windows", lambda self: False)  # im2col, not windows of column planes
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["a"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["a"], ["r"]),
        helper.make_node("Conv", ["r", "w2"], ["y"], strides=[2, 2], pads=[1, 1, 1, 1]),
    ]
    model = make_model(nodes, [tensor("x", [2, 3, 9, 9])], [tensor("y", [2, 5, 5, 5])],
                       [init("w1", rand(4, 3, 3, 3)), init("w2", rand(5, 4, 3, 3))])
    prog = compile_program(model)
    scratch = [b for b in prog.buffers.values() if "scratch" in b.name]
    assert len(scratch) == 2 and all(b.storage == ARENA for b in scratch)
    spans = liveness(prog)
    for step, b in enumerate(scratch):
        assert spans[b.name] == (step, step)
        assert b.nbytes <= 4 * 200 + 4 * 36  # the budget, or one pixel's column if that is larger
    run_both(model, {"x": rand(2, 3, 9, 9)}, tmp_path)


@pytest.mark.parametrize("form", ["div_after_mul", "div_before_mul", "mul_by_sixth"])
def test_written_out_hardswish_fuses_into_conv(tmp_path, form):
    """x * Clip(x + 3, 0, 6) / 6 (paddle2onnx's HardSwish) becomes the Conv's HardSwish epilogue."""
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["c", "three"], ["t"]),
             helper.make_node("Clip", ["t", "zero", "six"], ["r"])]
    if form == "div_after_mul":
        nodes += [helper.make_node("Mul", ["c", "r"], ["m"]), helper.make_node("Div", ["m", "six"], ["y"])]
    elif form == "div_before_mul":
        nodes += [helper.make_node("Div", ["r", "six"], ["d"]), helper.make_node("Mul", ["d", "c"], ["y"])]
    else:
        nodes += [helper.make_node("Mul", ["r", "c"], ["m"]), helper.make_node("Mul", ["sixth", "m"], ["y"])]
    inits = [init("w", rand(4, 3, 3, 3)), init("b", rand(4)), init("three", np.float32(3)), init("zero", np.float32(0)),
             init("six", np.float32(6)), init("sixth", np.float32(1 / 6))]
    model = make_model(nodes, [tensor("x", [1, 3, 6, 6])], [tensor("y", [1, 4, 6, 6])], inits)
    prog = passes(model)
    assert [n.op_type for n in prog.nodes] == ["Conv"]
    assert prog.nodes[0].attrs["__act__"] == ("hardswish", ())
    run_both(model, {"x": rand(1, 3, 6, 6, lo=-5, hi=5)}, tmp_path)


def test_clip_chain_that_is_not_hardswish_stays(tmp_path):
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Add", ["c", "two"], ["t"]),
             helper.make_node("Clip", ["t", "zero", "six"], ["r"]), helper.make_node("Mul", ["c", "r"], ["m"]),
             helper.make_node("Div", ["m", "six"], ["y"])]
    inits = [init("w", rand(4, 3, 1, 1)), init("two", np.float32(2)), init("zero", np.float32(0)),
             init("six", np.float32(6))]
    model = make_model(nodes, [tensor("x", [1, 3, 4, 4])], [tensor("y", [1, 4, 4, 4])], inits)
    assert [n.op_type for n in passes(model).nodes] == ["Conv", "Add", "Clip", "Mul", "Div"]
    run_both(model, {"x": rand(1, 3, 4, 4, lo=-5, hi=5)}, tmp_path)


def test_elementwise_ops_write_over_inputs_that_die(tmp_path):
    """Add(a, b) with a and b dying writes over a; Mul(a2, y) where a2 is read again later does not; the model's
    input is never written."""
    nodes = [helper.make_node("Conv", ["x", "w"], ["a"]), helper.make_node("Conv", ["x", "w"], ["b"]),
             helper.make_node("Add", ["a", "b"], ["s"]),           # a dies here: s takes its memory
             helper.make_node("Relu", ["s"], ["r"]),               # and r takes s's
             helper.make_node("Conv", ["x", "w"], ["a2"]),
             helper.make_node("Mul", ["a2", "r"], ["m"]),          # r dies, a2 does not: m takes r's
             helper.make_node("Add", ["m", "a2"], ["y"]),          # the output is its own buffer
             helper.make_node("Neg", ["x"], ["nx"]), helper.make_node("Add", ["nx", "y"], ["y2"])]
    model = make_model(nodes, [tensor("x", [1, 3, 4, 4])], [tensor("y2", [1, 3, 4, 4])], [init("w", rand(3, 3, 1, 1))])
    prog = passes(model)
    views = {b.name: b.view_of for b in prog.buffers.values() if b.view_of}
    assert views["s"] in ("a", "b") and views["r"] == "s" and views["m"] == "r"
    assert "nx" not in views  # its input is the model's
    x = rand(1, 3, 4, 4)
    keep = x.copy()
    run_both(model, {"x": x}, tmp_path)
    np.testing.assert_array_equal(x, keep)
