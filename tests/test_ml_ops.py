"""ai.onnx.ml operators against onnxruntime: Binarizer, ArrayFeatureExtractor, LabelEncoder, Scaler,
Normalizer, LinearRegressor, LinearClassifier, TreeEnsembleRegressor, TreeEnsemble (opset 5).
Each test model holds several nodes, each with its own inputs, so one build covers many cases."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

import emit
from emit.errors import UnsupportedError

from .helpers import check_strict_c99, ort_run, tensor

F32, F64, I64, I32 = TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.INT64, TensorProto.INT32
ML = "ai.onnx.ml"
RNG = np.random.default_rng(7)


def ml_model(nodes, inputs, outputs, ml_opset: int = 3):
    graph = helper.make_graph(nodes, "ml", inputs, outputs)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(ML, ml_opset)], ir_version=9)


def node(op_type: str, ins: list[str], outs: list[str], **attrs):
    return helper.make_node(op_type, ins, outs, domain=ML, **attrs)


def _forest_attrs() -> dict:
    """Two trees over 3 features, leaves with weights for 2 targets (tree 1 has a NaN-tracking node)."""
    return dict(
        nodes_treeids=[0, 0, 0, 0, 0, 1, 1, 1],
        nodes_nodeids=[0, 1, 2, 3, 4, 0, 1, 2],
        nodes_featureids=[0, 1, 0, 0, 0, 2, 0, 0],
        nodes_values=[0.5, -0.2, 0.0, 0.0, 0.0, 0.1, 0.0, 0.0],
        nodes_modes=["BRANCH_LEQ", "BRANCH_GT", "LEAF", "LEAF", "LEAF", "BRANCH_LT", "LEAF", "LEAF"],
        nodes_truenodeids=[1, 2, 0, 0, 0, 1, 0, 0],
        nodes_falsenodeids=[4, 3, 0, 0, 0, 2, 0, 0],
        nodes_missing_value_tracks_true=[0, 0, 0, 0, 0, 1, 0, 0],
        target_treeids=[0, 0, 0, 0, 1, 1, 1],
        target_nodeids=[2, 3, 3, 4, 1, 2, 2],
        target_ids=[0, 0, 1, 1, 0, 0, 1],
        target_weights=[1.5, -2.0, 0.25, 3.0, 0.5, -1.0, 4.0],
    )


CASES = []  # (name, nodes, inputs, outputs, feeds)


def case(name, nodes, inputs, outputs, feeds):
    CASES.append((name, nodes, inputs, outputs, feeds))


x34 = RNG.standard_normal((4, 3)).astype(np.float32)
x34[1, 2] = np.nan  # a missing feature for the trees
case("bin", [node("Binarizer", ["b_x"], ["b_y"], threshold=0.3)], [tensor("b_x", [3, 4])], [tensor("b_y", [3, 4])],
     {"b_x": RNG.standard_normal((3, 4)).astype(np.float32)})
case("afe", [node("ArrayFeatureExtractor", ["a_x", "a_i"], ["a_y"])], [tensor("a_x", [2, 3, 5]), tensor("a_i", [3], I64)],
     [tensor("a_y", [2, 3, 3])], {"a_x": RNG.standard_normal((2, 3, 5)).astype(np.float32), "a_i": np.array([4, 0, 4], np.int64)})
case("le_int", [node("LabelEncoder", ["le_x"], ["le_y"], keys_int64s=[5, -3, 9, 1], values_int64s=[10, 20, 30, 40], default_int64=-7)],
     [tensor("le_x", [6], I64)], [tensor("le_y", [6], I64)], {"le_x": np.array([1, 9, 2, -3, 5, 100], np.int64)})
case("le_float", [node("LabelEncoder", ["lf_x"], ["lf_y"], keys_floats=[0.5, -1.25, 3.0], values_int64s=[1, 2, 3])],
     [tensor("lf_x", [5])], [tensor("lf_y", [5], I64)], {"lf_x": np.array([3.0, 0.5, 0.25, -1.25, 7], np.float32)})
case("le_if", [node("LabelEncoder", ["li_x"], ["li_y"], keys_int64s=[1, 2], values_floats=[0.5, -2.5], default_float=9.0)],
     [tensor("li_x", [4], I64)], [tensor("li_y", [4])], {"li_x": np.array([2, 1, 3, 2], np.int64)})
case("scaler", [node("Scaler", ["s_x"], ["s_y"], offset=[0.5, -1.0, 2.0], scale=[2.0, 0.5, -1.5])], [tensor("s_x", [4, 3])],
     [tensor("s_y", [4, 3])], {"s_x": RNG.standard_normal((4, 3)).astype(np.float32)})
case("scaler1", [node("Scaler", ["s1_x"], ["s1_y"], offset=[1.0], scale=[3.0])], [tensor("s1_x", [2, 3], F64)],
     [tensor("s1_y", [2, 3])], {"s1_x": RNG.standard_normal((2, 3))})
for norm in ("MAX", "L1", "L2"):
    xin = RNG.standard_normal((3, 4)).astype(np.float32)
    xin[2] = 0  # a zero row is copied
    case(f"norm_{norm}", [node("Normalizer", [f"n{norm}_x"], [f"n{norm}_y"], norm=norm)], [tensor(f"n{norm}_x", [3, 4])],
         [tensor(f"n{norm}_y", [3, 4])], {f"n{norm}_x": xin})
coef3 = RNG.standard_normal(9).round(3).tolist()
for tr in ("NONE", "LOGISTIC", "SOFTMAX", "SOFTMAX_ZERO"):
    case(f"linreg_{tr}", [node("LinearRegressor", [f"r{tr}_x"], [f"r{tr}_y"], coefficients=coef3, intercepts=[0.1, -0.2, 0.3],
                               targets=3, post_transform=tr)],
         [tensor(f"r{tr}_x", [4, 3])], [tensor(f"r{tr}_y", [4, 3])], {f"r{tr}_x": x34 * 0 + RNG.standard_normal((4, 3)).astype(np.float32)})
for tr in ("NONE", "PROBIT"):
    case(f"linreg1_{tr}", [node("LinearRegressor", [f"q{tr}_x"], [f"q{tr}_y"], coefficients=[0.2, -0.1, 0.05], intercepts=[0.4],
                                post_transform=tr)],
         [tensor(f"q{tr}_x", [4, 3])], [tensor(f"q{tr}_y", [4, 1])], {f"q{tr}_x": RNG.uniform(-1, 1, (4, 3)).astype(np.float32)})
for tr in ("NONE", "LOGISTIC", "SOFTMAX", "SOFTMAX_ZERO", "PROBIT"):
    case(f"lincls_{tr}", [node("LinearClassifier", [f"c{tr}_x"], [f"c{tr}_l", f"c{tr}_s"], coefficients=coef3, intercepts=[0.1, 0.0, -0.3],
                               classlabels_ints=[7, 8, 9], post_transform=tr)],
         [tensor(f"c{tr}_x", [5, 3])], [tensor(f"c{tr}_l", [5], I64), tensor(f"c{tr}_s", [5, 3])],
         {f"c{tr}_x": RNG.uniform(-0.4, 0.4, (5, 3)).astype(np.float32)})
case("lincls_bin", [node("LinearClassifier", ["cb_x"], ["cb_l", "cb_s"], coefficients=[1.0, -2.0, 0.5], intercepts=[0.1],
                         classlabels_ints=[3, 5], post_transform="LOGISTIC")],
     [tensor("cb_x", [5, 3], I64)], [tensor("cb_l", [5], I64), tensor("cb_s", [5, 2])], {"cb_x": RNG.integers(-3, 4, (5, 3))})
case("lincls_one", [node("LinearClassifier", ["co_x"], ["co_l", "co_s"], coefficients=[1.0, -2.0, 0.5], intercepts=[0.1])],
     [tensor("co_x", [5, 3])], [tensor("co_l", [5], I64), tensor("co_s", [5, 1])], {"co_x": RNG.standard_normal((5, 3)).astype(np.float32)})
for agg in ("SUM", "AVERAGE", "MIN", "MAX"):
    case(f"tree_{agg}", [node("TreeEnsembleRegressor", [f"t{agg}_x"], [f"t{agg}_y"], n_targets=2, aggregate_function=agg,
                              base_values=[0.25, -0.5], **_forest_attrs())],
         [tensor(f"t{agg}_x", [4, 3])], [tensor(f"t{agg}_y", [4, 2])], {f"t{agg}_x": x34})
for tr in ("LOGISTIC", "SOFTMAX", "PROBIT"):
    attrs = _forest_attrs()
    attrs["target_weights"] = [w / 10 for w in attrs["target_weights"]]
    case(f"tree_{tr}", [node("TreeEnsembleRegressor", [f"p{tr}_x"], [f"p{tr}_y"], n_targets=2, post_transform=tr, **attrs)],
         [tensor(f"p{tr}_x", [4, 3])], [tensor(f"p{tr}_y", [4, 2])], {f"p{tr}_x": x34})
one = _forest_attrs()
one["target_ids"] = [0] * 7
case("tree_one", [node("TreeEnsembleRegressor", ["to_x"], ["to_y"], n_targets=1, base_values=[1.5], aggregate_function="AVERAGE", **one)],
     [tensor("to_x", [4, 3], F64)], [tensor("to_y", [4, 1])], {"to_x": x34.astype(np.float64)})


def _combined():
    nodes, inputs, outputs, feeds = [], [], [], {}
    for _, n, i, o, f in CASES:
        nodes += n
        inputs += i
        outputs += o
        feeds.update(f)
    return ml_model(nodes, inputs, outputs), feeds


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    model, feeds = _combined()
    out = tmp_path_factory.mktemp("ml")
    emit.export(model, target="native", out=out, name="mlops")
    return model, feeds, emit.load(out).run(feeds)


@pytest.mark.parametrize("name", [c[0] for c in CASES])
def test_matches_onnxruntime(built, name):
    model, feeds, got = built
    entry = next(c for c in CASES if c[0] == name)
    sub = ml_model(entry[1], entry[2], entry[3])
    ref = ort_run(sub, entry[4])
    for o, r in zip(entry[3], ref):
        g = got[o.name]
        assert g.dtype == r.dtype and g.shape == r.shape, o.name
        np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-6, err_msg=o.name)


def test_label_encoder_nan_key_and_index_errors(tmp_path):
    # a NaN key matches nothing (onnxruntime); an ArrayFeatureExtractor index past the axis returns 1
    nodes = [
        node("LabelEncoder", ["x"], ["y"], keys_floats=[float("nan"), 2.0], values_int64s=[5, 6]),
        node("ArrayFeatureExtractor", ["d", "i"], ["z"]),
    ]
    model = ml_model(nodes, [tensor("x", [3]), tensor("d", [2, 4]), tensor("i", [2], I64)], [tensor("y", [3], I64), tensor("z", [2, 2])])
    emit.export(model, target="native", out=tmp_path, name="le_nan")
    m = emit.load(tmp_path)
    feeds = {"x": np.array([np.nan, 2.0, 1.0], np.float32), "d": np.arange(8, dtype=np.float32).reshape(2, 4), "i": np.array([3, 1], np.int64)}
    got = m.run(feeds)
    ref = ort_run(model, feeds)
    np.testing.assert_array_equal(got["y"], ref[0])
    np.testing.assert_array_equal(got["z"], ref[1])
    with pytest.raises(RuntimeError, match="error code 1"):
        m.run({**feeds, "i": np.array([4, 0], np.int64)})


V5 = dict(  # two trees, LEQ/GT/EQ/member splits, a leaf root, NaN tracking
    nodes_featureids=[0, 1, 2, 0],
    nodes_modes=np.array([0, 3, 6, 4], np.uint8),
    nodes_splits=np.array([0.5, -0.25, 0.0, 1.0], np.float32),
    nodes_truenodeids=[1, 0, 2, 0],
    nodes_trueleafs=[0, 1, 1, 1],
    nodes_falsenodeids=[3, 1, 3, 1],
    nodes_falseleafs=[0, 1, 1, 1],
    nodes_missing_value_tracks_true=[1, 0, 0, 0],
    membership_values=np.array([1.0, 2.0, np.nan], np.float32),
    leaf_targetids=[0, 1, 0, 1],
    leaf_weights=np.array([1.0, 10.0, 100.0, 1000.0], np.float32),
    tree_roots=[0, 2],
    n_targets=2,
)


@pytest.mark.parametrize("agg", [1, 0, 3])
def test_tree_ensemble_v5(tmp_path, agg):
    attrs = {k: (helper.make_tensor(k, TensorProto.UINT8 if v.dtype == np.uint8 else F32, v.shape, v.tolist())
                 if isinstance(v, np.ndarray) else v) for k, v in V5.items()}
    n = node("TreeEnsemble", ["x"], ["y"], aggregate_function=agg, **attrs)
    model = ml_model([n], [tensor("x", [6, 3])], [tensor("y", [6, 2])], ml_opset=5)
    x = np.array([[0.1, 0, 1], [0.9, 0, 2], [np.nan, -1, 3], [1.0, 5, 1], [0.2, -0.3, np.nan], [3, 3, 2]], np.float32)
    emit.export(model, target="native", out=tmp_path, name="te5")
    got = emit.load(tmp_path).run({"x": x})["y"]
    np.testing.assert_allclose(got, ort_run(model, {"x": x})[0], rtol=1e-6)


def test_string_label_values_reason():
    n = node("LabelEncoder", ["x"], ["y"], keys_int64s=[1], values_strings=["a"])
    model = ml_model([n], [tensor("x", [2], I64)], [tensor("y", [2], TensorProto.STRING)], ml_opset=2)
    with pytest.raises(UnsupportedError, match=r"node LabelEncoder .*string values are not supported \(string keys are\)"):
        emit.export(model, target="c", out="/tmp/unused_ml_strings")


@pytest.mark.parametrize("cc", ["gcc", "clang"])
def test_strict_c99(tmp_path, cc):
    check_strict_c99(_combined()[0], tmp_path, cc, "mlops")
