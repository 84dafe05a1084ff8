"""Nearest Resize by whole factors on the last two axes (FPN/YOLO upsampling) runs as repeated elements and copied
rows (ops/resize.py _replicate); it must give onnxruntime's values, and other nearest resizes keep the gather."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

import emit

from .helpers import check_strict_c99, init, make_model, ort_run, tensor

ELEM = {np.float32: TensorProto.FLOAT, np.int8: TensorProto.INT8}


@pytest.mark.parametrize("scales,replicated", [((1, 1, 2, 2), True), ((1, 1, 3, 2), True), ((1, 1, 1, 4), True),
                                               ((1, 1, 1.5, 2), False)])
@pytest.mark.parametrize("dtype", [np.float32, np.int8])
def test_nearest_resize_by_whole_factors(tmp_path, scales, replicated, dtype):
    shape = [2, 3, 4, 5]
    out = [int(s * d) for s, d in zip(scales, shape)]
    node = helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="nearest")
    model = make_model([node], [tensor("x", shape, ELEM[dtype])], [tensor("y", out, ELEM[dtype])],
                       [init("scales", np.array(scales, np.float32))], opset=13)
    x = (np.random.default_rng(0).standard_normal(shape) * 50).astype(dtype)
    emit.export(model, target="native", out=tmp_path, name="rs")
    code = (tmp_path / "model.c").read_text()
    assert ("memcpy(row + r *" in code or "row[iw * 4 + 3] = v;" in code) == replicated
    np.testing.assert_array_equal(emit.load(tmp_path).run({"x": x})["y"], ort_run(model, {"x": x})[0])


@pytest.mark.parametrize("cc", ["gcc", "clang"])
def test_replicating_resize_is_strict_c99(tmp_path, cc):
    node = helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="nearest")
    model = make_model([node], [tensor("x", [1, 2, 3, 3])], [tensor("y", [1, 2, 6, 6])],
                       [init("scales", np.array([1, 1, 2, 2], np.float32))], opset=13)
    check_strict_c99(model, tmp_path, cc, "rs")
