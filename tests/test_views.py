"""Concat and Split as views (passes/views.py): a Concat's inputs written in place into its output by their producers,
a Split's outputs read in place from its input; the models still compute what onnxruntime computes, and the copies
are gone from the C only where the memory really is shared."""

from __future__ import annotations

import re

import numpy as np
from onnx import helper

import emit
from emit.importer import import_model
from emit.passes import optimize

from .helpers import check_strict_c99, init, make_model, ort_run, tensor

RNG = np.random.default_rng(11)


def rand(*shape):
    return RNG.uniform(-1, 1, shape).astype(np.float32)


def conv(x: str, y: str, w: str, act: str | None = None, **attrs) -> list:
    nodes = [helper.make_node("Conv", [x, w], [y + ("_c" if act else "")], **attrs)]
    if act:
        nodes.append(helper.make_node(act, [y + "_c"], [y]))
    return nodes


def views(model) -> dict[str, tuple[str, int]]:
    prog = optimize(import_model(model))
    return {b.name: (b.view_of, b.view_at) for b in prog.buffers.values() if b.view_of}


def copies(src: str, op_type: str) -> int:
    """memcpy calls in the C blocks of the model's `op_type` steps (each commented `/* Op 'name' */`)."""
    blocks = re.findall(rf"/\* {op_type} '[^']*' \*/\n    \{{\n(.*?)\n    \}}\n", src, re.S)
    assert blocks, op_type
    return sum(b.count("memcpy") for b in blocks)


def run_both(model, feeds, tmp_path):
    emit.export(model, target="native", out=tmp_path, name="m")
    got = emit.load(tmp_path).run(feeds)
    for o, ref in zip(model.graph.output, ort_run(model, feeds)):
        np.testing.assert_allclose(got[o.name], ref, rtol=1e-5, atol=1e-5)
    return (tmp_path / "model.c").read_text()


def c2f(first: str = "a", second: str = "b"):
    """YOLOv8's C2f block: a conv's output split in halves, the second half through two convs (with a residual Add),
    every piece concatenated, a conv over the concatenation."""
    nodes = [*conv("x", "h", "w1", "Relu"),
             helper.make_node("Split", ["h"], ["a", "b"], axis=1),
             *conv("b", "m1", "w2", "Sigmoid", pads=[1, 1, 1, 1]),
             *conv("m1", "m1b", "w3", pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["m1b", "b"], ["m2"]),
             helper.make_node("Concat", [first, second, "m2"], ["cat"], axis=1),
             *conv("cat", "y", "w4")]
    inits = [init("w1", rand(8, 3, 1, 1)), init("w2", rand(4, 4, 3, 3)), init("w3", rand(4, 4, 3, 3)),
             init("w4", rand(5, 12, 1, 1))]
    return make_model(nodes, [tensor("x", [1, 3, 9, 7])], [tensor("y", [1, 5, 9, 7])], inits)


def test_c2f_writes_every_piece_into_the_concat(tmp_path):
    model = c2f()
    v = views(model)
    plane = 9 * 7 * 4  # bytes per channel
    assert v["h"] == ("cat", 0)  # the split's input is the concat's first 8 channels, where its conv writes it
    assert v["a"] == ("h", 0) and v["b"] == ("h", 4 * plane)
    assert v["m2"] == ("cat", 8 * plane)
    src = run_both(model, {"x": rand(1, 3, 9, 7)}, tmp_path)
    assert copies(src, "Split") == copies(src, "Concat") == 0


def test_split_halves_in_another_order_are_copied_into_the_concat(tmp_path):
    """Concat(b, a, ...): the split's input is not laid out as the concat wants it, so it stays apart and the Split
    writes each half into its place in the concat."""
    model = c2f("b", "a")
    v = views(model)
    plane = 9 * 7 * 4
    assert "h" not in v and v["b"] == ("cat", 0) and v["a"] == ("cat", 4 * plane)
    src = run_both(model, {"x": rand(1, 3, 9, 7)}, tmp_path)
    assert copies(src, "Split") == 2 and copies(src, "Concat") == 0


def test_fire_module_and_nested_concats(tmp_path):
    """SqueezeNet's fire module (a 1x1 and a 3x3 conv of one input, concatenated) inside an outer Concat with a third
    conv: views of views, each at its own place; a piece read again after the concat still reads its values."""
    nodes = [*conv("x", "s", "ws", "Relu"),
             *conv("s", "e1", "we1", "Relu"),
             *conv("s", "e3", "we3", "Relu", pads=[1, 1, 1, 1]),
             helper.make_node("Concat", ["e1", "e3"], ["fire"], axis=1),
             *conv("x", "side", "wx"),
             helper.make_node("Concat", ["side", "fire"], ["both"], axis=1),
             helper.make_node("Mul", ["e3", "e3"], ["sq"]),  # e3 read after both concats
             *conv("both", "y", "wy"),
             helper.make_node("ReduceSum", ["sq"], ["z"], keepdims=0)]
    inits = [init("ws", rand(2, 3, 1, 1)), init("we1", rand(4, 2, 1, 1)), init("we3", rand(3, 2, 3, 3)),
             init("wx", rand(5, 3, 1, 1)), init("wy", rand(6, 12, 1, 1))]
    model = make_model(nodes, [tensor("x", [1, 3, 6, 5])], [tensor("y", [1, 6, 6, 5]), tensor("z", [])], inits)
    v = views(model)
    plane = 6 * 5 * 4
    assert v["fire"] == ("both", 5 * plane) and v["side"] == ("both", 0)
    assert v["e1"] == ("fire", 0) and v["e3"] == ("fire", 4 * plane)
    src = run_both(model, {"x": rand(1, 3, 6, 5)}, tmp_path)
    assert copies(src, "Concat") == 0


def test_what_cannot_be_a_view_is_copied(tmp_path):
    """Copied, not viewed: a graph input, an input given twice, a weight, an input that is a graph output, a Concat
    along an axis with a dim above 1 before it, a Split of the model's input; and a Concat that is the graph's output
    (out2, sx) keeps its inputs apart."""
    nodes = [*conv("x", "c1", "w"),
             helper.make_node("Concat", ["x", "c1", "c1", "k"], ["cat"], axis=1),        # x, c1 twice, a weight
             helper.make_node("Relu", ["c1"], ["o1"]),
             *conv("x", "c2", "w"),
             helper.make_node("Concat", ["c2", "o1"], ["inner"], axis=2),                # dims before axis 2: 1, 3
             helper.make_node("Split", ["x", "sizes"], ["s0", "s1"], axis=1),                # the model's input
             helper.make_node("Concat", ["s1", "s0"], ["sx"], axis=1),
             helper.make_node("Identity", ["cat"], ["catout"]),
             *conv("inner", "c3", "w"),
             helper.make_node("Concat", ["c3", "c3"], ["out2"], axis=1)]                # a graph output
    inits = [init("w", rand(3, 3, 1, 1)), init("k", rand(1, 2, 4, 4)), init("sizes", np.array([1, 2], np.int64))]
    model = make_model(nodes, [tensor("x", [1, 3, 4, 4])],
                       [tensor("catout", [1, 11, 4, 4]), tensor("o1", [1, 3, 4, 4]), tensor("out2", [1, 6, 8, 4]),
                        tensor("sx", [1, 3, 4, 4])],
                       inits)
    v = views(model)
    assert not {"c1", "c2", "o1", "s0", "s1", "c3"} & v.keys()
    x = rand(1, 3, 4, 4)
    keep = x.copy()
    src = run_both(model, {"x": x}, tmp_path)
    np.testing.assert_array_equal(x, keep)
    assert copies(src, "Split") == 2 and copies(src, "Concat") >= 4 + 2 + 2 + 2


def test_split_outputs_read_in_place(tmp_path):
    """A Split along the channels of an intermediate: each output a view of its block; one of them read by two convs,
    the input read again after the split."""
    nodes = [*conv("x", "h", "w1", "Relu"),
             helper.make_node("Split", ["h"], ["a", "b", "c"], axis=1, num_outputs=3),
             *conv("a", "ya", "w2"), *conv("c", "yc", "w2"), *conv("c", "yc2", "w2", pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("Add", ["ya", "yc"], ["s"]), helper.make_node("Mul", ["s", "b"], ["y"]),
             helper.make_node("ReduceMax", ["h"], ["hm"], keepdims=0)]
    inits = [init("w1", rand(6, 3, 1, 1)), init("w2", rand(2, 2, 1, 1))]
    model = make_model(nodes, [tensor("x", [1, 3, 5, 5])],
                       [tensor("y", [1, 2, 5, 5]), tensor("yc2", [1, 2, 3, 3]), tensor("hm", [])], inits, opset=18)
    v = views(model)
    plane = 5 * 5 * 4
    assert v["a"] == ("h", 0) and v["b"] == ("h", 2 * plane) and v["c"] == ("h", 4 * plane)
    src = run_both(model, {"x": rand(1, 3, 5, 5)}, tmp_path)
    assert copies(src, "Split") == 0


def test_views_in_the_c_folder_are_strict_c99(tmp_path):
    check_strict_c99(c2f(), tmp_path, "gcc", "m")
