"""Run an onnx-emit model.wasm from any Python: inside Pyodide through the host's WebAssembly (`js.WebAssembly`),
in CPython through wasmtime (pip install wasmtime).

Standard library only, numpy optional, no import of the `emit` package: this very file is copied into every
pyodide wheel as `<package>/_runner.py`.

    m = load("OUT/")                       # a folder with manifest.json and model.wasm (or the installed package's)
    m.inputs, m.outputs                    # [TensorSpec(name, dtype, shape)]
    outs = m.run({"x": values})            # also m.run(values, ...) in manifest order, or m.run(x=values)

Inputs: flat or nested lists/tuples of numbers, array.array, memoryview or any buffer (bytes are uint8), numpy arrays.
A flat sequence or 1-D buffer needs exactly `size` elements; a nested list or an N-D buffer / numpy array needs
exactly the manifest's shape. A buffer or numpy array must already have the input's dtype (array.array('d') for a
float32 input is refused rather than silently rounded); float16, bfloat16, float8, float4, int4 and int2 tensors travel
as their bit patterns (unsigned ints of the type's width, one byte per element below 8 bits). Bad input raises ValueError (wrong dtype, length, shape or
value; unknown or missing input) or TypeError (not numbers at all), naming the input, before the module runs.

Outputs: {name: value}. When any input was a numpy array they are numpy arrays shaped per the manifest; otherwise
each is a `Tensor`: an array.array holding the values flat in row-major order, with `.shape` and `.dtype`, whose
`.tolist()` nests them per the shape (`.numpy()` gives the shaped numpy array when numpy is installed).
A runtime value out of range (an index past a table's end) raises RuntimeError, as the native runner does.

Models exported with --weights file read model.weights beside model.wasm (or `load(folder, weights=path_or_bytes)`);
`m.load_weights(path_or_bytes)` swaps in another one of the same model. A file for another model, a truncated or
corrupt one raises ValueError naming the problem.
"""

from __future__ import annotations

import array
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ABI_VERSION = 1
_EXPORTS = ("memory", "emit_input", "emit_output", "emit_run", "emit_abi_version")
_WEIGHTS_EXPORTS = ("emit_weights_buffer", "emit_weights_capacity", "emit_load_weights")  # --weights file only
RANGE_ERROR = ("model returned error code {rc}: an input value was out of range "
               "(an index past a table's end, or a runtime shape that disagrees with the compiled one)")

# the error codes of <prefix>_load_weights / emit_load_weights (runtime_c/emit_runtime.h, EK_WEIGHTS_*)
WEIGHTS_ERRORS = {
    10: "not an onnx-emit weights file (bad magic)",
    11: "weights file format version not supported by this build",
    12: "weights file is for another model (layout hash differs)",
    13: "weights file stores another dtype than this build expects",
    14: "weights file is truncated or has the wrong size",
    15: "weights file is corrupt (checksum mismatch)",
    16: "weights buffer is not 16-byte aligned",
    17: "weights not loaded: call load_weights first",
}

CUSTOM_OP_FAILED = 20  # emit/ops/custom.py: a custom operator's kernel returned non-zero
CUSTOM_ERROR = "model returned error code 20: a custom operator's kernel (--custom-op) reported an error"


def run_error(rc: int, range_error: str = RANGE_ERROR) -> str:
    """The message for a run function's non-zero return code; `range_error` ({rc}) for an input out of range."""
    if rc in WEIGHTS_ERRORS:
        return WEIGHTS_ERRORS[rc]
    if rc == CUSTOM_OP_FAILED:
        return CUSTOM_ERROR
    return range_error.format(rc=rc)


def weights_source(weights: str | Path | bytes | bytearray | memoryview) -> tuple[bytes, str]:
    """(model.weights' bytes, what to call it in errors) from its bytes or its path."""
    if isinstance(weights, (bytes, bytearray, memoryview)):
        return bytes(weights), "weights"
    return Path(weights).read_bytes(), str(weights)

# dtype -> (kind, itemsize); kind as in numpy: f float, i signed, u unsigned, b bool
DTYPES: dict[str, tuple[str, int]] = {
    "float32": ("f", 4), "float64": ("f", 8),
    "int8": ("i", 1), "int16": ("i", 2), "int32": ("i", 4), "int64": ("i", 8),
    "uint8": ("u", 1), "uint16": ("u", 2), "uint32": ("u", 4), "uint64": ("u", 8),
    "bool": ("b", 1),
    # narrow types travel as their bit patterns: numpy arrays of the dtype (ml_dtypes), or unsigned ints of its width
    "float16": ("u", 2), "bfloat16": ("u", 2), "float8_e4m3fn": ("u", 1), "float8_e4m3fnuz": ("u", 1),
    "float8_e5m2": ("u", 1), "float8_e5m2fnuz": ("u", 1), "float8_e8m0fnu": ("u", 1), "float4_e2m1fn": ("u", 1),
    "int4": ("u", 1), "uint4": ("u", 1), "int2": ("u", 1), "uint2": ("u", 1),
}
_BITS = {"float16", "bfloat16", "float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz", "float8_e8m0fnu",
         "float4_e2m1fn", "int4", "uint4", "int2", "uint2"}


def _typecodes() -> dict[str, str]:
    """dtype -> array.array typecode; the C long's size differs between hosts (8 on Linux x86-64, 4 on wasm32)."""
    codes: dict[str, str] = {"float32": "f", "float64": "d", "bool": "B"}
    for dtype, (kind, size) in DTYPES.items():
        if kind in "iu":
            for code in ("bhilq" if kind == "i" else "BHILQ"):
                if array.array(code).itemsize == size:
                    codes[dtype] = code
                    break
    return codes


TYPECODES = _typecodes()
_LITTLE = sys.byteorder == "little"


def _buffer_dtype(fmt: str, itemsize: int) -> tuple[str | None, bool]:
    """A struct/buffer format ('f', '<d', 'B', '?', ...) -> (dtype or None, stored big-endian)."""
    order = fmt[0] if fmt[:1] in ("@", "=", "<", ">", "!") else "@"
    char = fmt[1:] if fmt[:1] in ("@", "=", "<", ">", "!") else fmt
    big = order in (">", "!") or (order in ("@", "=") and not _LITTLE)
    if char in ("f", "d"):
        return {4: "float32", 8: "float64"}.get(itemsize), big
    if char == "?":
        return "bool", big
    if len(char) == 1 and char in "bhilqn":
        return {1: "int8", 2: "int16", 4: "int32", 8: "int64"}.get(itemsize), big
    if len(char) == 1 and char in "BHILQN":
        return {1: "uint8", 2: "uint16", 4: "uint32", 8: "uint64"}.get(itemsize), big
    return None, big


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str
    shape: tuple[int, ...]

    @property
    def size(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def nbytes(self) -> int:
        return self.size * DTYPES[self.dtype][1]


class Tensor(array.array):
    """One output without numpy: the values flat (row-major) as an array.array, plus `.shape` and `.dtype`.
    `.tolist()` nests the values per the shape (Python bools for dtype bool); slicing gives a plain array.array."""

    shape: tuple[int, ...]
    dtype: str

    @classmethod
    def from_bytes(cls, spec: TensorSpec, data: bytes) -> Tensor:
        t = cls(TYPECODES[spec.dtype], data)
        if not _LITTLE:
            t.byteswap()
        t.shape, t.dtype = spec.shape, spec.dtype
        return t

    def tolist(self) -> Any:
        flat = array.array.tolist(self)
        if getattr(self, "dtype", None) == "bool":
            flat = [bool(v) for v in flat]
        shape = getattr(self, "shape", None)
        if not shape:
            return flat[0] if shape == () and flat else flat
        for d in reversed(shape[1:]):
            flat = [flat[i:i + d] for i in range(0, len(flat), d)]
        return flat

    def numpy(self):
        import numpy as np

        if self.dtype in _BITS:  # bit patterns: reinterpret them
            return np.array(self, dtype=f"uint{8 * DTYPES[self.dtype][1]}").view(self.dtype).reshape(self.shape)
        return np.array(self, dtype=self.dtype).reshape(self.shape)

    def __repr__(self) -> str:
        return f"Tensor({self.dtype}, shape={list(self.shape)}, {array.array.tolist(self)!r})"


def _shape_text(shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _is_numpy(value: Any) -> bool:
    return type(value).__module__.split(".")[0] == "numpy" and hasattr(value, "dtype") and hasattr(value, "shape")


def _from_numpy(spec: TensorSpec, value: Any) -> bytes:
    import numpy as np

    arr = np.asarray(value)
    if arr.dtype.name != spec.dtype:
        raise ValueError(f"input '{spec.name}': expected dtype {spec.dtype}, got {arr.dtype.name}")
    if tuple(arr.shape) != spec.shape:
        raise ValueError(f"input '{spec.name}': expected shape {_shape_text(spec.shape)}, got {_shape_text(arr.shape)}")
    if spec.dtype == "bool":
        return arr.astype(np.uint8).tobytes()
    return np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()


def _from_buffer(spec: TensorSpec, value: Any, mv: memoryview) -> bytes:
    what = f"array.array '{value.typecode}'" if isinstance(value, array.array) else f"{type(value).__name__} format '{mv.format}'"
    dtype, big = _buffer_dtype(mv.format, mv.itemsize)
    # bytes of 0/1 are a natural bool buffer (array.array has no bool typecode)
    ok = dtype == spec.dtype or (spec.dtype == "bool" and dtype in ("uint8", "int8"))
    ok = ok or (spec.dtype in _BITS and dtype == f"uint{8 * DTYPES[spec.dtype][1]}")  # bit patterns
    if not ok:
        raise ValueError(f"input '{spec.name}': expected dtype {spec.dtype}, got {dtype or 'unsupported'} ({what})")
    if mv.ndim > 1:
        if tuple(mv.shape) != spec.shape:
            raise ValueError(f"input '{spec.name}': expected shape {_shape_text(spec.shape)}, got {_shape_text(mv.shape)}")
    else:
        n = mv.nbytes // mv.itemsize if mv.itemsize else 0
        if n != spec.size:
            raise ValueError(f"input '{spec.name}': expected {spec.size} elements (shape {_shape_text(spec.shape)}), got {n}")
    data = mv.tobytes()  # C order, also for strided views
    if spec.dtype == "bool":
        if data.strip(b"\x00\x01"):
            raise ValueError(f"input '{spec.name}': bool values must be 0 or 1")
        return data
    if big and mv.itemsize > 1:
        a = array.array(TYPECODES[spec.dtype], data)
        a.byteswap()
        data = a.tobytes()
    return data


def _nested_shape(spec: TensorSpec, value: Any) -> tuple[list, tuple[int, ...]]:
    """Flatten nested lists/tuples, checking they are rectangular; -> (flat values, shape)."""
    level, shape = [value], []
    while level and isinstance(level[0], (list, tuple)):
        n = len(level[0])
        for sub in level:
            if not isinstance(sub, (list, tuple)) or len(sub) != n:
                got = f"length {len(sub)}" if isinstance(sub, (list, tuple)) else type(sub).__name__
                raise ValueError(f"input '{spec.name}': ragged nested list at depth {len(shape)} (length {n} and {got})")
        shape.append(n)
        level = [v for sub in level for v in sub]
    return level, tuple(shape)


def _from_sequence(spec: TensorSpec, value: Any) -> bytes:
    flat, shape = _nested_shape(spec, value)
    if len(shape) <= 1:  # flat: any shape, by element count
        if len(flat) != spec.size:
            raise ValueError(f"input '{spec.name}': expected {spec.size} elements (shape {_shape_text(spec.shape)}), got {len(flat)}")
    elif shape != spec.shape:
        raise ValueError(f"input '{spec.name}': expected shape {_shape_text(spec.shape)}, got {_shape_text(shape)}")
    kind = DTYPES[spec.dtype][0]
    if kind == "b":
        for i, v in enumerate(flat):
            if isinstance(v, (str, bytes)) or not (isinstance(v, (int, float)) or hasattr(v, "__index__") or hasattr(v, "__float__")):
                raise TypeError(f"input '{spec.name}': expected booleans for bool, got {type(v).__name__} at index {i}")
            if v not in (0, 1):
                raise ValueError(f"input '{spec.name}': bool values must be True/False or 0/1, got {v!r} at index {i}")
        return bytes(1 if v else 0 for v in flat)
    code = TYPECODES[spec.dtype]
    try:
        a = array.array(code, flat)
    except (TypeError, OverflowError):
        a = None
    if a is None:  # find the element to name in the error
        want = "numbers" if kind == "f" else "integers"
        for i, v in enumerate(flat):
            try:
                array.array(code, [v])
            except TypeError:
                raise TypeError(f"input '{spec.name}': expected {want} for {spec.dtype}, got {type(v).__name__} at index {i}") from None
            except OverflowError:
                raise ValueError(f"input '{spec.name}': value {v!r} at index {i} is out of range for {spec.dtype}") from None
        raise TypeError(f"input '{spec.name}': cannot convert to {spec.dtype}")  # not reached: some element failed above
    if not _LITTLE:
        a.byteswap()
    return a.tobytes()


def encode_input(spec: TensorSpec, value: Any) -> bytes:
    """One input value -> exactly spec.nbytes little-endian bytes, or a ValueError/TypeError naming the input."""
    if _is_numpy(value) or hasattr(value, "__array_interface__"):
        return _from_numpy(spec, value)
    if isinstance(value, (list, tuple)):
        return _from_sequence(spec, value)
    if isinstance(value, (int, float)) and spec.size == 1:  # a scalar for a one-element input
        return _from_sequence(spec, [value])
    if isinstance(value, str):
        raise TypeError(f"input '{spec.name}': expected numbers for {spec.dtype}, got str")
    try:
        mv = memoryview(value)
    except TypeError:
        raise TypeError(f"input '{spec.name}': expected a list, array.array, memoryview or numpy array of {spec.dtype}, "
                        f"got {type(value).__name__}") from None
    with mv:
        return _from_buffer(spec, value, mv)


def decode_output(spec: TensorSpec, data: bytes, as_numpy: bool) -> Any:
    if as_numpy:
        import numpy as np

        if spec.dtype == "bool":
            return np.frombuffer(data, dtype=np.uint8).astype(bool).reshape(spec.shape)
        try:
            dt = np.dtype(spec.dtype)
        except TypeError:  # bfloat16, float8, ... without ml_dtypes: the bit patterns
            dt = np.dtype(f"uint{8 * DTYPES[spec.dtype][1]}")
        return np.frombuffer(data, dtype=dt.newbyteorder("<")).astype(dt).reshape(spec.shape)
    return Tensor.from_bytes(spec, data)


# --- the two hosts: each gives read/write of linear memory and calls of the exports -----------------------------

class _WasmtimeHost:
    """CPython: wasmtime."""

    name = "wasmtime"

    def __init__(self, wasm: bytes) -> None:
        try:
            import wasmtime
        except ImportError:
            raise ImportError("running model.wasm in CPython needs wasmtime: pip install wasmtime") from None
        self._wasmtime = wasmtime
        engine = wasmtime.Engine()
        self._store = wasmtime.Store(engine)
        try:
            module = wasmtime.Module(engine, wasm)
            instance = wasmtime.Instance(self._store, module, [])
        except wasmtime.WasmtimeError as exc:
            raise RuntimeError(f"cannot instantiate model.wasm: {str(exc).splitlines()[0]}") from None
        ex = instance.exports(self._store)
        self._ex = {}
        for name in (*_EXPORTS, *_WEIGHTS_EXPORTS, "_initialize"):
            try:
                self._ex[name] = ex[name]
            except KeyError:
                pass
        self._mem = self._ex.get("memory")

    def has(self, name: str) -> bool:
        return name in self._ex

    def call(self, name: str, *args: int) -> int:
        try:
            r = self._ex[name](self._store, *args)
        except self._wasmtime.Trap as exc:
            raise RuntimeError(f"model.wasm trapped in {name}: {str(exc).splitlines()[0]}") from None
        return 0 if r is None else int(r)

    def write(self, ptr: int, data: bytes) -> None:
        self._mem.write(self._store, data, ptr)

    def read(self, ptr: int, n: int) -> bytes:
        return bytes(self._mem.read(self._store, ptr, ptr + n))


class _JsHost:
    """Pyodide: the host's WebAssembly through the `js` module; bytes cross through Uint8Array views."""

    name = "pyodide"

    def __init__(self, instance: Any) -> None:
        import js
        from pyodide.ffi import JsException

        self._js, self._JsException = js, JsException
        self._ex = instance.exports

    @staticmethod
    def _bytes_to_js(wasm: bytes) -> Any:
        import js

        u8 = js.Uint8Array.new(len(wasm))
        u8.assign(wasm)
        return u8

    @classmethod
    def instantiate(cls, wasm: bytes) -> _JsHost:
        import js

        # synchronous compile: fine in Node and workers; browsers' main threads refuse big modules (use load_async)
        module = js.WebAssembly.Module.new(cls._bytes_to_js(wasm))
        return cls(js.WebAssembly.Instance.new(module, js.Object.new()))

    @classmethod
    async def instantiate_async(cls, wasm: bytes) -> _JsHost:
        import js

        result = await js.WebAssembly.instantiate(cls._bytes_to_js(wasm), js.Object.new())
        return cls(result.instance)

    def has(self, name: str) -> bool:
        return hasattr(self._ex, name)

    def call(self, name: str, *args: int) -> int:
        try:
            r = getattr(self._ex, name)(*args)
        except self._JsException as exc:
            raise RuntimeError(f"model.wasm trapped in {name}: {exc}") from None
        return 0 if r is None else int(r)

    def write(self, ptr: int, data: bytes) -> None:
        self._js.Uint8Array.new(self._ex.memory.buffer, ptr, len(data)).assign(data)

    def read(self, ptr: int, n: int) -> bytes:
        return self._js.Uint8Array.new(self._ex.memory.buffer, ptr, n).to_bytes()


def _default_backend(backend: str | None) -> str:
    if backend in (None, "auto"):
        return "pyodide" if sys.platform == "emscripten" else "wasmtime"
    if backend not in ("pyodide", "wasmtime"):
        raise ValueError(f"backend must be 'pyodide', 'wasmtime' or None, got {backend!r}")
    return backend


class WasmInstance:
    """The module's ABI (version 1): input/output buffers at fixed addresses in linear memory, then emit_run()."""

    def __init__(self, host: Any, inputs: list[TensorSpec], outputs: list[TensorSpec]) -> None:
        missing = [f for f in _EXPORTS if not host.has(f)]
        if missing:
            raise RuntimeError(f"the module does not export '{missing[0]}'; is it an onnx-emit model.wasm?")
        abi = host.call("emit_abi_version")
        if abi != ABI_VERSION:
            raise RuntimeError(f"model.wasm has ABI {abi}, this runner expects {ABI_VERSION}")
        if host.has("_initialize"):
            host.call("_initialize")
        self.host, self.inputs, self.outputs = host, inputs, outputs
        # addresses are i32: wasmtime hands them back signed
        self._in_ptr = [host.call("emit_input", i) & 0xFFFFFFFF for i in range(len(inputs))]
        self._out_ptr = [host.call("emit_output", i) & 0xFFFFFFFF for i in range(len(outputs))]

    def load_weights(self, blob: bytes, what: str = "weights") -> None:
        """Copy a whole model.weights into the module and have it checked (ValueError naming the problem)."""
        if not self.host.has("emit_load_weights"):
            raise ValueError(f"{what}: this model embeds its weights (exported without --weights file)")
        cap = self.host.call("emit_weights_capacity")
        self.host.write(self.host.call("emit_weights_buffer") & 0xFFFFFFFF, bytes(blob[:cap]))
        rc = self.host.call("emit_load_weights", min(len(blob), 0x7FFFFFFF))
        if rc != 0:
            raise ValueError(f"{what}: {WEIGHTS_ERRORS.get(rc, f'error {rc}')}")

    def run_bytes(self, data: list[bytes]) -> list[bytes]:
        """Little-endian bytes per input (exactly nbytes each) -> bytes per output."""
        for spec, ptr, b in zip(self.inputs, self._in_ptr, data):
            if len(b) != spec.nbytes:  # a caller bug, but never write past a buffer
                raise ValueError(f"input '{spec.name}': expected {spec.nbytes} bytes, got {len(b)}")
            self.host.write(ptr, b)
        rc = self.host.call("emit_run")
        if rc != 0:
            raise RuntimeError(run_error(rc))
        return [self.host.read(ptr, spec.nbytes) for spec, ptr in zip(self.outputs, self._out_ptr)]


def bind_feeds(names: list[str], args: tuple, kwargs: dict) -> dict[str, Any]:
    """run({name: value}), run(*values) or run(name=value) → {name: value}, every input given exactly once.
    (The native runner and the firmware runner use this too: this file must stay stdlib-only.)"""
    if len(args) == 1 and isinstance(args[0], dict) and not kwargs:
        feeds = dict(args[0])
    else:
        if len(args) > len(names):
            raise ValueError(f"model takes {len(names)} input(s) ({', '.join(names)}), got {len(args)}")
        feeds = dict(zip(names, args))
        for k, v in kwargs.items():
            if k in feeds:
                raise ValueError(f"input '{k}' given twice")
            feeds[k] = v
    unknown = [k for k in feeds if k not in names]
    if unknown:
        raise ValueError(f"unknown input '{unknown[0]}' (inputs: {', '.join(names)})")
    missing = [n for n in names if n not in feeds]
    if missing:
        raise ValueError(f"missing input '{missing[0]}' (expected {', '.join(names)})")
    return feeds


def read_manifest(folder: str | Path) -> dict:
    path = Path(folder) / "manifest.json"
    if not path.is_file():
        raise FileNotFoundError(f"{folder}: no manifest.json; export the model there with --target wasm or pyodide")
    info = json.loads(path.read_text())
    if not info.get("wasm"):
        raise ValueError(f"{folder}: manifest.json has no 'wasm' entry; export with --target wasm or pyodide")
    return info


def specs(info: dict) -> tuple[list[TensorSpec], list[TensorSpec]]:
    def one(t: dict) -> TensorSpec:
        if t["dtype"] not in DTYPES:
            raise ValueError(f"tensor '{t['name']}': dtype {t['dtype']} is not supported by this runner")
        return TensorSpec(t["name"], t["dtype"], tuple(t["shape"]))

    return [one(t) for t in info["inputs"]], [one(t) for t in info["outputs"]]


def _wasm_bytes(folder: str | Path, info: dict) -> bytes:
    return (Path(folder) / info["wasm"].get("file", "model.wasm")).read_bytes()


def read_weights(folder: str | Path, info: dict, weights: str | Path | bytes | None) -> tuple[bytes, str] | None:
    """(model.weights' bytes, what to call it in errors) for a --weights file model, else None."""
    w = info.get("weights", {})
    if w.get("mode") != "file":
        if weights is not None:
            raise ValueError(f"{folder}: this model embeds its weights; it takes no weights file")
        return None
    if isinstance(weights, (bytes, bytearray, memoryview)):
        return weights_source(weights)
    path = Path(weights) if weights is not None else Path(folder) / w.get("file", "model.weights")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such weights file (the model was exported with --weights file)")
    return weights_source(path)


def _ready(host: Any, folder: str | Path, info: dict, weights: Any) -> WasmInstance:
    inst = WasmInstance(host, *specs(info))
    blob = read_weights(folder, info, weights)
    if blob is not None:
        inst.load_weights(*blob)
    return inst


def open_instance(folder: str | Path, backend: str | None = None, weights: Any = None) -> tuple[dict, WasmInstance]:
    """manifest and a ready WasmInstance for the model.wasm of `folder` (synchronous compile); `weights`: a path or
    bytes of model.weights for --weights file models (default: the folder's)."""
    info = read_manifest(folder)
    wasm = _wasm_bytes(folder, info)
    host = _JsHost.instantiate(wasm) if _default_backend(backend) == "pyodide" else _WasmtimeHost(wasm)
    return info, _ready(host, folder, info, weights)


class Model:
    """A loaded model.wasm: `.inputs`, `.outputs`, `.run(...)` (see the module docstring for types)."""

    def __init__(self, info: dict, instance: WasmInstance) -> None:
        self.info = info
        self.name = info.get("prefix", "model")
        self.inputs: list[TensorSpec] = list(instance.inputs)
        self.outputs: list[TensorSpec] = list(instance.outputs)
        self.backend = instance.host.name
        self._instance = instance

    def bind(self, args: tuple, kwargs: dict) -> dict[str, Any]:
        return bind_feeds([s.name for s in self.inputs], args, kwargs)

    def load_weights(self, weights: str | Path | bytes) -> None:
        """Swap in another model.weights (a path or its bytes) of the same model; ValueError naming the problem."""
        self._instance.load_weights(*weights_source(weights))

    def run(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        feeds = self.bind(args, kwargs)
        data = [encode_input(s, feeds[s.name]) for s in self.inputs]
        as_numpy = any(_is_numpy(v) or hasattr(v, "__array_interface__") for v in feeds.values())
        outs = self._instance.run_bytes(data)
        return {s.name: decode_output(s, b, as_numpy) for s, b in zip(self.outputs, outs)}

    __call__ = run

    def __repr__(self) -> str:
        return f"<{self.name} ({self.backend}) inputs={self.inputs} outputs={self.outputs}>"


def load(folder: str | Path, backend: str | None = None, weights: Any = None) -> Model:
    """The model of `folder` (manifest.json + model.wasm). backend: None (Pyodide inside Pyodide, else wasmtime).
    weights: model.weights to use (path or bytes) for --weights file models; default the folder's."""
    return Model(*open_instance(folder, backend, weights))


async def load_async(folder: str | Path, backend: str | None = None, weights: Any = None) -> Model:
    """As load(), but compiles with the asynchronous WebAssembly.instantiate in Pyodide, which a browser's main thread
    needs for modules over a few KiB; in CPython it is the same as load()."""
    if _default_backend(backend) != "pyodide":
        return load(folder, backend, weights)
    info = read_manifest(folder)
    host = await _JsHost.instantiate_async(_wasm_bytes(folder, info))
    return Model(info, _ready(host, folder, info, weights))
