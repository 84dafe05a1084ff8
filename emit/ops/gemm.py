"""MatMul and Gemm: float32/float64 through the runtime GEMM (runtime_c/gemm.c) with its fused
bias + activation epilogue; integer MatMul as a generated i-k-j loop."""

from __future__ import annotations

import numpy as np

from ..ir import Buffer
from .common import broadcast_strides, index_expr, literal, loop_nest
from .registry import Lowering, op

FLOAT_KERNELS = {"float32": "s", "float64": "d"}  # dtype -> ek_ kernel letter
INT_MATMUL = ("int32", "int64", "uint32", "uint64")

# attrs["__act__"] kinds (set by emit/passes/fuse_act.py) -> runtime enum
ACT_ENUM = {
    "relu": "EK_ACT_RELU",
    "clip": "EK_ACT_CLIP",
    "sigmoid": "EK_ACT_SIGMOID",
    "hardsigmoid": "EK_ACT_HARDSIGMOID",
    "hardswish": "EK_ACT_HARDSWISH",
    "leakyrelu": "EK_ACT_LEAKYRELU",
    "silu": "EK_ACT_SILU",
}


def act_args(ctx: Lowering, dtype) -> str:
    """The `act, act_a, act_b` arguments of a kernel call from the node's fused activation."""
    fused = ctx.attr("__act__")
    if fused is None:
        return f"EK_ACT_NONE, {literal(0, dtype)}, {literal(0, dtype)}"
    kind, params = fused
    a, b = (list(params) + [0.0, 0.0])[:2]
    return f"{ACT_ENUM[kind]}, {literal(a, dtype)}, {literal(b, dtype)}"


def kernel_letter(ctx: Lowering, dtype) -> str:
    name = np.dtype(dtype).name
    if name not in FLOAT_KERNELS:
        ctx.fail(f"dtype {name} is not supported (float32 and float64 are)")
    return FLOAT_KERNELS[name]


def gemm_call(ctx: Lowering, dtype, m: int, n: int, k: int, alpha: float, a: str, lda: int, ta: bool, b: str,
              ldb: int, tb: bool, beta: float, bias: str | None, bias_rs: int, bias_cs: int, c: str, ldc: int) -> str:
    """One ek_sgemm/ek_dgemm call with the node's activation epilogue."""
    s = kernel_letter(ctx, dtype)
    ctx.kernel("gemm")
    lit = lambda v: literal(v, dtype)  # noqa: E731
    return (
        f"ek_{s}gemm({m}, {n}, {k}, {lit(alpha)}, {a}, {lda}, {int(ta)}, {b}, {ldb}, {int(tb)}, {lit(beta)}, "
        f"{bias or 'NULL'}, {bias_rs}, {bias_cs}, {c}, {ldc}, {act_args(ctx, dtype)});"
    )


def _offset(ptr: str, off: str) -> str:
    return ptr if off == "0" else f"{ptr} + {off}"


def _int_matmul(ctx: Lowering, y: Buffer, a: str, b: str, c: str, m: int, n: int, k: int) -> str:
    """C[m,n] = A[m,k] B[k,n], i-k-j order; unsigned arithmetic so overflow wraps instead of being UB."""
    ct, ut = y.ctype, "uint32_t" if np.dtype(y.dtype).itemsize == 4 else "uint64_t"
    return (
        f"for (size_t i = 0; i < {m}; ++i) {{\n"
        f"    {ct} *yr = {c} + i * {n};\n"
        f"    for (size_t j = 0; j < {n}; ++j) yr[j] = 0;\n"
        f"    for (size_t k = 0; k < {k}; ++k) {{\n"
        f"        const {ut} av = ({ut}){a}[i * {k} + k];\n"
        f"        const {ct} *br = {b} + k * {n};\n"
        f"        for (size_t j = 0; j < {n}; ++j) yr[j] = ({ct})(({ut})yr[j] + av * ({ut})br[j]);\n"
        "    }\n"
        "}"
    )


def matmul_dims(ctx: Lowering, a: Buffer, b: Buffer):
    """numpy matmul shapes: (A's shape, B's shape with a 1-D operand promoted to a matrix, M, K, N,
    the broadcast batch shape); inner dimensions that differ fail."""
    ash = (1, *a.shape) if len(a.shape) == 1 else tuple(a.shape)
    bsh = (*b.shape, 1) if len(b.shape) == 1 else tuple(b.shape)
    m, k = ash[-2:]
    n = bsh[-1]
    if bsh[-2] != k:
        ctx.fail(f"inner dimensions differ: {a.shape} @ {b.shape}")
    batch = tuple(np.broadcast_shapes(ash[:-2], bsh[:-2]))
    return ash, bsh, m, k, n, batch


@op("MatMul")
def lower_matmul(ctx: Lowering) -> None:
    a, b, y = ctx.input(0), ctx.input(1), ctx.output(0)
    dtype = np.dtype(y.dtype).name
    if dtype not in FLOAT_KERNELS and dtype not in INT_MATMUL:
        ctx.fail(f"dtype {dtype} is not supported (float32, float64, int32, int64, uint32, uint64 are)")
    ash, bsh, m, k, n, batch = matmul_dims(ctx, a, b)
    if y.size == 0:
        return
    a_st = [s * m * k for s in broadcast_strides(ash[:-2], batch)]
    b_st = [s * k * n for s in broadcast_strides(bsh[:-2], batch)]
    y_st = [s * m * n for s in broadcast_strides(batch, batch)]
    nb = int(np.prod(batch, dtype=np.int64)) if batch else 1
    if nb > 1 and not any(b_st) and ash[:-2] == batch:
        # B is shared by every batch and A's batches are contiguous: one GEMM with batch*M rows
        m, batch, a_st, b_st, y_st = m * nb, (), [], [], []
    pa, pb, py = ctx.ptr(a), ctx.ptr(b), ctx.ptr(y)
    vars_ = [f"i{d}" for d in range(len(batch))]
    ao, bo, yo = (_offset(p, index_expr(vars_, st)) for p, st in ((pa, a_st), (pb, b_st), (py, y_st)))
    if "__q8__" in ctx.node.attrs:  # B is an int8 weight with its scales (passes/dequant.py)
        ctx.kernel("gemm")
        ks, ns = {None: (0, 0), 0: (1, 0), 1: (0, 1)}[ctx.attr("__q8__")]
        body = (f"ek_sgemm_q8({m}, {n}, {k}, 1.0f, {ao}, {k}, 0, {bo}, {n}, 0, {ctx.ptr(ctx.input(2))}, {ks}, {ns}, 0.0f, "
                f"NULL, 0, 0, {yo}, {n}, {act_args(ctx, dtype)});")
    elif dtype in FLOAT_KERNELS:
        body = gemm_call(ctx, dtype, m, n, k, 1.0, ao, k, False, bo, n, False, 0.0, None, 0, 0, yo, n)
    else:
        if ctx.attr("__act__") is not None:
            ctx.fail("a fused activation on an integer MatMul is not supported")
        body = _int_matmul(ctx, y, f"({ao})", f"({bo})", f"({yo})", m, n, k)
    ctx.emit(loop_nest(batch, body) if batch else body)


@op("Gemm")
def lower_gemm(ctx: Lowering) -> None:
    a, b, y = ctx.input(0), ctx.input(1), ctx.output(0)
    dtype = np.dtype(y.dtype).name
    kernel_letter(ctx, dtype)
    if len(a.shape) != 2 or len(b.shape) != 2:
        ctx.fail(f"A and B must be 2-D (got {a.shape} and {b.shape})")
    ta, tb = bool(ctx.attr("transA", 0)), bool(ctx.attr("transB", 0))
    alpha, beta = float(ctx.attr("alpha", 1.0)), float(ctx.attr("beta", 1.0))
    m, k = (a.shape[1], a.shape[0]) if ta else a.shape
    n = b.shape[0] if tb else b.shape[1]
    if y.size == 0:
        return
    bias, rs, cs = None, 0, 0
    if ctx.has_input(2) and beta != 0.0:
        c = ctx.input(2)
        if c.size == 0:
            ctx.fail("C is empty")
        rs, cs = (broadcast_strides(c.shape, (m, n)) + [0, 0])[:2] if c.shape else (0, 0)
        bias = ctx.ptr(c)
    ctx.emit(gemm_call(ctx, dtype, m, n, k, alpha, ctx.ptr(a), a.shape[1], ta, ctx.ptr(b), b.shape[1], tb, beta,
                       bias, rs, cs, ctx.ptr(y), n))


def _zero_point(ctx: Lowering, i: int, per: int, var: str) -> str:
    """C int32 expression of zero point input i: scalar, or one per row/column (`per` of them) indexed by var."""
    if not ctx.has_input(i):
        return "0"
    z = ctx.input(i)
    if z.size == 1:
        return f"(int32_t){ctx.ptr(z)}[0]"
    if z.size == per:
        return f"(int32_t){ctx.ptr(z)}[{var}]"
    ctx.fail(f"zero point '{ctx.node.inputs[i]}' of shape {z.shape} is neither a scalar nor one per row/column")


@op("MatMulInteger")
def lower_matmul_integer(ctx: Lowering) -> None:
    """int32 (A - a_zero_point) @ (B - b_zero_point); zero points per tensor, per row of A, per column of B."""
    a, b, y = ctx.input(0), ctx.input(1), ctx.output(0)
    for buf in (a, b):
        if np.dtype(buf.dtype).name not in ("int8", "uint8"):
            ctx.fail(f"dtype {np.dtype(buf.dtype).name} is not supported (int8 and uint8 are)")
    ash = (1, *a.shape) if len(a.shape) == 1 else tuple(a.shape)
    bsh = (*b.shape, 1) if len(b.shape) == 1 else tuple(b.shape)
    m, k = ash[-2:]
    n = bsh[-1]
    batch = tuple(np.broadcast_shapes(ash[:-2], bsh[:-2]))
    if y.size == 0:
        return
    za, zb = _zero_point(ctx, 2, m, "i"), _zero_point(ctx, 3, n, "j")
    vars_ = [f"i{d}" for d in range(len(batch))]
    offs = [
        _offset(ctx.ptr(buf), index_expr(vars_, [s * step for s in broadcast_strides(sh, batch)]))
        for buf, sh, step in ((a, ash[:-2], m * k), (b, bsh[:-2], k * n), (y, batch, m * n))
    ]
    body = (
        f"const {a.ctype} *pa = {offs[0]};\nconst {b.ctype} *pb = {offs[1]};\nint32_t *py = {offs[2]};\n"
        f"for (size_t i = 0; i < {m}; ++i) {{\n"
        f"    int32_t *yr = py + i * {n};\n"
        f"    for (size_t j = 0; j < {n}; ++j) yr[j] = 0;\n"
        f"    for (size_t k = 0; k < {k}; ++k) {{\n"
        f"        const int32_t av = (int32_t)pa[i * {k} + k] - {za};\n"
        f"        const {b.ctype} *br = pb + k * {n};\n"
        # products fit int32; the sum wraps (unsigned) instead of being undefined behaviour
        f"        for (size_t j = 0; j < {n}; ++j) yr[j] = (int32_t)((uint32_t)yr[j] + (uint32_t)(av * ((int32_t)br[j] - {zb})));\n"
        "    }\n"
        "}"
    )
    ctx.emit(loop_nest(batch, body) if batch else "{\n" + body + "\n}")
