"""How the weights are stored: in the C (embed) or in a separate blob (file), as float32, float16 or
per-channel int8. Compute stays float32: a weight stored narrower is expanded once into a float32
buffer (init or load), so the kernels never change. An embedded large float32 weight made of few distinct blocks (one
computed from a fill: architecture-only models) is stored as those blocks and an index, whatever the dtype asked
("blocks", exact), and expanded the same way.

The blob (format version 1, little-endian):
    0  magic "ONNXEMW\\0"   8 bytes
    8  format version     u32
    12 storage dtype      u32 (0 f32, 1 f16, 2 int8)
    16 payload bytes      u64
    24 payload CRC-32     u32 (zlib's)
    28 header bytes       u32 (64)
    32 layout hash        32 bytes: SHA-256 of the layout (names, shapes, forms, offsets), not of the values,
                          so a blob of retrained weights for the same model loads without recompiling
    64 payload: each stored tensor at a 64-byte aligned offset
"""

from __future__ import annotations

import hashlib
import json
import zlib
from dataclasses import dataclass

import numpy as np

from ..errors import EmitError
from ..ir import Program
from .weights import compact_blocks, little_endian_bytes

WEIGHT_MODES = ("embed", "file")
WEIGHT_DTYPES = ("f32", "f16", "int8")
DTYPE_CODES = {"f32": 0, "f16": 1, "int8": 2}
MAGIC = b"ONNXEMW\0"
FORMAT_VERSION = 1
HEADER_BYTES = 64
ALIGN = 64
# a narrower form only for float32 tensors this big: scalars and small constants (LayerNorm epsilons, clip
# bounds) stay exact, and they weigh nothing
MIN_NARROW_ELEMENTS = 64
F16_MAX = 65504.0
# the blocks form for float32 weights this big whose distinct blocks and index take at most 1/BLOCKS_RATIO of them
BLOCKS_MIN_ELEMENTS = 1 << 16
BLOCKS_RATIO = 4



@dataclass
class StoredWeight:
    """One weight as the generated code holds it."""

    symbol: str  # the C identifier the steps use (symbol.v)
    onnx_name: str
    dtype: str  # the compute dtype (numpy name)
    ctype: str
    shape: list[int]
    size: int
    form: str  # "raw" (its own dtype), "f16", "int8" or "blocks"
    data: bytes  # the stored bytes (blocks: the distinct blocks)
    scales: bytes = b""  # int8: float32 per channel; blocks: each block's index among the distinct ones, uint32
    outer: int = 1  # int8: the tensor as [outer, channels, inner]
    channels: int = 1
    inner: int = 1
    block: int = 1  # int8: outer indices per row of `channels` scales (outer: one row); blocks: elements per block
    offset: int = 0  # file mode: payload offset of data
    scale_offset: int = 0

    @property
    def expanded(self) -> bool:
        return self.form != "raw"

    @property
    def stored_bytes(self) -> int:
        return len(self.data) + len(self.scales)


@dataclass
class WeightLayout:
    mode: str
    dtype: str
    weights: list[StoredWeight]
    payload_bytes: int
    layout_hash: bytes

    @property
    def stored_bytes(self) -> int:
        return sum(w.stored_bytes for w in self.weights)

    @property
    def expanded_bytes(self) -> int:
        """float32 RAM the narrow forms are expanded into."""
        return sum(4 * w.size for w in self.weights if w.expanded)

    @property
    def blob_bytes(self) -> int:
        return HEADER_BYTES + self.payload_bytes if self.mode == "file" else 0


def check_options(mode: str, dtype: str) -> None:
    if mode not in WEIGHT_MODES:
        raise EmitError(f"--weights {mode}: expected one of {', '.join(WEIGHT_MODES)}")
    if dtype not in WEIGHT_DTYPES:
        raise EmitError(f"--weight-dtype {dtype}: expected one of {', '.join(WEIGHT_DTYPES)}")


def _channel_axes(consumers: dict, name: str, ndim: int) -> tuple[int, ...]:
    """The output-channel axes of a weight from its consumer: Conv's M, ConvTranspose's, Gemm's N, MatMul's last;
    a packed Conv weight [row groups, K, PACK_ROWS] has its channel in axes 0 and 2."""
    for node in consumers.get(name, []):
        if node.op_type == "Conv" and node.inputs[1:2] == [name]:
            return (0, 2) if node.attrs.get("__pack_rows__") else (0,)
        if node.op_type == "ConvTranspose" and node.inputs[1:2] == [name]:
            return (1,)
        if node.op_type == "Gemm" and node.inputs[1:2] == [name]:
            return (0,) if node.attrs.get("transB", 0) else (1,)
        if node.op_type == "MatMul" and node.inputs[1:2] == [name]:
            return (ndim - 1,)
    return (0,)


def _quantize_int8(a: np.ndarray, axes: tuple[int, ...]) -> tuple[bytes, bytes, int, int, int, int]:
    """Symmetric per-channel int8: q = round(a / s), s = max|a| / 127 over each channel. The channel is one axis
    (a scale per index), or axes (0, last) of a 3-D packed weight (a scale per pair; ek_expand_i8's block)."""
    if axes == (0, 2):
        rows, k, lanes = a.shape
        v = a.reshape(rows, k, lanes).astype(np.float64)
        outer, channels, inner, block = rows * k, lanes, 1, k
        amax = np.abs(v).max(axis=1)  # (rows, lanes)
    else:
        shape, axis = a.shape, axes[0]
        outer = int(np.prod(shape[:axis], dtype=np.int64))
        channels = shape[axis]
        inner = int(np.prod(shape[axis + 1:], dtype=np.int64))
        block = outer
        v = a.reshape(outer, channels, inner).astype(np.float64)
        amax = np.abs(v).max(axis=(0, 2))[None, :]  # one row of scales
    scale = np.where(amax > 0, amax / 127.0, 1.0).astype(np.float32)
    row_of = np.arange(outer) // block
    q = np.clip(np.rint(v.reshape(outer, channels, inner) / scale.astype(np.float64)[row_of][:, :, None]), -127, 127)
    return q.astype(np.int8).tobytes(), little_endian_bytes(scale), outer, channels, inner, block


def _stored(prog: Program, consumers: dict, buf, dtype: str, compact: bool) -> StoredWeight:
    w = StoredWeight(
        symbol=buf.cname.removesuffix(".v"),
        onnx_name=prog.public(buf.name),
        dtype=np.dtype(buf.dtype).name,
        ctype=buf.ctype,
        shape=list(buf.shape),
        size=buf.size,
        form="raw",
        data=b"",
    )
    a = np.asarray(buf.data)
    blocks = compact_blocks(a, BLOCKS_RATIO) if compact and w.dtype == "float32" and w.size >= BLOCKS_MIN_ELEMENTS \
        else None
    if blocks is not None:
        distinct, index, w.block = blocks
        w.form, w.data, w.scales = "blocks", little_endian_bytes(distinct), little_endian_bytes(index)
        return w
    narrow = dtype != "f32" and w.dtype == "float32" and w.size >= MIN_NARROW_ELEMENTS and bool(np.isfinite(a).all())
    if narrow and dtype == "f16" and float(np.abs(a).max()) <= F16_MAX:
        w.form, w.data = "f16", little_endian_bytes(a.astype(np.float16))
    elif narrow and dtype == "int8" and a.ndim >= 2:
        w.form = "int8"
        w.data, w.scales, w.outer, w.channels, w.inner, w.block = _quantize_int8(a, _channel_axes(consumers, buf.name, a.ndim))
    elif buf.nbytes:
        w.data = little_endian_bytes(buf.data)
    return w


def _aligned(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


def plan_weight_storage(prog: Program, weights: list, mode: str = "embed", dtype: str = "f32") -> WeightLayout:
    """Each referenced weight's stored form and (file mode) payload offsets; the layout hash names the layout."""
    check_options(mode, dtype)
    consumers = prog.consumers()
    # the blocks form only where the weights are embedded: a weights file's layout must not depend on the values, so
    # that a blob of other (retrained) values loads into the same build
    stored = [_stored(prog, consumers, b, dtype, compact=mode == "embed") for b in weights]
    pos = 0
    for w in stored:
        if not w.data:
            continue  # zero-size: a dummy in the C, nothing in the blob
        w.offset, pos = pos, _aligned(pos + len(w.data))
        if w.scales:
            w.scale_offset, pos = pos, _aligned(pos + len(w.scales))
    desc = {
        "format": FORMAT_VERSION,
        "prefix": prog.name,
        "dtype": dtype,
        "weights": [[w.symbol, w.dtype, w.shape, w.form, w.channels, w.offset, len(w.data), w.scale_offset] for w in stored],
    }
    digest = hashlib.sha256(json.dumps(desc, sort_keys=True).encode()).digest()
    return WeightLayout(mode, dtype, stored, pos, digest)


def blob_bytes(layout: WeightLayout) -> bytes:
    """The whole weights file: header + payload."""
    payload = bytearray(layout.payload_bytes)
    for w in layout.weights:
        payload[w.offset:w.offset + len(w.data)] = w.data
        if w.scales:
            payload[w.scale_offset:w.scale_offset + len(w.scales)] = w.scales
    header = (
        MAGIC
        + FORMAT_VERSION.to_bytes(4, "little")
        + DTYPE_CODES[layout.dtype].to_bytes(4, "little")
        + len(payload).to_bytes(8, "little")
        + zlib.crc32(payload).to_bytes(4, "little")
        + HEADER_BYTES.to_bytes(4, "little")
        + layout.layout_hash
    )
    return header + bytes(payload)


def storage_sizes(prog: Program, weights: list) -> dict[str, int]:
    """Bytes the weights take stored as each --weight-dtype (for inspect)."""
    return {d: plan_weight_storage(prog, weights, "embed", d).stored_bytes for d in WEIGHT_DTYPES}


def manifest_entry(layout: WeightLayout) -> dict:
    entry = {
        "mode": layout.mode,
        "dtype": layout.dtype,
        "stored_bytes": layout.stored_bytes,
        "expanded_bytes": layout.expanded_bytes,
        "layout_hash": layout.layout_hash.hex(),
        "narrowed": sum(1 for w in layout.weights if w.expanded),
        "tensors": len(layout.weights),
    }
    if layout.mode == "file":
        entry |= {"file": "model.weights", "blob_bytes": layout.blob_bytes}
    return entry
