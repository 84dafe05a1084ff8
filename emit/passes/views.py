"""Ops that move no data become views: Reshape, Flatten, Squeeze, Unsqueeze (the output is the input's memory), a
Concat whose inputs lie one after another in its output (each input is written in place there, by its producer), a
Split whose outputs lie one after another in its input (each output is read in place there)."""

from __future__ import annotations

import numpy as np

from ..ir import ARENA, VIEW, Node, Program, bodies
from ..ops.common import normalize_axis

VIEW_OPS = {"Reshape", "Flatten", "Squeeze", "Unsqueeze"}


def make_views(prog: Program) -> Program:
    for n in prog.nodes:
        if n.op_type in VIEW_OPS and n.domain == "":
            out = prog.buffers[n.outputs[0]]
            src = prog.buffers[n.inputs[0]]
            if out.storage == ARENA and src.dtype == out.dtype and src.size == out.size:
                out.storage = VIEW
                out.view_of = src.name
                n.attrs["__view__"] = True
    concat_views(prog)
    split_views(prog)
    return prog


def _slab_bytes(shape: tuple[int, ...], axis: int, itemsize: int) -> int | None:
    """Bytes per index of `axis` when the tensor is contiguous blocks along it (every dim before it 1), else None."""
    if any(d != 1 for d in shape[:axis]):
        return None
    return int(np.prod(shape[axis + 1:], dtype=np.int64)) * itemsize


def _own_arena(prog: Program, name: str) -> bool:
    """`name` owns a whole arena buffer that the graph does not hand back to the caller."""
    b = prog.buffers[name]
    return b.storage == ARENA and b.view_of is None and name not in prog.outputs


def concat_views(prog: Program) -> Program:
    """Each input of a Concat along its leading non-1 axis that is an arena buffer of its own, written by one top-level
    node without bodies, becomes a view of its block of the output: its producer writes there and the copy goes (YOLO's
    C2f blocks, SqueezeNet's fire modules). Inputs that are views already, graph inputs or weights are still copied."""
    producers: dict[str, Node] = {o: n for n in prog.nodes for o in n.outputs if o}
    for n in prog.nodes:
        if n.op_type != "Concat" or n.domain != "" or not n.outputs or not n.outputs[0]:
            continue
        y = prog.buffers[n.outputs[0]]
        if prog.root(y.name).storage != ARENA or y.name in prog.outputs or not y.shape:
            continue
        axis = normalize_axis(int(n.attrs.get("axis", 0)), len(y.shape))
        slab = _slab_bytes(y.shape, axis, y.dtype.itemsize)
        if slab is None:
            continue
        at = 0
        for x in n.inputs:
            if not x:
                continue
            xb = prog.buffers[x]
            src = producers.get(x)
            if (_own_arena(prog, x) and xb.dtype == y.dtype and n.inputs.count(x) == 1 and src is not None
                    and not bodies(src) and xb.size):
                xb.storage, xb.view_of, xb.view_at = VIEW, y.name, at * slab
            at += xb.shape[axis] if xb.shape else 0
    return prog


def split_views(prog: Program) -> Program:
    """Each output of a Split along its leading non-1 axis becomes a view of its block of the input (an arena buffer),
    read in place there."""
    for n in prog.nodes:
        if n.op_type != "Split" or n.domain != "" or not n.inputs or not n.inputs[0]:
            continue
        x = prog.buffers[n.inputs[0]]
        if prog.root(x.name).storage != ARENA or not x.shape:
            continue
        axis = normalize_axis(int(n.attrs.get("axis", 0)), len(x.shape))
        slab = _slab_bytes(x.shape, axis, x.dtype.itemsize)
        if slab is None:
            continue
        _input_into_concat(prog, n, slab, axis)
        at = 0
        for y in n.outputs:
            if not y:
                continue
            yb = prog.buffers[y]
            if _own_arena(prog, y) and yb.dtype == x.dtype and yb.size:
                yb.storage, yb.view_of, yb.view_at = VIEW, x.name, at * slab
            at += yb.shape[axis]
    return prog



def _input_into_concat(prog: Program, split: Node, slab: int, axis: int) -> None:
    """When every output of `split` is a view of one Concat's output, in order and back to back (YOLO's C2f: the halves
    of a conv's output are the first inputs of a Concat), the split's input itself goes there instead: its producer
    writes it in place and neither the Split nor the Concat copies."""
    x = prog.buffers[split.inputs[0]]
    outs = [prog.buffers[y] for y in split.outputs if y]
    if not _own_arena(prog, x.name) or len(outs) != len(split.outputs) or not outs:
        return
    y, base = outs[0].view_of, outs[0].view_at
    at = 0
    for o in outs:
        if o.storage != VIEW or o.view_of != y or o.view_at != base + at * slab or o.dtype != x.dtype:
            return
        at += o.shape[axis]
    if at * slab != x.nbytes:
        return
    x.storage, x.view_of, x.view_at = VIEW, y, base
    at = 0
    for o in outs:
        o.view_of, o.view_at = x.name, at * slab
        at += o.shape[axis]
