"""Softmax and LogSoftmax over long rows, where the row's max is found in 16 running lanes (ops/common.max_loop)
and e^x is gemm.c's vector polynomial: the same numbers as onnxruntime, infinities and NaNs included."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

import emit

from .helpers import make_model, ort_run, tensor


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
@pytest.mark.parametrize("n", [1000, 37, 20])  # lanes with a tail, lanes with none after 32, one running max
def test_long_rows_match_onnxruntime(tmp_path, op, n):
    model = make_model([helper.make_node(op, ["x"], ["y"], axis=-1)], [tensor("x", [7, n])], [tensor("y", [7, n])],
                       opset=17)
    rng = np.random.default_rng(4)
    x = (rng.standard_normal((7, n)) * 30).astype(np.float32)
    x[1, n - 1] = 500.0            # the max in the tail
    x[2, :] = -np.inf              # all -inf: NaN
    x[3, 5] = np.inf               # one +inf
    x[4, n // 2] = np.nan          # a NaN in the middle
    x[5, 0] = np.nan               # a NaN first
    emit.export(model, target="native", out=tmp_path, name="sm")
    got = emit.load(tmp_path).run(x)["y"]
    want = ort_run(model, {"x": x})[0]
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    # LogSoftmax's x - (max + log(sum)) is rounded at the row's magnitude (up to 500 here: 3e-5 an ulp)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 if op == "Softmax" else 4e-5)
