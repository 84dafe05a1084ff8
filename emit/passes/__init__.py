"""IR → IR rewrites, each a small pure function over the Program; `plan_memory` runs last."""

from __future__ import annotations

from ..ir import Program
from .conv_paths import one_channel_windows
from .dequant import gather_before_dequant, matmul_reads_int8
from .fold_bn import fold_batchnorm
from .fuse_act import fuse_activations
from .in_place import share_dying_inputs
from .pack_weights import pack_conv_weights
from .plan_memory import plan_memory
from .pool_loops import window_loop_pools
from .qdq import qdq_to_integer
from .schedule import sink_constant_work
from .simplify import drop_identities, prune
from .views import make_views
from .widen import widen_narrow_floats
from .winograd import winograd_convs

GRAPH_PASSES = [
    widen_narrow_floats, drop_identities, gather_before_dequant, matmul_reads_int8, qdq_to_integer, fold_batchnorm,
    fuse_activations, prune, make_views, sink_constant_work, share_dying_inputs,
]


def optimize(prog: Program, pack_weights: bool = False, winograd: bool = False,
             conv_windows_one_channel: bool = False) -> Program:
    """The graph passes; pack_weights (targets whose TOML says so: native, where the AVX register tiles read the
    packed layout by one pointer) also stores Conv weights in the GEMM's layout, and winograd (native, wasm,
    pyodide) suitable 3x3 ones in Winograd's form, before `prune` drops the old ones; pack_weights also picks the
    native build's loops for narrow MaxPools; conv_windows_one_channel (wasm, pyodide) sends convolutions of one input
    channel and several outputs to the windows path (passes/conv_paths.py)."""
    if conv_windows_one_channel:
        prog = one_channel_windows(prog)
    for p in GRAPH_PASSES:
        if p is prune:
            if winograd:
                prog = winograd_convs(prog, packed=pack_weights)
            if pack_weights:
                prog = pack_conv_weights(prog)
                prog = window_loop_pools(prog)
        prog = p(prog)
    return prog


__all__ = ["optimize", "plan_memory"]
