"""The runtime C kernels on their own (runtime_c/gemm.c, conv.c), called through cffi on small
shapes and checked against numpy."""

from __future__ import annotations

import itertools
import math
import re
import shutil
import subprocess

import numpy as np
import pytest

from .helpers import REPO

RUNTIME = REPO / "runtime_c"
# every file the header declares (narrow.c: tests/test_narrow_types.py); built with a 2-thread pool (--threads 2),
# so the GEMMs above threads.c's size threshold run split across it
FILES = ["gemm.c", "conv.c", "narrow.c", "weights.c", "threads.c"]


def _cdef_from_header() -> str:
    """emit_runtime.h as cffi declarations: its integer #defines stay, other preprocessor lines go."""
    keep = []
    for line in (RUNTIME / "emit_runtime.h").read_text().splitlines():
        if line.startswith("#"):
            m = re.match(r"#define (EK_\w+) (\d+)", line)
            if m:
                keep.append(f"#define {m.group(1)} {m.group(2)}")
            continue
        keep.append(line)
    return "\n".join(keep)


# Winograd F(4x4, 3x3), which conv.c compiles only where asked (an export asks for the models that use it): the
# kernel tests run it on every build
WINO_F4 = "-DEK_WINO_F4"


def _build(tmp_path_factory, module: str, defines: list[str]):
    import cffi

    ffi = cffi.FFI()
    ffi.cdef(_cdef_from_header())
    ffi.set_source(
        module,
        '#include "emit_runtime.h"',
        sources=[str(RUNTIME / f) for f in FILES],
        include_dirs=[str(RUNTIME)],
        extra_compile_args=["-O2", "-DEK_THREADS=2", "-pthread", *defines],
        extra_link_args=["-pthread"],
        libraries=["m"],
    )
    tmp = tmp_path_factory.mktemp("ek")
    path = ffi.compile(tmpdir=str(tmp), verbose=False)
    import importlib.util

    spec = importlib.util.spec_from_file_location(module, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def rt(tmp_path_factory):
    return _build(tmp_path_factory, "_ek_kernels_test", [WINO_F4])


@pytest.fixture(scope="module")
def rt_plain(tmp_path_factory):
    """The kernels as a compiler without GCC vector extensions gets them."""
    return _build(tmp_path_factory, "_ek_kernels_plain_test", ["-DEK_NO_VECTOR_EXT"])


@pytest.mark.parametrize("cc", ["gcc", "clang"])
def test_kernels_compile_strict_c99(cc, tmp_path):
    if shutil.which(cc) is None:
        pytest.fail(f"{cc} is missing: apt-get install {cc}")
    flags = ["-std=c99", "-Wall", "-Wextra", "-pedantic", "-Werror", "-O2", "-c"]
    for f in FILES:
        for threads in ([[]] if f != "threads.c" else []) + [["-DEK_THREADS=2", "-pthread"]]:  # single-threaded and --threads
            proc = subprocess.run([cc, *flags, *threads, str(RUNTIME / f), "-o", str(tmp_path / f"{f}.o")], capture_output=True,
                                  text=True)
            assert proc.returncode == 0, proc.stderr
    # the portable fallback without GCC vector extensions must compile too
    proc = subprocess.run([cc, *flags, "-DEK_NO_VECTOR_EXT", str(RUNTIME / "gemm.c"), "-o", str(tmp_path / "g.o")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def _ptr(rt, arr: np.ndarray | None, ctype: str):
    return rt.ffi.NULL if arr is None else rt.ffi.from_buffer(f"{ctype}[]", arr)


ACTS = {
    "none": (0, 0.0, 0.0, lambda v: v),
    "relu": (1, 0.0, 0.0, lambda v: np.maximum(v, 0)),
    "clip": (2, -0.5, 0.75, lambda v: np.minimum(np.maximum(v, -0.5), 0.75)),
    "sigmoid": (3, 0.0, 0.0, lambda v: 1 / (1 + np.exp(-v))),
    "hardsigmoid": (4, 0.2, 0.5, lambda v: np.clip(0.2 * v + 0.5, 0, 1)),
    "hardswish": (5, 0.0, 0.0, lambda v: v * np.clip(v / 6 + 0.5, 0, 1)),
    "leakyrelu": (6, 0.1, 0.0, lambda v: np.where(v < 0, 0.1 * v, v)),
    "silu": (7, 0.0, 0.0, lambda v: v / (1 + np.exp(-v))),
}


def _gemm(rt, dtype, m, n, k, ta, tb, alpha=1.0, beta=0.0, bias_shape=None, act="none", seed=0, special_rows=False):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((k, m) if ta else (m, k)).astype(dtype)
    if special_rows:  # rows of C that are NaN, +inf and -inf: the activations must keep NaN and clamp infinities
        for row, v in ((1, np.nan), (4, np.inf), (6, -np.inf)):
            a[(slice(None), row) if ta else (row, slice(None))] = 0
            a[(0, row) if ta else (row, 0)] = v
    b = rng.standard_normal((n, k) if tb else (k, n)).astype(dtype)
    bias = None if bias_shape is None else rng.standard_normal(bias_shape).astype(dtype)
    c = np.full((m, n), np.nan, dtype)
    rs = cs = 0
    if bias is not None:
        full = np.broadcast_to(bias.reshape((1,) * (2 - bias.ndim) + bias.shape), (m, n))
        rs, cs = (s // bias.itemsize for s in full.strides)
    code, pa, pb, fn = ACTS[act]
    ctype = "float" if dtype == np.float32 else "double"
    gemm = rt.lib.ek_sgemm if dtype == np.float32 else rt.lib.ek_dgemm
    gemm(m, n, k, alpha, _ptr(rt, a, ctype), a.shape[1], int(ta), _ptr(rt, b, ctype), b.shape[1], int(tb), beta,
         _ptr(rt, bias, ctype), rs, cs, _ptr(rt, c, ctype), n, code, pa, pb)
    with np.errstate(invalid="ignore"):
        ref = alpha * ((a.T if ta else a).astype(np.float64) @ (b.T if tb else b).astype(np.float64))
    if bias is not None:
        ref = ref + beta * bias
    return c, fn(ref)


@pytest.mark.parametrize("m,n,k", [(1, 1, 1), (1, 37, 300), (3, 5, 7), (4, 8, 128), (5, 9, 129), (17, 33, 260), (70, 19, 5)])
@pytest.mark.parametrize("ta,tb", list(itertools.product([False, True], repeat=2)))
def test_sgemm_shapes_and_transposes(rt, m, n, k, ta, tb):
    got, ref = _gemm(rt, np.float32, m, n, k, ta, tb)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("build", ["rt_native", "rt_avx2"])
@pytest.mark.parametrize("n,k", [(4, 16), (10, 512), (37, 300), (512, 784)])
def test_sgemm_matrix_vector_dots_avx(request, build, n, k):
    """One row times B^T (a classifier's Gemm): 4 dot products at a time, their lanes folded by zips in AVX builds."""
    runtime = request.getfixturevalue(build)
    got, ref = _gemm(runtime, np.float32, 1, n, k, False, True)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("m,n,k,ta,tb", [(1, 9, 20, False, True), (2, 9, 20, False, False), (17, 33, 260, True, True), (6, 5, 9, False, False)])
def test_sgemm_portable_fallback(rt_plain, m, n, k, ta, tb):
    got, ref = _gemm(rt_plain, np.float32, m, n, k, ta, tb, alpha=2.0, beta=1.0, bias_shape=(n,), act="relu")
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("bias_shape", [None, (), (1,), (9,), (6, 1), (6, 9)])
def test_sgemm_alpha_beta_bias_broadcast(rt, bias_shape):
    got, ref = _gemm(rt, np.float32, 6, 9, 11, False, True, alpha=0.5, beta=-2.0, bias_shape=bias_shape)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


def test_sgemm_k_zero_is_the_bias_alone(rt):
    got, ref = _gemm(rt, np.float32, 5, 6, 0, False, False, beta=3.0, bias_shape=(6,))
    np.testing.assert_allclose(got, ref, rtol=1e-6)


@pytest.mark.parametrize("act", sorted(ACTS))
@pytest.mark.parametrize("m", [2, 9])  # the row path and the blocked path
def test_sgemm_activation_epilogue(rt, act, m):
    got, ref = _gemm(rt, np.float32, m, 10, 6, False, False, bias_shape=(10,), beta=1.0, act=act)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("act", sorted(ACTS))
def test_sgemm_row_bias_epilogue_in_registers(rt, rt_native, act):
    """A conv's epilogue (one bias per row, then the activation) is applied to a register tile before it is
    stored (sigmoid and SiLU by a vector e^x); other epilogues go through finish_row. Both must agree with numpy,
    NaN rows staying NaN and infinite rows going to the activation's limits."""
    for runtime in (rt, rt_native):
        for ta in (False, True):
            got, ref = _gemm(runtime, np.float32, 19, 70, 33, ta, False, beta=1.0, bias_shape=(19, 1), act=act,
                             special_rows=True)
            np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("m,n,k,ta,tb", [(1, 7, 5, False, True), (9, 5, 300, True, False), (13, 11, 140, True, True)])
def test_dgemm(rt, m, n, k, ta, tb):
    got, ref = _gemm(rt, np.float64, m, n, k, ta, tb, alpha=1.5, beta=0.25, bias_shape=(m, 1), act="leakyrelu")
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)


# ---- e^x, sigmoid, SiLU over arrays (the polynomial e^x of gemm.c) ----


@pytest.fixture(scope="module")
def rt_native(tmp_path_factory):
    """The kernels as the native target builds them (-O3 -march=native): the vectorised loops."""
    return _build(tmp_path_factory, "_ek_kernels_native_test", ["-O3", "-march=native", "-fno-strict-aliasing", WINO_F4])


@pytest.fixture(scope="module")
def rt_avx2(tmp_path_factory):
    """The native build on a machine without AVX-512 (vectors of 8 floats, 16 registers): -march=native less AVX-512,
    which runs wherever the native build does."""
    return _build(tmp_path_factory, "_ek_kernels_avx2_test",
                  ["-O3", "-march=native", "-mno-avx512f", "-fno-strict-aliasing", WINO_F4])


def _edge_values() -> np.ndarray:
    tiny, big = np.finfo(np.float32).tiny, np.finfo(np.float32).max
    edges = [0.0, -0.0, np.nan, -np.nan, np.inf, -np.inf, big, -big, tiny, -tiny, 1e-45, -1e-45, 1e-40, -1e-40,
             1e-8, -1e-8, 0.5, -0.5, 1, -1, 15, -15, 80, -80, 87.3, -87.3, 88.72, 88.73, 89, -89, 100, -100,
             103.9, -103.9, 104, -104, 110, -110, 1e10, -1e10]
    rng = np.random.default_rng(7)
    spread = np.concatenate([rng.uniform(-110, 110, 20000), rng.standard_normal(20000) * 4,
                             rng.uniform(-1e-3, 1e-3, 2000)])
    return np.concatenate([edges, spread]).astype(np.float32)  # 40 + 42000: a tail after the vector loop


def _check_close(got: np.ndarray, ref: np.ndarray, x: np.ndarray, denormal_scale=1.0) -> None:
    """Within 1e-6 relative where ref is a normal float32, 2 denormal steps (times denormal_scale) where it is
    below; NaN, inf exact."""
    with np.errstate(over="ignore"):
        ref32 = ref.astype(np.float32)
    assert np.array_equal(np.isnan(got), np.isnan(ref)), x[np.isnan(got) != np.isnan(ref)]
    inf = np.isinf(ref32)
    assert np.array_equal(got[inf], ref32[inf]), x[inf]
    ok = ~np.isnan(ref) & ~inf
    err = np.abs(got[ok].astype(np.float64) - ref[ok])
    tol = np.maximum(1e-6 * np.abs(ref[ok]), 2 * 2.0**-149 * np.broadcast_to(denormal_scale, ref.shape)[ok])
    bad = err > tol
    assert not bad.any(), list(zip(x[ok][bad][:5], got[ok][bad][:5], ref[ok][bad][:5]))


def _run(rt, fn: str, x: np.ndarray, in_place: bool) -> np.ndarray:
    y = x.copy() if in_place else np.full_like(x, 7.0)
    src = y if in_place else x
    getattr(rt.lib, fn)(_ptr(rt, src, "float"), _ptr(rt, y, "float"), x.size)
    return y


@pytest.mark.parametrize("in_place", [False, True])
@pytest.mark.parametrize("build", ["rt", "rt_native", "rt_plain"])
def test_sexp_ssigmoid_ssilu_vs_numpy(request, build, in_place):
    rt = request.getfixturevalue(build)
    x = _edge_values()
    xd = x.astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        e, sig = np.exp(xd), 1 / (1 + np.exp(-xd))
        # SiLU as the graph computes it, x * Sigmoid(x) in float32: below x = -87 the sigmoid is denormal
        silu = np.where(xd < -87, xd * sig.astype(np.float32), xd * sig)
    _check_close(_run(rt, "ek_sexp", x, in_place), e, x)
    _check_close(_run(rt, "ek_ssigmoid", x, in_place), sig, x)
    _check_close(_run(rt, "ek_ssilu", x, in_place), silu, x, np.maximum(1, np.abs(xd)))  # x * a denormal
    erf = np.array([math.erf(v) if np.isfinite(v) else (np.nan if np.isnan(v) else np.sign(v)) for v in xd.tolist()])
    _check_close(_run(rt, "ek_serf", x, in_place), erf, x)
    assert list(_run(rt, "ek_serf", np.array([np.inf, -np.inf, 0.0, 9.0, -9.0], np.float32), in_place)) == [1, -1, 0, 1, -1]
    # the limits exactly
    lim = np.array([np.inf, -np.inf, 0.0, 200.0, -200.0], np.float32)
    assert list(_run(rt, "ek_ssigmoid", lim, in_place)) == [1.0, 0.0, 0.5, 1.0, 0.0]
    assert list(_run(rt, "ek_sexp", lim, in_place)) == [np.inf, 0.0, 1.0, np.inf, 0.0]


@pytest.mark.parametrize("act", ["sigmoid", "silu"])
def test_sgemm_sigmoid_silu_epilogue_native(rt_native, act):
    for m in (2, 9):
        got, ref = _gemm(rt_native, np.float32, m, 37, 6, False, False, bias_shape=(37,), beta=1.0, act=act)
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("act", ["sigmoid", "silu"])
def test_sgemm_sigmoid_silu_epilogue_edges_native(rt_native, act):
    """The register epilogue's sigmoid over the edge values (a K = 1 product with a bias per row puts them in C's
    tiles): within 2e-6 relative, or flushed to 0 below e^-87.3 where the array functions give denormals; NaN kept,
    the infinities at their limits."""
    x = _edge_values()
    m, n = 9, x.size
    a, b, bias = np.ones((m, 1), np.float32), x.reshape(1, n).copy(), np.zeros(m, np.float32)
    c = np.full((m, n), 7.0, np.float32)
    code = ACTS[act][0]
    rt_native.lib.ek_sgemm(m, n, 1, 1.0, _ptr(rt_native, a, "float"), 1, 0, _ptr(rt_native, b, "float"), n, 0, 1.0,
                           _ptr(rt_native, bias, "float"), 1, 0, _ptr(rt_native, c, "float"), n, code, 0.0, 0.0)
    xd = x.astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        sig = 1 / (1 + np.exp(-xd))
        ref = sig if act == "sigmoid" else xd * sig
    for row in c:
        assert np.array_equal(np.isnan(row), np.isnan(ref)), x[np.isnan(row) != np.isnan(ref)]
        ok = ~np.isnan(ref)
        tol = np.maximum(2e-6 * np.abs(ref[ok]), 1.2e-38 * np.maximum(1, np.abs(xd[ok])))
        with np.errstate(invalid="ignore"):  # inf - inf
            bad = (row[ok] != ref[ok]) & ~(np.abs(row[ok] - ref[ok]) <= tol)
        assert not bad.any(), list(zip(x[ok][bad][:5], row[ok][bad][:5], ref[ok][bad][:5]))


@pytest.mark.parametrize("n", [1, 3, 4, 5, 8])
@pytest.mark.parametrize("tb", [True, False])
def test_sgemm_few_columns_native(rt_native, rt, n, tb):
    """N <= half a vector: the 4x4 dot-product blocks (rows and columns past the end repeat the last ones and are not
    stored), with bias and activation; a row-major B is transposed onto the stack first while N*K fits 256 vectors
    (k 2000: the panels instead)."""
    for runtime in (rt_native, rt):
        for m, k in ((13, 7), (4, 100), (9, 257), (6, 2000)):
            got, ref = _gemm(runtime, np.float32, m, n, k, False, tb, bias_shape=(m, 1), beta=0.5, act="relu")
            np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 + 1e-6 * k)  # float32 sums of k products


@pytest.mark.parametrize("m", [1, 3, 7])
def test_sgemm_few_rows_native(rt_native, m):
    """Fewer rows than a register block (matrix-vector products): chunks of the row in registers over all of K, the
    columns left by row updates."""
    for n, k in ((150, 70), (64, 1), (200, 513), (7, 33)):
        for tb in (False, True):
            got, ref = _gemm(rt_native, np.float32, m, n, k, False, tb, bias_shape=(n,), beta=1.0, act="relu")
            np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("scale_kind", ["column", "row", "one"])
@pytest.mark.parametrize("tb", [False, True])
def test_sgemm_q8_dequantises_as_it_packs(rt, rt_native, rt_avx2, scale_kind, tb):
    """ek_sgemm_q8: B int8 with scales is exactly the float32 GEMM of (float)B * scale. Shapes: a few rows, blocks of
    rows with a partial one, K past one block (128 floats; 512 with AVX), columns past the last whole vector."""
    rng = np.random.default_rng(5)
    for lib in (rt, rt_native, rt_avx2):
        for m, n, k in ((1, 40, 33), (13, 70, 300), (9, 3, 5), (37, 50, 600)):
            q = rng.integers(-127, 128, size=(n, k) if tb else (k, n)).astype(np.int8)
            scale = {"column": rng.random(n), "row": rng.random(k), "one": rng.random(1)}[scale_kind].astype(np.float32)
            ks, ns = {"column": (0, 1), "row": (1, 0), "one": (0, 0)}[scale_kind]
            bf = (q.T if tb else q).astype(np.float32) * (scale.reshape(-1, 1) if scale_kind == "row" else scale.reshape(1, -1))
            a = rng.standard_normal((m, k)).astype(np.float32)
            bias = rng.standard_normal(n).astype(np.float32)
            c = np.full((m, n), np.nan, np.float32)
            ffi = lib.ffi
            lib.lib.ek_sgemm_q8(m, n, k, 0.5, ffi.from_buffer("float[]", a), k, 0, ffi.from_buffer("int8_t[]", q), k if tb else n,
                                int(tb), ffi.from_buffer("float[]", scale), ks, ns, 1.0, ffi.from_buffer("float[]", bias), 0, 1,
                                ffi.from_buffer("float[]", c), n, 1, 0.0, 0.0)
            ref = np.maximum(0.5 * (a.astype(np.float64) @ bf) + bias, 0)
            bound = 1e-5 * (np.abs(a) @ np.abs(bf) + np.abs(bias))  # float32 rounding of the sum's terms
            assert np.all(np.abs(c - ref) <= bound), float(np.max(np.abs(c - ref) - bound))


def test_dgemm_silu_epilogue(rt):
    got, ref = _gemm(rt, np.float64, 9, 11, 7, False, True, bias_shape=(11,), beta=1.0, act="silu")
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)


# ---- convolution ----


def _desc(rt, n, c, m, group, inp, out, k, stride, dil, pad, tile, windows=0):
    """windows: ask for the windows path (conv.c takes it only for the shapes it fits: stride 1, several input
    channels per group), as the exporter does where ConvGeometry.by_windows says it costs less than im2col."""
    d = rt.ffi.new("ek_conv_desc *")
    d.n, d.c, d.m, d.group, d.tile, d.windows = n, c, m, group, tile, windows
    for field, v, fill in (("in", inp, 1), ("out", out, 1), ("k", k, 1), ("stride", stride, 1), ("dil", dil, 1), ("pad", pad, 0)):
        v = [fill] * (3 - len(v)) + list(v)
        setattr(d, field, v)
    return d


def ref_conv(x, w, b, stride, dil, pad, out):
    """Direct convolution in float64 (x padded with zeros on both sides as far as the windows reach)."""
    n, c = x.shape[:2]
    m, cg = w.shape[:2]
    g = c // cg
    mg = m // g
    ks = w.shape[2:]
    ends = [max(0, (o - 1) * s + (k - 1) * d + 1 - p - i) for o, s, k, d, p, i in zip(out, stride, ks, dil, pad, x.shape[2:])]
    xp = np.pad(x.astype(np.float64), [(0, 0), (0, 0)] + list(zip(pad, ends)))
    y = np.zeros((n, m, *out))
    for kpos in itertools.product(*[range(k) for k in ks]):
        sl = (slice(None), slice(None)) + tuple(
            slice(kp * d, kp * d + (o - 1) * s + 1, s) for kp, d, o, s in zip(kpos, dil, out, stride))
        win = xp[sl]
        for gi in range(g):
            wk = w[(slice(gi * mg, (gi + 1) * mg), slice(None), *kpos)].astype(np.float64)
            y[:, gi * mg:(gi + 1) * mg] += np.einsum("nc...,mc->nm...", win[:, gi * cg:(gi + 1) * cg], wk)
    if b is not None:
        y += b.reshape(1, -1, *[1] * len(out))
    return y


CONVS = [
    # name, n, c, m, group, in, k, stride, dil, pad (begin), pad (end)
    ("pointwise", 2, 8, 6, 1, (5, 7), (1, 1), (1, 1), (1, 1), (0, 0), (0, 0)),
    ("pointwise_strided", 1, 4, 3, 1, (6, 6), (1, 1), (2, 2), (1, 1), (0, 0), (0, 0)),
    ("3x3_pad", 1, 3, 5, 1, (9, 8), (3, 3), (1, 1), (1, 1), (1, 1), (1, 1)),
    ("3x3_stride_asym", 2, 4, 6, 1, (10, 9), (3, 3), (2, 3), (1, 1), (1, 0), (2, 1)),
    ("dilated", 1, 2, 4, 1, (11, 12), (3, 2), (1, 2), (2, 3), (2, 1), (2, 0)),
    ("grouped", 1, 6, 9, 3, (7, 7), (3, 3), (1, 1), (1, 1), (1, 1), (1, 1)),
    ("depthwise", 2, 5, 5, 5, (8, 9), (3, 3), (1, 1), (1, 1), (1, 1), (1, 1)),
    ("depthwise_mult_stride", 1, 3, 6, 3, (9, 10), (3, 5), (2, 2), (1, 2), (1, 2), (1, 2)),
    # planes up to 160 wide: bands of rows copied with their padding, then taps without bounds checks (dw_banded)
    ("depthwise_small_5x5_s2", 1, 4, 4, 4, (11, 13), (5, 5), (2, 2), (1, 1), (2, 1), (2, 2)),
    ("depthwise_small_3x3_asym", 2, 3, 3, 3, (7, 7), (3, 3), (1, 1), (1, 1), (0, 1), (2, 1)),
    ("depthwise_small_7x7", 1, 2, 2, 2, (9, 8), (7, 7), (1, 1), (1, 1), (3, 3), (3, 3)),
    ("depthwise_bands_3x3", 1, 2, 2, 2, (90, 100), (3, 3), (1, 1), (1, 1), (1, 0), (1, 2)),  # 3 bands of 38 rows
    ("depthwise_bands_5x5_s2", 1, 2, 2, 2, (101, 150), (5, 5), (2, 2), (1, 1), (2, 2), (1, 2)),
    ("depthwise_even_6x6", 1, 2, 2, 2, (12, 11), (6, 6), (1, 1), (1, 1), (3, 2), (2, 3)),  # generic K
    # stride 1 along rows: vectors of outputs in blocks of 4 rows (a row left over, the last vector overlapping the
    # one before it), or the band as one row when rows are shorter than a vector
    ("depthwise_rows_3x3", 1, 2, 2, 2, (10, 35), (3, 3), (1, 1), (1, 1), (0, 1), (2, 1)),
    # 3x3 stride 1 padded by 1 all round in AVX builds: whole rows, their padding columns masked off in registers, of
    # the plane copied to the stack between rows of zeros (up to 1024 elements), or read in place but for two border
    # rows at each end (none between them; one row; no padding column on the right; rows shorter than a vector)
    ("depthwise_s1_in_place", 2, 3, 3, 3, (9, 40), (3, 3), (1, 1), (1, 1), (1, 1), (1, 1)),
    ("depthwise_s1_in_place_border_rows_only", 1, 2, 2, 2, (4, 18), (3, 3), (1, 1), (1, 1), (1, 1), (1, 1)),
    ("depthwise_s1_in_place_one_row", 1, 2, 2, 2, (5, 17), (3, 3), (1, 1), (1, 1), (1, 1), (1, 1)),
    ("depthwise_s1_in_place_no_end_pad", 1, 2, 2, 2, (8, 40), (3, 3), (1, 1), (1, 1), (1, 1), (0, 0)),
    ("depthwise_s1_in_place_large", 1, 2, 2, 2, (30, 40), (3, 3), (1, 1), (1, 1), (1, 1), (1, 1)),
    ("depthwise_s1_in_place_large_no_end_pad", 1, 2, 2, 2, (30, 41), (3, 3), (1, 1), (1, 1), (1, 1), (0, 0)),
    ("depthwise_s1_in_place_large_short_rows", 1, 2, 2, 2, (70, 12), (3, 3), (1, 1), (1, 1), (1, 1), (1, 1)),
    ("depthwise_rows_5x5_stride_2_1", 1, 3, 3, 3, (12, 37), (5, 5), (2, 1), (1, 1), (2, 2), (2, 2)),  # ppocr rec
    ("depthwise_rows_3x3_stride_2_1", 1, 2, 4, 2, (9, 20), (3, 3), (2, 1), (1, 1), (1, 1), (1, 1)),
    ("depthwise_rows_7x7", 1, 2, 2, 2, (11, 23), (7, 7), (1, 1), (1, 1), (3, 3), (3, 3)),
    # stride 2 with rows of >= 24 outputs: split into 4 phase planes (row and column parity), odd and even padding
    ("depthwise_phases_3x3", 1, 3, 3, 3, (50, 61), (3, 3), (2, 2), (1, 1), (1, 0), (0, 1)),
    ("depthwise_phases_4x4", 1, 2, 2, 2, (30, 60), (4, 4), (2, 2), (1, 1), (1, 2), (2, 1)),
    # 3x3 stride 2 in AVX builds: padded rows straight, three tap vectors unzipped from each (rows of a vector or more)
    ("depthwise_s2_rows_3x3", 1, 5, 5, 5, (9, 40), (3, 3), (2, 2), (1, 1), (1, 1), (1, 1)),
    ("depthwise_s2_unpadded_odd", 1, 3, 3, 3, (11, 37), (3, 3), (2, 2), (1, 1), (0, 0), (0, 0)),
    ("depthwise_s2_bands", 1, 2, 2, 2, (40, 300), (3, 3), (2, 2), (1, 1), (1, 0), (1, 1)),  # bands of 6 rows
    # ... and as stride 1 where the padding is 1 at the top and left (the first and last output row from the stack:
    # a row of padding below the last; no rows between them; rows shorter than a vector, a plane copied or not)
    ("depthwise_s2_in_place", 2, 4, 4, 4, (12, 40), (3, 3), (2, 2), (1, 1), (1, 1), (1, 1)),
    ("depthwise_s2_in_place_last_column_padded", 1, 3, 3, 3, (10, 39), (3, 3), (2, 2), (1, 1), (1, 1), (1, 1)),
    ("depthwise_s2_in_place_no_end_pad", 1, 17, 17, 17, (12, 40), (3, 3), (2, 2), (1, 1), (1, 1), (0, 0)),
    ("depthwise_s2_in_place_last_row_padded", 1, 2, 2, 2, (11, 41), (3, 3), (2, 2), (1, 1), (1, 1), (1, 1)),
    ("depthwise_s2_in_place_border_rows_only", 1, 2, 2, 2, (4, 34), (3, 3), (2, 2), (1, 1), (1, 1), (1, 1)),
    ("depthwise_s2_in_place_large", 1, 2, 2, 2, (40, 41), (3, 3), (2, 2), (1, 1), (1, 1), (1, 1)),
    ("depthwise_s2_in_place_large_last_row_padded", 1, 2, 2, 2, (41, 40), (3, 3), (2, 2), (1, 1), (1, 1), (1, 1)),
    ("depthwise_s2_in_place_large_border_rows_only", 1, 2, 2, 2, (4, 301), (3, 3), (2, 2), (1, 1), (1, 1), (1, 1)),
    ("depthwise_s2_in_place_short_rows", 1, 3, 3, 3, (20, 20), (3, 3), (2, 2), (1, 1), (1, 1), (1, 1)),
    ("depthwise_s2_in_place_large_short_rows", 1, 2, 2, 2, (80, 28), (3, 3), (2, 2), (1, 1), (1, 1), (1, 1)),
    # rows of 16 outputs or fewer: a vector's worth of channels at a time, interleaved on the stack (dw_by_lanes): more
    # channels than lanes with some left over, bands of rows, 7x7; rows of 17-23 at stride 2 stay on the banded path
    ("depthwise_lanes_channels", 2, 37, 37, 37, (14, 14), (3, 3), (1, 1), (1, 1), (1, 1), (1, 1)),
    ("depthwise_lanes_bands_s2", 1, 20, 20, 20, (31, 31), (3, 3), (2, 2), (1, 1), (1, 1), (1, 1)),
    ("depthwise_lanes_7x7", 1, 18, 18, 18, (7, 9), (7, 7), (1, 1), (1, 1), (3, 3), (3, 3)),
    # each row interleaved straight into its padded place, the last column unread, blocks read past the rows' ends
    ("depthwise_lanes_s2_last_column_unread", 1, 16, 16, 16, (12, 12), (3, 3), (2, 2), (1, 1), (0, 0), (0, 0)),
    ("depthwise_banded_5x5_s2", 1, 3, 3, 3, (40, 41), (5, 5), (2, 2), (1, 1), (2, 2), (2, 2)),
    # rows wider than 160: row by row, tap ranges and fused 3/5-tap rows for the interior
    ("depthwise_wide", 1, 2, 2, 2, (4, 175), (3, 3), (1, 1), (1, 1), (1, 1), (1, 1)),
    ("depthwise_wide_stride2", 1, 2, 4, 2, (5, 390), (3, 3), (2, 2), (1, 1), (1, 1), (1, 1)),
    ("depthwise_wide_5x5", 1, 2, 2, 2, (6, 200), (5, 5), (1, 1), (1, 1), (2, 2), (2, 2)),
    ("single_channel_5x5", 1, 1, 3, 1, (6, 40), (5, 5), (1, 1), (1, 1), (2, 2), (2, 2)),
    ("depthwise_wide_dilated", 1, 2, 2, 2, (4, 80), (3, 3), (1, 1), (2, 3), (2, 3), (2, 3)),
    ("conv1d", 2, 3, 4, 1, (13,), (4,), (2,), (1,), (1,), (2,)),
    # stride 1, several input channels: shifted windows of a padded band of rows (bands of `tile` rows), no im2col
    ("windows_dilated_bands", 2, 4, 6, 2, (17, 27), (3, 2), (1, 1), (2, 3), (2, 0), (1, 3)),
    ("windows_conv1d", 1, 3, 4, 1, (80,), (5,), (1,), (2,), (3,), (1,)),
    ("windows_wide_tiles", 1, 5, 19, 1, (9, 70), (3, 3), (1, 1), (1, 1), (1, 1), (1, 1)),
    ("windows_unpadded", 1, 32, 64, 1, (23, 23), (3, 3), (1, 1), (1, 1), (0, 0), (0, 0)),
    # many input channels for few outputs: one padded band, not column planes
    ("windows_band_few_outputs", 1, 12, 3, 1, (9, 40), (3, 3), (1, 1), (1, 1), (1, 1), (1, 2)),
    # stride 2: windows over 2 * KW column planes of the band (row parity, tap column), the GEMM writing y
    ("windows_stride2_7x7", 1, 3, 5, 1, (19, 17), (7, 7), (2, 2), (1, 1), (3, 2), (3, 3)),
    ("windows_stride2_grouped", 2, 8, 6, 2, (9, 12), (3, 3), (2, 2), (1, 1), (1, 0), (1, 1)),
    ("windows_stride2_4x4", 1, 4, 3, 1, (10, 11), (4, 4), (2, 2), (1, 1), (1, 1), (2, 1)),
    ("windows_stride2_pad_past_row", 1, 3, 4, 1, (6, 5), (3, 3), (2, 2), (1, 1), (2, 3), (3, 4)),  # zero rows
    # rows of several vectors: each plane row's last vector overlaps the one before, the odd lanes from one element
    # back where the even ones would read past the row (tap column 2 of a stem padded by 1, odd and even widths)
    ("windows_stride2_wide_stem", 1, 3, 8, 1, (9, 91), (3, 3), (2, 2), (1, 1), (1, 1), (1, 1)),
    ("windows_stride2_wide_even", 1, 3, 5, 1, (7, 112), (3, 3), (2, 2), (1, 1), (1, 1), (1, 1)),
    ("windows_stride2_wide_unpadded", 1, 2, 5, 1, (7, 100), (3, 3), (2, 2), (1, 1), (0, 0), (0, 0)),
    ("windows_stride2_wide_5x5", 1, 2, 3, 1, (11, 75), (5, 5), (2, 2), (1, 1), (2, 2), (1, 1)),
    # one input channel, unpadded (an STFT): windows read in place as B^T rows, few columns (dot products)
    ("stft", 2, 1, 9, 1, (70,), (16,), (8,), (1,), (0,), (0,)),
    ("stft_uneven", 1, 1, 5, 1, (37,), (9,), (4,), (1,), (0,), (0,)),
    ("conv3d", 1, 2, 3, 1, (4, 5, 6), (2, 3, 3), (1, 2, 1), (1, 1, 2), (0, 1, 2), (1, 1, 2)),
]


@pytest.mark.parametrize("case", CONVS, ids=[c[0] for c in CONVS])
@pytest.mark.parametrize("tile", [0, 7])  # 0: every output pixel in one im2col chunk
@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("windows", [0, 1])  # stride-1 cases both ways: im2col and windows
def test_sconv_vs_numpy(rt, case, tile, with_bias, windows):
    _, n, c, m, group, inp, k, stride, dil, pad, pad_end = case
    out = [(i + p + e - ((kk - 1) * d + 1)) // s + 1 for i, p, e, kk, d, s in zip(inp, pad, pad_end, k, dil, stride)]
    rng = np.random.default_rng(1)
    x = rng.standard_normal((n, c, *inp)).astype(np.float32)
    w = rng.standard_normal((m, c // group, *k)).astype(np.float32)
    b = rng.standard_normal(m).astype(np.float32) if with_bias else None
    tile = tile or int(np.prod(out))
    d = _desc(rt, n, c, m, group, inp, out, k, stride, dil, pad, tile, windows)
    scratch = np.zeros(max(1, rt.lib.ek_conv_scratch(d)), np.float32)
    y = np.full((n, m, *out), np.nan, np.float32)
    rt.lib.ek_sconv(d, _ptr(rt, x, "float"), _ptr(rt, w, "float"), _ptr(rt, b, "float"), _ptr(rt, y, "float"),
                    _ptr(rt, scratch, "float"), 1, 0.0, 0.0)
    ref = np.maximum(ref_conv(x, w, b, stride, dil, pad, out), 0)
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4)


DEPTHWISE = [c for c in CONVS if c[2] == c[4] and c[3] % c[4] == 0 and len(c[5]) == 2]


@pytest.mark.parametrize("case", DEPTHWISE, ids=[c[0] for c in DEPTHWISE])
@pytest.mark.parametrize("build", ["rt_native", "rt_avx2"])
def test_sconv_depthwise_native(request, build, case):
    """The depthwise kernels as the AVX builds compile them (vectors of 16 or 8: other rows are short)."""
    rt_native = request.getfixturevalue(build)
    _, n, c, m, group, inp, k, stride, dil, pad, pad_end = case
    out = [(i + p + e - ((kk - 1) * d + 1)) // s + 1 for i, p, e, kk, d, s in zip(inp, pad, pad_end, k, dil, stride)]
    rng = np.random.default_rng(3)
    x = rng.standard_normal((n, c, *inp)).astype(np.float32)
    w = rng.standard_normal((m, c // group, *k)).astype(np.float32)
    b = rng.standard_normal(m).astype(np.float32)
    d = _desc(rt_native, n, c, m, group, inp, out, k, stride, dil, pad, int(np.prod(out)))
    size = n * m * int(np.prod(out))
    buf = np.full(size + 64, np.nan, np.float32)  # and after y: nothing may be written there
    y = buf[:size].reshape(n, m, *out)
    rt_native.lib.ek_sconv(d, _ptr(rt_native, x, "float"), _ptr(rt_native, w, "float"), _ptr(rt_native, b, "float"),
                           _ptr(rt_native, y, "float"), rt_native.ffi.NULL, 0, 0.0, 0.0)
    np.testing.assert_allclose(y, ref_conv(x, w, b, stride, dil, pad, out), rtol=1e-4, atol=1e-4)
    assert np.isnan(buf[size:]).all()


@pytest.mark.parametrize("case", [c for c in DEPTHWISE if "in_place" in c[0]], ids=lambda c: c[0])
@pytest.mark.parametrize("build", ["rt_native", "rt_avx2"])
def test_sconv_depthwise_in_place_infinite_neighbours(request, build, case):
    """Rows read in place have the plane's neighbouring elements where the padding columns are: masked off, an inf
    there must not reach the outputs whose windows lie in the padding (0 * inf would make them NaN)."""
    rt = request.getfixturevalue(build)
    _, n, c, m, group, inp, k, stride, dil, pad, pad_end = case
    out = [(i + p + e - ((kk - 1) * d + 1)) // s + 1 for i, p, e, kk, d, s in zip(inp, pad, pad_end, k, dil, stride)]
    rng = np.random.default_rng(4)
    x = rng.standard_normal((n, c, *inp)).astype(np.float32)
    x[..., 0] = np.inf  # the element after each row's end
    x[..., -1] = -np.inf  # and before each row's start
    w = np.abs(rng.standard_normal((m, c // group, *k))).astype(np.float32)  # an edge output: +inf or -inf, not NaN
    d = _desc(rt, n, c, m, group, inp, out, k, stride, dil, pad, int(np.prod(out)))
    y = np.full((n, m, *out), np.nan, np.float32)
    rt.lib.ek_sconv(d, _ptr(rt, x, "float"), _ptr(rt, w, "float"), rt.ffi.NULL, _ptr(rt, y, "float"), rt.ffi.NULL,
                    0, 0.0, 0.0)
    ref = ref_conv(x, w, None, stride, dil, pad, out)
    assert np.isinf(ref[..., 0]).all() and not np.isnan(ref).any()
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4)


# convolutions conv.c runs as a GEMM, with more than EK_PACK_ROWS output channels per group (weights packed at export)
PACKED_CONVS = [c for c in CONVS if c[3] // c[4] >= 8 and (c[2] // c[4] > 1 or c[5] == (1,) * len(c[5]) == c[6])] + [
    ("pointwise_in_place", 1, 16, 24, 1, (9, 10), (1, 1), (1, 1), (1, 1), (0, 0), (0, 0)),  # B's panels read in place
    ("pointwise_rows_512_bytes", 1, 16, 24, 1, (8, 16), (1, 1), (1, 1), (1, 1), (0, 0), (0, 0)),  # packed instead
    ("pointwise_split_by_rows", 1, 64, 203, 1, (5, 5), (1, 1), (1, 1), (1, 1), (0, 0), (0, 0)),  # 2 threads, 26 groups
    ("im2col_grouped_padded_rows", 2, 6, 27, 3, (7, 9), (3, 3), (2, 1), (1, 1), (1, 1), (1, 0)),  # 9 rows: 16 packed
    ("windows_many_rows", 1, 8, 40, 2, (12, 40), (3, 3), (1, 1), (1, 1), (1, 1), (1, 1)),
    ("windows_wide_k", 1, 200, 16, 1, (3, 70), (3, 3), (1, 1), (1, 1), (1, 1), (1, 1)),  # K = 1800: 15 K blocks
    # 17-63 columns (packed in groups of EK_PACK_FEW: AVX-512 builds' channels-along-vectors tiles, a partial panel of
    # 3 groups, a partial tile of positions, K blocks; others read the groups as strided rows)
    ("pointwise_few_positions", 1, 24, 40, 1, (5, 7), (1, 1), (1, 1), (1, 1), (0, 0), (0, 0)),
    ("windows_few_positions", 1, 8, 70, 1, (6, 6), (3, 3), (1, 1), (1, 1), (1, 1), (1, 1)),
    ("windows_stride2_7x7_packed", 1, 3, 20, 1, (21, 22), (7, 7), (2, 2), (1, 1), (3, 3), (3, 3)),
    ("windows_stride2_few_positions", 1, 6, 36, 1, (13, 13), (5, 5), (2, 2), (1, 1), (2, 2), (2, 2)),  # 7x7 outputs
    ("pointwise_few_positions_k_blocks", 1, 600, 20, 1, (4, 6), (1, 1), (1, 1), (1, 1), (0, 0), (0, 0)),
    # a last panel of at most 12 columns (AVX-512 builds: rows along 8-lane vectors), 5 row groups (a tile of 4 and
    # one of 1); and over 2 K blocks, 3 row groups, the last partial
    ("pointwise_tail_columns", 1, 16, 40, 1, (10, 10), (1, 1), (1, 1), (1, 1), (0, 0), (0, 0)),
    ("pointwise_tail_columns_k_blocks", 1, 600, 20, 1, (7, 10), (1, 1), (1, 1), (1, 1), (0, 0), (0, 0)),
]


@pytest.mark.parametrize("case", PACKED_CONVS, ids=[c[0] for c in PACKED_CONVS])
@pytest.mark.parametrize("build", ["rt", "rt_native", "rt_avx2"])
@pytest.mark.parametrize("windows", [0, 1])
def test_sconv_packed_weights(request, case, build, windows):
    """Weights in the export-time packed layouts (emit/passes/pack_weights.py: groups of EK_PACK_ROWS or EK_PACK_FEW
    rows) give the plain layout's results, bit for bit (same products in the same order), whether B is packed or read
    in place and however threads split."""
    from emit.passes.pack_weights import PACK_FEW, PACK_ROWS, pack_rows

    runtime = request.getfixturevalue(build)
    name, n, c, m, group, inp, k, stride, dil, pad, pad_end = case
    out = [(i + p + e - ((kk - 1) * d + 1)) // s + 1 for i, p, e, kk, d, s in zip(inp, pad, pad_end, k, dil, stride)]
    # 2-D: bands of 11 rows, or im2col chunks of 11 pixels; not for the windows cases' 441 pixels by im2col, whose
    # 1-pixel tail the plain layout's ek_sgemm runs as dot products (summed in another order than the panels)
    tile = 11 if len(inp) == 2 and (windows or not name.startswith("windows")) else int(np.prod(out))
    rng = np.random.default_rng(5)
    x = rng.standard_normal((n, c, *inp)).astype(np.float32)
    w = rng.standard_normal((m, c // group, *k)).astype(np.float32)
    b = rng.standard_normal(m).astype(np.float32)
    ys = []
    for packed in (0, PACK_ROWS, PACK_FEW):
        d = _desc(runtime, n, c, m, group, inp, out, k, stride, dil, pad, tile, windows)
        d.packed = packed
        wp = pack_rows(w, group, packed) if packed else w
        scratch = np.zeros(max(1, runtime.lib.ek_conv_scratch(d)), np.float32)
        y = np.full((n, m, *out), np.nan, np.float32)
        runtime.lib.ek_sconv(d, _ptr(runtime, x, "float"), _ptr(runtime, wp, "float"), _ptr(runtime, b, "float"),
                             _ptr(runtime, y, "float"), _ptr(runtime, scratch, "float"), 1, 0.0, 0.0)
        ys.append(y)
    np.testing.assert_allclose(ys[1], np.maximum(ref_conv(x, w, b, stride, dil, pad, out), 0), rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(ys[1], ys[0])
    np.testing.assert_array_equal(ys[2], ys[0])


@pytest.mark.parametrize("act,a,b", [(0, 0.0, 0.0), (2, -0.5, 0.75), (3, 0.0, 0.0), (6, 0.1, 0.0)],
                         ids=["none", "clip", "sigmoid", "leakyrelu"])
@pytest.mark.parametrize("shape", [(24, 40, (5, 7)), (600, 20, (4, 6)), (8, 100, (7, 3))], ids=["one_k_block",
                                                                                              "k_blocks", "few_rows"])
def test_sconv_few_positions_epilogues(rt_native, act, a, b, shape):
    """AVX-512's channels-along-vectors tiles (17-63 positions): the bias and a clip or none in registers, others on
    C's rows after; the same values as the plain layout's tiles (bit for bit where both take the registers' path)."""
    from emit.passes.pack_weights import PACK_FEW, pack_rows

    c, m, inp = shape
    rng = np.random.default_rng(7)
    x = rng.standard_normal((1, c, *inp)).astype(np.float32)
    w = rng.standard_normal((m, c, 1, 1)).astype(np.float32)
    bias = rng.standard_normal(m).astype(np.float32)
    ys = []
    for packed in (0, PACK_FEW):
        d = _desc(rt_native, 1, c, m, 1, inp, inp, (1, 1), (1, 1), (1, 1), (0, 0), int(np.prod(inp)))
        d.packed = packed
        y = np.full((1, m, *inp), np.nan, np.float32)
        rt_native.lib.ek_sconv(d, _ptr(rt_native, x, "float"), _ptr(rt_native, pack_rows(w, 1, packed) if packed else w,
                               "float"), _ptr(rt_native, bias, "float"), _ptr(rt_native, y, "float"),
                               _ptr(rt_native, None, "float"), act, a, b)
        ys.append(y)
    z = np.einsum("mc,nchw->nmhw", w[:, :, 0, 0].astype(np.float64), x) + bias[None, :, None, None]
    ref = {0: z, 2: np.clip(z, a, b), 3: 1 / (1 + np.exp(-z)), 6: np.where(z < 0, a * z, z)}[act]
    np.testing.assert_allclose(ys[1], ref, rtol=1e-4, atol=1e-4)
    if act in (0, 2):
        np.testing.assert_array_equal(ys[1], ys[0])
    else:
        np.testing.assert_allclose(ys[1], ys[0], rtol=1e-6, atol=1e-6)


WINOGRAD_CONVS = [
    # name, n, c, m, in, pad (begin), pad (end), rows of tiles per band
    ("odd_sizes_bands", 1, 9, 11, (9, 11), (1, 1), (1, 1), 2),  # last band short, last tile of a row half outside
    ("unpadded_batch", 2, 6, 16, (8, 8), (0, 0), (0, 0), 1),
    ("asymmetric_pads", 1, 5, 21, (13, 7), (2, 1), (0, 2), 3),  # 13x8 outputs; 21 rows: a partial packed group
    ("k_blocks", 1, 600, 10, (6, 6), (1, 1), (1, 1), 3),  # the 16 GEMMs' K past one block
]


@pytest.mark.parametrize("case", WINOGRAD_CONVS, ids=[c[0] for c in WINOGRAD_CONVS])
@pytest.mark.parametrize("build", ["rt", "rt_native", "rt_avx2"])
@pytest.mark.parametrize("tile", [2, 4])
def test_sconv_winograd(request, case, build, tile):
    """d->winograd = F(tile x tile, 3x3) with weights from emit/passes/winograd.py, packed and not: the convolution
    (and its bias and activation), within float32 rounding of the transforms' sums."""
    from emit.passes.pack_weights import PACK_ROWS
    from emit.passes.winograd import winograd_weights

    runtime = request.getfixturevalue(build)
    name, n, c, m, inp, pad, pad_end, rows = case
    out = [i + p + e - 2 for i, p, e in zip(inp, pad, pad_end)]
    rng = np.random.default_rng(7)
    x = rng.standard_normal((n, c, *inp)).astype(np.float32)
    w = rng.standard_normal((m, c, 3, 3)).astype(np.float32)
    b = rng.standard_normal(m).astype(np.float32)
    ref = np.maximum(ref_conv(x, w, b, (1, 1), (1, 1), pad, out), 0)
    bound = 1e-5 * (np.abs(ref_conv(np.abs(x), np.abs(w), np.abs(b), (1, 1), (1, 1), pad, out)) + 1)
    for packed in (0, PACK_ROWS):
        d = _desc(runtime, n, c, m, 1, inp, out, (3, 3), (1, 1), (1, 1), pad, rows)
        d.winograd, d.packed = tile, packed
        u = winograd_weights(w, packed=bool(packed), tile=tile)
        scratch = np.full(runtime.lib.ek_conv_scratch(d), np.nan, np.float32)
        y = np.full((n, m, *out), np.nan, np.float32)
        runtime.lib.ek_sconv(d, _ptr(runtime, x, "float"), _ptr(runtime, u, "float"), _ptr(runtime, b, "float"),
                             _ptr(runtime, y, "float"), _ptr(runtime, scratch, "float"), 1, 0.0, 0.0)
        assert np.all(np.abs(y - ref) <= bound), (packed, float(np.max(np.abs(y - ref) - bound)))


def test_sconv_winograd_f4_not_compiled_gives_nan(rt_plain):
    """A build without EK_WINO_F4 (the runtime files of an export with no F(4x4) conv, given another model's
    descriptors) has no F(4x4): its outputs are all NaN, never what y held before."""
    d = _desc(rt_plain, 1, 4, 3, 1, (8, 8), (8, 8), (3, 3), (1, 1), (1, 1), (1, 1), 2)
    d.winograd = 4
    x, u = np.ones((1, 4, 8, 8), np.float32), np.ones((36 * 3, 4), np.float32)
    y = np.zeros((1, 3, 8, 8), np.float32)
    scratch = np.zeros(rt_plain.lib.ek_conv_scratch(d), np.float32)
    rt_plain.lib.ek_sconv(d, _ptr(rt_plain, x, "float"), _ptr(rt_plain, u, "float"), _ptr(rt_plain, None, "float"),
                          _ptr(rt_plain, y, "float"), _ptr(rt_plain, scratch, "float"), 0, 0.0, 0.0)
    assert np.isnan(y).all()


def test_conv_scratch_sizes(rt):
    d = _desc(rt, 1, 8, 4, 1, (5, 5), (5, 5), (1, 1), (1, 1), (1, 1), (0, 0), 25)
    assert rt.lib.ek_conv_scratch(d) == 0  # 1x1: a GEMM straight on x
    d = _desc(rt, 1, 8, 8, 8, (5, 5), (5, 5), (3, 3), (1, 1), (1, 1), (1, 1), 25)
    assert rt.lib.ek_conv_scratch(d) == 0  # depthwise: direct
    d = _desc(rt, 1, 8, 4, 2, (5, 5), (5, 5), (3, 3), (1, 1), (1, 1), (1, 1), 10)
    assert rt.lib.ek_conv_transpose_scratch(d) == 2 * 9 * 10
    assert rt.lib.ek_conv_scratch(d) == 4 * 9 * 10  # im2col of 10 pixels at a time
    # by windows: 3 column planes per channel of the band's 12 input rows of the 16 output columns (10 output rows)
    d = _desc(rt, 1, 8, 8, 2, (16, 16), (16, 16), (3, 3), (1, 1), (1, 1), (1, 1), 10, windows=1)
    assert rt.lib.ek_conv_scratch(d) == 4 * 3 * 12 * 16
    # 2 output channels per group for 4 input channels (2 * 4 extra copies > 2 * 2): one band of the 12 input rows
    # of 16 + 2 padded columns, then the 2 output channels' rows of that length; so for a kernel of one row
    d = _desc(rt, 1, 8, 4, 2, (16, 16), (16, 16), (3, 3), (1, 1), (1, 1), (1, 1), 10, windows=1)
    assert rt.lib.ek_conv_scratch(d) == 4 * 12 * 18 + 2 * (9 * 18 + 16)
    d = _desc(rt, 1, 8, 8, 2, (16, 16), (16, 16), (1, 3), (1, 1), (1, 1), (0, 1), 10, windows=1)
    assert rt.lib.ek_conv_scratch(d) == 4 * 10 * 18 + 4 * (9 * 18 + 16)
    d = _desc(rt, 1, 8, 4, 2, (5, 5), (3, 2), (3, 3), (2, 3), (1, 1), (1, 1), 9, windows=1)
    assert rt.lib.ek_conv_scratch(d) == 4 * 9 * 9  # strides 2 and 3: windows do not fit, im2col
    # one input channel for 6 outputs (wasm's lenet), 5x5 padded by 2: 5 column planes of the band's 32 input rows
    # of the 28 output columns; without windows, a direct kernel per output channel, no scratch
    d = _desc(rt, 1, 1, 6, 1, (28, 28), (28, 28), (5, 5), (1, 1), (1, 1), (2, 2), 28, windows=1)
    assert rt.lib.ek_conv_scratch(d) == 5 * 32 * 28
    d.windows = 0
    assert rt.lib.ek_conv_scratch(d) == 0
    # stride 2: 2 * 3 column planes per channel of 3 + 1 rows of the 5 output columns; the GEMM writes y itself
    d = _desc(rt, 1, 8, 4, 2, (10, 10), (5, 5), (3, 3), (2, 2), (1, 1), (1, 1), 3, windows=1)
    assert rt.lib.ek_conv_scratch(d) == 4 * 6 * 4 * 5
    # Winograd F(2x2): 3 rows of 9 tiles (17 columns) of V (8 channels) and of the products (4 channels), 16 of each,
    # then 4 strips of the band's 3 padded input rows of 2 * 9 + 2 (+ 2), their 16 transforms over 3 * 10 tiles, and
    # the band's 4 outputs per tile; F(4x4): 3 rows of 5 tiles, 36 of each, the band's 3 * 4 + 2 input rows in column
    # phases (4 * (5 + 1) columns) and 6 transformed ones, 16 outputs per tile
    from emit.ops.conv import ConvGeometry  # what the exporter reserves in the arena

    d = _desc(rt, 1, 8, 4, 1, (17, 17), (17, 17), (3, 3), (1, 1), (1, 1), (1, 1), 3)
    for tile, size in ((2, 16 * (8 + 4) * 3 * 9 + 4 * (3 * 20 + 2) + 16 * 3 * 10 + 4 * 3 * 9),
                       (4, 36 * (8 + 4) * 3 * 5 + (14 + 6) * 24 + 16 * 3 * 5)):
        d.winograd = tile
        assert rt.lib.ek_conv_scratch(d) == size
        g = ConvGeometry(1, 8, 4, 1, [1, 17, 17], [1, 17, 17], [1, 3, 3], [1, 1, 1], [1, 1, 1], [0, 1, 1],
                         winograd=tile)
        assert g.winograd_scratch(3) == size


def test_dconv_vs_numpy(rt):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((1, 4, 6, 7))
    w = rng.standard_normal((6, 2, 3, 2))
    b = rng.standard_normal(6)
    out = [6, 4]
    d = _desc(rt, 1, 4, 6, 2, (6, 7), out, (3, 2), (1, 2), (1, 1), (1, 1), 5)
    scratch = np.zeros(rt.lib.ek_conv_scratch(d))
    y = np.zeros((1, 6, *out))
    rt.lib.ek_dconv(d, _ptr(rt, x, "double"), _ptr(rt, w, "double"), _ptr(rt, b, "double"), _ptr(rt, y, "double"),
                    _ptr(rt, scratch, "double"), 0, 0.0, 0.0)
    np.testing.assert_allclose(y, ref_conv(x, w, b, (1, 2), (1, 1), (1, 1), out), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("build", ["rt", "rt_native"])
def test_dconv_depthwise_by_lanes(request, build):
    """float64 depthwise on short rows: the lanes path with double vectors (2 lanes) and its scalar interleave."""
    runtime = request.getfixturevalue(build)
    rng = np.random.default_rng(4)
    for inp, k, stride, pad in (((14, 13), 3, 1, 1), ((15, 15), 5, 2, 2)):
        x, w, b = rng.standard_normal((2, 7, *inp)), rng.standard_normal((7, 1, k, k)), rng.standard_normal(7)
        out = [(i + 2 * pad - k) // stride + 1 for i in inp]
        d = _desc(runtime, 2, 7, 7, 7, inp, out, (k, k), (stride, stride), (1, 1), (pad, pad), int(np.prod(out)))
        y = np.zeros((2, 7, *out))
        runtime.lib.ek_dconv(d, _ptr(runtime, x, "double"), _ptr(runtime, w, "double"), _ptr(runtime, b, "double"),
                             _ptr(runtime, y, "double"), runtime.ffi.NULL, 0, 0.0, 0.0)
        np.testing.assert_allclose(y, ref_conv(x, w, b, (stride,) * 2, (1, 1), (pad, pad), out), rtol=1e-12, atol=1e-12)


def ref_conv_transpose(x, w, b, group, stride, dil, pad, out):
    """Scatter form in float64: full[i*s + k*d] += x[i] w[k], then y[o] = full[o + pad]."""
    n, c = x.shape[:2]
    cg, mg = c // group, w.shape[1]
    ks, ins = w.shape[2:], x.shape[2:]
    full_shape = [(i - 1) * s + (k - 1) * d + 1 for i, s, k, d in zip(ins, stride, ks, dil)]
    full = np.zeros((n, mg * group, *full_shape))
    for kpos in itertools.product(*[range(k) for k in ks]):
        sl = (slice(None), slice(None)) + tuple(
            slice(kp * d, kp * d + (i - 1) * s + 1, s) for kp, d, i, s in zip(kpos, dil, ins, stride))
        for gi in range(group):
            wk = w[(slice(gi * cg, (gi + 1) * cg), slice(None), *kpos)].astype(np.float64)  # (cg, mg)
            full[(sl[0], slice(gi * mg, (gi + 1) * mg), *sl[2:])] += np.einsum(
                "nc...,cm->nm...", x[:, gi * cg:(gi + 1) * cg].astype(np.float64), wk)
    y = np.zeros((n, mg * group, *out))
    src = [np.arange(o) + p for o, p in zip(out, pad)]
    ok = [(s >= 0) & (s < f) for s, f in zip(src, full_shape)]
    dst_idx = np.ix_(*[np.nonzero(v)[0] for v in ok])
    src_idx = np.ix_(*[s[v] for s, v in zip(src, ok)])
    y[(slice(None), slice(None), *dst_idx)] = full[(slice(None), slice(None), *src_idx)]
    if b is not None:
        y += b.reshape(1, -1, *[1] * len(out))
    return y


TRANSPOSES = [
    # name, n, c, m, group, in, k, stride, dil, pad (begin), out
    ("basic", 1, 3, 2, 1, (3, 3), (3, 3), (1, 1), (1, 1), (0, 0), (5, 5)),
    ("strided_padded", 2, 4, 6, 2, (4, 5), (3, 2), (2, 3), (1, 1), (1, 0), (8, 14)),
    ("dilated_outpad", 1, 2, 3, 1, (5, 4), (2, 3), (2, 1), (2, 2), (1, 2), (12, 7)),
    ("negative_pad", 1, 1, 2, 1, (3, 3), (3, 3), (3, 2), (1, 1), (0, -1), (10, 9)),
    ("conv1d", 1, 3, 4, 1, (6,), (3,), (2,), (1,), (1,), (12,)),
    ("conv3d", 1, 2, 2, 2, (2, 3, 3), (2, 2, 3), (2, 1, 2), (1, 1, 1), (0, 1, 1), (4, 3, 6)),
]


@pytest.mark.parametrize("case", TRANSPOSES, ids=[c[0] for c in TRANSPOSES])
@pytest.mark.parametrize("tile", [0, 4])
def test_sconv_transpose_vs_numpy(rt, case, tile):
    _, n, c, m, group, inp, k, stride, dil, pad, out = case
    rng = np.random.default_rng(3)
    x = rng.standard_normal((n, c, *inp)).astype(np.float32)
    w = rng.standard_normal((c, m // group, *k)).astype(np.float32)
    b = rng.standard_normal(m).astype(np.float32)
    tile = tile or int(np.prod(inp))
    d = _desc(rt, n, c, m, group, inp, out, k, stride, dil, pad, tile)
    scratch = np.zeros(rt.lib.ek_conv_transpose_scratch(d), np.float32)
    y = np.full((n, m, *out), np.nan, np.float32)
    rt.lib.ek_sconv_transpose(d, _ptr(rt, x, "float"), _ptr(rt, w, "float"), _ptr(rt, b, "float"),
                              _ptr(rt, y, "float"), _ptr(rt, scratch, "float"), 6, 0.1, 0.0)
    ref = ref_conv_transpose(x, w, b, group, stride, dil, pad, out)
    np.testing.assert_allclose(y, np.where(ref < 0, 0.1 * ref, ref), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("shape", [
    (6, 16, 14, 10, 5, 0),     # lenet's second conv
    (256, 256, 14, 14, 3, 1),
    (64, 64, 10, 8, 3, 0),     # mtcnn's
    (48, 192, 13, 13, 3, 1),   # squeezenet's expand
    (16, 32, 40, 40, 3, 1),
    (8, 8, 9, 5, 3, 1),
    (16, 32, 4, 3, 3, 1),      # 9 outputs
    (512, 512, 14, 7, 3, 1),   # resnet50's 7x7 at stride 2
    (3, 64, 224, 112, 3, 1),   # squeezenet's stem at stride 2
    (3, 32, 112, 56, 3, 1),    # mobilenet's
    (96, 24, 80, 80, 3, 1),    # ppocrv4_det's: 2 extra copies of 96 channels cost more than 24 outputs' copy
])
def test_conv_path_choice_2d(shape):
    """2-D kernels of more than one row go by windows (ConvGeometry.by_windows, which conv.c follows): at stride 1
    over column planes where (KW-1) * cg <= 2 * mg (scratch: KW planes per input channel), else over one padded band;
    at stride 2 from 3x3 over column planes (2 * KW per input channel)."""
    from emit.ops.conv import ConvGeometry

    c, m, size, out, k, pad = shape
    g = ConvGeometry(n=1, c=c, m=m, group=1, inp=[1, size, size], out=[1, out, out], k=[1, k, k], stride=[1, 1, 1],
                     dil=[1, 1, 1], pad=[0, pad, pad])
    assert g.by_windows()
    assert g.column_planes() is ((k - 1) * c <= 2 * m)
    if g.column_planes():
        assert g.band_scratch(3) == c * k * (3 + k - 1) * out
    else:
        assert g.band_scratch(3) == c * (3 + k - 1) * (out + k - 1) + m * (2 * (out + k - 1) + out)
    g.stride = [1, 2, 2]
    assert g.by_windows() is (k >= 3)
    assert g.band_scratch(3) == c * 2 * k * (3 + (k - 1) // 2) * out


@pytest.mark.parametrize("shape, windows", [
    ((16, 16, 1, 400, 398, 3), True),  # a 1-D conv: one row, no padded columns between rows
    ((64, 64, 1, 10, 8, 3), False),    # 8 positions: im2col's columns are few enough for dot products
    ((32, 64, 12, 12, 8, 5), False),   # a 1x5 kernel on 12 rows: the padded columns add 2 panels for 64 outputs
    ((32, 8, 12, 12, 8, 5), True),     # for 8 output channels they cost less than im2col's copies
])
def test_conv_path_choice_one_row(shape, windows):
    """Kernels of one row go by one padded band where its wasted columns cost less than im2col's copies."""
    from emit.ops.conv import ConvGeometry

    c, m, rows, size, out, k = shape
    g = ConvGeometry(n=1, c=c, m=m, group=1, inp=[1, rows, size], out=[1, rows, out], k=[1, 1, k], stride=[1, 1, 1],
                     dil=[1, 1, 1], pad=[0, 0, 0])
    assert not g.column_planes()
    assert g.by_windows() is windows
