"""If, Loop and Scan: their bodies (emit/importer/subgraph.py) are lowered step by step and written
inside one C block, an `if`/`else` or a `for` loop. Body buffers live in the same arena
(passes/plan_memory.py keeps loop state and what the node reads alive over the whole loop).

Copies move values across the block boundary: a Loop/Scan copies its initial state into the body's
formal inputs, and after each iteration the body's outputs back into them; scan slices are copied in
and scan rows out; an If copies the taken branch's outputs into its own."""

from __future__ import annotations

import numpy as np

from ..ir import Body, Buffer
from .registry import Lowering, lower_node, op


def _indent(code: str, n: int = 4) -> str:
    pad = " " * n
    return "\n".join(pad + line if line.strip() else line for line in code.splitlines())


def lower_body(ctx: Lowering, body: Body) -> str:
    """The C of a body's nodes, each in a block of its own, in order."""
    parts = []
    for n in body.nodes:
        step = lower_node(ctx.prog, n, ctx.cnames)
        ctx.kernels |= step.kernels
        if step.code:
            label = f"{n.op_type} '{n.name}'".replace("*/", "* /")
            parts.append(f"/* {label} */\n{{\n{_indent(step.code)}\n}}")
    return "\n".join(parts)


def _buf(ctx: Lowering, name: str) -> Buffer:
    return ctx.prog.buffers[name]


def copy(ctx: Lowering, dst: str, src: str, dst_offset: str = "", src_offset: str = "") -> str:
    """memcpy of a whole buffer (`dst`'s size), optionally at element offsets; '' when nothing moves."""
    d, s = _buf(ctx, dst), _buf(ctx, src)
    nbytes = min(d.nbytes, s.nbytes)  # one batch entry of a Scan-8 state is the smaller side
    if not nbytes or (ctx.ptr(d) == ctx.ptr(s) and dst_offset == src_offset):
        return ""
    dp = f"{ctx.ptr(d)} + {dst_offset}" if dst_offset else ctx.ptr(d)
    sp = f"{ctx.ptr(s)} + {src_offset}" if src_offset else ctx.ptr(s)
    return f"memcpy({dp}, {sp}, {nbytes});"


def _lines(*parts: str) -> str:
    return "\n".join(p for p in parts if p)


# ---------------------------------------------------------------- If


@op("If")
def lower_if(ctx: Lowering) -> None:
    bodies = ctx.attr("__bodies__")
    branches = []
    for key in ("then_branch", "else_branch"):
        body = bodies[key]
        code = lower_body(ctx, body)
        outs = [copy(ctx, o, src) for o, src in zip(ctx.node.outputs, body.outputs) if o]
        branches.append(_lines(code, *outs) or "/* nothing to do */")
    cond = ctx.input(0)
    ctx.emit(f"if ({ctx.ptr(cond)}[0]) {{\n{_indent(branches[0])}\n}} else {{\n{_indent(branches[1])}\n}}")


# ---------------------------------------------------------------- Loop


@op("Loop")
def lower_loop(ctx: Lowering) -> None:
    body: Body = ctx.attr("__bodies__")["body"]
    n_in = int(ctx.attr("__n_inputs__"))
    inits = ctx.node.inputs[2:n_in]
    n_carried = len(inits)
    iter_in, cond_in, state = body.inputs[0], body.inputs[1], body.inputs[2:]
    cond_out, carried_out, scan_out = body.outputs[0], body.outputs[1 : 1 + n_carried], body.outputs[1 + n_carried :]
    outs = ctx.node.outputs
    rows = ctx.attr("__rows__")
    trip = f"(int64_t){ctx.ptr(ctx.input(0))}[0]" if ctx.has_input(0) else "INT64_MAX"
    go = f"({ctx.ptr(ctx.input(1))}[0] != 0)" if ctx.has_input(1) else "1"
    setup = [f"int64_t trip = {trip};", f"int go = {go};", "int64_t it = 0;"]
    setup += [copy(ctx, s, i) for s, i in zip(state, inits)]
    each = []
    if iter_in:
        each.append(f"{ctx.ptr(_buf(ctx, iter_in))}[0] = it;")
    if cond_in:
        each.append(f"{ctx.ptr(_buf(ctx, cond_in))}[0] = 1;")  # the loop only runs while the condition holds
    each.append(lower_body(ctx, body))
    each.append(f"go = {ctx.ptr(_buf(ctx, cond_out))}[0] != 0;")
    each += [copy(ctx, s, o) for s, o in zip(state, carried_out)]
    for k, src in enumerate(scan_out):
        out = outs[n_carried + k] if n_carried + k < len(outs) else ""
        if not out:
            continue
        row = _buf(ctx, src).size
        each.append(f"if (it >= {rows}) return 1; /* more iterations than the compiled rows of a scan output */")
        each.append(_row_copy(ctx, out, src, f"it * {row}"))
    after = []
    if any(outs[n_carried:]):
        after.append(f"if (it != {rows}) return 1; /* the loop ran a number of times other than the compiled {rows} rows */")
    after += [copy(ctx, o, s) for o, s in zip(outs[:n_carried], state) if o]
    loop = f"for (; it < trip && go; ++it) {{\n{_indent(_lines(*each))}\n}}"
    ctx.emit(_lines(*setup, loop, *after))


def _row_copy(ctx: Lowering, dst: str, src: str, offset: str) -> str:
    s = _buf(ctx, src)
    if not s.nbytes:
        return ""
    return f"memcpy({ctx.ptr(_buf(ctx, dst))} + {offset}, {ctx.ptr(s)}, {s.nbytes});"


# ---------------------------------------------------------------- Scan


def _strided(dst: str, src: str, outer: int, steps: int, inner: int, t: str, itemsize: int, gather: bool, base: str) -> str:
    """Copy the slice at time `t` of a [outer, steps, inner] block (at element offset `base`) to or from a
    contiguous [outer, inner] buffer: gather=True reads the slice, False writes it."""
    if not inner or not outer:
        return ""
    block = f"{base} + " if base else ""
    if outer == 1:
        at = f"{block}({t}) * {inner}"
        return f"memcpy({dst}, {src} + {at}, {inner * itemsize});" if gather else f"memcpy({dst} + {at}, {src}, {inner * itemsize});"
    at = f"{block}(o * {steps} + ({t})) * {inner}"
    one = f"memcpy({dst} + o * {inner}, {src} + {at}, {inner * itemsize});" if gather else f"memcpy({dst} + {at}, {src} + o * {inner}, {inner * itemsize});"
    return f"for (size_t o = 0; o < {outer}; ++o) {one}"


def _split(shape: tuple[int, ...], axis: int) -> tuple[int, int, int]:
    outer = int(np.prod(shape[:axis], dtype=np.int64))
    inner = int(np.prod(shape[axis + 1 :], dtype=np.int64))
    return outer, int(shape[axis]), inner


@op("Scan")
def lower_scan(ctx: Lowering) -> None:
    body: Body = ctx.attr("__bodies__")["body"]
    n_in = int(ctx.attr("__n_inputs__"))
    n_state = int(ctx.attr("__states__"))
    steps = int(ctx.attr("__steps__"))
    batch = int(ctx.attr("__batch__"))  # Scan-8: every input and output has a batch axis first
    in_axes, in_dirs = ctx.attr("__in_axes__"), ctx.attr("__in_dirs__")
    out_axes, out_dirs = ctx.attr("__out_axes__"), ctx.attr("__out_dirs__")
    inits, scans = ctx.node.inputs[:n_state], ctx.node.inputs[n_state:n_in]
    state, slices = body.inputs[:n_state], body.inputs[n_state:]
    outs = ctx.node.outputs
    nb = max(batch, 1)

    def per_batch(name: str) -> tuple[tuple[int, ...], int]:
        shape = _buf(ctx, name).shape
        return (tuple(shape[1:]), int(np.prod(shape[1:], dtype=np.int64))) if batch else (tuple(shape), 0)

    b = "b * " if batch else ""
    setup = []
    for s, i in zip(state, inits):
        _, size = per_batch(i)
        setup.append(copy(ctx, s, i, src_offset=f"{b}{size}" if batch else ""))
    each = []
    for k, (src, dst) in enumerate(zip(scans, slices)):
        if not dst:
            continue
        shape, size = per_batch(src)
        outer, t_len, inner = _split(shape, in_axes[k])
        t = f"{steps - 1} - t" if in_dirs[k] else "t"
        each.append(_strided(ctx.ptr(_buf(ctx, dst)), ctx.ptr(_buf(ctx, src)), outer, t_len, inner, t, _buf(ctx, src).dtype.itemsize,
                             True, f"{b}{size}" if batch else ""))
    each.append(lower_body(ctx, body))
    each += [copy(ctx, s, o) for s, o in zip(state, body.outputs[:n_state])]
    for k, src in enumerate(body.outputs[n_state:]):
        out = outs[n_state + k] if n_state + k < len(outs) else ""
        if not out:
            continue
        shape, size = per_batch(out)
        outer, t_len, inner = _split(shape, out_axes[k])
        t = f"{steps - 1} - t" if out_dirs[k] else "t"
        each.append(_strided(ctx.ptr(_buf(ctx, out)), ctx.ptr(_buf(ctx, src)), outer, t_len, inner, t, _buf(ctx, out).dtype.itemsize,
                             False, f"{b}{size}" if batch else ""))
    after = []
    for o, s in zip(outs[:n_state], state):
        if o:
            _, size = per_batch(o)
            after.append(copy(ctx, o, s, dst_offset=f"{b}{size}" if batch else ""))
    code = _lines(*setup, f"for (size_t t = 0; t < {steps}; ++t) {{\n{_indent(_lines(*each))}\n}}", *after)
    if batch:
        code = f"for (size_t b = 0; b < {nb}; ++b) {{\n{_indent(code)}\n}}"
    ctx.emit(code)


__all__ = ["lower_body", "copy"]
