"""Recurrent ops: RNN, GRU, LSTM (every direction, layout, activation, clip, peephole and optional input).

The lowering writes the whole recurrence as C with literal sizes. Batch rows are independent, so the
outer loop walks the batch and the inner one walks time; the state of one row (h, c) and its gate
pre-activations live in a small per-node scratch of the arena. W, R, B, P, initial states and
sequence_lens are read through pointers, so they may be weights or runtime inputs alike."""

from __future__ import annotations

import numpy as np

from ..ir import c_type
from .common import literal, math_fn, sum_loop
from .registry import Lowering, op

N_GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}
N_ACTS = {"RNN": 1, "GRU": 2, "LSTM": 3}  # activation functions per direction
DEFAULT_ACTS = {"RNN": ["Tanh"], "GRU": ["Sigmoid", "Tanh"], "LSTM": ["Sigmoid", "Tanh", "Tanh"]}

# activation -> (takes alpha, takes beta, default alpha, default beta); alphas and betas are consumed
# in order by the functions that take them, and the defaults are onnxruntime's
ACTS: dict[str, tuple[bool, bool, float, float]] = {
    "relu": (False, False, 0.0, 0.0),
    "tanh": (False, False, 0.0, 0.0),
    "sigmoid": (False, False, 0.0, 0.0),
    "softsign": (False, False, 0.0, 0.0),
    "softplus": (False, False, 0.0, 0.0),
    "affine": (True, True, 0.0, 0.0),
    "leakyrelu": (True, False, 0.01, 0.0),
    "thresholdedrelu": (True, False, 0.0, 0.0),
    "scaledtanh": (True, True, 0.0, 0.0),
    "hardsigmoid": (True, True, 0.2, 0.5),
    "elu": (True, False, 1.0, 0.0),
}


def act_expr(name: str, alpha: float, beta: float, v: str, dtype) -> str:
    """C expression of activation `name` applied to the plain variable `v`."""
    a, b = literal(alpha, dtype), literal(beta, dtype)
    one, zero = literal(1, dtype), literal(0, dtype)

    def fn(f: str) -> str:
        return math_fn(f, dtype)

    return {
        "relu": f"({v} > {zero} ? {v} : {zero})",
        "tanh": f"{fn('tanh')}({v})",
        "sigmoid": f"({one} / ({one} + {fn('exp')}(-{v})))",
        "softsign": f"({v} / ({one} + {fn('fabs')}({v})))",
        # log(1 + e^v) without overflow for large v
        "softplus": f"({v} > {zero} ? {v} + {fn('log1p')}({fn('exp')}(-{v})) : {fn('log1p')}({fn('exp')}({v})))",
        "affine": f"({a} * {v} + {b})",
        "leakyrelu": f"({v} >= {zero} ? {v} : {a} * {v})",
        "thresholdedrelu": f"({v} > {a} ? {v} : {zero})",
        "scaledtanh": f"({a} * {fn('tanh')}({b} * {v}))",
        "hardsigmoid": f"{fn('fmax')}({zero}, {fn('fmin')}({one}, {a} * {v} + {b}))",
        "elu": f"({v} >= {zero} ? {v} : {a} * ({fn('exp')}({v}) - {one}))",
    }[name]


def _activations(ctx: Lowering, kind: str, n_dirs: int) -> list[list[tuple[str, float, float]]]:
    """Per direction, the (name, alpha, beta) of each activation function."""
    per = N_ACTS[kind]
    names = [str(n) for n in ctx.attr("activations", None) or DEFAULT_ACTS[kind] * n_dirs]
    if len(names) == per and n_dirs == 2:
        names = names * 2  # one set given for both directions
    if len(names) != per * n_dirs:
        ctx.fail(f"'activations' has {len(names)} functions; {kind} with {n_dirs} direction(s) needs {per * n_dirs}")
    alphas = list(ctx.attr("activation_alpha", None) or [])
    betas = list(ctx.attr("activation_beta", None) or [])
    out: list[tuple[str, float, float]] = []
    for name in names:
        key = name.lower()
        if key not in ACTS:
            ctx.fail(f"activation function '{name}' is not supported (supported: {', '.join(sorted(ACTS))})")
        takes_a, takes_b, alpha, beta = ACTS[key]
        if takes_a and alphas:
            alpha = float(alphas.pop(0))
        if takes_b and betas:
            beta = float(betas.pop(0))
        out.append((key, alpha, beta))
    return [out[d * per : (d + 1) * per] for d in range(n_dirs)]


def _index(coefs: list[tuple[str, int]]) -> str:
    """Sum of var*stride terms with literal strides."""
    terms = [v if s == 1 else f"{v}*{s}" for v, s in coefs if s != 0 and v != "0"]
    return " + ".join(terms) if terms else "0"


@op("RNN", "GRU", "LSTM")
def lower_recurrent(ctx: Lowering) -> None:
    kind = ctx.node.op_type
    G = N_GATES[kind]
    x, w, r = ctx.input(0), ctx.input(1), ctx.input(2)
    dt = np.dtype(x.dtype)
    if dt.kind != "f":
        ctx.fail(f"{kind} on {dt.name} is not supported (float32 and float64 are)")
    T_ = c_type(dt)
    layout = int(ctx.attr("layout", 0))
    if layout not in (0, 1):
        ctx.fail(f"layout={layout} is not supported (0 or 1)")
    if len(x.shape) != 3 or len(w.shape) != 3 or len(r.shape) != 3:
        ctx.fail("X, W and R must be 3-D")
    seq, batch = (x.shape[1], x.shape[0]) if layout else (x.shape[0], x.shape[1])
    n_in = x.shape[2]
    D, H = w.shape[0], r.shape[2]
    direction = ctx.attr("direction", "forward")
    if direction not in ("forward", "reverse", "bidirectional"):
        ctx.fail(f"direction '{direction}' is not supported")
    dirs = ["forward", "reverse"] if direction == "bidirectional" else [direction]
    if D != len(dirs) or tuple(w.shape) != (D, G * H, n_in) or tuple(r.shape) != (D, G * H, H):
        ctx.fail(f"W {tuple(w.shape)} / R {tuple(r.shape)} do not match direction '{direction}' and hidden size {H}")
    acts = _activations(ctx, kind, D)
    clip = ctx.attr("clip", None)
    input_forget = kind == "LSTM" and bool(ctx.attr("input_forget", 0))
    lbr = kind == "GRU" and bool(ctx.attr("linear_before_reset", 0))

    has_b = ctx.has_input(3)
    seq_lens = ctx.input(4) if ctx.has_input(4) else None
    if seq_lens is not None:
        known = ctx.const(4)
        if known is not None and np.all(np.asarray(known) == seq):
            seq_lens = None  # every row runs the full sequence
    init_h = ctx.input(5) if ctx.has_input(5) else None
    init_c = ctx.input(6) if kind == "LSTM" and ctx.has_input(6) else None
    peep = ctx.input(7) if kind == "LSTM" and ctx.has_input(7) else None
    y = ctx.output(0) if ctx.has_output(0) else None
    y_h = ctx.output(1) if ctx.has_output(1) else None
    y_c = ctx.output(2) if kind == "LSTM" and ctx.has_output(2) else None
    if y is None and y_h is None and y_c is None:
        return

    # scratch per batch row: gate pre-activations, h, c (LSTM), r*h or R*h (GRU)
    n_scratch = G * H + H + (H if kind == "LSTM" else 0) + (H if kind == "GRU" else 0)
    sp = ctx.scratch(n_scratch * dt.itemsize, dt)
    zero = literal(0, dt)

    # element offsets of X[t,b,k], Y[t,d,b,j], and state tensors [d,b,j] (initial_h/c, Y_h, Y_c)
    def x_at(t: str, b: str) -> str:
        return _index([(t, batch * n_in), (b, n_in)] if not layout else [(b, seq * n_in), (t, n_in)])

    def y_at(t: str, d: int, b: str) -> str:
        if not layout:
            return _index([(t, D * batch * H), (str(d * batch * H), 1), (b, H)])
        return _index([(b, seq * D * H), (t, D * H), (str(d * H), 1)])

    def st_at(d: int, b: str) -> str:
        return _index([(str(d * batch * H), 1), (b, H)] if not layout else [(b, D * H), (str(d * H), 1)])

    def clipped(v: str) -> str:
        if clip is None:
            return ""
        c = literal(float(clip), dt)
        return f" {v} = {v} < -{c} ? -{c} : ({v} > {c} ? {c} : {v});"

    xp, wp, rp = ctx.ptr(x), ctx.ptr(w), ctx.ptr(r)
    code = [f"{T_} *gates = {sp};", f"{T_} *h = {sp} + {G * H};"]
    if kind == "LSTM":
        code.append(f"{T_} *c = {sp} + {G * H + H};")
    if kind == "GRU":
        code.append(f"{T_} *aux = {sp} + {G * H + H};")
    for d, dname in enumerate(dirs):
        f_acts = acts[d]
        act = [lambda v, a=a: act_expr(a[0], a[1], a[2], v, dt) for a in f_acts]
        code.append(f"/* direction {dname} */")
        code.append(f"for (size_t b = 0; b < {batch}; ++b) {{")
        if seq_lens is not None:
            code.append(f"int64_t len_ = (int64_t){ctx.ptr(seq_lens)}[b];")
            code.append(f"size_t len = len_ < 0 ? 0 : (len_ > {seq} ? {seq} : (size_t)len_);")
        else:
            code.append(f"size_t len = {seq};")
        code.append(f"for (size_t j = 0; j < {H}; ++j) {{")
        code.append(f"h[j] = {ctx.ptr(init_h) + '[' + st_at(d, 'b') + ' + j]' if init_h is not None else zero};")
        if kind == "LSTM":
            code.append(f"c[j] = {ctx.ptr(init_c) + '[' + st_at(d, 'b') + ' + j]' if init_c is not None else zero};")
        code.append("}")
        code.append("for (size_t s = 0; s < len; ++s) {")
        code.append("size_t t = " + ("len - 1 - s;" if dname == "reverse" else "s;"))
        code.append(f"const {T_} *xt = {xp} + {x_at('t', 'b')};")
        # gate pre-activations: W x + R h + Wb + Rb (GRU: R rows of the h gate depend on linear_before_reset)
        full = 2 * H if kind == "GRU" else G * H
        bp = ctx.ptr(ctx.input(3)) if has_b else ""
        bias = f"{bp}[{_index([(str(d * 2 * G * H), 1), ('g', 1)])}] + {bp}[{d * 2 * G * H + G * H} + g]" if has_b else zero
        code.append(f"for (size_t g = 0; g < {full}; ++g) {{")
        code.append(f"const {T_} *wr = {wp} + {_index([(str(d * G * H * n_in), 1), ('g', n_in)])};")
        code.append(f"const {T_} *rr = {rp} + {_index([(str(d * G * H * H), 1), ('g', H)])};")
        code.append(f"{T_} acc = {bias};")
        code.append(sum_loop("acc", T_, n_in, "wr[k] * xt[k]", "k"))  # lane-parallel: these dots are the RNN's time
        code.append(sum_loop("acc", T_, H, "rr[k] * h[k]", "k"))
        code.append("gates[g] = acc;")
        code.append("}")
        if kind == "RNN":
            code.append(f"for (size_t j = 0; j < {H}; ++j) {{")
            code.append(f"{T_} v = gates[j];{clipped('v')}")
            code.append(f"h[j] = {act[0]('v')};")
            code.append("}")
        elif kind == "GRU":
            code += _gru_step(ctx, d, H, n_in, dt, act, clipped, has_b, lbr)
        else:
            code += _lstm_step(ctx, d, H, dt, act, clipped, peep, input_forget)
        if y is not None:
            code.append(f"for (size_t j = 0; j < {H}; ++j) {ctx.ptr(y)}[{y_at('t', d, 'b')} + j] = h[j];")
        code.append("}")  # time
        if y is not None and seq_lens is not None:
            # steps past a row's length are zero in Y, whichever the direction
            code.append(
                f"for (size_t t = len; t < {seq}; ++t) for (size_t j = 0; j < {H}; ++j) {ctx.ptr(y)}[{y_at('t', d, 'b')} + j] = {zero};"
            )
        # a row of length 0 has zero final states (as onnxruntime), not its initial ones
        final = "(len ? {0}[j] : " + zero + ")" if seq_lens is not None else "{0}[j]"
        if y_h is not None:
            code.append(f"for (size_t j = 0; j < {H}; ++j) {ctx.ptr(y_h)}[{st_at(d, 'b')} + j] = {final.format('h')};")
        if y_c is not None:
            code.append(f"for (size_t j = 0; j < {H}; ++j) {ctx.ptr(y_c)}[{st_at(d, 'b')} + j] = {final.format('c')};")
        code.append("}")  # batch
    ctx.emit("\n".join(code))


def _gru_step(ctx: Lowering, d: int, H: int, n_in: int, dt, act, clipped, has_b: bool, lbr: bool) -> list[str]:
    """z = f(.), r = f(.); h~ = g(...); h = (1-z) h~ + z h. gates holds z, r and the h gate's W part."""
    T_ = c_type(dt)
    G = 3
    bp = ctx.ptr(ctx.input(3)) if has_b else ""
    wp, rp = ctx.ptr(ctx.input(1)), ctx.ptr(ctx.input(2))
    zero, one = literal(0, dt), literal(1, dt)
    wb = f"{bp}[{d * 2 * G * H + 2 * H} + j]" if has_b else zero
    rb = f"{bp}[{d * 2 * G * H + G * H + 2 * H} + j]" if has_b else zero
    code = [f"for (size_t j = 0; j < {2 * H}; ++j) {{", f"{T_} v = gates[j];{clipped('v')}", f"gates[j] = {act[0]('v')};", "}"]
    if lbr:
        # h~ = g(Wh x + Wbh + r * (Rh h + Rbh))
        code.append(f"for (size_t j = 0; j < {H}; ++j) {{")
        code.append(f"const {T_} *rr = {rp} + {d * G * H * H + 2 * H * H} + j*{H};")
        code.append(f"{T_} acc = {rb};")
        code.append(f"for (size_t k = 0; k < {H}; ++k) acc += rr[k] * h[k];")
        code.append("aux[j] = acc;")
        code.append("}")
    else:
        # h~ = g(Wh x + Rh (r * h) + Wbh + Rbh)
        code.append(f"for (size_t j = 0; j < {H}; ++j) aux[j] = gates[{H} + j] * h[j];")
    code.append(f"for (size_t j = 0; j < {H}; ++j) {{")
    code.append(f"const {T_} *wr = {wp} + {d * G * H * n_in + 2 * H * n_in} + j*{n_in};")
    code.append(f"{T_} acc = {wb};")
    code.append(sum_loop("acc", T_, n_in, "wr[k] * xt[k]", "k"))
    if lbr:
        code.append(f"acc += gates[{H} + j] * aux[j];")
    else:
        code.append(f"const {T_} *rr = {rp} + {d * G * H * H + 2 * H * H} + j*{H};")
        code.append(f"acc += {rb};")
        code.append(sum_loop("acc", T_, H, "rr[k] * aux[k]", "k"))
    code.append(f"gates[{2 * H} + j] = acc;")
    code.append("}")
    code.append(f"for (size_t j = 0; j < {H}; ++j) {{")
    code.append(f"{T_} v = gates[{2 * H} + j];{clipped('v')}")
    code.append(f"{T_} z = gates[j];")
    code.append(f"h[j] = ({one} - z) * {act[1]('v')} + z * h[j];")
    code.append("}")
    return code


def _lstm_step(ctx: Lowering, d: int, H: int, dt, act, clipped, peep, input_forget: bool) -> list[str]:
    """Gates in ONNX order i, o, f, c; peepholes P in order i, o, f."""
    T_ = c_type(dt)
    one = literal(1, dt)
    pp = ctx.ptr(peep) if peep is not None else ""

    def pe(k: int, state: str) -> str:
        return f" + {pp}[{d * 3 * H + k * H} + j] * {state}" if peep is not None else ""

    code = [f"for (size_t j = 0; j < {H}; ++j) {{", f"{T_} cp = c[j];"]
    code.append(f"{T_} vi = gates[j]{pe(0, 'cp')};{clipped('vi')}")
    code.append(f"{T_} ig = {act[0]('vi')};")
    if input_forget:
        code.append(f"{T_} fg = {one} - ig;")
    else:
        code.append(f"{T_} vf = gates[{2 * H} + j]{pe(2, 'cp')};{clipped('vf')}")
        code.append(f"{T_} fg = {act[0]('vf')};")
    code.append(f"{T_} vc = gates[{3 * H} + j];{clipped('vc')}")
    code.append(f"{T_} cn = fg * cp + ig * {act[1]('vc')};")
    code.append(f"{T_} vo = gates[{H} + j]{pe(1, 'cn')};{clipped('vo')}")
    code.append("c[j] = cn;")
    code.append(f"h[j] = {act[0]('vo')} * {act[2]('cn')};")
    code.append("}")
    return code
