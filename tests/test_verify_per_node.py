"""`onnx-emit verify --per-node`: every intermediate tensor is compared with onnxruntime and the first node out of
tolerance (in graph order) is named with its error."""

from __future__ import annotations

import re

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from emit.verify import Intermediate, OutputReport, expose_intermediates, first_mismatch, per_node_lines

from .helpers import init, make_model, run_cli, tensor

FIRST = re.compile(r"^first mismatch: node '([^']+)' \((\w+)\) output '([^']+)': max abs err (\S+), max rel err (\S+) "
                   r"\(max \|ref\| (\S+)\)$", re.M)


def _mlp(path):
    """MatMul -> Add -> Relu -> MatMul -> Softmax: five node outputs, the last one the graph output."""
    rng = np.random.default_rng(1)
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h1"], name="mm1"),
        helper.make_node("Add", ["h1", "b1"], ["h2"], name="add1"),
        helper.make_node("Relu", ["h2"], ["h3"], name="relu1"),
        helper.make_node("MatMul", ["h3", "w2"], ["h4"], name="mm2"),
        helper.make_node("Softmax", ["h4"], ["y"], name="sm", axis=-1),
    ]
    model = make_model(nodes, [tensor("x", ["N", 8])], [tensor("y", ["N", 4])],
                       [init("w1", rng.standard_normal((8, 16)).astype(np.float32)),
                        init("b1", rng.standard_normal(16).astype(np.float32)),
                        init("w2", rng.standard_normal((16, 4)).astype(np.float32))])
    onnx.save(model, str(path))
    return path


def _long_dot(path):
    """Relu and Add are exact in float32 (same bits in both runtimes); a MatMul over K=512 sums in another order than
    onnxruntime's, so with --rtol 0 --atol 0 it is the first node to differ."""
    rng = np.random.default_rng(0)
    k = 512
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="relu_in"),
        helper.make_node("Add", ["r", "b"], ["a"], name="add_bias"),
        helper.make_node("MatMul", ["a", "w"], ["m"], name="big_matmul"),
        helper.make_node("Tanh", ["m"], ["y"], name="tanh_out"),
    ]
    model = make_model(nodes, [tensor("x", [4, k])], [tensor("y", [4, 64])],
                       [init("b", rng.standard_normal(k).astype(np.float32)),
                        init("w", rng.standard_normal((k, 64)).astype(np.float32))])
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("target", ["native", "wasm"])
def test_small_model_passes_per_node(tmp_path, target):
    proc = run_cli("verify", _mlp(tmp_path / "mlp.onnx"), "--dim", "N=2", "--per-node", "--target", target)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0] == "per-node: all 5 intermediate tensors within tolerance"
    # the per-output report lists the model's own output only, not the exposed intermediates
    assert [ln.split(":")[0] for ln in lines[1:-1]] == ["y"] and lines[1].endswith(" ok")
    assert lines[-1] == "PASS"
    assert f"for {target} with every intermediate tensor as an output" in proc.stderr


@pytest.mark.parametrize("target", ["native", "wasm"])
def test_mismatch_is_localized_to_the_first_node(tmp_path, target):
    path = _long_dot(tmp_path / "dot.onnx")
    for seed in ("0", "1"):
        proc = run_cli("verify", path, "--per-node", "--rtol", "0", "--atol", "0", "--seed", seed, "--target", target)
        assert proc.returncode == 1, (proc.stdout, proc.stderr)
        found = FIRST.search(proc.stdout)
        assert found, proc.stdout
        node, op, out, max_abs, max_rel, ref_max = found.groups()
        assert (node, op, out) == ("big_matmul", "MatMul", "m")  # relu_in and add_bias are bit-exact, so not them
        assert 0 < float(max_abs) < 1e-3 and 0 < float(max_rel) < 1e-5 and float(ref_max) > 10
        assert "per-node: 2 of 4 intermediate tensors out of tolerance" in proc.stdout  # the MatMul and the Tanh after it
        assert re.search(r"^y: max abs err \S+, max rel err \S+ \(max \|ref\| \S+\) MISMATCH$", proc.stdout, re.M)
        assert proc.stdout.strip().splitlines()[-1] == "FAIL"


def test_same_model_passes_at_the_default_tolerance(tmp_path):
    proc = run_cli("verify", _long_dot(tmp_path / "dot.onnx"), "--per-node")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "per-node: all 4 intermediate tensors within tolerance" in proc.stdout


def test_bad_model_path_is_one_line_exit_2(tmp_path):
    proc = run_cli("verify", tmp_path / "missing.onnx", "--per-node")
    assert proc.returncode == 2
    errors = [ln for ln in proc.stderr.strip().splitlines() if "error" in ln.lower()]
    assert len(errors) == 1 and errors[0].startswith("onnx-emit: error:") and "no such file" in errors[0]
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_expose_intermediates_picks_tensors_in_node_order():
    body = helper.make_graph(
        [helper.make_node("Add", ["acc_in", "x"], ["acc_out"], name="body_add"),
         helper.make_node("Identity", ["cond_in"], ["cond_out"], name="body_id")], "body",
        [tensor("i", [], TensorProto.INT64), tensor("cond_in", [], TensorProto.BOOL), tensor("acc_in", [4])],
        [tensor("cond_out", [], TensorProto.BOOL), tensor("acc_out", [4])])
    nodes = [
        helper.make_node("Relu", ["x"], ["r"]),  # unnamed
        helper.make_node("Dropout", ["r"], ["d", "mask"], name="drop"),  # its mask is read by nobody: skipped
        helper.make_node("SplitToSequence", ["d"], ["seq"], name="split", axis=0),  # a sequence: skipped
        helper.make_node("SequenceAt", ["seq", "one"], ["e"], name="at"),
        helper.make_node("Loop", ["three", "", "d"], ["acc"], name="loop", body=body),  # rank from emit, not onnx
        helper.make_node("Mul", ["acc", "e"], ["y"], name="mul"),
    ]
    model = make_model(nodes, [tensor("x", [4])], [tensor("y", [4]), tensor("r", [4])],
                       [init("one", np.array(1, np.int64)), init("three", np.array(3, np.int64))])
    aug, checked = expose_intermediates(model)
    assert checked == [Intermediate("Relu#0", "Relu", "r"), Intermediate("drop", "Dropout", "d"),
                       Intermediate("at", "SequenceAt", "e"), Intermediate("loop", "Loop", "acc"), Intermediate("mul", "Mul", "y")]
    outs = {o.name: o.type.tensor_type for o in aug.graph.output}
    assert list(outs) == ["y", "r", "d", "e", "acc"]  # existing outputs kept once, new ones appended in node order
    assert outs["acc"].elem_type == TensorProto.FLOAT and len(outs["acc"].shape.dim) == 1
    assert [len(outs[n].shape.dim) for n in ("d", "e")] == [1, 1]
    assert len(model.graph.output) == 2 and model.graph.node[0].name == ""  # the caller's model is left alone
    onnx.checker.check_model(aug)


def test_first_mismatch_is_the_earliest_failing_node():
    def rep(name, ok, err):
        return OutputReport(name, err, err / 2, 2.0, ok)

    results = [(Intermediate("a", "Relu", "t0"), rep("t0", True, 0.0)),
               (Intermediate("b", "Conv", "t1"), rep("t1", False, 0.5)),
               (Intermediate("c", "Add", "t2"), rep("t2", False, 9.0))]
    assert first_mismatch(results)[0].node == "b"
    assert per_node_lines(results) == [
        "first mismatch: node 'b' (Conv) output 't1': max abs err 0.5, max rel err 0.25 (max |ref| 2)",
        "per-node: 2 of 3 intermediate tensors out of tolerance"]
    assert first_mismatch(results[:1]) is None
    assert per_node_lines(results[:1]) == ["per-node: all 1 intermediate tensors within tolerance"]
