"""com.microsoft contrib ops (Gelu, BiasGelu, FastGelu, QuickGelu, SkipLayerNormalization,
SkipSimplifiedLayerNormalization), DeformConv and TfIdfVectorizer modes against onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

import emit

from .helpers import check_strict_c99, init, ort_run, tensor

F32, I64 = TensorProto.FLOAT, TensorProto.INT64
MS = "com.microsoft"
RNG = np.random.default_rng(3)
H = 8


def _model(nodes, inputs, outputs, inits=()):
    graph = helper.make_graph(nodes, "contrib", inputs, outputs, initializer=list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 22), helper.make_opsetid(MS, 1)], ir_version=10)


def _contrib_model():
    ms = lambda op, ins, outs, **kw: helper.make_node(op, ins, outs, domain=MS, **kw)  # noqa: E731
    nodes = [
        ms("Gelu", ["x"], ["gelu"]),
        ms("BiasGelu", ["x", "bias"], ["bias_gelu"]),
        ms("FastGelu", ["x"], ["fast_gelu"]),
        ms("FastGelu", ["x", "bias"], ["fast_gelu_b"]),
        ms("QuickGelu", ["x"], ["quick_gelu"], alpha=1.5),
        ms("SkipLayerNormalization", ["x", "skip", "gamma", "beta", "bias"], ["sln", "sln_mean", "sln_inv", "sln_sum"], epsilon=1e-5),
        ms("SkipLayerNormalization", ["x", "skip2", "gamma"], ["sln2"], epsilon=1e-5),
        ms("SkipSimplifiedLayerNormalization", ["x", "skip", "gamma", "bias"], ["ssln", "", "ssln_inv", "ssln_sum"], epsilon=1e-6),
    ]
    shp = [2, 3, H]
    outs = [tensor(n, shp) for n in ("gelu", "bias_gelu", "fast_gelu", "fast_gelu_b", "quick_gelu", "sln")]
    outs += [tensor("sln_mean", [2, 3, 1]), tensor("sln_inv", [2, 3, 1]), tensor("sln_sum", shp), tensor("sln2", shp)]
    outs += [tensor("ssln", shp), tensor("ssln_inv", [2, 3, 1]), tensor("ssln_sum", shp)]
    inits = [
        init("bias", RNG.standard_normal(H).astype(np.float32)),
        init("gamma", RNG.uniform(0.5, 1.5, H).astype(np.float32)),
        init("beta", RNG.standard_normal(H).astype(np.float32)),
    ]
    return _model(nodes, [tensor("x", shp), tensor("skip", shp), tensor("skip2", [3, H])], outs, inits)


def test_contrib_ops_match_onnxruntime(tmp_path):
    model = _contrib_model()
    emit.export(model, target="native", out=tmp_path, name="contrib")
    m = emit.load(tmp_path)
    feeds = {k: RNG.standard_normal(s).astype(np.float32) * 2 for k, s in (("x", (2, 3, H)), ("skip", (2, 3, H)), ("skip2", (3, H)))}
    got = m.run(feeds)
    ref = ort_run(model, feeds)
    for o, r in zip(model.graph.output, ref):
        np.testing.assert_allclose(got[o.name], r, rtol=2e-5, atol=2e-5, err_msg=o.name)


@pytest.mark.parametrize("cc", ["gcc", "clang"])
def test_contrib_strict_c99(tmp_path, cc):
    check_strict_c99(_contrib_model(), tmp_path, cc, "contrib")


def test_deform_conv_matches_onnxruntime(tmp_path):
    # groups, offset groups, strides, dilations, padding, mask and bias; offsets push taps outside the image
    node = helper.make_node(
        "DeformConv", ["x", "w", "off", "b", "mask"], ["y"], group=2, offset_group=2, strides=[2, 1], dilations=[1, 2],
        pads=[1, 2, 1, 0], kernel_shape=[2, 3],
    )
    model = _model([node], [tensor("x", [2, 4, 7, 6]), tensor("w", [6, 2, 2, 3]), tensor("off", [2, 24, 4, 4]),
                            tensor("b", [6]), tensor("mask", [2, 12, 4, 4])], [tensor("y", [2, 6, 4, 4])])
    emit.export(model, target="native", out=tmp_path, name="deform")
    feeds = {
        "x": RNG.standard_normal((2, 4, 7, 6)).astype(np.float32),
        "w": RNG.standard_normal((6, 2, 2, 3)).astype(np.float32),
        "off": (RNG.standard_normal((2, 24, 4, 4)) * 2.5).astype(np.float32),
        "b": RNG.standard_normal(6).astype(np.float32),
        "mask": RNG.uniform(0, 1, (2, 12, 4, 4)).astype(np.float32),
    }
    got = emit.load(tmp_path).run(feeds)["y"]
    np.testing.assert_allclose(got, ort_run(model, feeds)[0], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("mode", ["TF", "IDF", "TFIDF"])
def test_tfidf_modes_match_onnxruntime(tmp_path, mode):
    node = helper.make_node(
        "TfIdfVectorizer", ["x"], ["y"], mode=mode, min_gram_length=1, max_gram_length=3, max_skip_count=2,
        ngram_counts=[0, 3, 7], ngram_indexes=[5, 0, 2, 1, 3, 4, 6], pool_int64s=[2, 3, 9, 2, 3, 4, 5, 5, 6, 2, 3, 4, 2],
        weights=[0.5, 1.5, 2.0, 0.25, 1.0, 3.0, 0.75],
    )
    model = _model([node], [tensor("x", [3, 10], I64)], [tensor("y", [3, 7])])
    emit.export(model, target="native", out=tmp_path, name="tfidf")
    x = RNG.integers(1, 8, (3, 10)).astype(np.int64)
    x[0, :6] = [2, 3, 4, 2, 3, 4]
    np.testing.assert_allclose(emit.load(tmp_path).run({"x": x})["y"], ort_run(model, {"x": x})[0])
