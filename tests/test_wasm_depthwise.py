"""3x3 depthwise convolutions in the wasm build (simd128 vectors of 4) against onnxruntime: the paths conv.c takes
there by shape (rows of more than 16: whole rows with the padding columns masked off, the plane copied to the stack or
read in place, stride 2 unzipped; up to 16: lanes; bands where the padding is not 1), one input and Conv per shape in
one model, with infinities next to every row so that a padding lane read but not masked shows as a NaN."""

from __future__ import annotations

import numpy as np
import onnx

import emit

from .helpers import init, make_model, ort_run, tensor
from .wasm_node import run_in_node

# (input height, width), stride, pads (top, left, bottom, right)
CASES = [
    ((9, 40), 1, (1, 1, 1, 1)),  # copied to the stack
    ((30, 40), 1, (1, 1, 1, 1)),  # read in place, two border rows at each end
    ((30, 41), 1, (1, 1, 0, 0)),  # no padding column on the right
    ((70, 5), 1, (1, 1, 1, 1)),  # rows of up to 16: lanes
    ((40, 41), 2, (1, 1, 1, 1)),  # stride 2: the last column in the padding
    ((41, 40), 2, (1, 1, 1, 1)),  # a row of padding below the last output row
    ((4, 301), 2, (1, 1, 1, 1)),  # two output rows, both from the stack
    ((6, 6), 2, (1, 1, 1, 1)),
    ((12, 12), 1, (1, 1, 1, 1)),
    ((7, 7), 1, (1, 1, 1, 1)),
    ((11, 13), 2, (0, 0, 0, 0)),  # unpadded: the banded path, 3x3 stride 2 rows unzipped
]


def test_depthwise_3x3_in_node_matches_onnxruntime(tmp_path):
    rng = np.random.default_rng(5)
    nodes, inputs, outputs, inits, feeds = [], [], [], [], {}
    channels = 3
    for i, ((h, w), s, pads) in enumerate(CASES):
        x = rng.standard_normal((1, channels, h, w)).astype(np.float32)
        x[..., 0], x[..., -1] = np.inf, -np.inf  # the neighbours of the padding columns in memory
        weight = np.abs(rng.standard_normal((channels, 1, 3, 3))).astype(np.float32)  # an edge: +-inf, not NaN
        feeds[f"x{i}"] = x
        inputs.append(tensor(f"x{i}", list(x.shape)))
        oh, ow = (h + pads[0] + pads[2] - 3) // s + 1, (w + pads[1] + pads[3] - 3) // s + 1
        outputs.append(tensor(f"y{i}", [1, channels, oh, ow]))
        inits += [init(f"w{i}", weight), init(f"b{i}", rng.standard_normal(channels).astype(np.float32))]
        nodes.append(onnx.helper.make_node("Conv", [f"x{i}", f"w{i}", f"b{i}"], [f"y{i}"], group=channels,
                                           strides=[s, s], pads=list(pads), kernel_shape=[3, 3]))
    model = make_model(nodes, inputs, outputs, inits)
    emit.export(model, target="wasm", out=tmp_path)
    got, _ = run_in_node(tmp_path, feeds)
    refs = ort_run(model, feeds)
    for i, ref in enumerate(refs):
        assert not np.isnan(ref).any() and np.isinf(ref).any()
        np.testing.assert_allclose(got[f"y{i}"], ref, rtol=1e-4, atol=1e-4, err_msg=f"case {CASES[i]}")
