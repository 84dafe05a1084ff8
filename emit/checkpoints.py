"""Read PyTorch checkpoints (torch.save zip archives, safetensors) into numpy arrays, without torch.

A torch.save archive describes its tensors in a pickle, and unpickling normally runs whatever the file
names. The unpickler here resolves only the few names torch uses to rebuild tensors, each to a local
stand-in, so a hostile checkpoint can at worst produce an error.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import re
import zipfile
import zlib
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import ml_dtypes
import numpy as np

from .errors import EmitError

__all__ = ["CheckpointError", "parse_remap_rule", "read_checkpoint", "remap_keys"]


class CheckpointError(EmitError):
    """A checkpoint that cannot be read (safely): one line naming the file and the problem."""


class _Bad(Exception):
    """A problem found while reading; read_checkpoint prefixes the file name."""


_BF16 = np.dtype(ml_dtypes.bfloat16)
_DTYPES = [np.dtype(t) for t in (np.float64, np.float32, np.float16, _BF16, np.int64, np.int32, np.int16, np.int8, np.uint8, np.bool_)]
# The pickle names a storage class per tensor (`torch.FloatStorage`); the zip holds that storage as raw bytes.
_STORAGE_DTYPES = dict(zip([f"{n}Storage" for n in "Double Float Half BFloat16 Long Int Short Char Byte Bool".split()], _DTYPES))
_SAFETENSORS_DTYPES = dict(zip("F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL".split(), _DTYPES))
_LEGACY_MAGIC = (0x1950A86A20F9469CFC6C).to_bytes(10, "little")  # first object pickled by pre-1.6 torch.save
_RESAVE = "load it in PyTorch and re-save the weights with torch.save(model.state_dict(), path)"
_MAX_NESTING = 64


def _one_line(error: BaseException) -> str:
    return " ".join(f"{type(error).__name__}: {error}".split())


def _decode(raw: bytes, dtype: np.dtype, big_endian: bool = False) -> np.ndarray:
    """Raw storage bytes -> 1-D native array (bfloat16 is swapped as uint16: numpy cannot swap it itself)."""
    bits = np.dtype(np.uint16) if dtype == _BF16 else dtype
    usable = len(raw) - len(raw) % bits.itemsize
    stored = np.frombuffer(raw[:usable], bits.newbyteorder(">" if big_endian else "<"))
    return stored.astype(bits.newbyteorder("=")).view(dtype)


class _Refuses:
    """Base of every object the pickle can reach by name: refusing BUILD keeps a file from patching it."""

    __slots__ = ()

    def __setstate__(self, state: object) -> None:
        raise _Bad("the pickle tries to modify a tensor-rebuild object (BUILD)")


class _StorageType(_Refuses):
    """Stand-in for `torch.FloatStorage` and friends: carries only the element dtype."""

    __slots__ = ("name", "dtype")

    def __init__(self, name: str, dtype: np.dtype) -> None:
        self.name, self.dtype = name, dtype


class _Storage(_Refuses):
    """One storage, decoded with the dtype the pickle gave it; only persistent_load creates these."""

    __slots__ = ("array",)

    def __init__(self, array: np.ndarray) -> None:
        self.array = array


class _Call(_Refuses):
    """A permitted pickle global, such as `torch._utils._rebuild_tensor_v2`, calling a local function."""

    __slots__ = ("function",)

    def __init__(self, function: Callable[..., Any]) -> None:
        self.function = function

    def __call__(self, *args: Any) -> Any:
        return self.function(*args)


def _rebuild_tensor(storage: object, offset: object, size: object, stride: object, *_ignored: object) -> np.ndarray:
    """A strided view of a storage, copied to a contiguous array; indexes are checked before numpy sees them."""
    if not isinstance(storage, _Storage):
        raise _Bad(f"tensor rebuilt from {type(storage).__name__}, not from a storage")
    if not (isinstance(size, tuple) and isinstance(stride, tuple) and len(size) == len(stride)):
        raise _Bad(f"tensor with malformed size {size!r:.60} / stride {stride!r:.60}")
    numbers = [offset, *size, *stride]
    if not all(isinstance(n, int) and not isinstance(n, bool) and 0 <= n < 2**62 for n in numbers):
        raise _Bad(f"tensor with a bad offset, size or stride: {numbers!r:.100}")
    base = storage.array
    if math.prod(size) == 0:
        return np.zeros(size, base.dtype)
    last = offset + sum((n - 1) * step for n, step in zip(size, stride))
    if last >= base.size:
        raise _Bad(f"tensor of size {list(size)} with stride {list(stride)} at offset {offset} "
                   f"reaches element {last} of a storage of {base.size} elements")  # fmt: skip
    strides = [step * base.itemsize for step in stride]
    view = np.lib.stride_tricks.as_strided(base[offset:], shape=size, strides=strides, writeable=False)
    return np.array(view, order="C", copy=True)


def _rebuild_parameter(data: object, *_ignored: object) -> np.ndarray:
    """nn.Parameter is pickled as a wrapper around a tensor: keep the tensor."""
    if not isinstance(data, np.ndarray):
        raise _Bad(f"parameter rebuilt from {type(data).__name__}, not from a tensor")
    return data


_ALLOWED_CALLS = {
    "torch._utils._rebuild_tensor_v2": _Call(_rebuild_tensor),
    "torch._utils._rebuild_parameter": _Call(_rebuild_parameter),
    "torch._utils._rebuild_parameter_with_state": _Call(_rebuild_parameter),
}


class _TensorUnpickler(pickle.Unpickler):
    """Unpickles data.pkl of a torch.save archive, resolving only tensor-rebuild names."""

    def __init__(self, stream: IO[bytes], archive: zipfile.ZipFile, prefix: str, big_endian: bool) -> None:
        super().__init__(stream)
        self.archive, self.prefix, self.big_endian = archive, prefix, big_endian
        self.raw_storages: dict[str, bytes] = {}
        self.storages: dict[tuple[str, str], _Storage] = {}

    def find_class(self, module: str, name: str) -> Any:
        qualified = f"{module}.{name}"
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name, _STORAGE_DTYPES[name])
        if qualified == "collections.OrderedDict":
            return OrderedDict
        if qualified in _ALLOWED_CALLS:
            return _ALLOWED_CALLS[qualified]
        raise _Bad(f"refusing to load {qualified!r} from the pickle: only tensor rebuild calls are allowed")

    def persistent_load(self, pid: Any) -> _Storage:
        """('storage', storage type, key, location, numel) -> the storage `<archive>/data/<key>`, read once."""
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and isinstance(pid[1], _StorageType)
                and isinstance(pid[2], str) and isinstance(pid[4], int)):  # fmt: skip
            raise _Bad(f"unexpected persistent id in the pickle: {pid!r:.100}")
        _, kind, key, _location, numel = pid
        if (key, kind.name) not in self.storages:
            entry = f"{self.prefix}data/{key}"
            if key not in self.raw_storages:
                try:
                    self.raw_storages[key] = self.archive.read(entry)
                except KeyError:
                    raise _Bad(f"storage {entry!r} named by the pickle is missing from the archive") from None
            raw = self.raw_storages[key]
            if len(raw) < numel * kind.dtype.itemsize:
                raise _Bad(f"storage {entry!r} holds {len(raw)} bytes, the pickle expects {numel} x {kind.name} "
                           f"({numel * kind.dtype.itemsize} bytes)")  # fmt: skip
            self.storages[key, kind.name] = _Storage(_decode(raw, kind.dtype, self.big_endian))
        return self.storages[key, kind.name]


def _read_torch_zip(path: Path) -> object:
    try:
        archive = zipfile.ZipFile(path)
    except Exception as error:  # zipfile raises several types for a damaged directory
        raise _Bad(f"not a readable zip archive (truncated or corrupt?): {_one_line(error)}") from None
    with archive:
        names = archive.namelist()
        if any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
            raise _Bad(f"this is a TorchScript archive (torch.jit.save), not a torch.save checkpoint; {_RESAVE}")
        pickles = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise _Bad("zip archive without a single '<archive>/data.pkl' entry: not a torch.save checkpoint")
        prefix = pickles[0].removesuffix("data.pkl")
        try:
            has_byteorder = f"{prefix}byteorder" in names
            byteorder = archive.read(f"{prefix}byteorder").decode("ascii", "replace") if has_byteorder else "little"
            if byteorder not in ("little", "big"):
                raise _Bad(f"unknown byteorder {byteorder!r:.20} in the archive")
            with archive.open(pickles[0]) as stream:
                return _TensorUnpickler(stream, archive, prefix, byteorder == "big").load()
        except _Bad:
            raise
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as error:
            raise _Bad(f"corrupt or truncated zip archive: {_one_line(error)}") from None
        except Exception as error:  # a malformed pickle raises many types; none of them may escape raw
            raise _Bad(f"{pickles[0]} is not a valid torch.save pickle: {_one_line(error)}") from None


def _safetensors_entry(name: str, entry: object) -> tuple[np.dtype, list[int], int, int]:
    """Validated (dtype, shape, begin, end) of one header entry."""
    if not isinstance(entry, dict) or not isinstance(entry.get("dtype"), str):
        raise _Bad(f"safetensors header entry {name!r} is malformed: {entry!r:.100}")
    dtype = _SAFETENSORS_DTYPES.get(entry["dtype"])
    if dtype is None:
        raise _Bad(f"tensor {name!r} has dtype {entry['dtype']!r:.20}; supported: {', '.join(_SAFETENSORS_DTYPES)}")
    shape, offsets = entry.get("shape"), entry.get("data_offsets")
    counts = [*shape, *offsets] if isinstance(shape, list) and isinstance(offsets, list) and len(offsets) == 2 else [-1]
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in counts) or offsets[0] > offsets[1]:
        raise _Bad(f"safetensors header entry {name!r} has a bad shape or data_offsets: {entry!r:.100}")
    return dtype, shape, offsets[0], offsets[1]


def _read_safetensors(path: Path) -> dict[str, np.ndarray]:
    with open(path, "rb") as file:
        file_size = os.fstat(file.fileno()).st_size
        length_bytes = file.read(8)
        if len(length_bytes) < 8:
            raise _Bad(f"{file_size} bytes is too short for a safetensors file (no header length)")
        header_size = int.from_bytes(length_bytes, "little")
        data_start = 8 + header_size
        if data_start > file_size:
            raise _Bad(f"safetensors header of {header_size} bytes runs past the end of the {file_size}-byte file (truncated?)")
        try:
            header = json.loads(file.read(header_size))
        except ValueError as error:  # JSONDecodeError and UnicodeDecodeError
            raise _Bad(f"safetensors header is not valid JSON: {_one_line(error)}") from None
        if not isinstance(header, dict):
            raise _Bad("safetensors header is not a JSON object")
        data_size, tensors = file_size - data_start, {}
        for name, entry in header.items():
            if name == "__metadata__":
                continue
            dtype, shape, begin, end = _safetensors_entry(name, entry)
            if end > data_size:
                raise _Bad(f"tensor {name!r} ends at data byte {end} but the file holds {data_size} data bytes (truncated?)")
            if end - begin != math.prod(shape) * dtype.itemsize:
                raise _Bad(f"tensor {name!r} has {end - begin} bytes, shape {shape} of {entry['dtype']} needs "
                           f"{math.prod(shape) * dtype.itemsize}")  # fmt: skip
            file.seek(data_start + begin)
            tensors[name] = _decode(file.read(end - begin), dtype).reshape(shape)
        return tensors


def _load(path: Path) -> object:
    """Dispatch on the first bytes (the suffix only decides for files that look like nothing known)."""
    try:
        with open(path, "rb") as file:
            head = file.read(32)
    except FileNotFoundError:
        raise _Bad("no such file") from None
    except OSError as error:
        raise _Bad(f"cannot read: {error.strerror}") from None
    if head.startswith(b"PK"):
        return _read_torch_zip(path)
    if head.startswith(b"\x80") and _LEGACY_MAGIC in head:
        raise _Bad(f"this is the legacy (non-zip, PyTorch < 1.6) torch.save format, which is not supported; {_RESAVE}")
    if head[8:9] == b"{" or path.suffix == ".safetensors":
        return _read_safetensors(path)
    if not head:
        raise _Bad("empty file")
    raise _Bad("not a PyTorch checkpoint: neither a torch.save zip archive nor a safetensors file")


def _describe(value: object) -> str:
    kind = "single tensor" if isinstance(value, np.ndarray) else type(value).__name__
    return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind}"


def _key_list(mapping: dict) -> str:
    keys = [repr(str(k)) for k in mapping]
    return ", ".join(keys[:20]) + (f", ... ({len(keys) - 20} more)" if len(keys) > 20 else "")


def _select(loaded: object, key: str) -> object:
    """The entry `key` of the top-level dict; in a flat dict (safetensors), the names under `key.`."""
    if not isinstance(loaded, dict):
        raise _Bad(f"the checkpoint is {_describe(loaded)}, not a dict, so it has no top-level key {key!r}")
    if key in loaded:
        return loaded[key]
    nested = {k.removeprefix(f"{key}."): v for k, v in loaded.items() if isinstance(k, str) and k.startswith(f"{key}.")}
    if nested:
        return nested
    raise _Bad(f"no top-level key {key!r}; the checkpoint has: {_key_list(loaded) or 'no keys'}")


def _flatten(mapping: dict, prefix: str, out: dict[str, np.ndarray], depth: int = 0) -> None:
    """Tensors of nested dicts under '.'-joined names; other leaves (epoch, lists, strings) are skipped."""
    if depth > _MAX_NESTING:
        raise _Bad(f"dicts nested more than {_MAX_NESTING} deep (under {prefix!r:.80})")
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, np.ndarray):
            if name in out:
                raise _Bad(f"two tensors are named {name!r} once nested dicts are flattened")
            out[name] = value
        elif isinstance(value, dict):
            _flatten(value, f"{name}.", out, depth + 1)


def read_checkpoint(path: str | os.PathLike[str], top_level_key: str | None = None) -> dict[str, np.ndarray]:
    """Named tensors of a torch.save checkpoint or a safetensors file, as numpy arrays, without running its code.

    `top_level_key` picks one entry first (e.g. "state_dict" or "model"); nested dicts are flattened with '.'.
    """
    path = Path(path)
    try:
        loaded = _load(path)
        if top_level_key is not None:
            loaded = _select(loaded, top_level_key)
        if not isinstance(loaded, dict):
            what = "the checkpoint" if top_level_key is None else f"entry {top_level_key!r}"
            raise _Bad(f"{what} is {_describe(loaded)}, not a dict of named tensors")
        tensors: dict[str, np.ndarray] = {}
        _flatten(loaded, "", tensors)
        if not tensors:
            raise _Bad(f"no tensors found; the top-level keys are: {_key_list(loaded) or 'none'}")
        return tensors
    except _Bad as bad:
        raise CheckpointError(f"{path.name}: {bad}") from None


def parse_remap_rule(text: str) -> tuple[re.Pattern[str], str]:
    """'REGEX=REPLACEMENT', split at the LAST '=': the regex may contain '=' (as in a lookahead '(?=...)'),
    the replacement may not. The replacement may be empty (to strip a prefix) and may use \\1 group references."""
    pattern, equals, replacement = text.rpartition("=")
    if not equals or not pattern:
        raise CheckpointError(f"remap rule '{text}': expected 'REGEX=REPLACEMENT'")
    try:
        return re.compile(pattern), replacement
    except re.error as error:
        raise CheckpointError(f"remap rule '{text}': bad regular expression: {error}") from None


def remap_keys(names: list[str], rules: list[str]) -> dict[str, str]:
    """{original: renamed}: every rule applied in order with re.sub, so checkpoint names can match a model's."""
    parsed = [(rule, *parse_remap_rule(rule)) for rule in rules]
    renamed: dict[str, str] = {}
    original_of: dict[str, str] = {}
    for name in names:
        new_name = name
        for rule, pattern, replacement in parsed:
            try:
                new_name = pattern.sub(replacement, new_name)
            except (re.error, IndexError) as error:
                raise CheckpointError(f"remap rule '{rule}': bad replacement: {error}") from None
        if new_name in original_of:
            raise CheckpointError(f"remap rules rename both {original_of[new_name]!r} and {name!r} to {new_name!r}")
        original_of[new_name] = name
        renamed[name] = new_name
    return renamed
