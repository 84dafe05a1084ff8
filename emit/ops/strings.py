"""String tensors: Equal on strings, StringConcat, StringSplit, StringNormalizer.

A string element is a fixed slot of ir.STRING_BYTES bytes of UTF-8, NUL-padded (ir.STRING_DTYPE), so
no op needs malloc: lengths are found by loops bounded by the slot, results that would not fit make
the model return 1 instead of being cut short."""

from __future__ import annotations

import numpy as np

from ..ir import STRING_BYTES, Buffer, encode_strings
from .common import broadcast_strides, collapse, index_expr, loop_nest, strides
from .registry import Lowering, op

SLOT = STRING_BYTES
TEXT = STRING_BYTES - 1  # at most this many bytes of text; the slot's last byte stays NUL

# the length of the string at `p`, bounded by its slot (C statements; `n` is declared by the caller)
_LEN = "{n} = 0; while ({n} < " + str(TEXT) + " && {p}[{n}]) ++{n};"


def _broadcast(out: Buffer, operands: list[Buffer], body: str) -> str:
    """A loop over out's elements; body's {0}, {1}, ... are the operands' element indices, {-1} out's."""
    sts = [broadcast_strides(b.shape, out.shape) for b in operands] + [strides(out.shape)]
    cshape, csts = collapse(tuple(out.shape), sts)
    vars_ = [f"i{k}" for k in range(len(cshape))]
    idx = [f"({index_expr(vars_, s)})" for s in csts]
    return loop_nest(cshape, body.replace("{out}", idx[-1]).format(*idx[:-1]))


def _string_inputs(ctx: Lowering, count: int) -> list[Buffer]:
    ins = [ctx.input(k) for k in range(count)]
    if any(b.dtype.kind != "S" for b in ins):
        ctx.fail("inputs must be string tensors")
    return ins


def _pairwise(ctx: Lowering, body: str) -> None:
    """A broadcast loop over two string inputs; body sees `a` and `b` (their slots) and {out} (y's index)."""
    a, b = _string_inputs(ctx, 2)
    y = ctx.output(0)
    if y.size == 0:
        return
    head = f"const char *a = {ctx.ptr(a)} + {{0}}*{SLOT}, *b = {ctx.ptr(b)} + {{1}}*{SLOT};\n"
    ctx.emit(_broadcast(y, [a, b], head + body))


def lower_string_equal(ctx: Lowering) -> None:
    """Equal of two string tensors (called by the Equal lowering): byte-wise equality of the texts."""
    _pairwise(
        ctx,
        f"size_t k = 0;\nwhile (k < {TEXT} && a[k] == b[k] && a[k]) ++k;\n"
        f"{ctx.ptr(ctx.output(0))}[{{out}}] = (k == {TEXT} || a[k] == b[k]);",
    )


@op("StringConcat")
def lower_string_concat(ctx: Lowering) -> None:
    """y = x + y element-wise (broadcast); a result longer than a slot holds makes the model return 1.
    The text is assembled in a local slot first, so the output may share memory with an input."""
    _pairwise(
        ctx,
        f"char t[{SLOT}];\nsize_t la, lb;\nmemset(t, 0, {SLOT});\n"
        + _LEN.format(n="la", p="a")
        + "\n"
        + _LEN.format(n="lb", p="b")
        + f"\nif (la + lb > {TEXT}) return 1; /* the concatenation does not fit a {SLOT}-byte string slot */\n"
        "memcpy(t, a, la);\nmemcpy(t + la, b, lb);\n"
        f"memcpy({ctx.ptr(ctx.output(0))} + {{out}}*{SLOT}, t, {SLOT});",
    )


@op("StringSplit")
def lower_string_split(ctx: Lowering) -> None:
    """Python's str.split: by `delimiter`, or on runs of whitespace when it is empty or absent (leading
    and, as onnxruntime does, trailing whitespace of the unsplit rest skipped; no empty parts); at most `maxsplit` splits. Parts go to y[..., P] (P from the
    declared output shape, padded with empty strings), their count to z; more than P parts returns 1."""
    (x,) = _string_inputs(ctx, 1)
    y, z = ctx.output(0), ctx.output(1)
    delim = ctx.attr("delimiter", "")
    delim = delim.decode("utf-8") if isinstance(delim, bytes) else str(delim or "")
    dbytes = delim.encode("utf-8")
    maxsplit = int(ctx.attr("maxsplit", -1))
    if len(dbytes) > TEXT:
        ctx.fail(f"delimiter of {len(dbytes)} bytes is longer than a string slot ({TEXT})")
    if tuple(y.shape[:-1]) != tuple(x.shape) or tuple(z.shape) != tuple(x.shape):
        ctx.fail(f"output shapes {list(y.shape)} and {list(z.shape)} do not extend the input's {list(x.shape)}")
    parts = y.shape[-1]
    if x.size == 0:
        return
    limit = "1" if maxsplit < 0 else f"n < {maxsplit}"
    put = (
        f"if (n >= {parts}) return 1; /* more parts than the compiled {parts} */\n"
        f"memcpy(out + n*{SLOT}, s + {{b}}, {{e}} - {{b}}); ++n;"
    )
    if dbytes:
        lit = "".join(f"\\x{c:02x}" for c in dbytes)
        scan = (
            "for (;;) {\n"
            "size_t hit = len;\n"
            f"if ({limit}) for (size_t q = start; q + {len(dbytes)} <= len; ++q) if (memcmp(s + q, \"{lit}\", {len(dbytes)}) == 0) {{ hit = q; break; }}\n"
            + put.format(b="start", e="hit")
            + f"\nif (hit == len) break;\nstart = hit + {len(dbytes)};\n}}"
        )
    else:
        ws = "(c == ' ' || (c >= '\\t' && c <= '\\r') || (c >= '\\x1c' && c <= '\\x1f'))"
        scan = (
            "for (;;) {\n"
            f"while (start < len) {{ const char c = s[start]; if (!{ws}) break; ++start; }}\n"
            "if (start >= len) break;\n"
            "size_t stop = len;\n"
            f"if ({limit}) {{ stop = start; while (stop < len) {{ const char c = s[stop]; if ({ws}) break; ++stop; }} }}\n"
            # the unsplit rest loses its trailing whitespace too, as in onnxruntime
            f"else while (stop > start) {{ const char c = s[stop - 1]; if (!{ws}) break; --stop; }}\n"
            + put.format(b="start", e="stop")
            + "\nstart = stop;\n}"
        )
    ctx.emit(
        f"for (size_t e = 0; e < {x.size}; ++e) {{\n"
        f"const char *s = {ctx.ptr(x)} + e*{SLOT};\nchar *out = {ctx.ptr(y)} + e*{parts * SLOT};\n"
        "size_t len, n = 0, start = 0;\n"
        + _LEN.format(n="len", p="s")
        + (f"\nmemset(out, 0, {parts * SLOT});\n" if parts else "\n")
        + scan
        + f"\n{ctx.ptr(z)}[e] = (int64_t)n;\n}}"
    )


def _ascii_case(c: str, action: str) -> str:
    """C expression: the char `c` with its ASCII letters lowered, raised, or unchanged."""
    if action == "LOWER":
        return f"(char)(({c} >= 'A' && {c} <= 'Z') ? {c} + 32 : {c})"
    if action == "UPPER":
        return f"(char)(({c} >= 'a' && {c} <= 'z') ? {c} - 32 : {c})"
    return c


@op("StringNormalizer")
def lower_string_normalizer(ctx: Lowering) -> None:
    """Drops the elements equal to a stopword (ignoring ASCII case unless is_case_sensitive), then
    changes case (LOWER/UPPER; ASCII letters only, other bytes pass through). How many remain is known
    from the declared output shape and checked at run time (none left gives one empty string)."""
    (x,) = _string_inputs(ctx, 1)
    y = ctx.output(0)
    action = ctx.attr("case_change_action", "NONE")
    action = action.decode() if isinstance(action, bytes) else str(action)
    if action not in ("NONE", "LOWER", "UPPER"):
        ctx.fail(f"case_change_action '{action}' must be NONE, LOWER or UPPER")
    sensitive = bool(ctx.attr("is_case_sensitive", 0))
    stops = [w.decode("utf-8") if isinstance(w, bytes) else str(w) for w in ctx.attr("stopwords", []) or []]
    if len(x.shape) == 2 and x.shape[0] != 1 or len(x.shape) not in (1, 2):
        ctx.fail(f"input shape {list(x.shape)} must be [C] or [1, C]")
    if len(y.shape) != len(x.shape):
        ctx.fail(f"output shape {list(y.shape)} must have the input's rank")
    kept = y.shape[-1]
    if x.size == 0:
        return
    fold = (lambda c: c) if sensitive else (lambda c: _ascii_case(c, "LOWER"))
    table = ""
    match = "0"
    if stops:
        try:
            slots = encode_strings(np.array(stops, dtype=object), "stopwords")
        except ValueError as exc:
            ctx.fail(str(exc))
        texts = ", ".join('"' + "".join(f"\\x{c:02x}" for c in w) + '"' for w in slots.tolist())
        table = f"static const char sw[{len(stops)}][{SLOT}] = {{ {texts} }};\n"
        match = "stop"
    ctx.emit(
        table
        + f"size_t n = 0;\nmemset({ctx.ptr(y)}, 0, {y.size * SLOT});\n"
        f"for (size_t e = 0; e < {x.size}; ++e) {{\n"
        f"const char *s = {ctx.ptr(x)} + e*{SLOT};\nint stop = 0;\n"
        + (
            f"for (size_t w = 0; w < {len(stops)} && !stop; ++w) {{\n"
            f"size_t k = 0;\nwhile (k < {TEXT} && s[k] && {fold('s[k]')} == {fold('sw[w][k]')}) ++k;\n"
            f"stop = (k == {TEXT} || {fold('s[k]')} == {fold('sw[w][k]')});\n}}\n"
            if stops
            else ""
        )
        + f"if ({match}) continue;\n"
        f"if (n >= {kept}) return 1; /* more strings kept than the compiled {kept} */\n"
        f"for (size_t k = 0; k < {TEXT} && s[k]; ++k) {ctx.ptr(y)}[n*{SLOT} + k] = {_ascii_case('s[k]', action)};\n"
        "++n;\n(void)stop;\n}\n"
        f"if (n != {kept} && !(n == 0 && {kept} == 1)) return 1; /* fewer strings kept than the compiled {kept} */"
    )
