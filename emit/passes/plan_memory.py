"""One arena for every intermediate: liveness intervals over the step order, then greedy placement in several
orders (largest first, lowest offset or tightest gap that overlaps no live neighbour), each on a cache line (64
bytes), so that the kernels' 64-byte vectors of a tensor do not straddle two lines where the tensor's start lines up."""

from __future__ import annotations

import random

from ..ir import ARENA, Program, bodies

ALIGN = 64


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def liveness(prog: Program) -> dict[str, tuple[int, int]]:
    """First and last step index at which each arena buffer's memory is in use (views count for their root).
    The nodes of an If/Loop/Scan body get indices of their own inside their node's span [first, last]:
    what the node reads or writes, and its bodies' formal inputs and outputs, live over the whole span
    (a loop reads them again in every iteration); a body's temporaries only where the body uses them."""
    spans: dict[str, list[int]] = {}
    pos = [0]

    def mark(name: str, first: int, last: int) -> None:
        if not name:
            return
        root = prog.root(name)
        if root.storage != ARENA:
            return
        span = spans.setdefault(root.name, [first, last])
        span[0] = min(span[0], first)
        span[1] = max(span[1], last)

    def visit(nodes) -> None:
        for n in nodes:
            first = pos[0]
            for b in bodies(n):
                visit(b.nodes)
            last = pos[0]
            pos[0] += 1
            # __scratch__: arena buffers a lowering asked for with Lowering.scratch, used by this step only
            for name in [*n.inputs, *n.outputs, *n.attrs.get("__scratch__", ())]:
                mark(name, first, last)
            for b in bodies(n):
                for name in [*b.inputs, *b.outputs]:
                    mark(name, first, last)

    visit(prog.nodes)
    return {k: (a, b) for k, (a, b) in spans.items()}


def _place(order: list[str], sizes: dict[str, int], spans: dict[str, tuple[int, int]], best_fit: bool) -> tuple[dict[str, int], int]:
    """Offsets for the buffers in `order`: each at the lowest offset (first fit) or in the tightest gap
    (best fit) that overlaps no buffer already placed whose lifetime meets its own."""
    placed: list[tuple[int, int, int, int]] = []  # offset, end, first, last
    offsets: dict[str, int] = {}
    top = 0
    for name in order:
        size = sizes[name]
        first, last = spans[name]
        clashes = sorted((o, e) for o, e, f, lst in placed if not (lst < first or last < f))
        gaps: list[tuple[int, int]] = []  # (start, room) of every hole between clashing buffers, then the top
        cursor = 0
        for o, e in clashes:
            if o > cursor:
                gaps.append((cursor, o - cursor))
            cursor = max(cursor, _align(e))
        fitting = [(room, start) for start, room in gaps if room >= size]
        if not fitting:
            offset = cursor
        elif best_fit:
            offset = min(fitting)[1]
        else:
            offset = min(start for _, start in fitting)
        offsets[name] = offset
        placed.append((offset, offset + size, first, last))
        top = max(top, offset + size)
    return offsets, top


def _peak(spans: dict[str, tuple[int, int]], sizes: dict[str, int]) -> int:
    """The largest sum of sizes live at one step: no placement does better."""
    events: dict[int, int] = {}
    for k, (a, b) in spans.items():
        events[a] = events.get(a, 0) + sizes[k]
        events[b + 1] = events.get(b + 1, 0) - sizes[k]
    peak = live = 0
    for step in sorted(events):
        live += events[step]
        peak = max(peak, live)
    return peak


def plan_memory(prog: Program) -> Program:
    """Several greedy orders (largest first, earliest first, longest-lived first, ...), first and best fit; then,
    while the arena is above the liveness lower bound, the largest-first order with sizes jittered (seeded, so
    builds repeat). The smallest arena wins. Each try is quadratic in the number of buffers (hundreds)."""
    spans = liveness(prog)
    sizes = {k: _align(max(prog.buffers[k].nbytes, 1)) for k in spans}
    names = sorted(spans)
    orders = [
        sorted(names, key=lambda k: (-sizes[k], spans[k][0])),
        sorted(names, key=lambda k: (spans[k][0], -sizes[k])),
        sorted(names, key=lambda k: (-(spans[k][1] - spans[k][0]), -sizes[k])),
        sorted(names, key=lambda k: (-sizes[k] * (spans[k][1] - spans[k][0] + 1), spans[k][0])),
        sorted(names, key=lambda k: (-sizes[k], spans[k][0] - spans[k][1])),
    ]
    bound = _peak(spans, sizes)
    rng = random.Random(0)
    tries = 48 if len(names) <= 1000 else 4
    best: tuple[dict[str, int], int] | None = None
    for t in range(len(orders) + tries):
        if best is not None and best[1] <= bound:
            break
        order = orders[t] if t < len(orders) else sorted(
            names, key=lambda k: (-sizes[k] * rng.uniform(0.7, 1.3), spans[k][0]))
        for best_fit in (False, True):
            offsets, top = _place(order, sizes, spans, best_fit)
            if best is None or top < best[1]:
                best = (offsets, top)
    offsets, top = best if best is not None else ({}, 0)
    for name, offset in offsets.items():
        prog.buffers[name].offset = offset
    prog.arena_bytes = top
    return prog


def naive_bytes(prog: Program) -> int:
    """What the intermediates would take with a buffer each: the planner's baseline."""
    return sum(_align(max(b.nbytes, 1)) for b in prog.buffers.values() if b.storage == ARENA)


def peak_live_bytes(prog: Program) -> int:
    """The liveness lower bound: the largest sum of live intermediates at any step."""
    spans = liveness(prog)
    return _peak(spans, {k: _align(prog.buffers[k].nbytes) for k in spans})
