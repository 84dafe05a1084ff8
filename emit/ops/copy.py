"""Copies: graph outputs that are inputs or constants, and view ops that must materialise."""

from __future__ import annotations

from .registry import Lowering, op


def emit_copy(ctx: Lowering, src, dst) -> None:
    if dst.nbytes:
        ctx.emit(f"memcpy({ctx.ptr(dst)}, {ctx.ptr(src)}, {dst.nbytes});")


@op("emit.Copy", "Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze")
def lower_copy(ctx: Lowering) -> None:
    if ctx.attr("__view__"):
        return  # a view: the output shares its input's memory
    emit_copy(ctx, ctx.input(0), ctx.output(0))


@op("Dropout")
def lower_dropout(ctx: Lowering) -> None:
    emit_copy(ctx, ctx.input(0), ctx.output(0))
    if ctx.has_output(1):
        mask = ctx.output(1)
        ctx.emit(f"for (size_t i = 0; i < {mask.size}; ++i) {ctx.ptr(mask)}[i] = 1;")
