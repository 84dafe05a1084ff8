"""Target choices among the convolution paths (emit/passes/conv_paths.py): a 2-D convolution of one input channel
and several outputs goes by windows into the GEMM in wasm builds and per output channel natively, with onnxruntime's
results both ways."""

from __future__ import annotations

import re

import numpy as np
import pytest
from onnx import helper

import emit
from emit.ops.conv import ConvGeometry

from .helpers import init, make_model, ort_run, tensor

RNG = np.random.default_rng(5)


def _geometry(c: int, m: int, group: int, k: tuple[int, int], one_channel_windows: bool) -> ConvGeometry:
    return ConvGeometry(n=1, c=c, m=m, group=group, inp=[1, 28, 28], out=[1, 28, 28], k=[1, *k], stride=[1, 1, 1],
                        dil=[1, 1, 1], pad=[0, k[0] // 2, k[1] // 2], one_channel_windows=one_channel_windows)


@pytest.mark.parametrize("c, m, group, k, wasm", [
    (1, 6, 1, (5, 5), True),   # lenet's first layer
    (2, 6, 2, (3, 3), True),   # 3 outputs per input channel
    (4, 4, 4, (3, 3), False),  # depthwise: its own kernels
    (1, 6, 1, (1, 5), False),  # a kernel of one row: 1-D convs read x in place
])
def test_one_channel_convs_by_windows_only_where_the_target_says(c, m, group, k, wasm):
    assert _geometry(c, m, group, k, one_channel_windows=True).by_windows() is wasm
    assert not _geometry(c, m, group, k, one_channel_windows=False).by_windows()


@pytest.mark.parametrize("target, windows", [("wasm", "1"), ("native", "0")])
def test_one_channel_conv_matches_onnxruntime(tmp_path, target, windows):
    """1 -> 6 5x5 padded by 2 (column planes of the one channel), then 2 -> 6 in 2 groups (3 outputs per channel)."""
    w0 = RNG.standard_normal((6, 1, 5, 5)).astype(np.float32)
    w1 = RNG.standard_normal((6, 1, 3, 3)).astype(np.float32)
    model = make_model(
        [helper.make_node("Conv", ["x", "w0", "b0"], ["c0"], pads=[2, 2, 2, 2]),
         helper.make_node("Relu", ["c0"], ["r0"]),
         helper.make_node("Slice", ["r0", "s", "e", "a"], ["h"]),
         helper.make_node("Conv", ["h", "w1"], ["y"], group=2, pads=[1, 0, 1, 2])],
        [tensor("x", [1, 1, 17, 23])], [tensor("y", [1, 6, 17, 23])],
        [init("w0", w0), init("b0", RNG.standard_normal(6).astype(np.float32)), init("w1", w1),
         init("s", np.array([0], np.int64)), init("e", np.array([2], np.int64)), init("a", np.array([1], np.int64))])
    emit.export(model, target=target, out=tmp_path)
    descs = re.findall(r"ek_conv_desc d = \{ 1, (\d+), 6, \d, .*, \d+, (\d), \d, \d+ \};", (tmp_path / "model.c").read_text())
    assert descs == [("1", windows), ("2", windows)]
    x = RNG.standard_normal((1, 1, 17, 23)).astype(np.float32)
    np.testing.assert_allclose(emit.load(tmp_path).run(x=x)["y"], ort_run(model, {"x": x})[0], rtol=1e-4, atol=1e-4)
