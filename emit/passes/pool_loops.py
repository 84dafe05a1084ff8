"""Which loop a 2-D MaxPool without Indices runs as, where the build decides it (ops/pool.py lowers it)."""

from __future__ import annotations

from ..ir import Program

# native builds (gcc/clang -O3 -march=native, the targets that pack Conv weights): output rows narrower than this keep
# the one-window-at-a-time loop, which those compilers vectorise; columns first measured 1.1x faster on squeezenet's
# 54-wide pool but 1.1x and 2.2x slower on its 27- and 13-wide ones. Elsewhere (wasm: 3-6x faster on mtcnn's 23- and
# 10-wide pools under V8; scalar microcontrollers: fewer compares) columns first always.
NATIVE_WINDOW_LOOP_WIDTH = 32


def window_loop_pools(prog: Program) -> Program:
    """Mark the MaxPools a native build runs one window at a time (attrs["__window_loop__"])."""
    for n in prog.nodes:
        if n.op_type == "MaxPool" and n.domain == "":
            out = prog.buffers[n.outputs[0]].shape
            if len(out) == 4 and int(out[3]) < NATIVE_WINDOW_LOOP_WIDTH:
                n.attrs["__window_loop__"] = 1
    return prog
