"""Run work that depends only on weights (dequantising Casts, splat fills) just before its first use,
so its results are not all alive at once from the first step."""

from __future__ import annotations

from ..ir import WEIGHT, Node, Program


def sink_constant_work(prog: Program) -> Program:
    producers = prog.producers()
    sinkable: set[int] = set()
    for n in prog.nodes:  # topological order: a chain of constant-only nodes is found front to back
        if n.inputs and all(
            not i or prog.buffers[i].storage == WEIGHT or (i in producers and id(producers[i]) in sinkable) for i in n.inputs
        ):
            sinkable.add(id(n))
    if not sinkable:
        return prog
    order: list[Node] = []
    placed: set[int] = set()

    def place(n: Node) -> None:
        if id(n) in placed:
            return
        for i in n.inputs:
            p = producers.get(i)
            if p is not None and id(p) in sinkable:
                place(p)
        placed.add(id(n))
        order.append(n)

    for n in prog.nodes:
        if id(n) not in sinkable:
            place(n)
    for n in prog.nodes:  # constant-only work feeding graph outputs directly
        place(n)
    prog.nodes = order
    return prog
