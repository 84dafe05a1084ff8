"""Target choices among the convolution paths that the lowering cannot see from a node alone.

one_channel_windows (targets whose TOML sets `conv_windows_one_channel`: wasm, pyodide): a 2-D convolution of one
input channel per group and several outputs (a grayscale model's first layer) runs on windows of column planes into
the GEMM, where other targets keep the direct kernel per output channel: under V8 lenet's 1 -> 6 5x5 on 28x28 took
19.0 us by windows against 22.5 us per channel; with AVX-512 6.1 us against 4.1 (so native keeps it)."""

from __future__ import annotations

from ..ir import Program


def one_channel_windows(prog: Program) -> Program:
    """Mark every Conv (attrs["__windows_one_channel__"]); ops/conv.py's by_windows takes the shapes it fits."""
    for n in prog.nodes:
        if n.op_type == "Conv" and n.domain == "":
            n.attrs["__windows_one_channel__"] = 1
    return prog
