"""ai.onnx.preview.training optimizers: Adagrad, Adam, Momentum (standard and Nesterov).

Pure elementwise math on each (X, G, state...) group, with the scalar learning rate R and step count
T read at run time. Computed in double and rounded to each tensor's type, as onnx's reference does
with its Python-float attributes."""

from __future__ import annotations

import numpy as np

from ..ir import Buffer
from .common import is_float, literal
from .registry import Lowering, op

TRAINING = "ai.onnx.preview.training"


def _groups(ctx: Lowering, per: int) -> int:
    """Number of optimized tensors: inputs are R, T, then `per` lists of that length."""
    k = ctx.n_inputs - 2
    if k <= 0 or k % per:
        ctx.fail(f"expects R, T and {per} lists of tensors of one length, got {ctx.n_inputs} inputs")
    return k // per


def _check(ctx: Lowering, bufs: list[Buffer]) -> None:
    for b in bufs:
        if not is_float(b.dtype):
            ctx.fail(f"tensor '{b.name}' has dtype {b.dtype.name}; only float32/float64 are supported")
    if len({b.size for b in bufs}) != 1:
        ctx.fail("the tensors of one group must have the same number of elements")


def _scalars(ctx: Lowering) -> str:
    r, t = ctx.input(0), ctx.input(1)
    if r.size != 1 or t.size != 1:
        ctx.fail("R and T must be scalars")
    return f"const double r = (double){ctx.ptr(r)}[0];\nconst int64_t t = (int64_t){ctx.ptr(t)}[0];"


def _f(ctx: Lowering, name: str, default: float | None = None) -> str:
    v = ctx.attr(name, default)
    if v is None:
        ctx.fail(f"attribute '{name}' is required")
    return literal(float(v), np.float64)


def _loop(n: int, body: list[str]) -> str:
    return f"for (size_t i = 0; i < {n}; ++i) {{\n" + "\n".join("    " + b for b in body) + "\n}"


@op("Adagrad", domain=TRAINING)
def lower_adagrad(ctx: Lowering) -> None:
    n = _groups(ctx, 3)
    code = [_scalars(ctx), f"const double rt = r / (1.0 + (double)t * {_f(ctx, 'decay_factor', 0.0)});"]
    eps, lam = _f(ctx, "epsilon", 0.0), _f(ctx, "norm_coefficient", 0.0)
    for k in range(n):
        x, g, h = (ctx.input(2 + k + j * n) for j in range(3))
        xo, ho = ctx.output(k), ctx.output(n + k)
        _check(ctx, [x, g, h, xo, ho])
        code.append(
            _loop(
                x.size,
                [
                    f"const double gr = {lam} * (double){ctx.ptr(x)}[i] + (double){ctx.ptr(g)}[i];",
                    f"const double hn = (double){ctx.ptr(h)}[i] + gr * gr;",
                    f"{ctx.ptr(xo)}[i] = ({xo.ctype})((double){ctx.ptr(x)}[i] - rt * gr / (sqrt(hn) + {eps}));",
                    f"{ctx.ptr(ho)}[i] = ({ho.ctype})hn;",
                ],
            )
        )
    ctx.emit("\n".join(code))


@op("Adam", domain=TRAINING)
def lower_adam(ctx: Lowering) -> None:
    n = _groups(ctx, 4)
    alpha, beta = _f(ctx, "alpha", 0.9), _f(ctx, "beta", 0.999)
    eps, lam, post = _f(ctx, "epsilon", 0.0), _f(ctx, "norm_coefficient", 0.0), _f(ctx, "norm_coefficient_post", 0.0)
    code = [
        _scalars(ctx),
        # bias correction of the first steps; T == 0 uses R as is
        f"const double ra = t > 0 ? r * sqrt(1.0 - pow({beta}, (double)t)) / (1.0 - pow({alpha}, (double)t)) : r;",
    ]
    for k in range(n):
        x, g, v, h = (ctx.input(2 + k + j * n) for j in range(4))
        xo, vo, ho = ctx.output(k), ctx.output(n + k), ctx.output(2 * n + k)
        _check(ctx, [x, g, v, h, xo, vo, ho])
        code.append(
            _loop(
                x.size,
                [
                    f"const double xv = (double){ctx.ptr(x)}[i];",
                    f"const double gr = {lam} * xv + (double){ctx.ptr(g)}[i];",
                    f"const double vn = {alpha} * (double){ctx.ptr(v)}[i] + (1.0 - {alpha}) * gr;",
                    f"const double hn = {beta} * (double){ctx.ptr(h)}[i] + (1.0 - {beta}) * gr * gr;",
                    f"{ctx.ptr(xo)}[i] = ({xo.ctype})((1.0 - {post}) * (xv - ra * (vn / (sqrt(hn) + {eps}))));",
                    f"{ctx.ptr(vo)}[i] = ({vo.ctype})vn;",
                    f"{ctx.ptr(ho)}[i] = ({ho.ctype})hn;",
                ],
            )
        )
    ctx.emit("\n".join(code))


@op("Momentum", domain=TRAINING)
def lower_momentum(ctx: Lowering) -> None:
    n = _groups(ctx, 3)
    alpha, beta, lam = _f(ctx, "alpha"), _f(ctx, "beta"), _f(ctx, "norm_coefficient")
    mode = str(ctx.attr("mode", "standard"))
    if mode not in ("standard", "nesterov"):
        ctx.fail(f"mode '{mode}' is not 'standard' or 'nesterov'")
    step = "gr + " + alpha + " * vn" if mode == "nesterov" else "vn"
    code = [_scalars(ctx), f"const double ba = t > 0 ? {beta} : 1.0;"]
    for k in range(n):
        x, g, v = (ctx.input(2 + k + j * n) for j in range(3))
        xo, vo = ctx.output(k), ctx.output(n + k)
        _check(ctx, [x, g, v, xo, vo])
        code.append(
            _loop(
                x.size,
                [
                    f"const double xv = (double){ctx.ptr(x)}[i];",
                    f"const double gr = {lam} * xv + (double){ctx.ptr(g)}[i];",
                    f"const double vn = {alpha} * (double){ctx.ptr(v)}[i] + ba * gr;",
                    f"{ctx.ptr(xo)}[i] = ({xo.ctype})(xv - r * ({step}));",
                    f"{ctx.ptr(vo)}[i] = ({vo.ctype})vn;",
                ],
            )
        )
    ctx.emit("\n".join(code))


# ---------------------------------------------------------------- Dropout

_MT_N, _MT_M = 624, 397


def _mt19937_uniform(state: str) -> str:
    """C: `u`, the next double in [0, 1) of numpy's legacy RandomState (MT19937; two 32-bit draws
    make 53 bits), from the 624 words at `state` and the position `pos`."""
    return (
        "double u;\n"
        "{\n"
        "    uint32_t w[2];\n"
        "    for (int q = 0; q < 2; ++q) {\n"
        f"        uint32_t y;\n"
        f"        if (pos == {_MT_N}) {{\n"
        f"            for (size_t k = 0; k < {_MT_N}; ++k) {{\n"
        f"                const uint32_t v = ({state}[k] & UINT32_C(0x80000000)) | ({state}[(k + 1) % {_MT_N}] & UINT32_C(0x7fffffff));\n"
        f"                {state}[k] = {state}[(k + {_MT_M}) % {_MT_N}] ^ (v >> 1) ^ ((v & 1u) ? UINT32_C(0x9908b0df) : 0u);\n"
        "            }\n"
        "            pos = 0;\n"
        "        }\n"
        f"        y = {state}[pos++];\n"
        "        y ^= y >> 11;\n"
        "        y ^= (y << 7) & UINT32_C(0x9d2c5680);\n"
        "        y ^= (y << 15) & UINT32_C(0xefc60000);\n"
        "        y ^= y >> 18;\n"
        "        w[q] = y;\n"
        "    }\n"
        "    u = ((double)(w[0] >> 5) * 67108864.0 + (double)(w[1] >> 6)) / 9007199254740992.0;\n"
        "}"
    )


@op("Dropout")
def lower_dropout(ctx: Lowering) -> None:
    """Inference (training_mode absent or false, or ratio 0): y = x, mask all true. Training mode with
    a `seed`: the mask is u >= ratio for u drawn from numpy's RandomState(seed).uniform in element
    order, reseeded every run -- the draws of onnx's reference, so its expected outputs match; kept
    elements are scaled by 1 / (1 - ratio). Without a seed a training-mode run returns 1: the mask
    would be random and no runtime could reproduce it."""
    x, y = ctx.input(0), ctx.output(0)
    mask = ctx.output(1) if ctx.has_output(1) else None
    xp, yp = ctx.ptr(x), ctx.ptr(y)
    n = x.size
    if n == 0:
        return
    t = x.ctype
    inference = [f"for (size_t i = 0; i < {n}; ++i) {yp}[i] = {xp}[i];" if xp != yp else ""]
    if mask is not None:
        inference.append(f"for (size_t i = 0; i < {n}; ++i) {ctx.ptr(mask)}[i] = 1;")
    training = ctx.const(2) if ctx.has_input(2) else np.array(False)
    ratio_c = ctx.const(1) if ctx.has_input(1) else np.array(0.5)
    if (training is not None and not bool(np.asarray(training).reshape(-1)[0])) or (
        ratio_c is not None and float(np.asarray(ratio_c).reshape(-1)[0]) == 0.0
    ):
        ctx.emit("\n".join(c for c in inference if c))
        return
    if not is_float(x.dtype):
        ctx.fail(f"training-mode Dropout of dtype {x.dtype.name} is not supported")
    ratio = f"(double){ctx.ptr(ctx.input(1))}[0]" if ctx.has_input(1) and ratio_c is None else literal(
        float(np.asarray(ratio_c).reshape(-1)[0]), np.float64
    )
    on = "1" if training is not None else f"{ctx.ptr(ctx.input(2))}[0]"
    seed = ctx.attr("seed")
    if seed is None:
        if training is not None:
            ctx.fail("Dropout in training mode without a seed attribute draws a random mask, which no runtime can reproduce")
        train = ["return 1; /* training-mode Dropout without a seed: its random mask cannot be reproduced */"]
    else:
        seed = int(seed)
        if not 0 <= seed < 2**32:
            ctx.fail(f"seed {seed} is outside 0 .. 2^32-1 (numpy's RandomState range)")
        state = ctx.scratch(4 * _MT_N, np.uint32)
        keep = f"{ctx.ptr(mask)}[i] = k;" if mask is not None else ""
        train = [
            f"const double rr = {ratio};",
            f"const {t} scale = ({t})1 / (({t})1 - ({t})rr);",
            "size_t pos;",
            f"uint32_t s = UINT32_C({seed});",
            f"for (size_t k = 0; k < {_MT_N}; ++k) {{ {state}[k] = s; s = UINT32_C(1812433253) * (s ^ (s >> 30)) + (uint32_t)k + 1u; }}",
            f"pos = {_MT_N};",
            f"for (size_t i = 0; i < {n}; ++i) {{",
            _mt19937_uniform(state),
            "    {",
            "        const int k = u >= rr;",
            f"        {yp}[i] = k ? {xp}[i] * scale : ({t})0;",
            f"        {keep}",
            "    }",
            "}",
        ]
    ctx.emit(
        f"if ({on} && {ratio} != 0.0) {{\n" + "\n".join(train) + "\n} else {\n" + "\n".join(c for c in inference if c) + "\n}"
    )
