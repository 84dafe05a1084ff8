"""The GEMM's register tiles in the wasm build (simd128), against onnxruntime. Its two tile loops: packed panels with
A's rows contiguous in k (40 rows, no transA), and B's rows through offsets: read in place for few rows of A (13,
with and without transA) or a packed panel's rows for A's rows strided (transA, 40 rows). Shapes past whole tiles
(13 rows: 3 tiles and one of 1; 40: 10; 21 columns: 2 panels and one of 5) and past one K block (600 steps: 2 blocks
of 300)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

import emit

from .helpers import init, make_model, ort_run, tensor
from .wasm_node import run_in_node


@pytest.mark.parametrize("m", [13, 40])
def test_gemm_tiles_in_node_match_onnxruntime(tmp_path, m):
    rng = np.random.default_rng(12)
    k, n = 600, 21
    nodes = [
        onnx.helper.make_node("Gemm", ["a", "w", "bias"], ["plain"], alpha=0.5),
        onnx.helper.make_node("Gemm", ["at", "w", "bias"], ["trans_a"], transA=1),
        onnx.helper.make_node("Gemm", ["a", "wt", "bias"], ["trans_b"], transB=1, beta=2.0),
    ]
    inits = [init("w", rng.standard_normal((k, n)).astype(np.float32)),
             init("wt", rng.standard_normal((n, k)).astype(np.float32)),
             init("bias", rng.standard_normal(n).astype(np.float32))]
    feeds = {"a": rng.standard_normal((m, k)).astype(np.float32), "at": rng.standard_normal((k, m)).astype(np.float32)}
    names = ["plain", "trans_a", "trans_b"]
    model = make_model(nodes, [tensor("a", [m, k]), tensor("at", [k, m])], [tensor(o, [m, n]) for o in names], inits)
    emit.export(model, target="wasm", out=tmp_path)
    got, _ = run_in_node(tmp_path, feeds)
    for name, ref in zip(names, ort_run(model, feeds)):
        np.testing.assert_allclose(got[name], ref, rtol=1e-4, atol=1e-4, err_msg=name)
