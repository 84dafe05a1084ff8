"""Ops whose shape-setting inputs (starts/ends, pads, repeats, split, K, depth, shape, block_shape ...)
are runtime values, with the outputs' static shapes declared by the model: the C reads or checks the
values against the compiled shapes, matches onnxruntime, and returns 1 (RuntimeError "error code 1")
when they disagree -- never reading or writing out of bounds."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest
from onnx import TensorProto, helper

import emit

from .helpers import check_strict_c99, init, make_model, ort_run, tensor

I64, F32 = TensorProto.INT64, TensorProto.FLOAT
BIG = np.iinfo(np.int64).max
SMALL = np.iinfo(np.int64).min
RNG = np.random.default_rng(0)


def arr(values, dtype=np.int64) -> np.ndarray:
    return np.array(values, dtype=dtype)


@dataclass
class Part:
    """One op of the combined test model: its node(s), inputs and declared outputs, feed sets that give
    the declared shapes, and one feed override that disagrees with them."""

    name: str
    nodes: list
    inputs: list
    outputs: list
    good: list[dict]
    bad: dict = field(default_factory=dict)
    inits: list = field(default_factory=list)


def _parts() -> list[Part]:
    x3 = RNG.standard_normal((6, 5, 4)).astype(np.float32)
    x34 = np.arange(12, dtype=np.float32).reshape(3, 4) + 1
    parts = [
        Part(
            "slice",
            [helper.make_node("Slice", ["s_x", "s_starts", "s_ends", "s_axes", "s_steps"], ["s_y"])],
            [tensor("s_x", [6, 5, 4]), *(tensor(n, [3], I64) for n in ("s_starts", "s_ends", "s_axes", "s_steps"))],
            [tensor("s_y", [3, 2, 2])],
            [
                {
                    "s_x": x3,
                    "s_starts": arr([0, 1, 0]),
                    "s_ends": arr([6, 3, 4]),
                    "s_axes": arr([0, 1, 2]),
                    "s_steps": arr([2, 1, 2]),
                },
                # negative steps, clamped starts/ends, negative and permuted axes
                {
                    "s_x": x3,
                    "s_starts": arr([-1, -1, 100]),
                    "s_ends": arr([SMALL, -100, -BIG]),
                    "s_axes": arr([2, 0, -2]),
                    "s_steps": arr([-2, -2, -3]),
                },
                # ends past the axis, clamped
                {
                    "s_x": x3,
                    "s_starts": arr([1, 2, -3]),
                    "s_ends": arr([BIG, 4, BIG]),
                    "s_axes": arr([0, 1, 2]),
                    "s_steps": arr([2, 1, 2]),
                },
            ],
            {"s_ends": arr([6, 4, 4])},
        ),
        Part(
            "slice_default_axes",  # no axes or steps: the first axes; the innermost axis is copied as rows
            [helper.make_node("Slice", ["q_x", "q_starts", "q_ends"], ["q_y"])],
            [tensor("q_x", [6, 5, 4]), tensor("q_starts", [2], I64), tensor("q_ends", [2], I64)],
            [tensor("q_y", [2, 3, 4])],
            [
                {"q_x": x3, "q_starts": arr([1, 0]), "q_ends": arr([3, 3])},
                {"q_x": x3, "q_starts": arr([-2, 2]), "q_ends": arr([BIG, 5])},
            ],
            {"q_starts": arr([0, 0])},
        ),
        Part(
            "slice_int32_constant_axes",  # runtime int32 starts/ends, constant axes and steps
            [helper.make_node("Slice", ["si_x", "si_starts", "si_ends", "si_axes", "si_steps"], ["si_y"])],
            [tensor("si_x", [6, 5, 4]), tensor("si_starts", [2], TensorProto.INT32), tensor("si_ends", [2], TensorProto.INT32)],
            [tensor("si_y", [6, 2, 2])],
            [
                {"si_x": x3, "si_starts": arr([3, 0], np.int32), "si_ends": arr([-5, 4], np.int32)},
                {"si_x": x3, "si_starts": arr([2, 1], np.int32), "si_ends": arr([-100, 100], np.int32)},
            ],
            {"si_starts": arr([0, 0], np.int32)},
            [init("si_axes", arr([2, 1], np.int32)), init("si_steps", arr([-2, 2], np.int32))],
        ),
        Part(
            "pad_constant",
            [helper.make_node("Pad", ["pc_x", "pc_pads", "pc_value"], ["pc_y"], mode="constant")],
            [tensor("pc_x", [3, 4]), tensor("pc_pads", [4], I64), tensor("pc_value", [])],
            [tensor("pc_y", [5, 7])],
            [
                {"pc_x": x34, "pc_pads": arr([1, 2, 1, 1]), "pc_value": arr(-2.5, np.float32)},
                {"pc_x": x34, "pc_pads": arr([-1, 0, 3, 3]), "pc_value": arr(7, np.float32)},  # crops at the start
                {"pc_x": x34, "pc_pads": arr([2, 3, 0, 0]), "pc_value": arr(0, np.float32)},
            ],
            {"pc_pads": arr([1, 1, 1, 1])},
        ),
        Part(
            "pad_reflect",
            [helper.make_node("Pad", ["pr_x", "pr_pads"], ["pr_y"], mode="reflect")],
            [tensor("pr_x", [3, 4]), tensor("pr_pads", [4], I64)],
            [tensor("pr_y", [5, 9])],
            [
                {"pr_x": x34, "pr_pads": arr([1, 3, 1, 2])},
                {"pr_x": x34, "pr_pads": arr([2, 2, 0, 3])},
                {"pr_x": x34, "pr_pads": arr([0, 3, 2, 2])},
            ],
            {"pr_pads": arr([1, 3, 1, BIG])},
        ),
        Part(
            "pad_edge",
            [helper.make_node("Pad", ["pe_x", "pe_pads"], ["pe_y"], mode="edge")],
            [tensor("pe_x", [3, 4]), tensor("pe_pads", [4], I64)],
            [tensor("pe_y", [6, 6])],
            [
                {"pe_x": x34, "pe_pads": arr([1, 0, 2, 2])},
                {"pe_x": x34, "pe_pads": arr([3, 2, 0, 0])},
                {"pe_x": x34, "pe_pads": arr([0, 1, 3, 1])},
            ],
            {"pe_pads": arr([SMALL, 0, 3, 2])},
        ),
        Part(
            "pad_wrap",
            [helper.make_node("Pad", ["pw_x", "pw_pads"], ["pw_y"], mode="wrap")],
            [tensor("pw_x", [3, 4]), tensor("pw_pads", [4], I64)],
            [tensor("pw_y", [5, 6])],
            [
                {"pw_x": x34, "pw_pads": arr([1, 1, 1, 1])},
                {"pw_x": x34, "pw_pads": arr([2, 2, 0, 0])},
                {"pw_x": x34, "pw_pads": arr([0, 0, 2, 2])},
            ],
            {"pw_pads": arr([1, 1, 1, 2])},
        ),
        Part(
            "pad_axes",  # runtime axes (opset 18)
            [helper.make_node("Pad", ["pa_x", "pa_pads", "", "pa_axes"], ["pa_y"])],
            [tensor("pa_x", [2, 3, 3]), tensor("pa_pads", [2], I64), tensor("pa_axes", [1], I64)],
            [tensor("pa_y", [2, 3, 5])],
            [
                {"pa_x": RNG.standard_normal((2, 3, 3)).astype(np.float32), "pa_pads": arr([1, 1]), "pa_axes": arr([2])},
                {"pa_x": RNG.standard_normal((2, 3, 3)).astype(np.float32), "pa_pads": arr([0, 2]), "pa_axes": arr([-1])},
            ],
            {"pa_axes": arr([1])},
        ),
        Part(
            "tile",
            [helper.make_node("Tile", ["t_x", "t_reps"], ["t_y"])],
            [tensor("t_x", [2, 3]), tensor("t_reps", [2], I64)],
            [tensor("t_y", [4, 9])],
            [{"t_x": x34[:2, :3].copy(), "t_reps": arr([2, 3])}],
            {"t_reps": arr([3, 3])},
        ),
        Part(
            "split",
            [helper.make_node("Split", ["sp_x", "sp_split"], ["sp_a", "sp_b", "sp_c"], axis=0)],
            [tensor("sp_x", [7, 2]), tensor("sp_split", [3], I64)],
            [tensor("sp_a", [2, 2]), tensor("sp_b", [4, 2]), tensor("sp_c", [1, 2])],
            [{"sp_x": np.arange(14, dtype=np.float32).reshape(7, 2), "sp_split": arr([2, 4, 1])}],
            {"sp_split": arr([3, 3, 1])},
        ),
        Part(
            "topk",
            [helper.make_node("TopK", ["k_x", "k_k"], ["k_v", "k_i"], axis=1)],
            [tensor("k_x", [3, 6]), tensor("k_k", [1], I64)],
            [tensor("k_v", [3, 4]), tensor("k_i", [3, 4], I64)],
            [{"k_x": RNG.permutation(18).astype(np.float32).reshape(3, 6), "k_k": arr([4])}],
            {"k_k": arr([6])},
        ),
        Part(
            "expand",
            [helper.make_node("Expand", ["e_x", "e_shape"], ["e_y"])],
            [tensor("e_x", [3, 1]), tensor("e_shape", [3], I64)],
            [tensor("e_y", [2, 3, 4])],
            [
                {"e_x": arr([[1], [2], [3]], np.float32), "e_shape": arr([2, 3, 4])},
                {"e_x": arr([[1], [2], [3]], np.float32), "e_shape": arr([2, 1, 4])},
            ],
            {"e_shape": arr([2, 3, 5])},
        ),
        Part(
            "constant_of_shape",
            [helper.make_node("ConstantOfShape", ["c_shape"], ["c_y"], value=helper.make_tensor("v", I64, [1], [7]))],
            [tensor("c_shape", [2], I64)],
            [tensor("c_y", [2, 3], I64)],
            [{"c_shape": arr([2, 3])}],
            {"c_shape": arr([3, 2])},
        ),
        Part(
            "onehot",
            [helper.make_node("OneHot", ["o_ind", "o_depth", "o_vals"], ["o_y"])],
            [tensor("o_ind", [4], I64), tensor("o_depth", [], I64), tensor("o_vals", [2])],
            [tensor("o_y", [4, 5])],
            [{"o_ind": arr([0, 4, -1, 7]), "o_depth": arr(5), "o_vals": arr([-1, 3], np.float32)}],
            {"o_depth": arr(6)},
        ),
        Part(
            "range",
            [helper.make_node("Range", ["r_a", "r_b", "r_d"], ["r_y"])],
            [tensor("r_a", []), tensor("r_b", []), tensor("r_d", [])],
            [tensor("r_y", [5])],
            [
                {"r_a": arr(10, np.float32), "r_b": arr(0, np.float32), "r_d": arr(-2, np.float32)},
                {"r_a": arr(0.5, np.float32), "r_b": arr(3, np.float32), "r_d": arr(0.5, np.float32)},
            ],
            {"r_d": arr(0, np.float32)},
        ),
        Part(
            "range_int",
            [helper.make_node("Range", ["ri_a", "ri_b", "ri_d"], ["ri_y"])],
            [tensor("ri_a", [], I64), tensor("ri_b", [], I64), tensor("ri_d", [], I64)],
            [tensor("ri_y", [5], I64)],
            [{"ri_a": arr(-3), "ri_b": arr(7), "ri_d": arr(2)}, {"ri_a": arr(10), "ri_b": arr(-5), "ri_d": arr(-3)}],
            {"ri_a": arr(SMALL)},
        ),
        Part(
            "compress",
            [helper.make_node("Compress", ["cp_x", "cp_cond"], ["cp_y"], axis=0)],
            [tensor("cp_x", [4, 3]), tensor("cp_cond", [4], TensorProto.BOOL)],
            [tensor("cp_y", [2, 3])],
            [
                {"cp_x": np.arange(12, dtype=np.float32).reshape(4, 3), "cp_cond": arr([0, 1, 0, 1], bool)},
                {"cp_x": np.arange(12, dtype=np.float32).reshape(4, 3), "cp_cond": arr([1, 1, 0, 0], bool)},
            ],
            {"cp_cond": arr([1, 1, 1, 0], bool)},
        ),
        Part(
            "nonzero",
            [helper.make_node("NonZero", ["n_x"], ["n_y"])],
            [tensor("n_x", [3, 4])],
            [tensor("n_y", [2, 5], I64)],
            [
                {"n_x": arr([[0, 1, 0, 2], [3, 0, 0, 0], [0, 4, 5, 0]], np.float32)},
                {"n_x": arr([[1, 1, 1, 1], [1, 0, 0, 0], [0, 0, 0, 0]], np.float32)},
            ],
            {"n_x": np.ones((3, 4), np.float32)},
        ),
        Part(
            "col2im",
            [helper.make_node("Col2Im", ["ci_x", "ci_image", "ci_block"], ["ci_y"], pads=[0, 1, 0, 1])],
            [tensor("ci_x", [1, 4, 15]), tensor("ci_image", [2], I64), tensor("ci_block", [2], I64)],
            [tensor("ci_y", [1, 1, 4, 4])],
            [{"ci_x": RNG.standard_normal((1, 4, 15)).astype(np.float32), "ci_image": arr([4, 4]), "ci_block": arr([2, 2])}],
            {"ci_block": arr([1, 4])},
        ),
        Part(
            "center_crop_pad",
            [helper.make_node("CenterCropPad", ["cc_x", "cc_shape"], ["cc_y"])],
            [tensor("cc_x", [5, 3]), tensor("cc_shape", [2], I64)],
            [tensor("cc_y", [3, 6])],
            [{"cc_x": np.arange(15, dtype=np.float32).reshape(5, 3), "cc_shape": arr([3, 6])}],
            {"cc_shape": arr([3, 5])},
        ),
    ]
    return parts


PARTS = _parts()
N_SETS = max(len(p.good) for p in PARTS)


def _combined_model():
    nodes, inputs, outputs, inits = [], [], [], []
    for p in PARTS:
        nodes += p.nodes
        inputs += p.inputs
        outputs += p.outputs
        inits += p.inits
    return make_model(nodes, inputs, outputs, inits, opset=19)


def feeds(k: int, bad: str | None = None) -> dict:
    """Feed set k of every part (each part cycles through its own sets); one part's bad override."""
    out: dict = {}
    for p in PARTS:
        out.update(p.good[k % len(p.good)])
        if p.name == bad:
            out.update(p.bad)
    return out


@pytest.fixture(scope="module")
def combined(tmp_path_factory):
    model = _combined_model()
    out = tmp_path_factory.mktemp("runtime_shapes")
    emit.export(model, target="native", out=out, name="rts")
    return model, emit.load(out)


@pytest.mark.parametrize("k", range(N_SETS))
def test_matches_onnxruntime(combined, k):
    model, compiled = combined
    f = feeds(k)
    got = compiled.run(f)
    ref = ort_run(model, f)
    for (name, g), r in zip(got.items(), ref):
        assert g.shape == r.shape, name
        np.testing.assert_allclose(g, r, rtol=1e-6, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("part", [p.name for p in PARTS if p.bad])
def test_disagreeing_value_returns_error(combined, part):
    _, compiled = combined
    with pytest.raises(RuntimeError, match="error code 1"):
        compiled.run(feeds(0, bad=part))


@pytest.mark.parametrize("cc", ["gcc", "clang"])
def test_strict_c99(tmp_path, cc):
    check_strict_c99(_combined_model(), tmp_path, cc, "rts")


def test_reflect_and_wrap_wider_than_the_input(tmp_path):
    # onnxruntime refuses reflect pads >= the axis; numpy (the reference) repeats the reflection
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    nodes = [helper.make_node("Pad", ["x", "p"], ["r"], mode="reflect"), helper.make_node("Pad", ["x", "p"], ["w"], mode="wrap")]
    model = make_model(
        nodes, [tensor("x", [2, 3]), tensor("p", [4], I64)], [tensor("r", [9, 11]), tensor("w", [9, 11])], opset=19
    )
    emit.export(model, target="native", out=tmp_path, name="wide")
    compiled = emit.load(tmp_path)
    for pads in ([3, 5, 4, 3], [7, 0, 0, 8], [-1, -2, 8, 10]):
        begin, end = pads[:2], pads[2:]
        got = compiled.run({"x": x, "p": arr(pads)})
        for mode, name in (("reflect", "r"), ("wrap", "w")):
            ref = np.pad(x, [(max(b, 0), max(e, 0)) for b, e in zip(begin, end)], mode=mode)
            ref = ref[max(-begin[0], 0) : ref.shape[0] - max(-end[0], 0), max(-begin[1], 0) : ref.shape[1] - max(-end[1], 0)]
            np.testing.assert_array_equal(got[name], ref, err_msg=f"{mode} {pads}")


def test_maxunpool_runtime_output_shape(tmp_path):
    # indices are positions in the output_shape layout (onnxruntime, PyTorch)
    node = helper.make_node("MaxUnpool", ["x", "i", "s"], ["y"], kernel_shape=[2, 2], strides=[2, 2])
    model = make_model(
        [node],
        [tensor("x", [1, 1, 2, 2]), tensor("i", [1, 1, 2, 2], I64), tensor("s", [4], I64)],
        [tensor("y", [1, 1, 5, 5])],
        opset=19,
    )
    emit.export(model, target="native", out=tmp_path, name="unpool")
    compiled = emit.load(tmp_path)
    f = {"x": arr([[[[5, 6], [7, 8]]]], np.float32), "i": arr([[[[6, 8], [16, 18]]]]), "s": arr([1, 1, 5, 5])}
    np.testing.assert_array_equal(compiled.run(f)["y"], ort_run(model, f)[0])
    with pytest.raises(RuntimeError, match="error code 1"):
        compiled.run({**f, "s": arr([1, 1, 4, 4])})
    with pytest.raises(RuntimeError, match="error code 1"):
        compiled.run({**f, "i": arr([[[[6, 8], [16, 25]]]])})  # past the output's end


def test_reshape_and_unsqueeze_with_runtime_shape_are_checked(tmp_path):

    nodes = [
        helper.make_node("Reshape", ["x", "shape"], ["y"]),
        helper.make_node("Unsqueeze", ["x", "axes"], ["u"]),
    ]
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 6]),
         helper.make_tensor_value_info("shape", TensorProto.INT64, [3]),
         helper.make_tensor_value_info("axes", TensorProto.INT64, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 2, 2]),
         helper.make_tensor_value_info("u", TensorProto.FLOAT, [2, 1, 6])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    emit.export(model, target="native", out=tmp_path, name="rt_reshape")
    m = emit.load(tmp_path)
    x = np.arange(12, dtype=np.float32).reshape(2, 6)
    for shape in ([3, 2, 2], [3, -1, 2], [-1, 2, 2]):
        out = m.run({"x": x, "shape": np.array(shape, np.int64), "axes": np.array([1], np.int64)})
        np.testing.assert_array_equal(out["y"], x.reshape(3, 2, 2))
        np.testing.assert_array_equal(out["u"], x.reshape(2, 1, 6))
    for shape, axes in (([2, 3, 2], [1]), ([-1, -1, 2], [1]), ([3, 2, 2], [0]), ([3, 2, 2], [7])):
        with pytest.raises(RuntimeError, match="error code 1"):
            m.run({"x": x, "shape": np.array(shape, np.int64), "axes": np.array(axes, np.int64)})
