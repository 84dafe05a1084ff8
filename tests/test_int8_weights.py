"""Weight-only int8 models (MatMul(X, Mul(Cast(W int8), scale)), as exported by weight-only quantizers): the MatMul
reads the int8 weight and its scales itself (ek_sgemm_q8), so nothing widens the weight at export or per run; the
results are onnxruntime's, natively and in wasm."""

from __future__ import annotations

import json

import numpy as np
import pytest
from onnx import TensorProto, helper

import emit

from .helpers import init, make_model, ort_run, tensor

RNG = np.random.default_rng(11)


def _model(scale_shape):
    k, n = 96, 80
    q = RNG.integers(-127, 128, size=(k, n)).astype(np.int8)
    scale = (RNG.random(scale_shape) * 0.02).astype(np.float32)
    nodes = [
        helper.make_node("Cast", ["q"], ["qf"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["qf", "s"], ["w"]),
        helper.make_node("MatMul", ["x", "w"], ["h"]),
        helper.make_node("Relu", ["h"], ["y"]),
    ]
    return make_model(nodes, [tensor("x", [2, 7, k])], [tensor("y", [2, 7, n])], [init("q", q), init("s", scale)]), q


@pytest.mark.parametrize("scale_shape", [(1, 80), (80,), (96, 1), ()], ids=["column", "column-1d", "row", "one"])
@pytest.mark.parametrize("target", ["native", "wasm"])
def test_matmul_reads_int8_weights(tmp_path, scale_shape, target):
    model, q = _model(scale_shape)
    info = emit.export(model, target=target, out=tmp_path)
    code = (tmp_path / "model.c").read_text()
    assert "ek_sgemm_q8(" in code and "/* Cast" not in code
    assert info["weight_bytes"] < q.nbytes + 1024  # stored as int8, not widened at export
    x = RNG.standard_normal((2, 7, 96)).astype(np.float32)
    got = emit.load(tmp_path).run(x=x)["y"]
    np.testing.assert_allclose(got, ort_run(model, {"x": x})[0], rtol=1e-5, atol=1e-5)
    assert json.loads((tmp_path / "manifest.json").read_text())["kernels"] == ["gemm"]
