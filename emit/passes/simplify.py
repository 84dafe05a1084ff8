"""Drop nodes that do nothing at inference time, and nodes whose results nobody reads."""

from __future__ import annotations

from ..ir import OUTPUT, Node, Program, bodies, walk_nodes


def sole_producer(prog: Program, producers: dict, consumers: dict, src: str, op_types) -> Node | None:
    """The node that writes `src`, if it is one of `op_types`, unfused, and `src` feeds nothing else:
    then the consumer of `src` can be merged into it."""
    p = producers.get(src)
    if p is None or p.op_type not in op_types or p.domain != "" or p.outputs[0] != src or "__act__" in p.attrs:
        return None
    if len(consumers.get(src, [])) != 1 or prog.buffers[src].storage == OUTPUT or src in prog.outputs:
        return None
    return p


def absorb(prog: Program, producer: Node, consumer: Node, producers: dict) -> None:
    """The producer now writes the consumer's result; the consumer goes (callers filter it out)."""
    producer.outputs[0] = consumer.outputs[0]
    producers[consumer.outputs[0]] = producer


def splice(prog: Program, replacements: dict[int, list[Node]], gone: set[int]) -> None:
    """Each node whose id is in `replacements` becomes those nodes, in place; nodes in `gone` go."""
    order: list[Node] = []
    for n in prog.nodes:
        if id(n) in replacements:
            order.extend(replacements[id(n)])
        elif id(n) not in gone:
            order.append(n)
    prog.nodes = order


def rename_uses(prog: Program, old: str, new: str) -> None:
    for n in walk_nodes(prog.nodes):  # bodies of If/Loop/Scan read outer values by name too
        n.inputs = [new if i == old else i for i in n.inputs]
        for b in bodies(n):
            b.outputs = [new if o == old else o for o in b.outputs]


def _maybe_training(training_mode) -> bool:
    """A Dropout's training_mode input is a runtime value or a constant true."""
    return training_mode is None or bool(training_mode.reshape(-1)[0])


def drop_identities(prog: Program) -> Program:
    """Identity, and Dropout in inference mode, forward their input unless they feed a graph output."""
    kept = []
    consumers = prog.consumers()
    for n in prog.nodes:
        passthrough = n.op_type == "Identity" or (
            n.op_type == "Dropout" and (len(n.outputs) < 2 or not n.outputs[1] or n.outputs[1] not in consumers)
            and not (len(n.inputs) > 2 and n.inputs[2] and _maybe_training(prog.buffers[n.inputs[2]].data))
        )
        if passthrough and n.domain == "" and prog.buffers[n.outputs[0]].storage != OUTPUT:
            rename_uses(prog, n.outputs[0], n.inputs[0])
            continue
        kept.append(n)
    prog.nodes = kept
    return prune(prog)


def prune(prog: Program) -> Program:
    """Remove nodes none of whose outputs are used, and buffers no node touches."""
    live = set(prog.outputs)
    kept = []
    for n in reversed(prog.nodes):
        if any(o in live for o in n.outputs if o):
            kept.append(n)
            live.update(i for i in n.inputs if i)
    prog.nodes = kept[::-1]
    used = set(prog.inputs) | set(prog.outputs)
    for n in walk_nodes(prog.nodes):
        used.update(i for i in n.inputs + n.outputs if i)
        for b in bodies(n):
            used.update(i for i in b.inputs + b.outputs if i)
    prog.buffers = {k: b for k, b in prog.buffers.items() if k in used}
    return prog
