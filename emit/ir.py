"""The IR: a Program of Buffers with static shapes and dtypes, Nodes at graph level and,
after lowering, Steps of C code whose sizes are all literal."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import ml_dtypes  # noqa: F401 - registers bfloat16, float8_*, int4, ... as numpy dtype names
import numpy as np

# storage kinds of a Buffer
INPUT, OUTPUT, WEIGHT, ARENA, VIEW = "input", "output", "weight", "arena", "view"

# numpy dtype name -> C element type
C_TYPES: dict[str, str] = {
    "float32": "float",
    "float64": "double",
    "int8": "int8_t",
    "int16": "int16_t",
    "int32": "int32_t",
    "int64": "int64_t",
    "uint8": "uint8_t",
    "uint16": "uint16_t",
    "uint32": "uint32_t",
    "uint64": "uint64_t",
    "bool": "bool",
    # narrow types, stored as their bit patterns (ml_dtypes' one-byte-per-element layout for the sub-byte
    # ones); only Cast, Quantize/DequantizeLinear and data movement see them, the rest computes in float32
    # (emit/passes/widen.py, emit/ops/cast.py)
    "float16": "uint16_t",
    "bfloat16": "uint16_t",
    "float8_e4m3fn": "uint8_t",
    "float8_e4m3fnuz": "uint8_t",
    "float8_e5m2": "uint8_t",
    "float8_e5m2fnuz": "uint8_t",
    "float8_e8m0fnu": "uint8_t",
    "float4_e2m1fn": "uint8_t",
    "int4": "uint8_t",
    "uint4": "uint8_t",
    "int2": "uint8_t",
    "uint2": "uint8_t",
    # strings: every element is a fixed STRING_BYTES-byte, NUL-padded UTF-8 slot (no malloc); see STRING_DTYPE
    "bytes512": "char",
}

# a string tensor's element: STRING_BYTES bytes of UTF-8 holding at most STRING_BYTES - 1 bytes of text and
# at least one NUL, so C can walk it with a bounded loop and Python reads it as numpy's fixed-width bytes
STRING_BYTES = 64
STRING_DTYPE = np.dtype(f"S{STRING_BYTES}")


def is_string(dtype: np.dtype | str) -> bool:
    """A string dtype: numpy's str/bytes/object kinds, or STRING_DTYPE's name as manifests write it."""
    if isinstance(dtype, str) and dtype.startswith("bytes"):
        return True
    return np.dtype(dtype).kind in "OSU"


def encode_strings(values: np.ndarray, what: str) -> np.ndarray:
    """Strings (str or bytes) as STRING_DTYPE slots; ValueError naming `what` when one is too long."""
    arr = np.asarray(values, dtype=object)
    flat = [v.encode("utf-8") if isinstance(v, str) else bytes(v) for v in arr.ravel()]
    for i, b in enumerate(flat):
        if len(b) >= STRING_BYTES or b"\0" in b:
            why = "holds a NUL byte" if b"\0" in b else f"is {len(b)} bytes long; at most {STRING_BYTES - 1} fit"
            raise ValueError(f"{what}: string {i} {why}")
    return np.array(flat, dtype=STRING_DTYPE).reshape(arr.shape)


def c_type(dtype: np.dtype | str) -> str:
    return C_TYPES[np.dtype(dtype).name]


def is_supported_dtype(dtype: np.dtype | str) -> bool:
    return np.dtype(dtype).name in C_TYPES


@dataclass
class Buffer:
    """One tensor: where it lives, its dtype and static shape."""

    name: str
    dtype: np.dtype
    shape: tuple[int, ...]
    storage: str = ARENA
    data: np.ndarray | None = None  # weights only
    view_of: str | None = None  # views only: the buffer whose memory this reuses
    view_at: int = 0  # views only: where in view_of's memory this one starts, in bytes (a Concat input, a Split output)
    offset: int = 0  # arena offset, set by plan_memory
    cname: str = ""  # C identifier, set by the emitter

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1

    @property
    def nbytes(self) -> int:
        return self.size * np.dtype(self.dtype).itemsize

    @property
    def ctype(self) -> str:
        return c_type(self.dtype)


@dataclass
class Node:
    """One graph-level operation, attributes already decoded to Python values."""

    op_type: str
    name: str
    inputs: list[str]  # "" marks an omitted optional input
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)
    domain: str = ""


@dataclass
class Body:
    """A subgraph of a control-flow node (an If branch, a Loop or Scan body), kept in the node's
    attrs["__bodies__"]: its nodes run inside the node's C block. Names it reads from outside (outer
    values, its own constants) are also inputs of the node, so passes see them as used."""

    nodes: list[Node]
    inputs: list[str]  # formal inputs the node writes before running the nodes ("" where unused)
    outputs: list[str]  # what the node copies out after running them


def bodies(node: Node) -> list[Body]:
    return list(node.attrs.get("__bodies__", {}).values())


def walk_nodes(nodes: list[Node]):
    """Every node, and every node of every body, recursively."""
    for n in nodes:
        yield n
        for b in bodies(n):
            yield from walk_nodes(b.nodes)


@dataclass
class Step:
    """One lowered node: a block of C text with literal sizes, and the runtime kernels it calls."""

    node: Node
    code: str
    kernels: set[str] = field(default_factory=set)
    features: set[str] = field(default_factory=set)  # macros its runtime kernels must be compiled with (EK_WINO_F4)


@dataclass
class Program:
    name: str
    buffers: dict[str, Buffer]
    nodes: list[Node]
    inputs: list[str]
    outputs: list[str]
    opset: int
    steps: list[Step] = field(default_factory=list)
    arena_bytes: int = 0
    notes: list[str] = field(default_factory=list)  # things the importer did, for `inspect`
    public_names: dict[str, str] = field(default_factory=dict)  # buffer name -> ONNX name, where they differ

    def public(self, name: str) -> str:
        return self.public_names.get(name, name)

    def producers(self) -> dict[str, Node]:
        return {o: n for n in self.nodes for o in n.outputs if o}

    def consumers(self) -> dict[str, list[Node]]:
        uses: dict[str, list[Node]] = {}
        for n in self.nodes:
            for i in n.inputs:
                if i:
                    uses.setdefault(i, []).append(n)
        return uses

    def root(self, name: str) -> Buffer:
        """The buffer that owns the memory of `name` (following views)."""
        buf = self.buffers[name]
        while buf.view_of is not None:
            buf = self.buffers[buf.view_of]
        return buf

    def lies_at(self, name: str, of: str, at: int) -> bool:
        """`name`'s memory is `at` bytes into `of`'s (a view of part of it, maybe through other views): its data is
        there already and a lowering copies none."""
        return self.root(name) is self.root(of) and self.root_at(name) == self.root_at(of) + at

    def root_at(self, name: str) -> int:
        """Where `name`'s memory starts in its root's, in bytes (0 but for views into part of a buffer)."""
        buf, at = self.buffers[name], 0
        while buf.view_of is not None:
            at += buf.view_at
            buf = self.buffers[buf.view_of]
        return at

    def weight_value(self, name: str) -> np.ndarray | None:
        """The constant value of `name`, if it is a weight with data."""
        if not name:
            return None
        b = self.buffers[name]
        return b.data if b.storage == WEIGHT and b.data is not None else None

    def add_weight(self, like: str, value: np.ndarray, suffix: str) -> str:
        """A new weight buffer holding `value`, named after `like` (the old one may be shared): its name."""
        name, k = f"{like}{suffix}", 1
        while name in self.buffers:
            name, k = f"{like}{suffix}{k}", k + 1
        self.buffers[name] = Buffer(name, value.dtype, tuple(value.shape), WEIGHT, data=value)
        return name

    def weight_bytes(self) -> int:
        return sum(b.nbytes for b in self.buffers.values() if b.storage == WEIGHT)
