"""Copies: graph outputs that are inputs or constants, and view ops (Reshape & co.) that must
materialise. A view op whose shape input is a runtime value still checks it against the compiled shape."""

from __future__ import annotations

from ..ir import WEIGHT
from .registry import Lowering, op


def emit_copy(ctx: Lowering, src, dst) -> None:
    if dst.nbytes:
        ctx.emit(f"memcpy({ctx.ptr(dst)}, {ctx.ptr(src)}, {dst.nbytes});")


def _runtime_input(ctx: Lowering, i: int):
    if not ctx.has_input(i):
        return None
    buf = ctx.input(i)
    return None if buf.storage == WEIGHT else buf


def _check_reshape(ctx: Lowering) -> None:
    shape = _runtime_input(ctx, 1)
    if shape is None or ctx.node.op_type != "Reshape" or shape.size == 0:
        return
    x, y = ctx.input(0), ctx.output(0)
    allowzero = int(ctx.attr("allowzero", 0))
    s = ctx.ptr(shape)
    lines = ["int minus_ones = 0;"]
    for i, want in enumerate(y.shape):
        zero_means = x.shape[i] if i < len(x.shape) else -2  # 0 copies the input dim (unless allowzero)
        zero_ok = "0" if allowzero else f"{int(zero_means == want)}"
        lines.append(
            f"if ({s}[{i}] == -1) ++minus_ones; "
            f"else if (!({s}[{i}] == {want} || ({s}[{i}] == 0 && {zero_ok}))) return 1;"
        )
    lines.append("if (minus_ones > 1) return 1;")
    ctx.emit("\n".join(lines))


def _check_axes(ctx: Lowering) -> None:
    """Squeeze/Unsqueeze with runtime axes: every axis in range, distinct, on a dim of size 1."""
    axes = _runtime_input(ctx, 1)
    if axes is None or ctx.node.op_type not in ("Squeeze", "Unsqueeze"):
        return
    x, y = ctx.input(0), ctx.output(0)
    long_shape = x.shape if ctx.node.op_type == "Squeeze" else y.shape
    rank = len(long_shape)
    ones = " ".join(f"{int(d == 1)}," for d in long_shape) or "0,"
    ctx.emit(
        f"static const unsigned char size_one[{max(rank, 1)}] = {{ {ones} }};\n"
        f"unsigned char seen[{max(rank, 1)}] = {{ 0 }};\n"
        f"if ({axes.size} != {abs(len(x.shape) - len(y.shape))}) return 1;\n"
        f"for (size_t k = 0; k < {axes.size}; ++k) {{\n"
        f"    int64_t a = (int64_t){ctx.ptr(axes)}[k];\n"
        f"    if (a < 0) a += {rank};\n"
        f"    if (a < 0 || a >= {rank} || seen[a] || !size_one[a]) return 1;\n"
        "    seen[a] = 1;\n"
        "}"
    )


@op("emit.Copy", "Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze")
def lower_copy(ctx: Lowering) -> None:
    _check_reshape(ctx)
    _check_axes(ctx)
    if ctx.attr("__view__"):
        return  # a view: the output shares its input's memory
    emit_copy(ctx, ctx.input(0), ctx.output(0))


# Dropout: emit/ops/training.py (inference mode is a copy; training mode draws numpy's MT19937 mask)
