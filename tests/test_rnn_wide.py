"""LSTM, GRU and RNN with hidden and input sizes past the lane-parallel sums' threshold (ops/common.sum_loop): the
gate dot products against onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

import emit

from .helpers import init, make_model, ort_run, tensor

RNG = np.random.default_rng(3)


@pytest.mark.parametrize("kind,gates,attrs", [("LSTM", 4, {}), ("GRU", 3, {"linear_before_reset": 0}),
                                              ("GRU", 3, {"linear_before_reset": 1}), ("RNN", 1, {})])
def test_wide_recurrent_matches_onnxruntime(tmp_path, kind, gates, attrs):
    seq, batch, n_in, hidden = 3, 2, 48, 40
    w = (RNG.standard_normal((1, gates * hidden, n_in)) * 0.2).astype(np.float32)
    r = (RNG.standard_normal((1, gates * hidden, hidden)) * 0.2).astype(np.float32)
    b = (RNG.standard_normal((1, 2 * gates * hidden)) * 0.1).astype(np.float32)
    node = helper.make_node(kind, ["x", "w", "r", "b"], ["y", "y_h"], hidden_size=hidden, **attrs)
    model = make_model([node], [tensor("x", [seq, batch, n_in])],
                       [tensor("y", [seq, 1, batch, hidden]), tensor("y_h", [1, batch, hidden])],
                       [init("w", w), init("r", r), init("b", b)])
    emit.export(model, target="native", out=tmp_path)
    x = RNG.standard_normal((seq, batch, n_in)).astype(np.float32)
    got = emit.load(tmp_path).run(x=x)
    for name, ref in zip(("y", "y_h"), ort_run(model, {"x": x})):
        np.testing.assert_allclose(got[name], ref, rtol=1e-5, atol=1e-5)
