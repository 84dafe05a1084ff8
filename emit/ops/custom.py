"""Custom operators: a node of a domain of the user's, run by a C function of theirs (`--custom-op DOMAIN::OP=kernel.c`).

The function has one fixed signature (docs/CUSTOM_OPS.md, emit_custom.h); for each op the C folder gets a header
`emit_custom_<domain>_<op>.h` declaring it and describing every node that uses it (shapes, dtypes, attributes),
and the kernel file is copied in as `custom_<domain>_<op>.c`. Outputs take the shape the model declares for them
(value_info or graph outputs) when it is static, else input 0's; their dtype is input 0's."""

from __future__ import annotations

import math
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import EmitError
from ..ir import Node, Program
from ..wasm_runner import CUSTOM_OP_FAILED  # what <prefix>_run returns when a custom kernel returns non-zero
from .registry import Lowering


@dataclass(frozen=True)
class CustomOp:
    domain: str
    op_type: str
    kernel: Path

    @property
    def ident(self) -> str:
        return re.sub(r"[^0-9A-Za-z_]", "_", f"{self.domain}_{self.op_type}")

    @property
    def function(self) -> str:
        return self.ident

    @property
    def header(self) -> str:
        return f"emit_custom_{self.ident}.h"

    @property
    def source(self) -> str:
        return f"custom_{self.ident}.c"


def parse_custom_op(text: str) -> CustomOp:
    """'DOMAIN::OP=kernel.c' -> CustomOp, or an EmitError saying what is wrong with it."""
    spec, eq, path = text.partition("=")
    domain, sep, op_type = spec.partition("::")
    if not eq or not sep or not domain or not op_type or not path:
        raise EmitError(f"--custom-op '{text}': expected DOMAIN::OP=kernel.c, e.g. com.example::Swish=swish.c")
    if domain in ("", "ai.onnx", "ai.onnx.ml"):
        raise EmitError(f"--custom-op '{text}': domain '{domain}' is ONNX's own; custom operators live in a domain of yours")
    kernel = Path(path)
    if not kernel.is_file():
        raise EmitError(f"--custom-op '{text}': kernel file {kernel} not found")
    if kernel.suffix != ".c":
        raise EmitError(f"--custom-op '{text}': the kernel must be a C file (.c), got {kernel.name}")
    return CustomOp(domain, op_type, kernel.resolve())


def custom_op_table(specs) -> dict[tuple[str, str], CustomOp]:
    """--custom-op values (strings or CustomOp) keyed by (domain, op type); one kernel per op."""
    table: dict[tuple[str, str], CustomOp] = {}
    for s in specs or []:
        c = s if isinstance(s, CustomOp) else parse_custom_op(s)
        if (c.domain, c.op_type) in table:
            raise EmitError(f"--custom-op {c.domain}::{c.op_type} is given twice")
        table[(c.domain, c.op_type)] = c
    return table


def _c_string(s: str) -> str:
    return '"' + s.encode("utf-8").decode("ascii", "backslashreplace").replace("\\", "\\\\").replace('"', '\\"') + '"'


def _c_float(v: float, where: str) -> str:
    if not math.isfinite(v):
        raise EmitError(f"{where}: attribute value {v} is not finite; custom op attributes must be finite numbers")
    return f"{float(np.float32(v))!r}f"


def _attr_entries(node: Node, label: str) -> tuple[list[str], list[str]]:
    """(static arrays the entries point to, one emit_custom_attr initializer per attribute)."""
    arrays, entries = [], []
    for k, (name, v) in enumerate(sorted((n, v) for n, v in node.attrs.items() if not n.startswith("__"))):
        where = f"node {label}, attribute '{name}'"
        if isinstance(v, bool) or isinstance(v, (int, np.integer)):
            entries.append(f"{{ {_c_string(name)}, EMIT_ATTR_INT, {int(v)}, 0.0f, 0, 0, 0, 0 }}")
        elif isinstance(v, (float, np.floating)):
            entries.append(f"{{ {_c_string(name)}, EMIT_ATTR_FLOAT, 0, {_c_float(v, where)}, 0, 0, 0, 0 }}")
        elif isinstance(v, str):
            entries.append(f"{{ {_c_string(name)}, EMIT_ATTR_STRING, 0, 0.0f, {_c_string(v)}, 0, 0, 0 }}")
        elif isinstance(v, list) and v and all(isinstance(x, int) for x in v):
            arrays.append(f"static const int64_t a{k}[{len(v)}] = {{ {', '.join(str(x) for x in v)} }};")
            entries.append(f"{{ {_c_string(name)}, EMIT_ATTR_INTS, 0, 0.0f, 0, {len(v)}, a{k}, 0 }}")
        elif isinstance(v, list) and v and all(isinstance(x, float) for x in v):
            arrays.append(f"static const float a{k}[{len(v)}] = {{ {', '.join(_c_float(x, where) for x in v)} }};")
            entries.append(f"{{ {_c_string(name)}, EMIT_ATTR_FLOATS, 0, 0.0f, 0, {len(v)}, 0, a{k} }}")
        else:
            raise EmitError(f"{where}: custom op attributes may be ints, floats, strings or non-empty lists of ints or "
                            f"floats; got {type(v).__name__}")
    return arrays, entries


def lower_custom(ctx: Lowering) -> None:
    op: CustomOp = ctx.node.attrs["__custom__"]
    arrays, ins, outs = [], [], []
    for kind, names, rows in (("in", ctx.node.inputs, ins), ("out", ctx.node.outputs, outs)):
        for i, name in enumerate(names):
            if not name:
                rows.append('{ 0, "", 0, 0, 0 }')  # an omitted optional input or output
                continue
            b = ctx.prog.buffers[name]
            shape = list(b.shape) or [1]
            arrays.append(f"static const int64_t {kind}{i}_shape[{len(shape)}] = {{ {', '.join(str(d) for d in shape)} }};")
            rows.append(f'{{ {ctx.ptr(b)}, "{np.dtype(b.dtype).name}", {len(b.shape)}, {kind}{i}_shape, {b.size} }}')
    attr_arrays, attrs = _attr_entries(ctx.node, ctx.label)
    n_attrs = len(attrs)
    attrs = attrs or ['{ "", EMIT_ATTR_INT, 0, 0.0f, 0, 0, 0, 0 }']  # C99 has no empty arrays
    in_rows = ", ".join(ins) or '{ 0, "", 0, 0, 0 }'
    ctx.emit("\n".join([
        *arrays, *attr_arrays,
        f"static const emit_custom_attr attrs[{len(attrs)}] = {{ {', '.join(attrs)} }};",
        f"static const emit_custom_node node = {{ {_c_string(ctx.node.name)}, {n_attrs}, attrs }};",
        f"const emit_custom_input inputs[{max(1, len(ins))}] = {{ {in_rows} }};",
        f"const emit_custom_output outputs[{len(outs)}] = {{ {', '.join(outs)} }};",
        f"if ({op.function}(&node, {len(ins)}, inputs, {len(outs)}, outputs) != 0)",
        f"    return {CUSTOM_OP_FAILED}; /* the custom kernel reported an error */",
    ]))


def custom_ops_used(prog: Program) -> list[CustomOp]:
    seen: dict[str, CustomOp] = {}
    for n in prog.nodes:
        if "__custom__" in n.attrs:
            seen.setdefault(n.attrs["__custom__"].ident, n.attrs["__custom__"])
    return list(seen.values())


def _describe_use(prog: Program, node: Node) -> str:
    def t(name: str) -> str:
        if not name:
            return "(omitted)"
        b = prog.buffers[name]
        return f"{prog.public(name)} {np.dtype(b.dtype).name} {list(b.shape)}"

    attrs = ", ".join(f"{k}={v!r}" for k, v in sorted(node.attrs.items()) if not k.startswith("__")) or "none"
    return (f" *   node '{node.name}': inputs {', '.join(t(i) for i in node.inputs) or 'none'}; "
            f"outputs {', '.join(t(o) for o in node.outputs)}; attributes {attrs}").replace("*/", "* /")


def write_custom_sources(prog: Program, out: Path, render) -> list[str]:
    """Each custom op's header and kernel into `out`; returns the kernels' file names (C sources to build)."""
    sources = []
    ops = custom_ops_used(prog)
    if ops:
        (out / "emit_custom.h").write_text(render("emit_custom.h.j2"))
    for op in ops:
        uses = [_describe_use(prog, n) for n in prog.nodes if n.attrs.get("__custom__") == op]
        (out / op.header).write_text(render("emit_custom_op.h.j2", op=op, uses=uses, failed=CUSTOM_OP_FAILED))
        shutil.copy(op.kernel, out / op.source)
        sources.append(op.source)
    return sources
