"""Dequantised int8 weights (Mul(Cast(Wq), scale), as weight-only quantizers export them) stay int8:
- gathered from (an embedding table): Gather of the dequantised table becomes dequantise-the-gathered-rows, so the
  table stays int8 in flash instead of being widened whole into RAM at run time;
- multiplied by (a MatMul's weight): the MatMul reads the int8 weight and its scales itself (ek_sgemm_q8 dequantises
  as it packs), instead of a Cast and a Mul writing the whole float32 matrix every run."""

from __future__ import annotations

import numpy as np

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


def _dequantized(prog: Program, name: str, producers: dict, consumers: dict):
    """(cast, mul, q, scale, scale axis) when `name` is Mul(Cast(q int8 2-D weight -> float32), scale weight) with
    one scale, one per row or one per column, and nothing else reads the Cast or the Mul; else None."""
    mul = producers.get(name)
    if mul is None or mul.op_type != "Mul" or mul.domain or len(consumers.get(name, [])) != 1 or name in prog.outputs:
        return None
    for ci, si in ((0, 1), (1, 0)):
        cast = producers.get(mul.inputs[ci])
        scale = prog.buffers[mul.inputs[si]]
        if cast is None or cast.op_type != "Cast" or scale.storage != WEIGHT or len(consumers.get(cast.outputs[0], [])) != 1:
            continue
        q = prog.buffers[cast.inputs[0]]
        if q.storage != WEIGHT or np.dtype(q.dtype) != np.int8 or len(q.shape) != 2 or np.dtype(scale.dtype) != np.float32:
            continue
        if np.dtype(prog.buffers[name].dtype) != np.float32 or tuple(prog.buffers[name].shape) != tuple(q.shape):
            continue
        k, n = q.shape
        shape = tuple(scale.shape)
        if scale.size == 1:
            return cast, mul, q, scale, None
        if shape in ((n,), (1, n)):
            return cast, mul, q, scale, 1
        if shape == (k, 1):
            return cast, mul, q, scale, 0
    return None


def matmul_reads_int8(prog: Program) -> Program:
    producers, consumers = prog.producers(), prog.consumers()
    gone: set[int] = set()
    for n in prog.nodes:
        if n.op_type != "MatMul" or n.domain or len(n.inputs) != 2:
            continue
        found = _dequantized(prog, n.inputs[1], producers, consumers)
        if found is None or len(prog.buffers[n.inputs[0]].shape) < 2:
            continue
        cast, mul, q, scale, axis = found
        n.inputs = [n.inputs[0], q.name, scale.name]
        n.attrs["__q8__"] = axis  # None: one scale; 0: per row of B (k); 1: per column (n)
        gone.update((id(cast), id(mul)))
    if gone:
        prog.nodes = [x for x in prog.nodes if id(x) not in gone]
    return prog


__all__ = ["gather_before_dequant", "matmul_reads_int8"]
