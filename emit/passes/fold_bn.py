"""Fold an inference BatchNormalization, or an Add or Mul of a per-channel constant (a bias some exporters write as
an Add after a bias-less layer: paddle2onnx's ConvTranspose), into the Conv, ConvTranspose or Gemm before it
(weights are constants). Once folded, the activation after it can fuse too.

Each is y * s + t per output channel: BN with s = scale / sqrt(var + eps) and t = B - mean * s; Add with s = 1 and
t the constant; Mul with s the constant and t = 0. The producer's weights are scaled per output channel by s and
its bias becomes b * s + t: new weight Buffers (the old ones may be shared), computed in float64 and cast back."""

from __future__ import annotations

import numpy as np

from ..ir import Node, Program
from .simplify import absorb, sole_producer

FOLDABLE = ("Conv", "ConvTranspose", "Gemm")


def _bn_affine(prog: Program, bn: Node, channels: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(s, t) in float64, or None if BN is not an inference BN over `channels` constant channels."""
    if bn.domain != "" or len(bn.inputs) < 5 or bool(bn.attrs.get("training_mode", 0)):
        return None
    if any(o for o in bn.outputs[1:]):
        return None  # training outputs requested
    if bn.attrs.get("spatial", 1) != 1:
        return None
    vals = [prog.weight_value(n) for n in bn.inputs[1:5]]
    if any(v is None or v.size != channels for v in vals):
        return None
    scale, bias, mean, var = (np.asarray(v, np.float64).reshape(-1) for v in vals)
    s = scale / np.sqrt(var + float(bn.attrs.get("epsilon", 1e-5)))
    return s, bias - mean * s


def _constant_affine(prog: Program, node: Node, src: str, channels: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(s, t) of `src + c` or `src * c` (either order) for a constant c that varies along axis 1 only (a scalar
    too), whose result has src's shape; else None."""
    if node.domain != "" or len(node.inputs) != 2 or src not in node.inputs:
        return None
    other = node.inputs[1] if node.inputs[0] == src else node.inputs[0]
    c = prog.weight_value(other)
    x = prog.buffers[src]
    if c is None or c.ndim > len(x.shape) or prog.buffers[node.outputs[0]].shape != x.shape:
        return None
    if np.dtype(c.dtype) != np.dtype(x.dtype):
        return None
    shape = (1,) * (len(x.shape) - c.ndim) + tuple(c.shape)
    if any(d != 1 for a, d in enumerate(shape) if a != 1) or shape[1] not in (1, channels):
        return None
    v = np.broadcast_to(np.asarray(c, np.float64).reshape(-1), (channels,))
    return (np.ones(channels), v.copy()) if node.op_type == "Add" else (v.copy(), np.zeros(channels))


def _affine(prog: Program, node: Node, src: str, channels: int) -> tuple[np.ndarray, np.ndarray] | None:
    if node.op_type == "BatchNormalization":
        return _bn_affine(prog, node, channels) if node.inputs[0] == src else None
    if node.op_type in ("Add", "Mul"):
        return _constant_affine(prog, node, src, channels)
    return None


def _fold_conv(prog: Program, p: Node, s: np.ndarray, t: np.ndarray) -> bool:
    w = prog.weight_value(p.inputs[1])
    if w is None or w.ndim < 3:
        return False
    has_b = len(p.inputs) > 2 and bool(p.inputs[2])
    b = prog.weight_value(p.inputs[2]) if has_b else np.zeros(len(s))
    if b is None:
        return False
    w64 = w.astype(np.float64)
    if np.all(s == 1):
        pass  # a bias: the weights stay as they are
    elif p.op_type == "Conv":
        if w.shape[0] != len(s):
            return False
        w64 = w64 * s.reshape(-1, *[1] * (w.ndim - 1))
    else:  # ConvTranspose: W is (C, M/group, k...), output channel g*(M/group) + j
        group = int(p.attrs.get("group", 1))
        mg = w.shape[1]
        if mg * group != len(s) or w.shape[0] % group:
            return False
        ws = w64.reshape(group, w.shape[0] // group, mg, -1) * s.reshape(group, 1, mg, 1)
        w64 = ws.reshape(w.shape)
    bias = b.astype(np.float64).reshape(-1) * s + t
    inputs = list(p.inputs) + [""] * (3 - len(p.inputs))
    if not np.all(s == 1):
        inputs[1] = prog.add_weight(p.inputs[1], w64.astype(w.dtype), "__bn")
    inputs[2] = prog.add_weight(p.inputs[2] if has_b else f"{p.inputs[1]}_bias", bias.astype(w.dtype), "__bn")
    p.inputs = inputs
    return True


def _fold_gemm(prog: Program, p: Node, s: np.ndarray, t: np.ndarray) -> bool:
    """Y = alpha * A op(B) + beta * C; BN scales columns: op(B) columns by s, C becomes beta*C*s + t, beta 1."""
    bmat = prog.weight_value(p.inputs[1])
    if bmat is None or bmat.ndim != 2:
        return False
    tb = bool(p.attrs.get("transB", 0))
    n = bmat.shape[0] if tb else bmat.shape[1]
    if n != len(s):
        return False
    has_c = len(p.inputs) > 2 and bool(p.inputs[2])
    beta = float(p.attrs.get("beta", 1.0))
    c = prog.weight_value(p.inputs[2]) if has_c else np.zeros(())
    if c is None:
        return False
    b64 = bmat.astype(np.float64) * (s.reshape(-1, 1) if tb else s.reshape(1, -1))
    c64 = (beta * c.astype(np.float64) if has_c and beta != 0.0 else np.zeros(())) * s + t  # broadcasts to (..., N)
    inputs = list(p.inputs) + [""] * (3 - len(p.inputs))
    if not np.all(s == 1):
        inputs[1] = prog.add_weight(p.inputs[1], b64.astype(bmat.dtype), "__bn")
    inputs[2] = prog.add_weight(p.inputs[2] if has_c else f"{p.inputs[1]}_bias", c64.astype(bmat.dtype), "__bn")
    p.inputs = inputs
    p.attrs["beta"] = 1.0
    return True


def fold_batchnorm(prog: Program) -> Program:
    producers = prog.producers()
    consumers = prog.consumers()
    dropped: set[int] = set()
    for n in prog.nodes:
        if n.op_type not in ("BatchNormalization", "Add", "Mul") or not n.inputs:
            continue
        p = next((q for src in n.inputs if src and (q := sole_producer(prog, producers, consumers, src, FOLDABLE))),
                 None)
        if p is None:
            continue
        src = p.outputs[0]
        x = prog.buffers[src]
        if np.dtype(x.dtype).kind != "f" or len(x.shape) < 2:
            continue
        affine = _affine(prog, n, src, x.shape[1])
        if affine is None:
            continue
        fold = _fold_gemm if p.op_type == "Gemm" else _fold_conv
        if not fold(prog, p, *affine):
            continue
        absorb(prog, p, n, producers)
        dropped.add(id(n))
    prog.nodes = [n for n in prog.nodes if id(n) not in dropped]
    return prog
