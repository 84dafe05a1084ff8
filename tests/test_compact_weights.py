"""Weights made of repeated blocks (an architecture-only model's ConstantOfShape fills, and what folding, packing and
Winograd make of them): folded at export however large, stored as their distinct blocks and an index
(codegen/storage.py's "blocks" form), expanded once at init or load; random weights stay raw."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
from onnx import TensorProto, helper

import emit
from emit.codegen.weights import repeated_blocks

from .helpers import init, make_model, ort_run, tensor
from .test_c_folder import STRICT, need

RNG = np.random.default_rng(21)
M, C, H = 128, 320, 10  # the fill: 128 x 320 x 3 x 3 floats, 1.47 MB, past the importer's fold limit of 1 MiB


def test_repeated_blocks_rebuild_the_tensor():
    pattern = RNG.standard_normal((3, 256)).astype(np.float32)
    a = pattern[RNG.integers(0, 3, 40)].reshape(-1)[:10_000]  # 40 blocks of 3 kinds, the last cut short
    distinct, index = repeated_blocks(a)
    assert distinct.shape[0] == 4  # the short last block, zero-padded, is a fourth
    np.testing.assert_array_equal(distinct[index].reshape(-1)[:a.size], a)
    z = np.zeros(300, np.float32)
    z[7] = -0.0  # bit for bit: -0 is another block than 0
    assert repeated_blocks(z)[0].shape[0] == 2


def _model(fill_weight: bool = True):
    """A 3x3 conv whose weight is a ConstantOfShape fill (or a random initializer), then BatchNormalization (folded
    into the weight: one value per output channel) and Relu."""
    nodes, inits = [], [init("scale", RNG.random(M).astype(np.float32) + 0.5), init("bias", RNG.standard_normal(M).astype(np.float32)),
                        init("mean", RNG.standard_normal(M).astype(np.float32)), init("var", RNG.random(M).astype(np.float32) + 0.5)]
    if fill_weight:
        inits.append(init("wshape", np.array([M, C, 3, 3], np.int64)))
        nodes.append(helper.make_node("ConstantOfShape", ["wshape"], ["w"],
                                      value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.002])))
    else:
        inits.append(init("w", (RNG.standard_normal((M, C, 3, 3)) * 0.02).astype(np.float32)))
    nodes += [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
              helper.make_node("BatchNormalization", ["c", "scale", "bias", "mean", "var"], ["b"]),
              helper.make_node("Relu", ["b"], ["y"])]
    return make_model(nodes, [tensor("x", [1, C, H, H])], [tensor("y", [1, M, H, H])], inits)


X = RNG.standard_normal((1, C, H, H)).astype(np.float32)


@pytest.mark.parametrize("target, weights", [("native", "embed"), ("native", "file"), ("wasm", "embed"), ("c", "embed")])
def test_fill_weights_are_folded_and_stored_as_blocks(tmp_path, target, weights):
    """Embedded: as blocks. A weights file keeps them raw: its layout may not depend on the values (a blob of
    retrained ones must load into the same build)."""
    model = _model()
    info = emit.export(model, target=target, out=tmp_path, weights=weights)
    code = (tmp_path / "model.c").read_text()
    assert "ConstantOfShape" not in code  # folded at export, not filled per run
    if weights == "embed":
        # 1.47 MB (Winograd's 2.6 MB) of one value per output channel: a block per channel group, or per matrix and
        # channel group
        assert info["weights"]["expanded_bytes"] >= M * C * 9 * 4
        assert info["weights"]["stored_bytes"] * 10 < info["weights"]["expanded_bytes"]
        assert "stored as blocks" in code
    else:
        assert info["weights"]["expanded_bytes"] == 0 and info["weights"]["stored_bytes"] >= M * C * 9 * 4
    if target == "c":
        return  # the folder alone: built by the strict C99 test below
    got = emit.load(tmp_path).run(x=X)["y"]
    np.testing.assert_allclose(got, ort_run(model, {"x": X})[0], rtol=1e-4, atol=1e-4)


def test_random_weights_stay_raw(tmp_path):
    info = emit.export(_model(fill_weight=False), target="c", out=tmp_path)
    assert "stored as blocks" not in (tmp_path / "model.c").read_text()
    assert info["weights"]["stored_bytes"] >= M * C * 9 * 4


@pytest.mark.parametrize("cc, package", [("gcc", "gcc"), ("clang", "clang")])
def test_blocks_form_is_strict_c99(tmp_path, cc, package):
    need(cc, package)
    emit.export(_model(), target="c", out=tmp_path)
    srcs = sorted(str(p) for p in tmp_path.glob("*.c"))
    r = subprocess.run([cc, *STRICT, "-c", *srcs], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
