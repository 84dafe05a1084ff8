"""Conv weights packed at export time for the GEMM (emit/passes/pack_weights.py): which convolutions are packed, the
layout, the results against onnxruntime natively and in wasm, and per-channel int8 storage of a packed weight giving
exactly the unpacked build's values."""

from __future__ import annotations

import re

import numpy as np
import pytest
from onnx import helper

import emit
from emit import passes
from emit.passes import pack_weights
from emit.passes.pack_weights import PACK_FEW, PACK_ROWS, pack_conv_weights, pack_rows

from .helpers import init, make_model, ort_run, tensor

RNG = np.random.default_rng(3)

# name, input channels, output channels, group, kernel, stride, pad: packed?
LAYERS = [
    ("pointwise", 16, 24, 1, 1, 1, 0, True),
    ("conv3x3_padded_rows", 24, 20, 1, 3, 1, 1, False),  # 20 rows -> 24: 1/5 more bytes, not worth it
    ("conv3x3_stride2", 20, 72, 1, 3, 2, 1, True),  # 72 rows, one row group of 8 past 64
    ("grouped", 72, 48, 3, 3, 1, 1, True),  # 16 rows per group
    ("depthwise", 48, 48, 48, 3, 1, 1, False),  # one input channel per group: conv.c's direct kernel
    ("pointwise_per_channel", 48, 48, 48, 1, 1, 0, False),  # 1x1 with one input channel per group: a GEMM of 1 row
    ("few_rows", 48, 4, 1, 1, 1, 0, False),
]


def _model():
    nodes, inits, prev = [], [], "x"
    for name, c, m, group, k, stride, pad, _ in LAYERS:
        w = (RNG.standard_normal((m, c // group, k, k)) / np.sqrt(c // group * k * k)).astype(np.float32)
        inits += [init(f"{name}.w", w), init(f"{name}.b", RNG.standard_normal(m).astype(np.float32))]
        nodes.append(helper.make_node("Conv", [prev, f"{name}.w", f"{name}.b"], [f"{name}.y"], group=group,
                                      kernel_shape=[k, k], strides=[stride] * 2, pads=[pad] * 4))
        nodes.append(helper.make_node("Relu", [f"{name}.y"], [f"{name}.r"]))
        prev = f"{name}.r"
    nodes[-1].output[0] = "y"
    return make_model(nodes, [tensor("x", [1, 16, 18, 21])], [tensor("y", [1, 4, 9, 11])], inits)


MODEL = _model()
X = RNG.standard_normal((1, 16, 18, 21)).astype(np.float32)


def test_pack_rows_layout():
    w = RNG.standard_normal((2 * 11, 3, 2, 2)).astype(np.float32)  # 2 groups of 11 rows: 2 row groups each
    p = pack_rows(w, 2)
    assert p.shape == (4, 12, PACK_ROWS)
    for g in range(2):
        for i in range(16):
            for k in range(12):
                want = w[g * 11 + i].reshape(-1)[k] if i < 11 else 0.0  # rows past the group's end: zero padding
                assert p[g * 2 + i // PACK_ROWS, k, i % PACK_ROWS] == want


def test_which_convs_are_packed():
    from emit.importer import import_model

    prog = pack_conv_weights(import_model(MODEL))
    convs = {n.inputs[1].split(".")[0]: n for n in prog.nodes if n.op_type == "Conv"}
    for name, *_, packed in LAYERS:
        assert ("__packed_w__" in convs[name].attrs) == packed, name
    assert convs["grouped"].attrs["__packed_w__"] == (48, 24, 3, 3)
    assert prog.buffers[convs["grouped"].inputs[1]].shape == (3 * 2, 24 * 9, PACK_ROWS)


@pytest.mark.parametrize("target", ["native", "wasm"])
def test_packed_convs_match_onnxruntime(tmp_path, target):
    """Only the native target packs (its AVX register tiles read the layout by one pointer; wasm's read ONNX's)."""
    emit.export(MODEL, target=target, out=tmp_path)
    code = (tmp_path / "model.c").read_text()
    packed = re.findall(r"ek_conv_desc d = \{.*, (\d+) \};", code)  # desc.packed of each Conv
    assert packed == [str(PACK_ROWS) if layer[-1] and target == "native" else "0" for layer in LAYERS]
    got = emit.load(tmp_path).run(x=X)["y"]
    np.testing.assert_allclose(got, ort_run(MODEL, {"x": X})[0], rtol=1e-4, atol=1e-4)


def test_int8_storage_of_packed_weights_is_per_output_channel(tmp_path, monkeypatch):
    """A packed weight is quantised with a scale per output channel, as the unpacked one: the same values."""
    emit.export(MODEL, target="native", out=tmp_path / "packed", weight_dtype="int8")
    got = emit.load(tmp_path / "packed").run(x=X)["y"]
    monkeypatch.setattr(passes, "pack_conv_weights", lambda prog: prog)
    emit.export(MODEL, target="native", out=tmp_path / "plain", weight_dtype="int8", name="plain")
    code = (tmp_path / "plain" / "model.c").read_text()
    assert re.findall(r"ek_conv_desc d = \{.*, (\d+) \};", code) == ["0"] * len(LAYERS)
    np.testing.assert_array_equal(got, emit.load(tmp_path / "plain").run(x=X)["y"])


def test_convs_over_a_few_positions_are_not_packed(tmp_path):
    """A 1-D conv over 4 positions runs as dot products over the weights' rows (gemm.c): ONNX's layout, and the
    results are onnxruntime's."""
    w = (RNG.standard_normal((128, 64, 3)) / 14).astype(np.float32)
    model = make_model([helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1])], [tensor("x", [1, 64, 4])],
                       [tensor("y", [1, 128, 4])], [init("w", w)])
    emit.export(model, target="native", out=tmp_path)
    assert re.findall(r"ek_conv_desc d = \{.*, (\d+) \};", (tmp_path / "model.c").read_text()) == ["0"]
    x = RNG.standard_normal((1, 64, 4)).astype(np.float32)
    np.testing.assert_allclose(emit.load(tmp_path).run(x=x)["y"], ort_run(model, {"x": x})[0], rtol=1e-4, atol=1e-4)


def _few_positions_model():
    """7x7 outputs (49 positions): a 1x1 conv of 64 -> 96 channels, a 3x3 padded one of 96 -> 48 (by windows: 61
    columns), and one of 48 -> 24 (24 rows: 16-row groups would pad a third)."""
    nodes, inits, prev = [], [], "x"
    for name, c, m, k in (("pw", 64, 96, 1), ("k3", 96, 48, 3), ("small", 48, 24, 3)):
        w = (RNG.standard_normal((m, c, k, k)) / np.sqrt(c * k * k)).astype(np.float32)
        inits.append(init(f"{name}.w", w))
        nodes.append(helper.make_node("Conv", [prev, f"{name}.w"], [f"{name}.y"], kernel_shape=[k, k], pads=[k // 2] * 4))
        nodes.append(helper.make_node("Relu", [f"{name}.y"], [f"{name}.r"]))
        prev = f"{name}.r"
    nodes[-1].output[0] = "y"
    return make_model(nodes, [tensor("x", [1, 64, 7, 7])], [tensor("y", [1, 24, 7, 7])], inits)


@pytest.mark.parametrize("avx512", [True, False])
def test_few_positions_pack_in_groups_of_16_for_avx512(tmp_path, monkeypatch, avx512):
    """17-63 output positions on an AVX-512 host: groups of EK_PACK_FEW rows, which gemm.c runs with the channels
    along the vectors (where 16 rows pad at most 1/8 more bytes); elsewhere EK_PACK_ROWS. onnxruntime's results
    either way (this machine runs either layout)."""
    monkeypatch.setattr(pack_weights, "host_has_avx512", lambda: avx512)
    model = _few_positions_model()
    emit.export(model, target="native", out=tmp_path)
    packed = re.findall(r"ek_conv_desc d = \{.*, (\d+) \};", (tmp_path / "model.c").read_text())
    assert packed == ([str(PACK_FEW), str(PACK_FEW), str(PACK_ROWS)] if avx512 else [str(PACK_ROWS)] * 3)
    x = RNG.standard_normal((1, 64, 7, 7)).astype(np.float32)
    np.testing.assert_allclose(emit.load(tmp_path).run(x=x)["y"], ort_run(model, {"x": x})[0], rtol=1e-4, atol=1e-4)


def test_dilated_windows_past_63_columns_keep_8_row_groups(tmp_path):
    """7x7 outputs of a 3x3 conv of 64 input channels for 16 outputs (windows over one padded band, not column
    planes) dilated by 4: its products have 49 + 6 * 8 = 97 columns, past few_cols' 63, so groups of EK_PACK_ROWS
    (undilated: 61 columns, groups of 16). Over column planes (32 input channels for 48 outputs) they have the 49
    positions' columns whatever the dilation: groups of 16."""
    from emit.importer import import_model

    for m, c, dil, rows in ((16, 64, 1, PACK_FEW), (16, 64, 4, PACK_ROWS), (48, 32, 4, PACK_FEW)):
        w = (RNG.standard_normal((m, c, 3, 3)) / 17).astype(np.float32)
        model = make_model([helper.make_node("Conv", ["x", "w"], ["y"], pads=[dil] * 4, dilations=[dil, dil])],
                           [tensor("x", [1, c, 7, 7])], [tensor("y", [1, m, 7, 7])], [init("w", w)])
        prog = pack_conv_weights(import_model(model), avx512=True)
        assert [n.attrs.get("__pack_rows__") for n in prog.nodes if n.op_type == "Conv"] == [rows]
    # the last (dilated column planes in groups of 16, on an AVX-512 host) as onnxruntime computes it
    emit.export(model, target="native", out=tmp_path)
    x = RNG.standard_normal((1, 32, 7, 7)).astype(np.float32)
    np.testing.assert_allclose(emit.load(tmp_path).run(x=x)["y"], ort_run(model, {"x": x})[0], rtol=1e-4, atol=1e-4)
