"""3x3 convolutions in Winograd's F(2x2, 3x3) or F(4x4, 3x3) form (emit/passes/winograd.py, runtime_c/conv.c's
conv_winograd2 and conv_winograd4): the weight transforms and their layouts, which convolutions take which on which
build, and the results against onnxruntime natively and in wasm (the kernels on each SIMD build:
tests/test_runtime_kernels.py)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from onnx import helper

import emit
from emit.ir import Node
from emit.passes.pack_weights import PACK_ROWS, pack_rows
from emit.passes.winograd import takes_winograd, winograd_tile, winograd_weights

from .helpers import init, make_model, ort_run, tensor

RNG = np.random.default_rng(11)
# the data and output transforms (B^T, A^T) of F(2x2, 3x3) and F(4x4, 3x3), by output tile side
BT = {2: np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float64),
      4: np.array([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0], [0, -2, -1, 2, 1, 0],
                   [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], np.float64)}
AT = {2: np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float64),
      4: np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]], np.float64)}


@pytest.mark.parametrize("tile", [2, 4])
def test_transformed_weights_give_the_convolution(tile):
    """U from winograd_weights, with the data and output transforms, is the 3x3 correlation of each window of
    (tile + 2)^2."""
    m, c, n = 5, 3, tile + 2
    w = RNG.standard_normal((m, c, 3, 3)).astype(np.float32)
    x = RNG.standard_normal((c, n, n))
    u = winograd_weights(w, packed=False, tile=tile).astype(np.float64).reshape(n, n, m, c)
    v = np.einsum("ik,ckl,jl->ijc", BT[tile], x, BT[tile])  # B^T d B per channel
    y = np.einsum("ik,klm,jl->mij", AT[tile], np.einsum("ijmc,ijc->ijm", u, v), AT[tile])
    direct = np.array([[[np.sum(w[o].astype(np.float64) * x[:, r:r + 3, s:s + 3]) for s in range(tile)]
                        for r in range(tile)] for o in range(m)])
    tol = 1e-6 if tile == 2 else 2e-5  # U in float32: F(4x4)'s sixths and twenty-fourths round further
    np.testing.assert_allclose(y, direct, rtol=tol, atol=tol)


def test_tile_side_by_build_and_outputs():
    """F(4x4) in wasm from 13x13 outputs (4 x 4 tiles); F(2x2) below that and in packed (AVX) builds."""
    assert winograd_tile((1, 8, 13, 40), packed=False) == 4
    assert winograd_tile((1, 8, 12, 40), packed=False) == 2
    assert winograd_tile((1, 8, 40, 40), packed=True) == 2


def test_packed_layout_is_each_matrix_packed():
    w = RNG.standard_normal((13, 6, 3, 3)).astype(np.float32)
    plain = winograd_weights(w, packed=False)
    packed = winograd_weights(w, packed=True)
    assert plain.shape == (16 * 13, 6)
    assert packed.shape == (16 * 2, 6, PACK_ROWS)  # 13 rows -> 2 groups of 8 per matrix
    for xi in range(16):
        np.testing.assert_array_equal(packed[2 * xi:2 * xi + 2], pack_rows(plain[13 * xi:13 * (xi + 1)], 1, PACK_ROWS))


def _conv_node(**attrs) -> Node:
    return Node("Conv", "c", ["x", "w"], ["y"], attrs)


@pytest.mark.parametrize("c, m, side, attrs, wasm, native", [
    (32, 8, 4, {}, True, False),  # wasm from 32 input channels; native needs more outputs and channels
    (16, 64, 28, {}, False, False),
    (16, 64, 55, {}, False, True),  # native: 16 input channels for 64+ outputs on 32x32+ (squeezenet's expand)
    (16, 32, 55, {}, False, False),
    (32, 64, 3, {}, False, False),  # outputs too few
    (32, 32, 16, {}, True, True),  # native: 32 x 32 from 16x16 outputs
    (32, 64, 15, {}, True, False),
    (48, 64, 8, {}, True, True),  # from 8x8, 48 input channels
    (64, 16, 28, {}, True, False),  # native: too few output channels
    (64, 64, 7, {}, True, False),  # below 8x8, 65536 channel pairs
    (128, 512, 7, {}, True, True),
    (128, 128, 7, {"strides": [2, 2]}, False, False),
    (128, 128, 7, {"dilations": [2, 2]}, False, False),
    (128, 128, 7, {"group": 2}, False, False),
])
def test_which_convs_take_winograd(c, m, side, attrs, wasm, native):
    w = np.zeros((m, c // attrs.get("group", 1), 3, 3), np.float32)
    out = (1, m, side, side + 1)
    assert takes_winograd(_conv_node(**attrs), w, out, packed=False) == wasm
    assert takes_winograd(_conv_node(**attrs), w, out, packed=True) == native


def _model(layers: list[tuple[int, int, list[int], str | None]], hw: tuple[int, int], n: int = 1):
    """A chain of 3x3 stride-1 convs: (input channels, output channels, pads, activation)."""
    nodes, inits, prev, (h, w) = [], [], "x", hw
    for i, (c, m, pads, act) in enumerate(layers):
        wt = (RNG.standard_normal((m, c, 3, 3)) / np.sqrt(9 * c)).astype(np.float32)
        inits += [init(f"w{i}", wt), init(f"b{i}", RNG.standard_normal(m).astype(np.float32))]
        nodes.append(helper.make_node("Conv", [prev, f"w{i}", f"b{i}"], [f"c{i}"], kernel_shape=[3, 3], pads=pads))
        prev = f"c{i}"
        if act:
            nodes.append(helper.make_node(act, [prev], [f"a{i}"]))
            prev = f"a{i}"
        h, w = h + pads[0] + pads[2] - 2, w + pads[1] + pads[3] - 2
    nodes[-1].output[0] = "y"
    return make_model(nodes, [tensor("x", [n, layers[0][0], *hw])], [tensor("y", [n, layers[-1][1], h, w])], inits)


# odd and even sizes (a last tile half outside), asymmetric and no padding, a batch of two, fused activations, output
# channels past whole packed groups; the first layer takes Winograd on both builds, the others on wasm only (7x11
# outputs; 24 output channels)
LAYERS = [(64, 130, [2, 1, 0, 2], "Relu"), (130, 40, [0, 0, 0, 0], "Sigmoid"), (40, 24, [1, 1, 1, 1], None)]


@pytest.mark.parametrize("target", ["native", "wasm"])
def test_winograd_convs_match_onnxruntime(tmp_path, target):
    model = _model(LAYERS, (9, 12), n=2)
    emit.export(model, target=target, out=tmp_path)
    code = (tmp_path / "model.c").read_text()
    flags = re.findall(r"ek_conv_desc d = \{.*, (\d), \d+ \};", code)  # desc.winograd of each Conv
    assert flags == (["2", "0", "0"] if target == "native" else ["2", "2", "2"])
    _assert_f4_compiled(tmp_path, False)  # F(4x4)'s code only in the models that use it
    x = RNG.standard_normal((2, 64, 9, 12)).astype(np.float32)
    got = emit.load(tmp_path).run(x=x)["y"]
    np.testing.assert_allclose(got, ort_run(model, {"x": x})[0], rtol=1e-4, atol=1e-4)


# F(4x4) in wasm: 15x17 then 15x16 outputs (rows and columns past whole 4x4 tiles), asymmetric padding, a batch of two
LAYERS4 = [(32, 36, [1, 1, 1, 1], "Relu"), (36, 20, [0, 1, 2, 0], None)]


def _assert_f4_compiled(folder, wanted: bool) -> None:
    """The export asks conv.c for F(4x4)'s kernel (EK_WINO_F4 in its emit_runtime.h) exactly when a Conv uses it."""
    assert json.loads((folder / "manifest.json").read_text())["features"] == (["EK_WINO_F4"] if wanted else [])
    assert ("#define EK_WINO_F4 1" in (folder / "emit_runtime.h").read_text()) == wanted


def test_f4x4_convs_match_onnxruntime_in_wasm(tmp_path):
    model = _model(LAYERS4, (15, 17), n=2)
    emit.export(model, target="wasm", out=tmp_path)
    assert re.findall(r"ek_conv_desc d = \{.*, (\d), \d+ \};", (tmp_path / "model.c").read_text()) == ["4", "4"]
    _assert_f4_compiled(tmp_path, True)
    x = RNG.standard_normal((2, 32, 15, 17)).astype(np.float32)
    got = emit.load(tmp_path).run(x=x)["y"]
    np.testing.assert_allclose(got, ort_run(model, {"x": x})[0], rtol=1e-4, atol=1e-4)


def test_c_target_keeps_direct_convs(tmp_path):
    """The portable C folder (and firmware) keep ONNX's weights: Winograd's are 16/9 the bytes."""
    emit.export(_model(LAYERS[:1], (9, 12)), target="c", out=tmp_path)
    assert re.findall(r"ek_conv_desc d = \{.*, (\d), \d+ \};", (tmp_path / "model.c").read_text()) == ["0"]


def test_weights_file_holds_the_transformed_weights(tmp_path):
    """--weights file stores U like embed does, and `onnx-emit weights` recompiles the same layout."""
    model = _model(LAYERS[:1], (9, 12))
    x = RNG.standard_normal((1, 64, 9, 12)).astype(np.float32)
    emit.export(model, target="native", out=tmp_path / "embed")
    emit.export(model, target="native", out=tmp_path / "file", weights="file", name="filed")
    np.testing.assert_array_equal(emit.load(tmp_path / "file").run(x=x)["y"], emit.load(tmp_path / "embed").run(x=x)["y"])
    from emit.api import weights_file

    blob, _ = weights_file(model, name="filed", pack_weights=True, winograd=True)
    assert blob == (tmp_path / "file" / "model.weights").read_bytes()
