"""A model in QDQ form computes in integers where the pattern allows.

    DQ(xq) ─┐
    DQ(wq) ─┼─ Conv ─ [Relu] ─ Q ─▶ yq      becomes   QLinearConv(xq, wq, bq) ─ [Max(·, y_zero_point)] ─▶ yq
    DQ(bq) ─┘                                                      (int8/uint8 in, int32 accumulation, requantised out)

and DQ(a) · DQ(b) ─ MatMul ─ [Relu] ─ Q becomes QLinearMatMul. Relu before Q is exactly max(q, y_zero_point):
quantisation is monotone and maps 0 to the zero point. The importer leaves DequantizeLinear of int8 constants
unfolded so the weights reach this pass as integers; `fold_constant_dequant` then folds the ones no pattern took."""

from __future__ import annotations

import numpy as np

from ..importer.static import EXPAND_LIMIT
from ..ir import ARENA, OUTPUT, WEIGHT, Buffer, Node, Program
from .simplify import splice

QUANTIZED = ("int8", "uint8")


def _weight(prog: Program, name: str) -> np.ndarray | None:
    if not name:
        return None
    b = prog.buffers[name]
    return b.data if b.storage == WEIGHT and b.data is not None else None


def _only_use(prog: Program, consumers: dict, name: str, user: Node) -> bool:
    uses = consumers.get(name, [])
    return len(uses) == 1 and uses[0] is user and prog.buffers[name].storage != OUTPUT and name not in prog.outputs


def _dequant(prog: Program, producers: dict, name: str) -> Node | None:
    """The DequantizeLinear writing `name` from an int8/uint8 tensor, unblocked."""
    dq = producers.get(name)
    if dq is None or dq.op_type != "DequantizeLinear" or dq.domain or dq.attrs.get("block_size", 0):
        return None
    if np.dtype(prog.buffers[dq.inputs[0]].dtype).name not in QUANTIZED:
        return None
    return dq


def _per_tensor(prog: Program, dq: Node) -> bool:
    scale = prog.buffers[dq.inputs[1]]
    zp = dq.inputs[2] if len(dq.inputs) > 2 else ""
    return scale.storage == WEIGHT and scale.size == 1 and (not zp or prog.buffers[zp].size == 1)


def _per_channel(prog: Program, dq: Node, axis: int, channels: int) -> bool:
    """Per tensor, or one scale (and zero point) per `channels` along `axis` of a constant weight."""
    if _weight(prog, dq.inputs[0]) is None or _weight(prog, dq.inputs[1]) is None:
        return False
    if _per_tensor(prog, dq):
        return True
    w = prog.buffers[dq.inputs[0]]
    dq_axis = dq.attrs.get("axis", 1)
    dq_axis = dq_axis + len(w.shape) if dq_axis < 0 else dq_axis
    sizes = {prog.buffers[i].size for i in dq.inputs[1:3] if i}
    return dq_axis == axis and sizes == {channels} and all(len(prog.buffers[i].shape) == 1 for i in dq.inputs[1:3] if i)


def _zero_point(dq: Node) -> str:
    return dq.inputs[2] if len(dq.inputs) > 2 else ""


def _int_bias(prog: Program, producers: dict, name: str, x_dq: Node, w_dq: Node) -> str | None:
    """The int32 bias behind DQ(bq) when its scale is x_scale * w_scale and its zero point 0 ('' if no bias)."""
    if not name:
        return ""
    dq = producers.get(name)
    if dq is None or dq.op_type != "DequantizeLinear" or dq.domain:
        return None
    bq, bs = _weight(prog, dq.inputs[0]), _weight(prog, dq.inputs[1])
    zp = _weight(prog, _zero_point(dq)) if _zero_point(dq) else np.zeros(1, np.int32)
    xs, ws = _weight(prog, x_dq.inputs[1]), _weight(prog, w_dq.inputs[1])
    if bq is None or bs is None or zp is None or xs is None or ws is None or bq.dtype != np.int32 or np.any(zp != 0):
        return None
    want = xs.astype(np.float64).reshape(-1) * ws.astype(np.float64).reshape(-1)
    if not np.allclose(bs.astype(np.float64).reshape(-1), want, rtol=1e-6, atol=0):
        return None
    return dq.inputs[0]


def _integer_layer(prog: Program, producers: dict, consumers: dict, q: Node) -> list[Node] | None:
    """The nodes replacing `q` and the float layer before it, or None when the pattern does not hold."""
    if q.domain or q.attrs.get("block_size", 0) or not _per_tensor(prog, q):
        return None
    yq = prog.buffers[q.outputs[0]]
    if np.dtype(yq.dtype).name not in QUANTIZED:
        return None
    layer = producers.get(q.inputs[0])
    relu = None
    if layer is not None and layer.op_type == "Relu" and not layer.domain and _only_use(prog, consumers, q.inputs[0], q):
        relu, layer = layer, producers.get(layer.inputs[0])
        if layer is None or not _only_use(prog, consumers, relu.inputs[0], relu):
            return None
    elif layer is None or not _only_use(prog, consumers, q.inputs[0], q):
        return None
    if layer.domain or layer.op_type not in ("Conv", "MatMul"):
        return None
    a_dq, b_dq = _dequant(prog, producers, layer.inputs[0]), _dequant(prog, producers, layer.inputs[1])
    if a_dq is None or b_dq is None or not _per_tensor(prog, a_dq):
        return None
    y_scale, y_zp = q.inputs[1], q.inputs[2] if len(q.inputs) > 2 else ""
    a = [a_dq.inputs[0], a_dq.inputs[1], _zero_point(a_dq)]
    b = [b_dq.inputs[0], b_dq.inputs[1], _zero_point(b_dq)]
    w = prog.buffers[b_dq.inputs[0]]
    if layer.op_type == "Conv":
        if not _per_channel(prog, b_dq, 0, w.shape[0]):
            return None
        bias = _int_bias(prog, producers, layer.inputs[2] if len(layer.inputs) > 2 else "", a_dq, b_dq)
        if bias is None:
            return None
        fused = Node("QLinearConv", f"{layer.name}__int", [*a, *b, y_scale, y_zp] + ([bias] if bias else []), [q.outputs[0]],
                     dict(layer.attrs))
    else:
        if len(w.shape) != 2 or not _per_channel(prog, b_dq, 1, w.shape[1]):
            return None
        fused = Node("QLinearMatMul", f"{layer.name}__int", [*a, *b, y_scale, y_zp], [q.outputs[0]])
    if relu is None:
        return [fused]
    # relu(y) quantised == max(quantised y, y_zero_point); a missing zero point is 0 of the output type
    if not y_zp:
        y_zp = f"{q.outputs[0]}__zp"
        prog.buffers[y_zp] = Buffer(y_zp, yq.dtype, (), WEIGHT, data=np.zeros((), yq.dtype))
    pre = Buffer(f"{q.outputs[0]}__prerelu", yq.dtype, yq.shape, ARENA)
    prog.buffers[pre.name] = pre
    fused.outputs = [pre.name]
    return [fused, Node("Max", f"{relu.name}__int", [pre.name, y_zp], [q.outputs[0]])]


def qdq_to_integer(prog: Program) -> Program:
    producers, consumers = prog.producers(), prog.consumers()
    rewrites: dict[int, list[Node]] = {}
    gone: set[int] = set()
    for q in prog.nodes:
        if q.op_type != "QuantizeLinear":
            continue
        new = _integer_layer(prog, producers, consumers, q)
        if new is None:
            continue
        rewrites[id(q)] = new
        layer = producers[q.inputs[0]]
        gone.add(id(layer))
        if layer.op_type == "Relu":
            gone.add(id(producers[layer.inputs[0]]))
    splice(prog, rewrites, gone)
    return fold_constant_dequant(prog)


def _dequantized(prog: Program, dq: Node) -> np.ndarray | None:
    """DequantizeLinear of constants in numpy (per tensor, per axis, blocked), in the scale's dtype."""
    x, scale = _weight(prog, dq.inputs[0]), _weight(prog, dq.inputs[1])
    zp = _weight(prog, _zero_point(dq)) if _zero_point(dq) else None
    if x is None or scale is None or (_zero_point(dq) and zp is None):
        return None
    axis = dq.attrs.get("axis", 1)
    axis = axis + x.ndim if axis < 0 else axis
    block = int(dq.attrs.get("block_size", 0))

    def spread(v: np.ndarray) -> np.ndarray:
        if v.size == 1:
            return v.reshape(())
        if block:
            v = np.repeat(v, block, axis=axis)
            v = np.take(v, np.arange(x.shape[axis]), axis=axis)
            return v
        return v.reshape([-1 if d == axis else 1 for d in range(x.ndim)])

    z = spread(zp).astype(np.int64) if zp is not None else 0
    out = ((x.astype(np.int64) - z).astype(np.float64) * spread(scale).astype(np.float64)).astype(scale.dtype)
    return out


def fold_constant_dequant(prog: Program) -> Program:
    """DequantizeLinear nodes left with constant inputs become float weights, unless that would grow the binary
    a lot (then the int8 weight stays in flash and is widened at run time, as the importer does for Cast)."""
    kept = []
    for n in prog.nodes:
        if n.op_type == "DequantizeLinear" and not n.domain and prog.buffers[n.outputs[0]].storage != OUTPUT:
            value = _dequantized(prog, n)
            out = prog.buffers[n.outputs[0]]
            if value is not None and tuple(value.shape) == tuple(out.shape) and value.dtype == out.dtype:
                x = prog.buffers[n.inputs[0]]
                if not (value.nbytes > EXPAND_LIMIT and value.nbytes > 2 * x.nbytes):
                    prog.buffers[out.name] = Buffer(out.name, out.dtype, out.shape, WEIGHT, data=value)
                    continue
        kept.append(n)
    prog.nodes = kept
    return prog


__all__ = ["qdq_to_integer", "fold_constant_dequant"]
