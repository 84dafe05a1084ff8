"""Reshape, Flatten, Squeeze, Unsqueeze move no data: their output becomes a view of the input."""

from __future__ import annotations

from ..ir import ARENA, VIEW, Program

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
    return prog
