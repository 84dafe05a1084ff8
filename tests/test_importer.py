"""Importer: opset upgrade, local functions, dim binding, constant folding, external data, Constant weights."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

import emit
from emit.importer import import_model
from emit.passes import optimize

from .helpers import init, make_model, ort_run, tensor


def _run_both(model: onnx.ModelProto, feeds: dict, tmp_path, **kw) -> None:
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    emit.export(path, target="native", out=tmp_path / "out", **kw)
    got = emit.load(tmp_path / "out").run(feeds)
    ref = ort_run(model, feeds)
    for g, r in zip(got.values(), ref):
        np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-6)


def test_shape_chain_folds_away(tmp_path):
    # x -> Shape -> Gather(0) -> Unsqueeze -> Concat([-1]) -> Reshape: what PyTorch exports for x.view(x.size(0), -1)
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "ax0"], ["n1"]),
        helper.make_node("Concat", ["n1", "minus1"], ["shape"], axis=0),
        helper.make_node("Reshape", ["x", "shape"], ["r"]),
        helper.make_node("Relu", ["r"], ["y"]),
    ]
    model = make_model(
        nodes,
        [tensor("x", ["B", 2, 3])],
        [tensor("y", ["B", 6])],
        [init("zero", np.array(0, np.int64)), init("ax0", np.array([0], np.int64)), init("minus1", np.array([-1], np.int64))],
    )
    prog = optimize(import_model(model, dims={"B": 4}))
    assert [n.op_type for n in prog.nodes] == ["Reshape", "Relu"]
    x = np.random.default_rng(0).standard_normal((4, 2, 3)).astype(np.float32)
    _run_both(model, {"x": x}, tmp_path, dims={"B": 4})


def test_old_opset_is_upgraded(tmp_path):
    # opset 9: Unsqueeze takes axes as an attribute, Clip min/max as attributes
    nodes = [helper.make_node("Unsqueeze", ["x"], ["u"], axes=[0]), helper.make_node("Relu", ["u"], ["y"])]
    model = make_model(nodes, [tensor("x", [3, 4])], [tensor("y", [1, 3, 4])], opset=9)
    prog = import_model(model)
    assert prog.opset >= 13
    x = np.random.default_rng(1).standard_normal((3, 4)).astype(np.float32)
    _run_both(model, {"x": x}, tmp_path)


def test_local_function_inlined(tmp_path):
    fn = helper.make_function(
        "my.fns", "AddRelu", ["a", "b"], ["c"],
        [helper.make_node("Add", ["a", "b"], ["t"]), helper.make_node("Relu", ["t"], ["c"])],
        opset_imports=[helper.make_opsetid("", 17)],
    )
    node = helper.make_node("AddRelu", ["x", "w"], ["y"], domain="my.fns")
    model = make_model([node], [tensor("x", [2, 3])], [tensor("y", [2, 3])], [init("w", np.full((2, 3), -0.5, np.float32))])
    model.opset_import.append(helper.make_opsetid("my.fns", 1))
    model.functions.append(fn)
    prog = optimize(import_model(model))
    assert sorted(n.op_type for n in prog.nodes) == ["Add", "Relu"]
    x = np.random.default_rng(2).standard_normal((2, 3)).astype(np.float32)
    _run_both(model, {"x": x}, tmp_path)


def test_literal_minus_one_dim_needs_shape(tmp_path):
    model = make_model([helper.make_node("Relu", ["x"], ["y"])], [tensor("x", [-1, 5])], [tensor("y", [-1, 5])])
    try:
        import_model(model)
        raise AssertionError("expected an error")
    except emit.errors.EmitError as exc:
        assert "--shape x=1x5" in str(exc)
    prog = import_model(model, shapes={"x": (3, 5)})
    assert prog.buffers["y"].shape == (3, 5)


def test_constant_nodes_are_weights_and_external_data(tmp_path):
    w = np.arange(4096, dtype=np.float32).reshape(1, 4096) / 4096
    nodes = [
        helper.make_node("Constant", [], ["c"], value=onnx.numpy_helper.from_array(np.float32([0.25]))),
        helper.make_node("Add", ["x", "w"], ["t"]),
        helper.make_node("Mul", ["t", "c"], ["y"]),
    ]
    model = make_model(nodes, [tensor("x", [1, 4096])], [tensor("y", [1, 4096])], [init("w", w)])
    path = tmp_path / "ext.onnx"
    onnx.save(model, str(path), save_as_external_data=True, location="ext.bin", size_threshold=0)
    emit.export(path, target="native", out=tmp_path / "out")
    x = np.ones((1, 4096), np.float32)
    got = emit.load(tmp_path / "out").run({"x": x})["y"]
    np.testing.assert_allclose(got, (x + w) * 0.25, rtol=1e-6)


def test_arena_reuses_memory():
    nodes = [helper.make_node("Relu", [f"a{i}"], [f"a{i + 1}"]) for i in range(6)]
    model = make_model(nodes, [tensor("a0", [256])], [tensor("a6", [256])])
    prog = emit.compile_program(model)
    from emit.passes.plan_memory import naive_bytes

    # each Relu after the first writes over its input, which dies there: one intermediate's memory for all four
    assert prog.arena_bytes == 1024
    assert naive_bytes(prog) == 1024
    assert sum(b.storage == "arena" for b in prog.buffers.values()) == 1


def test_int64_and_bool_tensors(tmp_path):
    nodes = [helper.make_node("Add", ["a", "b"], ["s"]), helper.make_node("Relu", ["x"], ["y"])]
    model = make_model(
        nodes, [tensor("a", [3], TensorProto.INT64), tensor("b", [3], TensorProto.INT64), tensor("x", [2])],
        [tensor("s", [3], TensorProto.INT64), tensor("y", [2])],
    )
    feeds = {"a": np.array([1, -2, 3], np.int64), "b": np.array([2**40, 5, -7], np.int64), "x": np.float32([-1, 2])}
    _run_both(model, feeds, tmp_path)


def test_function_op_compiles_as_its_body(tmp_path):
    # SoftmaxCrossEntropyLoss has no lowering; ONNX defines it by a (context-dependent) function body.
    # Two calls of it check that the bodies' internal names are renamed apart, the second one leaves
    # its optional output out and takes the schema's default reduction ('mean').
    nodes = [
        helper.make_node("SoftmaxCrossEntropyLoss", ["x", "labels"], ["loss", "log_prob"], reduction="sum"),
        helper.make_node("SoftmaxCrossEntropyLoss", ["log_prob", "labels"], ["loss2"]),
    ]
    model = make_model(
        nodes,
        [tensor("x", [3, 5, 2]), tensor("labels", [3, 2], TensorProto.INT64)],
        [tensor("loss", []), tensor("log_prob", [3, 5, 2]), tensor("loss2", [])],
    )
    prog = import_model(model)
    assert "SoftmaxCrossEntropyLoss" not in {n.op_type for n in prog.nodes}
    rng = np.random.default_rng(3)
    feeds = {"x": rng.standard_normal((3, 5, 2)).astype(np.float32), "labels": rng.integers(0, 5, (3, 2)).astype(np.int64)}
    _run_both(model, feeds, tmp_path)
