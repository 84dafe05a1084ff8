"""Control flow and sequences against onnxruntime: If with a runtime condition (and a constant one, which
folds), Loop with constant and run-time trip counts, Scan with axes and directions, bodies that read outer
values, nested subgraphs, and sequences that are lists of tensors at compile time."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

import emit
from emit.api import compile_program
from emit.errors import UnsupportedError
from emit.ir import walk_nodes

from .helpers import check_strict_c99, init, make_model, ort_run, tensor

F, I64, B = TensorProto.FLOAT, TensorProto.INT64, TensorProto.BOOL
RNG = np.random.default_rng(7)


def _seq(name: str, elem=F):
    return helper.make_tensor_sequence_value_info(name, elem, None)


def _graph(nodes, inputs, outputs, inits=(), name="body"):
    return helper.make_graph(list(nodes), name, list(inputs), list(outputs), initializer=list(inits))


def _export(model, tmp_path, shapes=None):
    emit.export(model, target="native", out=tmp_path, shapes=shapes, name="m")
    return emit.load(tmp_path)


def _feeds_for_emit(feeds: dict) -> dict:
    """A sequence input is fed as its elements NAME[0], NAME[1], ..."""
    out = {}
    for k, v in feeds.items():
        if isinstance(v, list):
            out.update({f"{k}[{j}]": e for j, e in enumerate(v)})
        else:
            out[k] = v
    return out


def _assert_matches(model, got: dict, ref: list, rtol=1e-5, atol=1e-6) -> None:
    for o, r in zip(model.graph.output, ref):
        if isinstance(r, list):
            n = sum(1 for k in got if k.startswith(f"{o.name}["))
            assert n == len(r), f"{o.name}: {n} elements, onnxruntime has {len(r)}"
            for j, e in enumerate(r):
                np.testing.assert_allclose(got[f"{o.name}[{j}]"], e, rtol=rtol, atol=atol, err_msg=f"{o.name}[{j}]")
        else:
            assert got[o.name].dtype == r.dtype and got[o.name].shape == r.shape, o.name
            np.testing.assert_allclose(got[o.name], r, rtol=rtol, atol=atol, err_msg=o.name)


def _check(model, tmp_path, feed_sets, shapes=None):
    m = _export(model, tmp_path, shapes)
    for feeds in feed_sets:
        _assert_matches(model, m.run(_feeds_for_emit(feeds)), ort_run(model, feeds))
    return m


# ---------------------------------------------------------------- If


def _if_model(cond_const: bool | None = None):
    """y = If(c, then: relu(x @ W), else: x * x) + x; both branches read outer values (x, W)."""
    then_g = _graph([helper.make_node("MatMul", ["x", "W"], ["t1"]), helper.make_node("Relu", ["t1"], ["t_out"])], [],
                    [tensor("t_out", [2, 3])], name="then")
    else_g = _graph([helper.make_node("Mul", ["x", "x"], ["e_out"])], [], [tensor("e_out", [2, 3])], name="else")
    nodes = [helper.make_node("If", ["c"], ["y"], then_branch=then_g, else_branch=else_g), helper.make_node("Add", ["y", "x"], ["z"])]
    inputs = [tensor("x", [2, 3])]
    if cond_const is None:
        inputs.insert(0, tensor("c", [], B))
    else:
        nodes.insert(0, helper.make_node("Constant", [], ["c"], value=helper.make_tensor("v", B, [], [cond_const])))
    return make_model(nodes, inputs, [tensor("z", [2, 3])], [init("W", RNG.standard_normal((3, 3)).astype(np.float32))])


def test_if_runtime_condition_runs_the_taken_branch(tmp_path):
    x = RNG.standard_normal((2, 3)).astype(np.float32)
    _check(_if_model(), tmp_path, [{"c": np.array(True), "x": x}, {"c": np.array(False), "x": x}])


@pytest.mark.parametrize("cond", [True, False])
def test_if_constant_condition_folds_to_its_branch(cond, tmp_path):
    model = _if_model(cond)
    prog = compile_program(model)
    assert not [n for n in walk_nodes(prog.nodes) if n.op_type == "If"]
    _check(model, tmp_path, [{"x": RNG.standard_normal((2, 3)).astype(np.float32)}])


def test_if_branches_of_different_shapes_are_refused():
    then_g = _graph([helper.make_node("Identity", ["x"], ["a"])], [], [tensor("a", ["p", "q"])], name="then")
    else_g = _graph([helper.make_node("Transpose", ["x"], ["b"])], [], [tensor("b", ["p", "q"])], name="else")
    model = make_model([helper.make_node("If", ["c"], ["y"], then_branch=then_g, else_branch=else_g)],
                       [tensor("c", [], B), tensor("x", [2, 3])], [tensor("y", ["p", "q"])])
    with pytest.raises(UnsupportedError, match=r"has shape \[2, 3\] in then_branch but \[3, 2\] in else_branch"):
        compile_program(model)


def test_if_branch_shape_left_open_takes_the_declared_output_shape(tmp_path):
    """then: Reshape by a run-time shape (open to inference), else: Transpose; y is declared [3, 2]."""
    then_g = _graph([helper.make_node("Reshape", ["x", "s"], ["r"])], [], [tensor("r", ["a", "b"])], name="then")
    else_g = _graph([helper.make_node("Transpose", ["x"], ["t"])], [], [tensor("t", ["a", "b"])], name="else")
    model = make_model([helper.make_node("If", ["c"], ["y"], then_branch=then_g, else_branch=else_g)],
                       [tensor("c", [], B), tensor("x", [2, 3]), tensor("s", [2], I64)], [tensor("y", [3, 2])])
    x, s = RNG.standard_normal((2, 3)).astype(np.float32), np.array([3, 2], np.int64)
    m = _check(model, tmp_path, [{"c": np.array(True), "x": x, "s": s}, {"c": np.array(False), "x": x, "s": s}])
    with pytest.raises(RuntimeError):  # a run-time shape other than the declared one
        m.run({"c": np.array(True), "x": x, "s": np.array([6, 1], np.int64)})


def test_if_returning_sequences_of_one_layout(tmp_path):
    then_g = _graph([helper.make_node("SequenceConstruct", ["x", "x"], ["s"])], [], [_seq("s")], name="then")
    else_g = _graph([helper.make_node("Neg", ["x"], ["n"]), helper.make_node("SequenceConstruct", ["n", "x"], ["s2"])], [],
                    [_seq("s2")], name="else")
    model = make_model([helper.make_node("If", ["c"], ["y"], then_branch=then_g, else_branch=else_g)],
                       [tensor("c", [], B), tensor("x", [3])], [_seq("y")])
    x = RNG.standard_normal(3).astype(np.float32)
    _check(model, tmp_path, [{"c": np.array(True), "x": x}, {"c": np.array(False), "x": x}])


# ---------------------------------------------------------------- Loop


def _loop_body(cond_expr: bool = False):
    """(i, cond, s, k) -> (cond_out, s + x*i, k + 1[, 2*(s + x*i)]); x comes from the outer graph."""
    nodes = [
        helper.make_node("Cast", ["i"], ["fi"], to=F),
        helper.make_node("Mul", ["x", "fi"], ["t"]),
        helper.make_node("Add", ["s", "t"], ["s2"]),
        helper.make_node("Add", ["k", "one"], ["k2"]),
        helper.make_node("Mul", ["s2", "two"], ["scan"]),
    ]
    if cond_expr:  # keep going while the sum stays below the outer `limit`
        nodes += [helper.make_node("ReduceSum", ["s2"], ["tot"], keepdims=0), helper.make_node("Less", ["tot", "limit"], ["cond_out"])]
    else:
        nodes.append(helper.make_node("Identity", ["cond"], ["cond_out"]))
    outs = [tensor("cond_out", [], B), tensor("s2", [3]), tensor("k2", [], I64)] + ([] if cond_expr else [tensor("scan", [3])])
    return _graph(
        nodes,
        [tensor("i", [], I64), tensor("cond", [], B), tensor("s", [3]), tensor("k", [], I64)],
        outs,
        [init("one", np.array(1, dtype=np.int64)), init("two", np.array(2.0, dtype=np.float32))],
    )


def test_loop_constant_trip_count_with_scan_outputs(tmp_path):
    model = make_model(
        [helper.make_node("Loop", ["M", "", "s0", "k0"], ["s", "k", "rows"], body=_loop_body())],
        [tensor("x", [3]), tensor("s0", [3])],
        [tensor("s", [3]), tensor("k", [], I64), tensor("rows", [4, 3])],
        [init("M", np.array(4, dtype=np.int64)), init("k0", np.array(0, dtype=np.int64))],
    )
    feeds = {"x": RNG.standard_normal(3).astype(np.float32), "s0": RNG.standard_normal(3).astype(np.float32)}
    _check(model, tmp_path, [feeds])


def _runtime_loop_model():
    return make_model(
        [helper.make_node("Loop", ["M", "c0", "s0", "k0"], ["s", "k"], body=_loop_body(cond_expr=True))],
        [tensor("M", [], I64), tensor("c0", [], B), tensor("x", [3]), tensor("s0", [3]), tensor("limit", [])],
        [tensor("s", [3]), tensor("k", [], I64)],
        [init("k0", np.array(0, dtype=np.int64))],
    )


def test_loop_runtime_trip_count_and_early_stop(tmp_path):
    model = _runtime_loop_model()
    x = np.array([1.0, 2.0, 0.5], dtype=np.float32)
    s0 = np.zeros(3, dtype=np.float32)
    sets = [
        {"M": np.array(m, dtype=np.int64), "c0": np.array(c), "x": x, "s0": s0, "limit": np.array(lim, dtype=np.float32)}
        for m, c, lim in [(0, True, 100.0), (7, True, 1e9), (7, True, 20.0), (5, False, 1e9), (-2, True, 1e9)]
    ]
    _check(model, tmp_path, sets)


def test_loop_runtime_trip_count_bounded_by_declared_scan_rows(tmp_path):
    model = make_model(
        [helper.make_node("Loop", ["M", "", "s0", "k0"], ["s", "k", "rows"], body=_loop_body())],
        [tensor("M", [], I64), tensor("x", [3]), tensor("s0", [3])],
        [tensor("s", [3]), tensor("k", [], I64), tensor("rows", [5, 3])],
        [init("k0", np.array(0, dtype=np.int64))],
    )
    feeds = {"M": np.array(5, dtype=np.int64), "x": RNG.standard_normal(3).astype(np.float32), "s0": np.ones(3, np.float32)}
    m = _check(model, tmp_path, [feeds])
    with pytest.raises(RuntimeError):  # 3 iterations cannot fill the 5 compiled rows: <prefix>_run returns 1
        m.run({**feeds, "M": np.array(3, dtype=np.int64)})


def test_loop_runtime_trip_count_with_undeclared_scan_rows_is_refused():
    model = make_model(
        [helper.make_node("Loop", ["M", "", "s0", "k0"], ["s", "k", "rows"], body=_loop_body())],
        [tensor("M", [], I64), tensor("x", [3]), tensor("s0", [3])],
        [tensor("s", [3]), tensor("k", [], I64), tensor("rows", ["n", 3])],
        [init("k0", np.array(0, dtype=np.int64))],
    )
    with pytest.raises(UnsupportedError, match=r"scan output 'rows' has one row per iteration, and the trip count 'M' is set at run time"):
        compile_program(model)


# ---------------------------------------------------------------- Scan


def _scan_model():
    body = _graph(
        [
            helper.make_node("Add", ["acc", "a"], ["acc2"]),
            helper.make_node("Mul", ["prod", "b"], ["prod2"]),
            helper.make_node("Sub", ["acc2", "prod2"], ["row"]),
            helper.make_node("Add", ["row", "bias"], ["row2"]),  # an outer initializer
        ],
        [tensor("acc", [2]), tensor("prod", [2]), tensor("a", [2]), tensor("b", [2])],
        [tensor("acc2", [2]), tensor("prod2", [2]), tensor("row2", [2])],
    )
    return make_model(
        [helper.make_node("Scan", ["acc0", "prod0", "xa", "xb"], ["acc", "prod", "rows"], body=body, num_scan_inputs=2,
                          scan_input_axes=[0, 1], scan_input_directions=[0, 1], scan_output_axes=[1], scan_output_directions=[1])],
        [tensor("acc0", [2]), tensor("prod0", [2]), tensor("xa", [4, 2]), tensor("xb", [2, 4])],
        [tensor("acc", [2]), tensor("prod", [2]), tensor("rows", [2, 4])],
        [init("bias", np.array([0.5, -0.25], dtype=np.float32))],
    )


def test_scan_axes_directions_and_two_states(tmp_path):
    model = _scan_model()
    feeds = {"acc0": np.zeros(2, np.float32), "prod0": np.ones(2, np.float32),
             "xa": RNG.standard_normal((4, 2)).astype(np.float32), "xb": RNG.uniform(0.5, 1.5, (2, 4)).astype(np.float32)}
    _check(model, tmp_path, [feeds])


# ---------------------------------------------------------------- nested


def _nested_model():
    """Loop (3 iterations) whose body holds an If that reads an outer runtime value (w = relu(w_in)) and a
    body value, and a Scan over the outer x; the Loop also stacks its state as scan rows."""
    then_g = _graph([helper.make_node("Add", ["s", "w"], ["a"])], [], [tensor("a", [3])], name="then")
    else_g = _graph([helper.make_node("Sub", ["s", "half"], ["b"])], [], [tensor("b", [3])], name="else")
    scan_body = _graph([helper.make_node("Add", ["acc", "xi"], ["acc2"]), helper.make_node("Mul", ["acc2", "s"], ["o"])],
                       [tensor("acc", [3]), tensor("xi", [3])], [tensor("acc2", [3]), tensor("o", [3])], name="scan")
    body = _graph(
        [
            helper.make_node("Mod", ["i", "two"], ["r"]),
            helper.make_node("Equal", ["r", "zero"], ["even"]),
            helper.make_node("Mul", ["s", "quarter"], ["half"]),
            helper.make_node("If", ["even"], ["y"], then_branch=then_g, else_branch=else_g),
            helper.make_node("Scan", ["y", "x"], ["acc", "outs"], body=scan_body, num_scan_inputs=1),
            helper.make_node("ReduceMean", ["outs"], ["m"], axes=[0], keepdims=0),
            helper.make_node("Add", ["acc", "m"], ["s2"]),
            helper.make_node("Identity", ["cond"], ["cond_out"]),
        ],
        [tensor("i", [], I64), tensor("cond", [], B), tensor("s", [3])],
        [tensor("cond_out", [], B), tensor("s2", [3]), tensor("y", [3])],
        [init("two", np.array(2, np.int64)), init("zero", np.array(0, np.int64)), init("quarter", np.array(0.25, np.float32))],
    )
    return make_model(
        [helper.make_node("Relu", ["w_in"], ["w"]), helper.make_node("Loop", ["M", "", "s0"], ["s", "ys"], body=body)],
        [tensor("w_in", [3]), tensor("x", [2, 3]), tensor("s0", [3])],
        [tensor("s", [3]), tensor("ys", [3, 3])],
        [init("M", np.array(3, np.int64))],
        opset=15,
    )


def test_nested_loop_if_scan_with_outer_values(tmp_path):
    feeds = {"w_in": RNG.standard_normal(3).astype(np.float32), "x": RNG.standard_normal((2, 3)).astype(np.float32) * 0.5,
             "s0": RNG.standard_normal(3).astype(np.float32)}
    _check(_nested_model(), tmp_path, [feeds])


@pytest.mark.parametrize("cc", ["gcc", "clang", "emcc"])
def test_nested_control_flow_is_strict_c99(cc, tmp_path):
    check_strict_c99(_nested_model(), tmp_path, cc, "nested")


def test_nested_control_flow_in_wasm(tmp_path):
    model = _nested_model()
    feeds = {"w_in": RNG.standard_normal(3).astype(np.float32), "x": RNG.standard_normal((2, 3)).astype(np.float32) * 0.5,
             "s0": RNG.standard_normal(3).astype(np.float32)}
    emit.export(model, target="wasm", out=tmp_path, name="nested")
    _assert_matches(model, emit.load(tmp_path)(feeds), ort_run(model, feeds))


def test_loop_state_lives_across_the_whole_loop():
    """The planner never lets a body temporary share memory with loop state or with what the loop reads."""
    from emit.ir import ARENA, bodies
    from emit.passes.plan_memory import liveness

    prog = compile_program(_nested_model())
    spans = liveness(prog)
    loop = next(n for n in prog.nodes if n.op_type == "Loop")
    body = bodies(loop)[0]
    state = spans[prog.root(body.inputs[2]).name]  # the loop-carried formal input
    inner = {prog.root(o).name for n in walk_nodes(body.nodes) for o in n.outputs if o}  # what the body computes
    for name in inner:
        if prog.buffers[name].storage == ARENA:
            assert state[0] <= spans[name][0] and spans[name][1] <= state[1], name
    w = spans[prog.root("w").name]  # the outer runtime value the body reads
    assert w[0] <= state[0] and state[1] <= w[1]
    placed = [(prog.buffers[k].offset, prog.buffers[k].offset + prog.buffers[k].nbytes, *spans[k]) for k in spans]
    for j, (o1, e1, f1, l1) in enumerate(placed):
        for o2, e2, f2, l2 in placed[j + 1 :]:
            if not (l1 < f2 or l2 < f1) and e1 > o1 and e2 > o2:
                assert e1 <= o2 or e2 <= o1, "two live buffers overlap"


# ---------------------------------------------------------------- sequences


def test_split_concat_insert_erase_at_compile_time(tmp_path):
    nodes = [
        helper.make_node("SplitToSequence", ["x", "split"], ["parts"], axis=0),
        helper.make_node("SequenceAt", ["parts", "one"], ["second"]),
        helper.make_node("SequenceLength", ["parts"], ["n"]),
        helper.make_node("Neg", ["first_row"], ["neg"]),
        helper.make_node("SequenceInsert", ["parts", "neg", "one"], ["more"]),
        helper.make_node("SequenceErase", ["more", "zero"], ["fewer"]),
        helper.make_node("ConcatFromSequence", ["fewer"], ["cat"], axis=0),
        helper.make_node("SplitToSequence", ["x"], ["rows"], axis=0, keepdims=0),
        helper.make_node("ConcatFromSequence", ["rows"], ["stacked"], axis=1, new_axis=1),
    ]
    model = make_model(
        nodes,
        [tensor("x", [3, 4]), tensor("first_row", [1, 4])],
        [tensor("second", [2, 4]), tensor("n", [], I64), tensor("cat", [3, 4]), tensor("stacked", [4, 3])],
        [init("split", np.array([1, 2], np.int64)), init("one", np.array(1, np.int64)), init("zero", np.array(0, np.int64))],
    )
    _check(model, tmp_path, [{"x": RNG.standard_normal((3, 4)).astype(np.float32), "first_row": RNG.standard_normal((1, 4)).astype(np.float32)}])


def _sequence_at_model():
    return make_model(
        [helper.make_node("SequenceConstruct", ["a", "b", "c"], ["s"]), helper.make_node("SequenceAt", ["s", "p"], ["y"])],
        [tensor("a", [2]), tensor("b", [2]), tensor("c", [2]), tensor("p", [], I64)],
        [tensor("y", [2])],
    )


def test_sequence_at_runtime_position(tmp_path):
    model = _sequence_at_model()
    abc = {k: RNG.standard_normal(2).astype(np.float32) for k in "abc"}
    m = _check(model, tmp_path, [{**abc, "p": np.array(p, np.int64)} for p in (0, 2, -1, -3)])
    with pytest.raises(RuntimeError):
        m.run({**abc, "p": np.array(3, np.int64)})


def test_sequence_inputs_outputs_and_sequence_map(tmp_path):
    body = _graph([helper.make_node("Add", ["e", "bias"], ["o"]), helper.make_node("Shape", ["e"], ["sh"])],
                  [tensor("e", None), tensor("bias", [1])], [tensor("o", None), tensor("sh", [2], I64)], name="map")
    model = make_model(
        [helper.make_node("SequenceMap", ["xs", "bias"], ["ys", "shapes"], body=body)],
        [_seq("xs"), tensor("bias", [1])],
        [_seq("ys"), _seq("shapes", I64)],
    )
    xs = [RNG.standard_normal((2, 3)).astype(np.float32), RNG.standard_normal((4, 1)).astype(np.float32)]
    feeds = {"xs": xs, "bias": np.array([0.5], np.float32)}
    m = _check(model, tmp_path, [feeds], shapes={"xs": [(2, 3), (4, 1)]})
    assert [t.name for t in m.inputs] == ["xs[0]", "xs[1]", "bias"]


def test_loop_carrying_a_sequence_is_unrolled(tmp_path):
    body = _graph(
        [helper.make_node("Cast", ["i"], ["fi"], to=F), helper.make_node("Mul", ["x", "fi"], ["row"]),
         helper.make_node("SequenceInsert", ["seq", "row"], ["seq2"]), helper.make_node("Identity", ["cond"], ["cond_out"])],
        [tensor("i", [], I64), tensor("cond", [], B), _seq("seq")],
        [tensor("cond_out", [], B), _seq("seq2")],
    )
    model = make_model(
        [helper.make_node("SequenceEmpty", [], ["empty"], dtype=F), helper.make_node("Loop", ["M", "", "empty"], ["seq"], body=body),
         helper.make_node("ConcatFromSequence", ["seq"], ["y"], axis=0, new_axis=1)],
        [tensor("x", [3])], [tensor("y", [4, 3])], [init("M", np.array(4, np.int64))],
    )
    prog = compile_program(model)
    assert not [n for n in walk_nodes(prog.nodes) if n.op_type == "Loop"]
    _check(model, tmp_path, [{"x": RNG.standard_normal(3).astype(np.float32)}])


def test_sequences_whose_layout_depends_on_runtime_data_are_refused():
    split = make_model([helper.make_node("SplitToSequence", ["x", "k"], ["s"])], [tensor("x", [6]), tensor("k", [], I64)], [_seq("s")])
    with pytest.raises(UnsupportedError, match=r"depend on input 'k' \(split\), which is a run-time value"):
        compile_program(split)
    body = _graph([helper.make_node("SequenceInsert", ["seq", "x"], ["seq2"]), helper.make_node("Identity", ["cond"], ["cond_out"])],
                  [tensor("i", [], I64), tensor("cond", [], B), _seq("seq")], [tensor("cond_out", [], B), _seq("seq2")])
    loop = make_model([helper.make_node("SequenceEmpty", [], ["e"]), helper.make_node("Loop", ["M", "", "e"], ["s"], body=body)],
                      [tensor("M", [], I64), tensor("x", [2])], [_seq("s")])
    with pytest.raises(UnsupportedError, match=r"loop-carried value is a sequence.*trip count 'M' is a run-time value"):
        compile_program(loop)
    with pytest.raises(Exception, match=r"input 'xs' is a sequence of tensors, compiled with a fixed length"):
        compile_program(make_model([helper.make_node("Identity", ["xs"], ["ys"])], [_seq("xs")], [_seq("ys")]))


@pytest.mark.parametrize("cc", ["gcc", "clang"])
@pytest.mark.parametrize("build", [_if_model, _runtime_loop_model, _scan_model, _sequence_at_model])
def test_control_flow_c_is_strict_c99(build, cc, tmp_path):
    check_strict_c99(build(), tmp_path, cc, "m")


def test_conformance_harness_feeds_and_compares_sequences_and_optionals(tmp_path):
    """tests/conformance.py binds a sequence input to its element shapes (inputs NAME[k]), an empty optional to
    None, and compares a sequence output element by element."""
    from . import conformance as conf

    names = ["test_identity_sequence", "test_sequence_insert_at_back", "test_optional_has_element_empty_optional_input",
             "test_if_seq", "test_split_to_sequence_nokeepdims"]
    results = conf.run_suite("^(" + "|".join(names) + ")$", jobs=1, progress=False, work=tmp_path)
    assert sorted(r.name for r in results) == sorted(names)
    assert all(r.passed for r in results), [(r.name, r.reason) for r in results if not r.passed]
    assert conf._check_value("y", {"y[0]": np.zeros(2, np.float32)}, [np.zeros(2, np.float32)] * 2).startswith(
        "output 'y': a sequence of 1 tensors, expected 2")
