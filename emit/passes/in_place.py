"""An elementwise op writes its result over an input that dies there (same shape and dtype): the output becomes a
view of that input, so the two take one arena slot instead of two (the memory planner's lower bound drops with it:
ppocrv4_det's peak is a residual Add of two 2.4 MB tensors)."""

from __future__ import annotations

from ..ir import ARENA, VIEW, Node, Program, bodies, walk_nodes
from ..ops.elementwise import POINTWISE


def _reads(n: Node) -> list[str]:
    """Every name n reads, with the outer names its If/Loop/Scan bodies read."""
    return [i for m in walk_nodes([n]) for i in m.inputs if i]


def share_dying_inputs(prog: Program) -> Program:
    last: dict[str, int] = {}  # root buffer -> the last top-level step that reads it
    for s, n in enumerate(prog.nodes):
        for name in _reads(n):
            last[prog.root(name).name] = s
    for s, n in enumerate(prog.nodes):
        if n.op_type not in POINTWISE or n.domain != "" or len(n.outputs) != 1 or bodies(n):
            continue
        y = prog.buffers[n.outputs[0]]
        if y.storage != ARENA or y.name in prog.outputs:
            continue
        for x in n.inputs:
            if not x:
                continue
            xb, root = prog.buffers[x], prog.root(x)
            if root.storage != ARENA or root.name in prog.outputs or last.get(root.name) != s:
                continue
            if xb.shape != y.shape or xb.dtype != y.dtype or xb.size != root.size:
                continue
            if any(i and i != x and prog.root(i).name == root.name for i in n.inputs):
                continue  # another view of the same memory, read at other indices
            y.storage, y.view_of = VIEW, x
            last[root.name] = max(s, last.get(y.name, s))  # y's readers now read the root's memory
            break
    return prog
