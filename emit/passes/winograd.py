"""Store the weights of suitable 3x3 convolutions in Winograd's F(2x2, 3x3) or F(4x4, 3x3) form, once, at export
time, for runtime_c/conv.c's conv_winograd2/conv_winograd4: U = G g G^T for each (output, input) channel pair, laid out as N^2
matrices of m x c (N = T + 2 for T x T output tiles; U[xi] = (G g G^T)[xi // N][xi % N]). The convolution then costs
16 products per 2x2 outputs and channel pair instead of 36 (F(2x2)), or 36 per 4x4 outputs instead of 144 (F(4x4)),
plus transforms linear in the tiles (resnet-style 64-512 channel layers: 1.4-1.75x faster natively with F(2x2)).
F(4x4) in wasm builds on outputs of 13x13 and more (F4_MIN_SIDE); F(2x2) elsewhere: with AVX-512, F(4x4) was 1.05-1.1x
faster only on 40x40+ outputs and 0.6-0.95x on the rest (its short rows of tiles against 16-float vectors).

Only stride-1, undilated 3x3 2-D convolutions of one group with enough channels take it: with few, the 16 GEMMs'
short K (input channels) and few rows (output channels) lose what the products save, as do the transforms on small
outputs. Where that happens depends on the build (measured: Winograd's time against the faster of windows and
im2col): under V8 (wasm's 4x4 tile without FMA) 32 input channels suffice (1.1-2.2x faster; 16: 1.0-1.4x); with
AVX-512's register tiles, 32+ input and output channels from 16x16 outputs (1.1-1.7x), 48+ input channels from 8x8
(1.1-1.6x; 32: 0.9-1.0x), and smaller outputs only for 65536+ channel pairs (512 x 512 on 7x7: 1.7x; 64 x 64: 0.8x);
16 input channels for 64+ outputs on 32x32+ (1.2x).
The weights grow by 16/9 (F(2x2)) or 4 (F(4x4)): their storage, not the arena.
"""

from __future__ import annotations

import numpy as np

from ..ir import Node, Program
from .pack_weights import PACK_ROWS, pack_rows

MIN_CHANNELS = 32  # input channels (K of the 16 GEMMs)
MIN_OUTPUTS = 8  # output channels: wasm
MIN_SIDE = 4  # output rows and columns: wasm
# packed (AVX) builds: output channels, then what each size of outputs needs
PACKED_MIN_OUTPUTS = 32
PACKED_ANY_SIDE = 16  # from here on, MIN_CHANNELS
PACKED_MID_SIDE, PACKED_MID_CHANNELS = 8, 48  # from 8x8 outputs, 48 input channels
PACKED_SMALL_PAIRS = 65536  # below 8x8, input x output channels
# and 16+ input channels where the outputs are many: 64+ output channels on 32x32+ (squeezenet's 16 -> 64 expand on
# 55x55: 1.2x since the register tile's K = 16 products run in registers)
PACKED_WIDE_CHANNELS, PACKED_WIDE_OUTPUTS, PACKED_WIDE_SIDE = 16, 64, 32

# F(4x4, 3x3) from outputs this size (4 x 4 tiles: the GEMMs' columns) in wasm: under V8 1.25-1.7x faster than
# F(2x2) from 13x13 on (64 -> 64 on 40x40 1.58x, resnet50's 64 -> 64 on 56x56 1.70x, squeezenet's 13x13 1.3x); on
# 10x10 (3 x 3 tiles, 144 outputs computed for 100) no faster, on 7x7 0.7-1.0x
F4_MIN_SIDE = 13
# the filter transforms (Lavin & Gray), U = G g G^T, by output tile side: F(2x2, 3x3) and F(4x4, 3x3)
G = {
    2: np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]]),
    4: np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6], [1 / 24, 1 / 12, 1 / 6],
                 [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]]),
}


def takes_winograd(n: Node, w: np.ndarray, out: tuple, packed: bool) -> bool:
    """A Conv conv.c's conv_winograd can run, with enough channels and outputs for it to pay on the build (packed:
    the AVX register tiles of a native build)."""
    if n.op_type != "Conv" or n.domain != "" or w.dtype != np.float32 or w.ndim != 4 or len(out) != 4:
        return False
    if tuple(w.shape[2:]) != (3, 3) or int(n.attrs.get("group", 1)) != 1:
        return False
    if any(int(s) != 1 for s in n.attrs.get("strides") or [1, 1]):
        return False
    if any(int(d) != 1 for d in n.attrs.get("dilations") or [1, 1]):
        return False
    if any(int(p) < 0 for p in n.attrs.get("pads") or [0] * 4):
        return False
    m, c, side = int(w.shape[0]), int(w.shape[1]), min(int(out[2]), int(out[3]))
    if packed and c >= PACKED_WIDE_CHANNELS and m >= PACKED_WIDE_OUTPUTS and side >= PACKED_WIDE_SIDE:
        return True
    if c < MIN_CHANNELS or m < MIN_OUTPUTS or side < MIN_SIDE:
        return False
    if not packed:
        return True
    if m < PACKED_MIN_OUTPUTS:
        return False
    if side >= PACKED_ANY_SIDE:
        return True
    if side >= PACKED_MID_SIDE:
        return c >= PACKED_MID_CHANNELS
    return c * m >= PACKED_SMALL_PAIRS


def winograd_tile(out: tuple, packed: bool) -> int:
    """The output tile side of a convolution takes_winograd accepts: 4 (F(4x4, 3x3)) or 2."""
    return 4 if not packed and min(int(out[2]), int(out[3])) >= F4_MIN_SIDE else 2


def winograd_weights(w: np.ndarray, packed: bool, tile: int = 2) -> np.ndarray:
    """w (m, c, 3, 3) -> U for F(tile x tile, 3x3), nn = (tile + 2)^2 matrices: (nn * m, c), or (nn * row groups,
    c, PACK_ROWS) packed per U[xi]."""
    m, c = w.shape[:2]
    g, nn = G[tile], (tile + 2) ** 2
    u = np.einsum("ik,mckl,jl->ijmc", g, w.astype(np.float64), g).reshape(nn * m, c).astype(np.float32)
    # packed: each U[xi] is a group of pack_rows, so it gets its own row groups, as a grouped conv's weight does
    return pack_rows(u, nn, PACK_ROWS) if packed else np.ascontiguousarray(u)


def winograd_convs(prog: Program, packed: bool = False) -> Program:
    """packed: the target packs Conv weights (its register tiles read U[xi] as a packed weight)."""
    for n in prog.nodes:
        if n.op_type != "Conv" or len(n.inputs) < 2 or "__packed_w__" in n.attrs:
            continue
        w = prog.weight_value(n.inputs[1])
        if w is None or not takes_winograd(n, w, prog.buffers[n.outputs[0]].shape, packed):
            continue
        n.attrs["__packed_w__"] = tuple(int(d) for d in w.shape)
        n.attrs["__pack_rows__"] = PACK_ROWS if packed else 0
        tile = winograd_tile(prog.buffers[n.outputs[0]].shape, packed)
        n.attrs["__winograd__"] = tile
        n.inputs[1] = prog.add_weight(n.inputs[1], winograd_weights(w, packed, tile), "__winograd")
    return prog
