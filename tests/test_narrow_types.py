"""Narrow tensor types: float16, bfloat16, float8 (e4m3fn, e4m3fnuz, e5m2, e5m2fnuz, e8m0fnu), float4 e2m1fn,
int4/uint4, int2/uint2. runtime_c/narrow.c's conversions checked bit for bit against numpy / ml_dtypes (ONNX's
reference), Cast between every pair against onnxruntime, float16 models against onnxruntime, bfloat16 and
float8/int4 quantisation against ONNX's reference evaluator, and the build in strict C99 and in wasm."""

from __future__ import annotations

import importlib.util
import warnings

import ml_dtypes
import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import emit
from emit.errors import UnsupportedError
from emit.importer import import_model
from emit.passes.widen import widen_narrow_floats

from .helpers import REPO, check_strict_c99, ort_run

RUNTIME = REPO / "runtime_c"
F8 = {  # runtime_c kind -> ml_dtypes type
    0: ml_dtypes.float8_e4m3fn,
    1: ml_dtypes.float8_e4m3fnuz,
    2: ml_dtypes.float8_e5m2,
    3: ml_dtypes.float8_e5m2fnuz,
    4: ml_dtypes.float4_e2m1fn,
}


# ---------------------------------------------------------------- runtime_c/narrow.c on its own


@pytest.fixture(scope="module")
def narrow(tmp_path_factory):
    import cffi

    ffi = cffi.FFI()
    ffi.cdef(
        """
        void f32_to_f16(const float *x, uint16_t *y, size_t n);
        void f32_to_bf16(const float *x, uint16_t *y, size_t n);
        void f16_to_f32(const uint16_t *x, float *y, size_t n);
        void bf16_to_f32(const uint16_t *x, float *y, size_t n);
        void f64_to_f16(const double *x, uint16_t *y, size_t n);
        void enc8(const float *x, uint8_t *y, size_t n, int kind, int sat);
        void dec8(const uint8_t *x, float *y, size_t n, int kind);
        void e8m0(const float *x, uint8_t *y, size_t n, int sat, int mode);
        void de8m0(const uint8_t *x, float *y, size_t n);
        """
    )
    ffi.set_source(
        "_narrow_test",
        """
        #include "emit_runtime.h"
        void f32_to_f16(const float *x, uint16_t *y, size_t n) { ek_f32_to_f16_n(x, y, n); }
        void f32_to_bf16(const float *x, uint16_t *y, size_t n) { ek_f32_to_bf16_n(x, y, n); }
        void f16_to_f32(const uint16_t *x, float *y, size_t n) { ek_f16_to_f32_n(x, y, n); }
        void bf16_to_f32(const uint16_t *x, float *y, size_t n) { ek_bf16_to_f32_n(x, y, n); }
        void f64_to_f16(const double *x, uint16_t *y, size_t n) { for (size_t i = 0; i < n; ++i) y[i] = ek_f32_to_f16(ek_f64_to_f32_odd(x[i])); }
        void enc8(const float *x, uint8_t *y, size_t n, int kind, int sat) { for (size_t i = 0; i < n; ++i) y[i] = ek_f32_to_f8(x[i], kind, sat); }
        void dec8(const uint8_t *x, float *y, size_t n, int kind) { for (size_t i = 0; i < n; ++i) y[i] = ek_f8_to_f32(x[i], kind); }
        void e8m0(const float *x, uint8_t *y, size_t n, int sat, int mode) { for (size_t i = 0; i < n; ++i) y[i] = ek_f32_to_e8m0(x[i], sat, mode); }
        void de8m0(const uint8_t *x, float *y, size_t n) { for (size_t i = 0; i < n; ++i) y[i] = ek_e8m0_to_f32(x[i]); }
        """,
        sources=[str(RUNTIME / "narrow.c")],
        include_dirs=[str(RUNTIME)],
        extra_compile_args=["-O2", "-std=c99"],
    )
    path = ffi.compile(tmpdir=str(tmp_path_factory.mktemp("narrow")), verbose=False)
    spec = importlib.util.spec_from_file_location("_narrow_test", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)

    def call(fn: str, x: np.ndarray, out_dtype, *extra) -> np.ndarray:
        x = np.ascontiguousarray(x)
        y = np.empty(x.shape, dtype=out_dtype)
        ctype = {1: "uint8_t", 2: "uint16_t", 4: "float", 8: "double"}
        getattr(mod.lib, fn)(
            ffi.from_buffer(f"{ctype[x.dtype.itemsize]}[]", x), ffi.from_buffer(f"{ctype[y.dtype.itemsize]}[]", y, require_writable=True),
            x.size, *extra,
        )
        return y

    return call


def _probe(dtype, n_random: int = 300_000) -> np.ndarray:
    """float32 values that exercise rounding to `dtype`: random bit patterns, every finite value of the type, the
    midpoints between neighbours and one float32 ulp either side of both, infinities, zeros."""
    rng = np.random.default_rng(7)
    rand = rng.integers(0, 2**32, size=n_random, dtype=np.uint64).astype(np.uint32).view(np.float32)
    bits = np.arange(256 if np.dtype(dtype).itemsize == 1 else 65536, dtype=np.uint8 if np.dtype(dtype).itemsize == 1 else np.uint16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vals = np.unique(bits.view(dtype).astype(np.float64))
    vals = vals[np.isfinite(vals)]
    grid = np.concatenate([vals, (vals[1:] + vals[:-1]) / 2]).astype(np.float32)
    near = np.concatenate([grid, (grid.view(np.uint32) + 1).view(np.float32), (grid.view(np.uint32) - 1).view(np.float32)])
    special = np.array([np.inf, -np.inf, 0.0, -0.0, np.nan, -np.nan, 1e30, -1e30, 1e-40], dtype=np.float32)
    return np.concatenate([rand, near, special])


def _same_bits(got: np.ndarray, want: np.ndarray) -> int:
    """How many elements differ, comparing bit patterns."""
    width = {1: np.uint8, 2: np.uint16}[np.dtype(want.dtype).itemsize]
    return int(np.count_nonzero(got.view(width) != want.view(width)))


def test_float16_bfloat16_round_like_numpy_and_ml_dtypes(narrow):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for fn, dtype in (("f32_to_f16", np.float16), ("f32_to_bf16", ml_dtypes.bfloat16)):
            x = _probe(dtype)
            assert _same_bits(narrow(fn, x, np.uint16), x.astype(dtype)) == 0, fn
        every = np.arange(65536, dtype=np.uint16)
        for fn, dtype in (("f16_to_f32", np.float16), ("bf16_to_f32", ml_dtypes.bfloat16)):
            got, want = narrow(fn, every, np.float32), every.view(dtype).astype(np.float32)
            assert np.array_equal(got, want, equal_nan=True), fn


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_double_rounds_to_float16_once(narrow):
    """A double becomes float16 by one correct rounding (numpy's), not by way of a rounded float32."""
    rng = np.random.default_rng(3)
    halves = np.unique(np.arange(65536, dtype=np.uint16).view(np.float16).astype(np.float64))
    halves = halves[np.isfinite(halves)]
    mids = (halves[1:] + halves[:-1]) / 2
    d = np.concatenate([rng.standard_normal(200_000) * np.exp2(rng.integers(-30, 20, 200_000)), mids, np.nextafter(mids, np.inf),
                        np.nextafter(mids, -np.inf)])
    assert _same_bits(narrow("f64_to_f16", d, np.uint16), d.astype(np.float16)) == 0
    # rounding through float32 instead would get some of these wrong
    assert _same_bits(d.astype(np.float32).astype(np.float16), d.astype(np.float16)) > 0


@pytest.mark.parametrize("kind", sorted(F8))
def test_float8_float4_round_like_ml_dtypes(narrow, kind):
    dtype = F8[kind]
    x = _probe(dtype, 100_000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = x.astype(dtype)
        fi = ml_dtypes.finfo(dtype)
        saturated = np.clip(x, float(fi.min), float(fi.max)).astype(dtype)  # ONNX's saturate_cast
        every = np.arange(16 if kind == 4 else 256, dtype=np.uint8)
        decoded = every.view(dtype).astype(np.float32)
    assert _same_bits(narrow("enc8", x, np.uint8, kind, 0), plain) == 0
    assert _same_bits(narrow("enc8", x, np.uint8, kind, 1), saturated) == 0
    assert np.array_equal(narrow("dec8", every, np.float32, kind), decoded, equal_nan=True)


@pytest.mark.parametrize("mode", ["up", "down", "nearest"])
def test_e8m0_matches_onnx_reference(narrow, mode):
    x = _probe(ml_dtypes.float8_e8m0fnu, 100_000)
    for sat in (0, 1):
        want = numpy_helper.to_float8e8m0(x, saturate=bool(sat), round_mode=mode)
        got = narrow("e8m0", x, np.uint8, sat, ["up", "down", "nearest"].index(mode))
        assert _same_bits(got, want) == 0
    every = np.arange(256, dtype=np.uint8)
    assert np.array_equal(narrow("de8m0", every, np.float32), every.view(ml_dtypes.float8_e8m0fnu).astype(np.float32), equal_nan=True)


# ---------------------------------------------------------------- models


def _model(nodes, inputs, outputs, initializers=(), opset: int = 25) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=11 if opset >= 23 else 10)


def _vi(name: str, elem: int, shape) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, list(shape))


def _run_native(model: onnx.ModelProto, out, feeds: dict) -> dict:
    emit.export(model, target="native", out=out)
    return emit.load(out)(feeds)


CAST_TYPES = {
    "FLOAT": T.FLOAT, "DOUBLE": T.DOUBLE, "FLOAT16": T.FLOAT16, "BFLOAT16": T.BFLOAT16, "E4M3FN": T.FLOAT8E4M3FN,
    "E4M3FNUZ": T.FLOAT8E4M3FNUZ, "E5M2": T.FLOAT8E5M2, "E5M2FNUZ": T.FLOAT8E5M2FNUZ, "E8M0": T.FLOAT8E8M0,
    "FLOAT4": T.FLOAT4E2M1, "INT4": T.INT4, "UINT4": T.UINT4, "INT2": T.INT2, "UINT2": T.UINT2, "INT8": T.INT8,
    "UINT16": T.UINT16, "INT64": T.INT64, "BOOL": T.BOOL,
}


def _cast_inputs() -> dict[str, np.ndarray]:
    """One finite value set per type: floats with halves, ties and values past the narrow ranges; ints in range
    (float -> int conversion of NaN, infinity or out-of-range values is undefined in ONNX)."""
    rng = np.random.default_rng(11)
    floats = np.concatenate([rng.standard_normal(40) * 4, np.arange(-9, 10), [0.5, -0.5, 1.5, 2.5, -2.5, 0.25, 7.5, -7.5, 300, -300,
                             1e5, -1e5, 0.0, -0.0, 1e-6, 0.3, 3.0e-3]])
    ints = np.clip(np.round(floats), -100, 100)
    feeds = {}
    for name, elem in CAST_TYPES.items():
        dt = helper.tensor_dtype_to_np_dtype(elem)
        if name == "BOOL":
            feeds[name] = floats > 0
        elif name in ("INT8", "INT64"):
            feeds[name] = ints.astype(dt)
        elif name == "UINT16":
            feeds[name] = np.abs(ints).astype(dt)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                feeds[name] = floats.astype(np.float32).astype(dt)
    return feeds


def _values(a: np.ndarray) -> np.ndarray:
    return np.asarray(a).astype(np.float64)


def _by_value(x: np.ndarray, dtype) -> np.ndarray:
    """x converted by value: sub-byte ints keep the low bits of the truncated value (numpy's and ml_dtypes' wrap)."""
    v = _values(x)
    if np.dtype(dtype).name in ("int4", "uint4", "int2", "uint2"):
        bits = 4 if "4" in np.dtype(dtype).name else 2
        low = np.trunc(np.nan_to_num(v)).astype(np.int64) & ((1 << bits) - 1)
        if not np.dtype(dtype).name.startswith("u"):
            low = np.where(low >= 1 << (bits - 1), low - (1 << bits), low)
        return low.astype(dtype)
    return v.astype(np.float32).astype(dtype)


def _int_range(onnx_type: str) -> tuple[int, int]:
    bits = {"INT4": 4, "UINT4": 4, "INT2": 2, "UINT2": 2}.get(onnx_type) or 8 * np.dtype(onnx_type.lower()).itemsize
    return (0, (1 << bits) - 1) if onnx_type.startswith("U") else (-(1 << (bits - 1)), (1 << (bits - 1)) - 1)


def test_cast_every_pair_matches_onnxruntime_and_reference(tmp_path):
    """One model casts each of 18 types to each other (306 Casts). The pairs onnxruntime's Python API can feed and
    return match it, the rest ONNX's reference evaluator (or the value, where ml_dtypes has no conversion);
    float -> int only where the value fits an int32 (NaN, infinity and overflow are undefined in ONNX)."""
    import onnxruntime as ort

    feeds = _cast_inputs()
    n = len(next(iter(feeds.values())))
    nodes, ins, outs = [], [], []
    for a, ta in CAST_TYPES.items():
        ins.append(_vi(a, ta, [n]))
        for b, tb in CAST_TYPES.items():
            if a != b:
                nodes.append(helper.make_node("Cast", [a], [f"{a}_{b}"], to=tb))
                outs.append(_vi(f"{a}_{b}", tb, [n]))
    got = _run_native(_model(nodes, ins, outs), tmp_path / "casts", feeds)
    so = ort.SessionOptions()
    so.log_severity_level = 4
    checked_ort = checked_ref = by_value = 0
    for node, out in zip(nodes, outs):
        a, b = node.input[0], out.name.split("_", 1)[1]
        x, y = feeds[a], got[out.name]
        assert y.dtype == helper.tensor_dtype_to_np_dtype(CAST_TYPES[b]), out.name
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fits = np.ones(n, bool)
            if b in ("INT4", "UINT4", "INT2", "UINT2", "INT8", "UINT16", "INT64") and x.dtype != np.bool_:
                v = _values(x)
                fits = np.isfinite(v) & (np.abs(v) < 2**31)  # int sources wrap (numpy, ml_dtypes); NaN/inf are undefined
                if np.dtype(x.dtype).kind not in "iub":  # float -> int out of the target's range is undefined in ONNX
                    lo, hi = _int_range(b)  # (ml_dtypes 0.7 gives 0 there, onnxruntime and numpy wrap)
                    fits &= (np.trunc(np.nan_to_num(v)) >= lo) & (np.trunc(np.nan_to_num(v)) <= hi)
        single = _model([node], [i for i in ins if i.name == a], [out])
        try:
            want = ort.InferenceSession(single.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, {a: x})[0]
            if want.dtype != y.dtype and want.dtype == np.uint8:
                want = want.view(y.dtype)  # onnxruntime hands some float8 outputs back as their bytes
            checked_ort += 1
        except Exception:  # noqa: BLE001 - a pair onnxruntime does not run (float4, bfloat16 outputs in Python)
            try:
                want = ReferenceEvaluator(single).run(None, {a: x})[0]
            except TypeError:  # nor ml_dtypes (int4 -> uint4, e8m0 -> float4, ...): by value
                want = _by_value(x, y.dtype)
                by_value += 1
            checked_ref += 1
        assert np.array_equal(_values(y)[fits], _values(want)[fits], equal_nan=True), out.name
    assert checked_ort >= 40 and by_value <= 16, (checked_ort, checked_ref, by_value)


def test_float16_network_matches_onnxruntime(tmp_path):
    """MatMul, Add, Relu, Softmax, Transpose and Reshape in float16 (weights float16 initializers): computed in float32,
    rounded to float16 after each op."""
    rng = np.random.default_rng(5)
    w1 = numpy_helper.from_array((rng.standard_normal((16, 32)) * 0.3).astype(np.float16), "w1")
    b1 = numpy_helper.from_array(rng.standard_normal(32).astype(np.float16), "b1")
    w2 = numpy_helper.from_array((rng.standard_normal((32, 10)) * 0.3).astype(np.float16), "w2")
    shape = numpy_helper.from_array(np.array([4, 10], np.int64), "shape")
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"]),
        helper.make_node("Add", ["h", "b1"], ["hb"]),
        helper.make_node("Relu", ["hb"], ["r"]),
        helper.make_node("MatMul", ["r", "w2"], ["z"]),
        helper.make_node("Transpose", ["z"], ["zt"], perm=[1, 0]),
        helper.make_node("Transpose", ["zt"], ["z2"], perm=[1, 0]),
        helper.make_node("Reshape", ["z2", "shape"], ["z3"]),
        helper.make_node("Softmax", ["z3"], ["y"], axis=-1),
    ]
    model = _model(nodes, [_vi("x", T.FLOAT16, [4, 16])], [_vi("y", T.FLOAT16, [4, 10]), _vi("z", T.FLOAT16, [4, 10])],
                   [w1, b1, w2, shape], opset=17)
    x = rng.standard_normal((4, 16)).astype(np.float16)
    got = _run_native(model, tmp_path / "mlp16", {"x": x})
    want = ort_run(model, {"x": x})
    for name, ref in zip(("y", "z"), want):
        assert got[name].dtype == np.float16
        np.testing.assert_allclose(got[name].astype(np.float32), ref.astype(np.float32), rtol=2e-3, atol=1e-3)
    # ONNX's reference rounds the same way: same values up to one float16 ulp of the accumulation order
    ref_y = ReferenceEvaluator(model).run(None, {"x": x})[0]
    np.testing.assert_allclose(got["y"].astype(np.float32), ref_y.astype(np.float32), rtol=1e-3, atol=1e-4)


def test_bfloat16_ops_match_reference(tmp_path):
    """Elementwise bfloat16 work rounds once per op, as ml_dtypes does: bit-exact with ONNX's reference."""
    rng = np.random.default_rng(8)
    c = numpy_helper.from_array(rng.standard_normal((3, 1)).astype(ml_dtypes.bfloat16), "c")
    nodes = [
        helper.make_node("Mul", ["x", "c"], ["m"]),
        helper.make_node("Tanh", ["m"], ["t"]),
        helper.make_node("Sub", ["t", "x"], ["s"]),
        helper.make_node("Max", ["s", "x"], ["y"]),
        helper.make_node("Concat", ["y", "x"], ["cat"], axis=1),
        helper.make_node("Cast", ["cat"], ["f"], to=T.FLOAT),
    ]
    model = _model(nodes, [_vi("x", T.BFLOAT16, [3, 5])], [_vi("cat", T.BFLOAT16, [3, 10]), _vi("f", T.FLOAT, [3, 10])], [c], opset=21)
    x = rng.standard_normal((3, 5)).astype(ml_dtypes.bfloat16)
    got = _run_native(model, tmp_path / "bf16", {"x": x})
    want = ReferenceEvaluator(model).run(None, {"x": x})
    assert got["cat"].dtype == ml_dtypes.bfloat16
    assert _same_bits(got["cat"], want[0]) == 0
    assert np.array_equal(got["f"], want[1])


def test_int4_weights_dequantize_like_onnxruntime(tmp_path):
    """A packed int4 initializer (two per byte in the model) with per-row scales and zero points, dequantised and
    multiplied: the importer unpacks it to one element per byte."""
    rng = np.random.default_rng(2)
    wq = rng.integers(-8, 8, size=(6, 4)).astype(ml_dtypes.int4)
    init = [
        numpy_helper.from_array(wq, "wq"),
        numpy_helper.from_array(np.linspace(0.05, 0.3, 6).astype(np.float32), "scale"),
        numpy_helper.from_array(rng.integers(-2, 3, size=6).astype(ml_dtypes.int4), "zp"),
    ]
    assert init[0].raw_data and len(init[0].raw_data) == 12  # packed
    nodes = [helper.make_node("DequantizeLinear", ["wq", "scale", "zp"], ["w"], axis=0), helper.make_node("MatMul", ["x", "w"], ["y"])]
    model = _model(nodes, [_vi("x", T.FLOAT, [3, 6])], [_vi("y", T.FLOAT, [3, 4])], init, opset=21)
    x = rng.standard_normal((3, 6)).astype(np.float32)
    got = _run_native(model, tmp_path / "int4", {"x": x})
    np.testing.assert_allclose(got["y"], ort_run(model, {"x": x})[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("saturate", [0, 1])
def test_quantize_dequantize_narrow_types_match_reference(tmp_path, saturate):
    """QuantizeLinear to float8 (with and without saturation), float4, int4 and uint2, per axis, then back."""
    x = np.array([[0.0, 1.0, -2.5, 1e5, 300.0, -7.25], [0.3, -0.6, 9.0, -1e-3, 42.0, -100.0]], np.float32)
    scale = numpy_helper.from_array(np.array([2.0, 0.5], np.float32), "scale")
    nodes, outs, inits = [], [], [scale]
    for name, elem in (("e4m3fn", T.FLOAT8E4M3FN), ("e5m2fnuz", T.FLOAT8E5M2FNUZ), ("f4", T.FLOAT4E2M1), ("i4", T.INT4),
                       ("u2", T.UINT2)):
        zp = np.zeros(2, helper.tensor_dtype_to_np_dtype(elem))
        if name in ("i4", "u2"):
            zp = np.array([1, 2]).astype(zp.dtype)
        inits.append(numpy_helper.from_array(zp, f"zp_{name}"))
        nodes += [
            helper.make_node("QuantizeLinear", ["x", "scale", f"zp_{name}"], [f"q_{name}"], axis=0, saturate=saturate),
            helper.make_node("DequantizeLinear", [f"q_{name}", "scale", f"zp_{name}"], [f"d_{name}"], axis=0),
        ]
        outs += [_vi(f"q_{name}", elem, x.shape), _vi(f"d_{name}", T.FLOAT, x.shape)]
    model = _model(nodes, [_vi("x", T.FLOAT, x.shape)], outs, inits, opset=21)
    got = _run_native(model, tmp_path / f"qdq{saturate}", {"x": x})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = ReferenceEvaluator(model).run(None, {"x": x})
    for out, ref in zip(outs, want):
        assert got[out.name].dtype == ref.dtype, out.name
        assert np.array_equal(_values(got[out.name]), _values(ref), equal_nan=True), out.name


def test_widen_pass_computes_narrow_floats_in_float32():
    """Add gets Casts around it and its float16 constant becomes a float32 weight; the Reshape moves float16 bytes."""
    nodes = [
        helper.make_node("Reshape", ["x", "shape"], ["r"]),
        helper.make_node("Add", ["r", "c"], ["y"]),
    ]
    inits = [numpy_helper.from_array(np.array([2, 3], np.int64), "shape"), numpy_helper.from_array(np.ones(3, np.float16), "c")]
    model = _model(nodes, [_vi("x", T.FLOAT16, [6])], [_vi("y", T.FLOAT16, [2, 3])], inits, opset=17)
    prog = widen_narrow_floats(import_model(model))
    ops = [(n.op_type, [prog.buffers[i].dtype.name for i in n.inputs if i], [prog.buffers[o].dtype.name for o in n.outputs])
           for n in prog.nodes]
    assert ops == [
        ("Reshape", ["float16", "int64"], ["float16"]),
        ("Cast", ["float16"], ["float32"]),
        ("Add", ["float32", "float32"], ["float32"]),
        ("Cast", ["float32"], ["float16"]),
    ]
    c32 = prog.buffers[prog.nodes[2].inputs[1]]
    assert c32.storage == "weight" and c32.data.dtype == np.float32


def test_int4_arithmetic_is_refused():
    model = _model([helper.make_node("Add", ["a", "b"], ["y"])], [_vi("a", T.INT4, [4]), _vi("b", T.INT4, [4])],
                   [_vi("y", T.INT4, [4])], opset=21)
    with pytest.raises(UnsupportedError, match=r"node Add '.*': tensor 'a' is int4, which only Cast, CastLike, QuantizeLinear"):
        widen_narrow_floats(import_model(model))


def _mixed_model() -> onnx.ModelProto:
    w = numpy_helper.from_array(np.linspace(-1, 1, 12).astype(np.float16).reshape(4, 3), "w")
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["h"]),
        helper.make_node("Softmax", ["h"], ["y"], axis=-1),
        helper.make_node("Cast", ["y"], ["yb"], to=T.BFLOAT16),
        helper.make_node("Cast", ["y"], ["y8"], to=T.FLOAT8E4M3FN),
        helper.make_node("Cast", ["x"], ["x4"], to=T.INT4),
    ]
    outs = [_vi("y", T.FLOAT16, [2, 3]), _vi("yb", T.BFLOAT16, [2, 3]), _vi("y8", T.FLOAT8E4M3FN, [2, 3]), _vi("x4", T.INT4, [2, 4])]
    return _model(nodes, [_vi("x", T.FLOAT16, [2, 4])], outs, [w], opset=21)


@pytest.mark.parametrize("cc", ["gcc", "clang"])
def test_narrow_model_is_strict_c99(tmp_path, cc):
    check_strict_c99(_mixed_model(), tmp_path / cc, cc, "mixed")


def test_narrow_model_in_wasm_matches_native(tmp_path):
    import shutil

    if shutil.which("emcc") is None:
        pytest.fail("emcc is missing: install emscripten")
    model = _mixed_model()
    x = (np.arange(8).reshape(2, 4) * 0.75 - 3).astype(np.float16)
    native = _run_native(model, tmp_path / "native", {"x": x})
    emit.export(model, target="wasm", out=tmp_path / "wasm")
    wasm = emit.load(tmp_path / "wasm")({"x": x})
    want = ReferenceEvaluator(model).run(None, {"x": x})
    for (name, got), ref in zip(native.items(), want):
        assert wasm[name].dtype == got.dtype == ref.dtype, name
        assert np.array_equal(_values(wasm[name]), _values(got), equal_nan=True), name
        assert np.array_equal(_values(got), _values(ref), equal_nan=True), name
    # the stdlib runner (Pyodide wheels) without numpy: bit patterns in and out
    import array

    from emit import wasm_runner

    plain = wasm_runner.load(tmp_path / "wasm")({"x": array.array("H", x.view(np.uint16).ravel().tolist())})
    assert plain["y"].typecode == "H" and plain["y"].tolist() == native["y"].view(np.uint16).tolist()
    assert np.array_equal(plain["yb"].numpy(), native["yb"]) and plain["x4"].numpy().dtype == ml_dtypes.int4


def test_narrow_model_on_cortex_m4_matches_native(tmp_path):
    """The firmware sees narrow tensors as bit patterns; QEMU's results equal the native build's."""
    import shutil

    from emit.build.firmware import run_firmware

    for tool in ("arm-none-eabi-gcc", "qemu-system-arm"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: apt-get install gcc-arm-none-eabi qemu-system-arm")
    model = _mixed_model()
    x = (np.arange(8).reshape(2, 4) * 0.75 - 3).astype(np.float16)
    native = _run_native(model, tmp_path / "native", {"x": x})
    info = emit.export(model, target="cortex-m4", out=tmp_path / "m4", name="mixed")
    assert info["firmware"]["warnings"] == []
    board = run_firmware(tmp_path / "m4", {"x": x})
    for name, got in native.items():
        assert board[name].dtype == got.dtype, name
        assert np.array_equal(_values(board[name]), _values(got), equal_nan=True), name
