"""Activations in the wasm build (simd128): the elementwise maps (Sigmoid, SiLU, Exp, Erf), explicit vectors with a
scalar tail, against float64 references on the special values (NaN, infinities, signed zeros, the ends of e^x's
range; onnxruntime's own sigmoid is off by 2% in its tail), and each activation fused into a convolution's epilogue
(the depthwise kernel's rows, the GEMM's tiles and rows) against onnxruntime; wasm applies the clamps with pmin/pmax
instead of clang's NaN-exact f32x4.min/max."""

from __future__ import annotations

import math

import numpy as np
import onnx

import emit

from .helpers import init, make_model, ort_run, tensor
from .wasm_node import run_in_node

SPECIALS = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, 0.999999, 1.000001, 3.0, -3.0, 87.0, -87.0, 88.5, -88.5,
            89.0, -89.0, 100.0, -100.0, 104.0, -104.0, 1e-30, -1e-30, 1e-40, 3e38, -3e38]


def test_maps_in_node_match_float64(tmp_path):
    rng = np.random.default_rng(8)
    n = 1003  # 250 vectors and a tail of 3
    x = np.concatenate([np.array(SPECIALS, np.float32), (rng.standard_normal(n - len(SPECIALS)) * 6)])
    x = x.astype(np.float32).reshape(1, n)
    nodes = [
        onnx.helper.make_node("Sigmoid", ["x"], ["sig"]),
        onnx.helper.make_node("Sigmoid", ["x"], ["s2"]),
        onnx.helper.make_node("Mul", ["x", "s2"], ["silu"]),
        onnx.helper.make_node("Exp", ["x"], ["exp"]),
        onnx.helper.make_node("Erf", ["x"], ["erf"]),
    ]
    names = ["sig", "silu", "exp", "erf"]
    model = make_model(nodes, [tensor("x", [1, n])], [tensor(k, [1, n]) for k in names], [])
    emit.export(model, target="wasm", out=tmp_path)
    code = (tmp_path / "model.c").read_text()
    assert all(f in code for f in ("ek_ssigmoid(", "ek_ssilu(", "ek_sexp(", "ek_serf("))
    got, _ = run_in_node(tmp_path, {"x": x})
    xd = x.astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        sig = 1 / (1 + np.exp(-xd))
        refs = {"sig": sig, "silu": xd * sig, "exp": np.exp(xd),
                "erf": np.array([[math.erf(v) if not math.isnan(v) else math.nan for v in xd[0]]])}
        refs = {k: v.astype(np.float32) for k, v in refs.items()}  # e^x past 88.7: inf
    for name in names:
        g, ref = got[name], refs[name]
        np.testing.assert_array_equal(np.isnan(g), np.isnan(ref), err_msg=f"{name}: NaN where onnxruntime has")
        np.testing.assert_array_equal(g[np.isinf(ref)], ref[np.isinf(ref)], err_msg=f"{name}: infinities")
        # within a few ulp; sigmoid rounds to 0 where it is a denormal (below e^-87.3), so SiLU there: atol
        np.testing.assert_allclose(g, ref, rtol=1e-6, atol=1e-36, equal_nan=True, err_msg=name)


def test_fused_activations_in_node_match_onnxruntime(tmp_path):
    rng = np.random.default_rng(9)
    c, h, w = 8, 11, 13  # rows of 13: three vectors and a tail
    x = (rng.standard_normal((1, c, h, w)) * 4).astype(np.float32)
    x[0, 0, 0, :6] = [100.0, -100.0, 88.5, -88.5, 0.0, -0.0]
    acts = {
        "relu": [("Relu", {}, [])],
        "clip": [("Clip", {}, ["lo", "hi"])],
        "sigmoid": [("Sigmoid", {}, [])],
        "hardsigmoid": [("HardSigmoid", {"alpha": 0.3, "beta": 0.4}, [])],
        "hardswish": [("HardSwish", {}, [])],
        "silu": [("Sigmoid", {}, []), ("Mul", {}, [])],
    }
    nodes, outputs, feeds = [], [], {"x": x}
    inits = [init("lo", np.array(-1.5, np.float32)), init("hi", np.array(0.25, np.float32)),
             init("wd", rng.standard_normal((c, 1, 3, 3)).astype(np.float32)),
             init("wp", rng.standard_normal((16, c, 1, 1)).astype(np.float32)),
             init("bp", rng.standard_normal(16).astype(np.float32))]
    for conv, (wname, extra, shape) in {"dw": ("wd", {"group": c, "pads": [1, 1, 1, 1]}, [1, c, h, w]),
                                        "pw": ("wp", {}, [1, 16, h, w])}.items():
        inputs = ["x", wname] + (["bp"] if conv == "pw" else [])
        for act, chain in acts.items():
            pre, out = f"{conv}_{act}_conv", f"{conv}_{act}"
            nodes.append(onnx.helper.make_node("Conv", inputs, [pre], **extra))
            cur = pre
            for k, (op, attrs, more) in enumerate(chain):
                dst = out if k == len(chain) - 1 else f"{pre}_{k}"
                args = [cur, pre] if op == "Mul" else [cur] + more
                nodes.append(onnx.helper.make_node(op, args, [dst], **attrs))
                cur = dst
            outputs.append(tensor(out, shape))
    model = make_model(nodes, [tensor("x", list(x.shape))], outputs, inits)
    emit.export(model, target="wasm", out=tmp_path)
    code = (tmp_path / "model.c").read_text()
    for act in ("EK_ACT_RELU", "EK_ACT_CLIP", "EK_ACT_SIGMOID", "EK_ACT_HARDSIGMOID", "EK_ACT_HARDSWISH", "EK_ACT_SILU"):
        assert act in code, f"{act} not fused"
    got, _ = run_in_node(tmp_path, feeds)
    for t, ref in zip(outputs, ort_run(model, feeds)):
        np.testing.assert_allclose(got[t.name], ref, rtol=1e-5, atol=1e-5, err_msg=t.name)
