"""Gather from a dequantised table (Gather(Mul(Cast(Wq), scale), ids)) becomes dequantise-the-gathered-rows,
so an int8 embedding table stays int8 in flash instead of being widened whole into RAM at run time."""

from __future__ import annotations

from ..ir import ARENA, WEIGHT, Buffer, Node, Program
from .simplify import splice


def gather_before_dequant(prog: Program) -> Program:
    producers = prog.producers()
    consumers = prog.consumers()
    new_nodes: list[Node] = []
    replaced: set[int] = set()
    for n in prog.nodes:
        if n.op_type != "Gather" or n.domain or n.attrs.get("axis", 0) != 0:
            continue
        mul = producers.get(n.inputs[0])
        if mul is None or mul.op_type != "Mul" or len(consumers.get(mul.outputs[0], [])) != 1:
            continue
        cast = producers.get(mul.inputs[0])
        scale = prog.buffers[mul.inputs[1]]
        if cast is None or cast.op_type != "Cast" or scale.storage != WEIGHT or len(consumers.get(cast.outputs[0], [])) != 1:
            continue
        table = prog.buffers[cast.inputs[0]]
        if table.storage != WEIGHT or len(table.shape) != 2:
            continue
        if scale.size != 1 and tuple(scale.shape) != (table.shape[0], 1):
            continue
        ids, out = prog.buffers[n.inputs[1]], prog.buffers[n.outputs[0]]
        rows = Buffer(f"{out.name}__q", table.dtype, out.shape, ARENA)
        wide = Buffer(f"{out.name}__f", out.dtype, out.shape, ARENA)
        prog.buffers[rows.name], prog.buffers[wide.name] = rows, wide
        chain = [
            Node("Gather", f"{n.name}__q", [table.name, ids.name], [rows.name], {"axis": 0}),
            Node("Cast", f"{cast.name}__rows", [rows.name], [wide.name], dict(cast.attrs)),
        ]
        if scale.size == 1:
            chain.append(Node("Mul", f"{mul.name}__rows", [wide.name, scale.name], [out.name]))
        else:
            row_scale = Buffer(f"{out.name}__s", scale.dtype, (*ids.shape, 1), ARENA)
            prog.buffers[row_scale.name] = row_scale
            chain.insert(2, Node("Gather", f"{n.name}__s", [scale.name, ids.name], [row_scale.name], {"axis": 0}))
            chain.append(Node("Mul", f"{mul.name}__rows", [wide.name, row_scale.name], [out.name]))
        replaced.update((id(n), id(mul), id(cast)))
        new_nodes.append((n, chain))
    if not new_nodes:
        return prog
    splice(prog, {id(n): chain for n, chain in new_nodes}, replaced)
    return prog


__all__ = ["gather_before_dequant"]
