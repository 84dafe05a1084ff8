"""One arena for every intermediate: liveness intervals over the step order, then greedy-by-size
placement (largest first, lowest offset that overlaps no live neighbour), 16-byte aligned."""

from __future__ import annotations

from ..ir import ARENA, Program

ALIGN = 16


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def liveness(prog: Program) -> dict[str, tuple[int, int]]:
    """First and last step index at which each arena buffer's memory is in use (views count for their root)."""
    spans: dict[str, list[int]] = {}
    for step, n in enumerate(prog.nodes):
        # __scratch__: arena buffers a lowering asked for with Lowering.scratch, used by this step only
        for name in [*n.inputs, *n.outputs, *n.attrs.get("__scratch__", ())]:
            if not name:
                continue
            root = prog.root(name)
            if root.storage != ARENA:
                continue
            span = spans.setdefault(root.name, [step, step])
            span[0] = min(span[0], step)
            span[1] = max(span[1], step)
    return {k: (a, b) for k, (a, b) in spans.items()}


def plan_memory(prog: Program) -> Program:
    spans = liveness(prog)
    order = sorted(spans, key=lambda k: (-prog.buffers[k].nbytes, spans[k][0], k))
    placed: list[tuple[int, int, int, int]] = []  # offset, end, first, last
    top = 0
    for name in order:
        size = _align(max(prog.buffers[name].nbytes, 1))
        first, last = spans[name]
        clashes = sorted((o, e) for o, e, f, lst in placed if not (lst < first or last < f))
        offset = 0
        for o, e in clashes:
            if offset + size <= o:
                break
            offset = max(offset, _align(e))
        prog.buffers[name].offset = offset
        placed.append((offset, offset + size, first, last))
        top = max(top, offset + size)
    prog.arena_bytes = top
    return prog


def naive_bytes(prog: Program) -> int:
    """What the intermediates would take with a buffer each: the planner's baseline."""
    return sum(_align(max(b.nbytes, 1)) for b in prog.buffers.values() if b.storage == ARENA)


def peak_live_bytes(prog: Program) -> int:
    """The liveness lower bound: the largest sum of live intermediates at any step."""
    spans = liveness(prog)
    peak = 0
    for step in range(len(prog.nodes)):
        live = sum(_align(prog.buffers[k].nbytes) for k, (a, b) in spans.items() if a <= step <= b)
        peak = max(peak, live)
    return peak
