"""2-D MaxPool without Indices runs as row maxima then column maxima (ops/pool.py); it must give exactly what
onnxruntime and the one-window-at-a-time loop (still used when Indices are asked for) give, in the native build
(cffi passes -fwrapv, under which gcc 12 once vectorised a signed form of the column loop wrongly)."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

import emit

from .helpers import check_strict_c99, make_model, ort_run, tensor

CASES = [
    # attributes, input H x W, whether rows-then-columns saves compares (else the window loop runs)
    (dict(kernel_shape=[5, 5], pads=[2, 2, 2, 2]), (10, 10), True),  # YOLO's SPPF
    (dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1]), (13, 17), True),
    (dict(kernel_shape=[4, 3], pads=[2, 0, 1, 2]), (11, 9), True),
    (dict(kernel_shape=[7, 7], strides=[2, 2], pads=[3, 3, 3, 3]), (20, 21), True),
    (dict(kernel_shape=[5, 5], strides=[2, 2], pads=[2, 2, 2, 2], ceil_mode=1), (14, 15), True),
    (dict(kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER"), (23, 23), False),
    (dict(kernel_shape=[3, 3], strides=[2, 2], auto_pad="VALID"), (21, 21), False),
    (dict(kernel_shape=[2, 2], strides=[2, 2]), (28, 28), False),
    (dict(kernel_shape=[2, 4], strides=[3, 2], pads=[0, 3, 1, 3]), (11, 17), False),  # windows wholly in padding
]


@pytest.mark.parametrize("attrs,hw,separable", CASES, ids=[f"case{i}" for i in range(len(CASES))])
@pytest.mark.parametrize("dtype", [np.float32, np.int8])
def test_separable_maxpool_equals_onnxruntime_and_the_window_loop(tmp_path, attrs, hw, separable, dtype):
    elem = TensorProto.FLOAT if dtype == np.float32 else TensorProto.INT8
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((2, 3, *hw)) * 40).astype(dtype)
    def model(outputs: list[str], shape):
        return make_model([helper.make_node("MaxPool", ["x"], outputs, **attrs)], [tensor("x", [2, 3, *hw], elem)],
                          [tensor(o, shape, elem if o == "y" else TensorProto.INT64) for o in outputs], opset=12)

    ref = ort_run(model(["y"], None), {"x": x})[0]  # onnxruntime's output shape, for the declared one
    one, both = model(["y"], list(ref.shape)), model(["y", "i"], list(ref.shape))
    emit.export(one, target="native", out=tmp_path / "one", name="one")
    emit.export(both, target="native", out=tmp_path / "both", name="both")
    assert ("t[ow] = v > t[ow] ? v : t[ow];" in (tmp_path / "one" / "model.c").read_text()) == separable
    got = emit.load(tmp_path / "one").run({"x": x})["y"]
    direct = emit.load(tmp_path / "both").run({"x": x})["y"]
    np.testing.assert_array_equal(got, direct)
    np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("cc", ["gcc", "clang"])
def test_separable_maxpool_is_strict_c99(tmp_path, cc):
    """Unpadded and padded separable pools (the unsigned bounds must not compare with 0: -Wtype-limits)."""
    nodes = [helper.make_node("MaxPool", ["x"], ["a"], kernel_shape=[3, 3]),
             helper.make_node("MaxPool", ["a"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])]
    model = make_model(nodes, [tensor("x", [1, 2, 16, 16])], [tensor("y", [1, 2, 14, 14])], opset=12)
    check_strict_c99(model, tmp_path, cc, "pools")
    assert (tmp_path / "model.c").read_text().count("t[ow] = v > t[ow] ? v : t[ow];") == 6  # 3 taps, 2 pools
