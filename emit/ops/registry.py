"""Op type + domain → lowering. A lowering turns one Node into C text with literal sizes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import UnsupportedError, node_label
from ..ir import ARENA, WEIGHT, Buffer, Node, Program, Step

Lower = Callable[["Lowering"], None]
LOWERINGS: dict[tuple[str, str], Lower] = {}


def op(*op_types: str, domain: str = "") -> Callable[[Lower], Lower]:
    """Register a lowering for one or more op types of a domain."""

    def deco(fn: Lower) -> Lower:
        for t in op_types:
            LOWERINGS[(domain, t)] = fn
        return fn

    return deco


def is_supported(op_type: str, domain: str = "") -> bool:
    return (domain, op_type) in LOWERINGS


_STRINGS = "its pattern language (RE2) is not compiled in: generated code has no regular-expression engine"
# ops that may see string tensors (fixed-width slots, ir.STRING_DTYPE); any other op touching one is refused
STRING_OPS = {"Equal", "StringConcat", "StringSplit", "StringNormalizer", "LabelEncoder", "emit.Copy", "Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze"}
_RANDOM = "its values are random: generated code has no random source that could reproduce another runtime's draws"
# ops that will stay unsupported, and why (shown after "unsupported operator: ...")
WHY_UNSUPPORTED: dict[str, str] = {
    "RegexFullMatch": _STRINGS,
    **dict.fromkeys(["RandomUniform", "RandomNormal", "RandomUniformLike", "RandomNormalLike", "Multinomial"], _RANDOM),
    "ImageDecoder": "decoding JPEG/PNG/TIFF/WebP/BMP/PNM byte streams needs image codecs, which are not compiled in",
}


def why_unsupported(op_type: str, domain: str = "") -> str:
    """The reason an op without a lowering stays unsupported, or ''."""
    return WHY_UNSUPPORTED.get(op_type, "") if domain in ("", "ai.onnx") else ""


class Lowering:
    """What a lowering sees of its node: buffers with static shapes, attributes, constant inputs;
    and where it writes its C text."""

    def __init__(self, prog: Program, node: Node, cnames: dict[str, str]) -> None:
        self.prog = prog
        self.node = node
        self.cnames = cnames
        self.lines: list[str] = []
        self.kernels: set[str] = set()
        self.features: set[str] = set()

    # --- reading the node ---
    @property
    def label(self) -> str:
        return node_label(self.node.op_type, self.node.name)

    @property
    def opset(self) -> int:
        return self.prog.opset

    def has_input(self, i: int) -> bool:
        return i < len(self.node.inputs) and bool(self.node.inputs[i])

    def input(self, i: int) -> Buffer:
        if not self.has_input(i):
            self.fail(f"input {i} is required")
        return self.prog.buffers[self.node.inputs[i]]

    def output(self, i: int = 0) -> Buffer:
        return self.prog.buffers[self.node.outputs[i]]

    def has_output(self, i: int) -> bool:
        return i < len(self.node.outputs) and bool(self.node.outputs[i])

    @property
    def n_inputs(self) -> int:
        return len(self.node.inputs)

    def attr(self, name: str, default: Any = None) -> Any:
        return self.node.attrs.get(name, default)

    def const(self, i: int) -> np.ndarray | None:
        """The value of input i if it is known at compile time."""
        if not self.has_input(i):
            return None
        buf = self.input(i)
        return buf.data if buf.storage == WEIGHT else None

    def const_required(self, i: int, what: str) -> np.ndarray:
        v = self.const(i)
        if v is None:
            self.fail(f"input '{self.node.inputs[i]}' ({what}) must be a constant; it is computed at run time")
        return v

    def attr_or_const(self, name: str, index: int, default: Any = None) -> Any:
        """Opsets moved many attributes to inputs (axes, pads, split, ...): read whichever is there."""
        if name in self.node.attrs:
            return self.node.attrs[name]
        if self.has_input(index):
            return self.const_required(index, name).tolist()
        return default

    # --- writing C ---
    def ptr(self, buf: Buffer | str) -> str:
        name = buf if isinstance(buf, str) else buf.name
        return self.cnames[name]

    def emit(self, code: str) -> None:
        self.lines.append(code.rstrip())

    def scratch(self, nbytes: int, dtype: np.dtype | str = "uint8") -> str:
        """C pointer (typed by `dtype`) to `nbytes` of arena memory only this node uses (im2col and the like).
        It is a new ARENA buffer listed in the node's attrs["__scratch__"], which plan_memory counts
        as used at this step only, so it overlaps neither the node's inputs nor its outputs."""
        dt = np.dtype(dtype)
        count = max(1, -(-int(nbytes) // dt.itemsize))
        base = next((o for o in self.node.outputs if o), self.node.name or self.node.op_type) + "::scratch"
        k = 0
        while f"{base}{k}" in self.prog.buffers:
            k += 1
        name = f"{base}{k}"
        taken = set(self.cnames.values())
        cname, j = f"s{len(self.prog.buffers)}_scratch", 1
        while cname in taken:
            cname, j = f"s{len(self.prog.buffers)}_scratch_{j}", j + 1
        self.prog.buffers[name] = Buffer(name, dt, (count,), ARENA, cname=cname)
        self.cnames[name] = cname
        self.node.attrs.setdefault("__scratch__", []).append(name)
        return cname

    def kernel(self, name: str) -> None:
        """Mark a runtime_c kernel file as used."""
        self.kernels.add(name)

    def feature(self, macro: str) -> None:
        """Ask for a runtime kernel's optional part (a macro conv.c tests): the export defines it for this model."""
        self.features.add(macro)

    def fail(self, why: str):
        raise UnsupportedError(f"node {self.label}: {why}")


def lower_node(prog: Program, node: Node, cnames: dict[str, str]) -> Step:
    fn = LOWERINGS.get((node.domain, node.op_type))
    if "__custom__" in node.attrs:  # a user's kernel (--custom-op)
        from .custom import lower_custom

        fn = lower_custom
    if fn is None:
        dom = f" (domain '{node.domain}')" if node.domain else ""
        raise UnsupportedError(f"node {node_label(node.op_type, node.name)}: operator {node.op_type}{dom} is not supported")
    ctx = Lowering(prog, node, cnames)
    if node.op_type not in STRING_OPS and any(
        n and np.dtype(prog.buffers[n].dtype).kind == "S" for n in list(node.inputs) + list(node.outputs) if n in prog.buffers
    ):
        ctx.fail("string tensors are supported only by " + ", ".join(sorted(STRING_OPS - {"emit.Copy"})))
    fn(ctx)
    return Step(node, "\n".join(ctx.lines), ctx.kernels, ctx.features)
