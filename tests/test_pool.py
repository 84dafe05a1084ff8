"""2-D MaxPool without Indices runs as row maxima then column maxima where that saves compares, else as maxima down
each output row's window rows then across them (ops/pool.py); either must give exactly what onnxruntime and the
one-window-at-a-time loop (still used when Indices are asked for) give, in the native build (cffi passes -fwrapv,
under which gcc 12 once vectorised a signed form of the column loop wrongly)."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

import emit
from emit.passes import pool_loops

from .helpers import check_strict_c99, make_model, ort_run, tensor

CASES = [
    # attributes, input H x W, whether rows-then-columns saves compares (else columns first)
    (dict(kernel_shape=[5, 5], pads=[2, 2, 2, 2]), (10, 10), True),  # YOLO's SPPF
    (dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1]), (13, 17), True),
    (dict(kernel_shape=[4, 3], pads=[2, 0, 1, 2]), (11, 9), True),
    (dict(kernel_shape=[7, 7], strides=[2, 2], pads=[3, 3, 3, 3]), (20, 21), True),
    (dict(kernel_shape=[5, 5], strides=[2, 2], pads=[2, 2, 2, 2], ceil_mode=1), (14, 15), True),
    (dict(kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER"), (23, 23), False),
    (dict(kernel_shape=[3, 3], strides=[2, 2], auto_pad="VALID"), (21, 21), False),
    (dict(kernel_shape=[2, 2], strides=[2, 2]), (28, 28), False),
    (dict(kernel_shape=[2, 4], strides=[3, 2], pads=[0, 3, 1, 3]), (11, 17), False),  # windows wholly in padding
    (dict(kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1), (109, 109), False),  # squeezenet: last window cut
    (dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]), (112, 111), False),  # resnet's stem pool
    (dict(kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1), (9, 13), False),
    (dict(kernel_shape=[3, 2], strides=[2, 3], pads=[2, 1, 0, 1]), (8, 10), False),
]
COLUMNS_FIRST = "t[c] = row[c] > t[c] ? row[c] : t[c];"
WHOLE_WINDOW_ROWS = "t[c] = m;"  # columns first, a window of all its rows in one pass


@pytest.mark.parametrize("attrs,hw,separable", CASES, ids=[f"case{i}" for i in range(len(CASES))])
@pytest.mark.parametrize("dtype", [np.float32, np.int8])
@pytest.mark.parametrize("window_width", [0, 10**6])  # native rows narrower than this keep the window loop
def test_separable_maxpool_equals_onnxruntime_and_the_window_loop(tmp_path, monkeypatch, attrs, hw, separable, dtype,
                                                                  window_width):
    monkeypatch.setattr(pool_loops, "NATIVE_WINDOW_LOOP_WIDTH", window_width)
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
    code = (tmp_path / "one" / "model.c").read_text()
    assert ("t[ow] = v > t[ow] ? v : t[ow];" in code) == separable
    assert (COLUMNS_FIRST in code) == (not separable and window_width == 0)
    assert (WHOLE_WINDOW_ROWS in code) == (not separable and window_width == 0)
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


@pytest.mark.parametrize("cc", ["gcc", "clang"])
def test_columns_first_maxpool_is_strict_c99(tmp_path, cc):
    """Unpadded, padded and ceil-mode stride-2 pools: interior outputs in one loop, the edges checked."""
    nodes = [helper.make_node("MaxPool", ["x"], ["a"], kernel_shape=[3, 3], strides=[2, 2]),
             helper.make_node("MaxPool", ["a"], ["b"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
             helper.make_node("MaxPool", ["b"], ["y"], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1)]
    model = make_model(nodes, [tensor("x", [1, 2, 33, 33])], [tensor("y", [1, 2, 4, 4])], opset=12)
    check_strict_c99(model, tmp_path, cc, "pools")
    code = (tmp_path / "model.c").read_text()
    assert code.count(COLUMNS_FIRST) == 3 and code.count(WHOLE_WINDOW_ROWS) == 3
