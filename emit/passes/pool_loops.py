"""Which loop a 2-D MaxPool without Indices runs as, where the build decides it (ops/pool.py lowers it)."""

from __future__ import annotations

from ..ir import Program

# native builds (gcc/clang -O3 -march=native, the targets that pack Conv weights): output rows narrower than this keep
# the one-window-at-a-time loop, which those compilers vectorise; columns first (3x3 stride 2, whole windows' rows in
# one pass) measured 1.25x, 1.2x and 1.06x faster on 55-, 27- and 19-wide rows, 1.4x and 1.3x slower on 17- and
# 15-wide ones. Elsewhere (wasm: 3-6x faster on mtcnn's 23- and 10-wide pools under V8; scalar microcontrollers:
# fewer compares) columns first always.
NATIVE_WINDOW_LOOP_WIDTH = 18


def window_loop_pools(prog: Program) -> Program:
    """Mark the MaxPools a native build runs one window at a time (attrs["__window_loop__"])."""
    for n in prog.nodes:
        if n.op_type == "MaxPool" and n.domain == "":
            out = prog.buffers[n.outputs[0]].shape
            if len(out) == 4 and int(out[3]) < NATIVE_WINDOW_LOOP_WIDTH:
                n.attrs["__window_loop__"] = 1
    return prog
