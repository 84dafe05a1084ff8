"""Run an exported model from Python: checks every input before any C code sees it."""

from __future__ import annotations

import importlib.util
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ml_dtypes  # noqa: F401 - the manifest's dtype names bfloat16, float8_*, int4, ... resolve in numpy
import numpy as np

from .errors import EmitError
from .ir import STRING_DTYPE, encode_strings, is_string
from .wasm_runner import WEIGHTS_ERRORS, bind_feeds, read_weights, run_error, weights_source

_CFFI_TYPES = {
    "float32": "float", "float64": "double", "int8": "int8_t", "int16": "int16_t", "int32": "int32_t",
    "int64": "int64_t", "uint8": "uint8_t", "uint16": "uint16_t", "uint32": "uint32_t", "uint64": "uint64_t",
    "bool": "_Bool",
    # narrow types travel as their bit patterns (ml_dtypes: one byte per float8/float4/int4/int2 element)
    "float16": "uint16_t", "bfloat16": "uint16_t", "float8_e4m3fn": "uint8_t", "float8_e4m3fnuz": "uint8_t",
    "float8_e5m2": "uint8_t", "float8_e5m2fnuz": "uint8_t", "float8_e8m0fnu": "uint8_t", "float4_e2m1fn": "uint8_t",
    "int4": "uint8_t", "uint4": "uint8_t", "int2": "uint8_t", "uint2": "uint8_t",
    "bytes512": "char",  # strings: fixed NUL-padded UTF-8 slots (ir.STRING_DTYPE)
}


_RANGE_ERROR = ("model returned error code {rc}: an input value was out of range (an index past a table's end, a runtime "
                "shape that disagrees with the compiled one, or a string too long for its slot)")


def _aligned_bytes(nbytes: int, align: int) -> np.ndarray:
    """nbytes of uint8 starting at an `align`-byte boundary (a view that keeps its buffer alive)."""
    buf = np.empty(nbytes + align, dtype=np.uint8)
    start = (-buf.ctypes.data) % align
    return buf[start:start + nbytes]


def _decoded(slots: np.ndarray) -> np.ndarray:
    """String slots back to an object array of str, as onnxruntime returns string tensors."""
    flat = [b.decode("utf-8", errors="replace") for b in slots.ravel().tolist()]
    return np.array(flat, dtype=object).reshape(slots.shape)


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str
    shape: tuple[int, ...]


def import_extension(path: Path, module: str):
    spec = importlib.util.spec_from_file_location(module, str(path))
    if spec is None or spec.loader is None:
        raise EmitError(f"cannot load native module {path}")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class NativeFunction:
    """One model function inside a (possibly shared) cffi extension."""

    def __init__(self, info: dict, ext) -> None:
        self.info = info
        self.inputs = [TensorSpec(t["name"], t["dtype"], tuple(t["shape"])) for t in info["inputs"]]
        self.outputs = [TensorSpec(t["name"], t["dtype"], tuple(t["shape"])) for t in info["outputs"]]
        self._ffi = ext.ffi
        self._fn = getattr(ext.lib, info["functions"]["run"])
        self._load = getattr(ext.lib, info["functions"]["load_weights"]) if "load_weights" in info["functions"] else None
        self._blob: np.ndarray | None = None  # the loaded model.weights: C reads float32 tensors from it in place
        self._arena_bytes = int(info["arena_bytes"])
        # per-call work done once: dtypes, cffi types, string flags; and an arena reused by calls that do not overlap
        self._init_specs()
        self._in_types = [f"{_CFFI_TYPES[s.dtype]}[]" for s in self.inputs]
        self._out_types = [f"{_CFFI_TYPES[s.dtype]}[]" for s in self.outputs]
        self._out_strings = [is_string(s.dtype) for s in self.outputs]
        self._out_dtypes = [STRING_DTYPE if st else np.dtype(s.dtype) for s, st in zip(self.outputs, self._out_strings)]
        # per output, arrays returned by earlier calls: one the caller no longer references is written again instead
        # of a fresh array, whose first touch costs page faults (a 1 MB output: ~1 ms a call, more than its softmax)
        self._returned: list[list[np.ndarray]] = [[] for _ in self.outputs]
        # arenas of finished calls, reused: list.pop and list.append are atomic, so concurrent calls (cffi releases
        # the GIL) each take their own and no lock is needed
        self._arenas = [self._new_arena()]

    def _init_specs(self) -> None:
        self._in_dtypes = [np.dtype(STRING_DTYPE if is_string(s.dtype) else s.dtype) for s in self.inputs]
        self._in_strings = [is_string(s.dtype) for s in self.inputs]
        self._names = [s.name for s in self.inputs]
        # (dtype, shape) an input must have to skip conversion; None for strings, which are always encoded
        self._ready = [None if st else (dt, s.shape) for s, dt, st in zip(self.inputs, self._in_dtypes, self._in_strings)]

    def _new_arena(self):
        return self._ffi.from_buffer("uint8_t[]", _aligned_bytes(self._arena_bytes, 64))  # keeps the array alive; on a cache line like its offsets

    def load_weights(self, weights: str | Path | bytes) -> None:
        """Swap in another model.weights (a path or its bytes) of the same model; EmitError naming the problem."""
        if self._load is None:
            raise EmitError(f"model '{self.info['prefix']}' embeds its weights (exported without --weights file)")
        self._adopt(*weights_source(weights))

    def _adopt(self, data: bytes, what: str) -> None:
        blob = _aligned_bytes(len(data), 64)
        blob[:] = np.frombuffer(data, dtype=np.uint8)
        rc = self._load(self._ffi.from_buffer("uint8_t[]", blob), len(data))
        if rc != 0:
            self._blob = None
            raise EmitError(f"{what}: {WEIGHTS_ERRORS.get(rc, f'error {rc}')}")
        self._blob = blob

    def _check(self, spec: TensorSpec, value: Any, k: int) -> np.ndarray:
        if self._in_strings[k]:
            arr = np.asarray(value, dtype=object)
            if any(not isinstance(v, (str, bytes)) for v in arr.ravel()):
                raise ValueError(f"input '{spec.name}': expected strings (str or bytes), got {np.asarray(value).dtype}")
            if tuple(arr.shape) != spec.shape:
                raise ValueError(f"input '{spec.name}': expected shape {list(spec.shape)}, got {list(arr.shape)}")
            return encode_strings(arr, f"input '{spec.name}'")
        if isinstance(value, np.ndarray) or hasattr(value, "__array_interface__"):
            arr = np.asarray(value)
            if arr.dtype != np.dtype(spec.dtype):
                raise ValueError(f"input '{spec.name}': expected dtype {spec.dtype}, got {arr.dtype}")
        else:
            try:
                arr = np.asarray(value, dtype=spec.dtype)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"input '{spec.name}': cannot convert {type(value).__name__} to {spec.dtype}: {exc}") from None
        if tuple(arr.shape) != spec.shape:
            raise ValueError(f"input '{spec.name}': expected shape {list(spec.shape)}, got {list(arr.shape)}")
        return np.ascontiguousarray(arr)

    def _ready_arrays(self, args: tuple, kwargs: dict) -> list | tuple | None:
        """The inputs as given when the call is the common one (a dict naming exactly the inputs, or the inputs in
        order, each a C-contiguous array of the declared dtype and shape), else None for the general path."""
        if kwargs:
            return None
        if len(args) == 1 and type(args[0]) is dict:
            feeds = args[0]
            if len(feeds) != len(self._names):
                return None
            try:
                args = [feeds[n] for n in self._names]
            except KeyError:
                return None
        elif len(args) != len(self._names):
            return None
        for v, ready in zip(args, self._ready):
            if ready is None or type(v) is not np.ndarray or v.dtype != ready[0] or v.shape != ready[1] \
                    or not v.flags.c_contiguous:
                return None
        return args

    def bind(self, args: tuple, kwargs: dict) -> list[np.ndarray] | tuple:
        """The inputs in order, each checked (and converted where it must be): the common call as given."""
        ready = self._ready_arrays(args, kwargs)
        if ready is not None:
            return ready
        if not kwargs and len(args) == len(self._names) and not (len(args) == 1 and isinstance(args[0], dict)):
            return [self._check(s, v, k) for k, (s, v) in enumerate(zip(self.inputs, args))]  # positional, in order
        feeds = bind_feeds(self._names, args, kwargs)
        return [self._check(s, feeds[s.name], k) for k, s in enumerate(self.inputs)]

    def run(self, *args, **kwargs) -> dict[str, np.ndarray]:
        arrays = self.bind(args, kwargs)
        outs = [np.zeros(s.shape, dt) if st else self._output(k, s.shape, dt)
                for k, (s, dt, st) in enumerate(zip(self.outputs, self._out_dtypes, self._out_strings))]
        ffi = self._ffi
        ptrs = [ffi.from_buffer(t, a) for t, a in zip(self._in_types, arrays)]
        ptrs += [ffi.from_buffer(t, o) for t, o in zip(self._out_types, outs)]  # our own arrays: writable
        try:
            arena = self._arenas.pop()
        except IndexError:  # another thread's call holds every arena made so far
            arena = self._new_arena()
        try:
            rc = self._fn(arena, *ptrs)
        finally:
            self._arenas.append(arena)
        if rc != 0:
            raise RuntimeError(run_error(rc, _RANGE_ERROR))
        for k, (o, st) in enumerate(zip(outs, self._out_strings)):
            if not st:
                self._returned[k].append(o)
        return {s.name: _decoded(o) if st else o for s, o, st in zip(self.outputs, outs, self._out_strings)}

    def _output(self, k: int, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """An array for output k: the one an earlier call returned if nothing else references it any more (not the
        caller, nor a view, a dict or a buffer of it), else a new one. list.pop claims it atomically: concurrent calls
        (cffi releases the GIL) never share one."""
        try:
            old = self._returned[k].pop()
        except IndexError:
            return np.empty(shape, dtype)
        # references: `old` here and getrefcount's argument; the caller's copy was dropped
        return old if sys.getrefcount(old) == 2 else np.empty(shape, dtype)

    __call__ = run


class Model(NativeFunction):
    """A model exported with target native: `emit.load(folder)`."""

    def __init__(self, folder: str | Path, weights: str | Path | bytes | None = None) -> None:
        folder = Path(folder)
        mf = folder / "manifest.json"
        if not mf.is_file():
            raise EmitError(f"{folder}: no manifest.json; export the model there first")
        info = json.loads(mf.read_text())
        native = info.get("native")
        if not native:
            raise EmitError(f"{folder}: not built for native; export with --target native")
        ext = import_extension(folder / native["file"], native["module"])
        super().__init__(info, ext)
        self.folder = folder
        try:
            blob = read_weights(folder, info, weights)
        except (FileNotFoundError, ValueError) as exc:
            raise EmitError(str(exc)) from None
        if blob is not None:
            self._adopt(*blob)

    def __repr__(self) -> str:
        return f"<emit.Model {self.info['prefix']} inputs={self.inputs} outputs={self.outputs}>"


class WasmModel(NativeFunction):
    """A model exported with target wasm or pyodide: model.wasm run through wasmtime (emit.wasm_runner), with the
    native runner's argument binding and checks."""

    def __init__(self, folder: str | Path, info: dict, weights: str | Path | bytes | None = None) -> None:
        from . import wasm_runner

        self.folder = Path(folder)
        self.info = info
        self.inputs = [TensorSpec(t["name"], t["dtype"], tuple(t["shape"])) for t in info["inputs"]]
        self.outputs = [TensorSpec(t["name"], t["dtype"], tuple(t["shape"])) for t in info["outputs"]]
        self._init_specs()
        try:
            self._instance = wasm_runner.open_instance(self.folder, backend="wasmtime", weights=weights)[1]
        except ImportError as exc:
            raise EmitError(f"{folder}: {exc}") from None
        except (OSError, ValueError, RuntimeError) as exc:
            raise EmitError(f"{folder}: cannot load {info['wasm'].get('file', 'model.wasm')}: {exc}") from None

    def load_weights(self, weights: str | Path | bytes) -> None:
        try:
            self._instance.load_weights(*weights_source(weights))
        except ValueError as exc:
            raise EmitError(str(exc)) from None

    def run(self, *args, **kwargs) -> dict[str, np.ndarray]:
        arrays = self.bind(args, kwargs)
        # the module's buffers are little-endian whatever the host
        data = [np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<")).tobytes() for a in arrays]
        outs = self._instance.run_bytes(data)
        return {s.name: np.frombuffer(b, dtype=np.dtype(s.dtype).newbyteorder("<")).astype(s.dtype).reshape(s.shape)
                for s, b in zip(self.outputs, outs)}

    __call__ = run

    def __repr__(self) -> str:
        return f"<emit.WasmModel {self.info['prefix']} (wasmtime) inputs={self.inputs} outputs={self.outputs}>"


def load(folder: str | Path, weights: str | Path | bytes | None = None) -> Model | WasmModel:
    """The model exported into `folder`: the cffi extension (target native), else model.wasm through wasmtime
    (targets wasm and pyodide). weights: for models exported with --weights file, the model.weights to use
    (a path or its bytes; default the folder's)."""
    folder = Path(folder)
    mf = folder / "manifest.json"
    if mf.is_file():
        info = json.loads(mf.read_text())
        if not info.get("native") and info.get("wasm"):
            return WasmModel(folder, info, weights)
        if not info.get("native"):
            raise EmitError(f"{folder}: not built for native or wasm; export with --target native, wasm or pyodide")
    return Model(folder, weights)
