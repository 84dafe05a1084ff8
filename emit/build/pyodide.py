"""Pyodide builder: the wasm folder → OUT/<package>-<version>-py3-none-any.whl, a pure-Python wheel carrying
model.wasm, the manifest's tensor table and the stdlib runner (emit/wasm_runner.py, copied in as _runner.py).
Inside Pyodide it runs through js.WebAssembly; in CPython through wasmtime (a dependency there only)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import keyword
import re
import sys
import zipfile
from pathlib import Path

from .. import __version__, wasm_runner
from ..errors import EmitError

DEFAULT_VERSION = "1.0.0"
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed timestamps: the same folder always gives the same wheel bytes
_PEP440 = re.compile(r"^([1-9][0-9]*!)?(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*((a|b|rc)(0|[1-9][0-9]*))?"
                     r"(\.post(0|[1-9][0-9]*))?(\.dev(0|[1-9][0-9]*))?$")

INIT_TEMPLATE = '''"""{name}: the ONNX model {source} compiled ahead of time by onnx-emit {emit_version} into model.wasm.

    import {name}
    m = {name}.load()  # inside Pyodide: the host's WebAssembly; in CPython: wasmtime
    m.inputs, m.outputs  # [TensorSpec(name, dtype, shape)]
    outs = m.run({{{example}}})  # {{output name: value}}

Inputs: flat or nested lists, array.array, memoryview, or numpy arrays of the input's dtype. Outputs: numpy arrays
shaped per m.outputs when an input was a numpy array, else Tensor objects (array.array with .shape and .dtype;
.tolist() nests per the shape). In a browser's main thread use `m = await {name}.load_async()`.
"""

from pathlib import Path as _Path

from ._runner import Model, Tensor, TensorSpec
from . import _runner

__version__ = "{version}"
_HERE = _Path(__file__).resolve().parent


def load(backend=None, weights=None) -> Model:
    """Compile and instantiate model.wasm; backend None picks Pyodide's WebAssembly or wasmtime. weights: another
    model.weights (path or bytes) for a model built with --weights file (default: the packaged one)."""
    return _runner.load(_HERE, backend, weights)


async def load_async(backend=None, weights=None) -> Model:
    """load() with asynchronous compilation (needed on a browser's main thread)."""
    return await _runner.load_async(_HERE, backend, weights)


__all__ = ["load", "load_async", "Model", "Tensor", "TensorSpec"]
'''


def package_name(info: dict) -> str:
    """The import name: the model prefix, when Python can import it without shadowing something."""
    name = info["prefix"]
    if not name.isidentifier() or keyword.iskeyword(name):
        raise EmitError(f"model name '{name}' is not a Python identifier; pass --name")
    stdlib = getattr(sys, "stdlib_module_names", ())
    if name in stdlib or name in ("js", "pyodide", "micropip", "numpy", "wasmtime", "emit"):
        raise EmitError(f"model name '{name}' would shadow the module '{name}' in Pyodide/CPython; pass another --name")
    return name


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def wheel_files(info: dict, wasm: bytes, name: str, version: str, weights: bytes | None = None) -> dict[str, bytes]:
    """Archive path → bytes, RECORD last (it lists every other file with its sha256)."""
    w = info["wasm"]
    meta = {
        "format": info.get("format"), "prefix": info["prefix"], "version": version, "emit_version": __version__,
        "inputs": info["inputs"], "outputs": info["outputs"],
        "wasm": {"file": "model.wasm", "abi": w["abi"], "simd": w["simd"], "memory_bytes": w["memory_bytes"]},
        "weights": info.get("weights", {"mode": "embed"}),
    }
    example = ", ".join(f'"{t["name"]}": [...]' for t in info["inputs"])
    init = INIT_TEMPLATE.format(name=name, source=Path(str(info.get("source", "model.onnx"))).name, emit_version=__version__,
                                version=version, example=example)
    dist = f"{name}-{version}.dist-info"
    metadata = "\n".join([
        "Metadata-Version: 2.1",
        f"Name: {name}",
        f"Version: {version}",
        f"Summary: ONNX model {info['prefix']} compiled to WebAssembly by onnx-emit (Pyodide, or CPython with wasmtime)",
        "Requires-Python: >=3.9",
        # Pyodide runs the module through its host's WebAssembly; every other Python needs wasmtime
        'Requires-Dist: wasmtime; sys_platform != "emscripten"',
        "Provides-Extra: numpy",
        'Requires-Dist: numpy; extra == "numpy"',
        "",
        "",
    ])
    wheel = "\n".join(["Wheel-Version: 1.0", f"Generator: onnx-emit {__version__}", "Root-Is-Purelib: true",
                       "Tag: py3-none-any", "", ""])
    files = {
        f"{name}/__init__.py": init.encode(),
        f"{name}/_runner.py": Path(wasm_runner.__file__).read_bytes(),
        f"{name}/manifest.json": (json.dumps(meta, indent=2) + "\n").encode(),
        f"{name}/model.wasm": wasm,
        **({f"{name}/model.weights": weights} if weights is not None else {}),
        f"{dist}/METADATA": metadata.encode(),
        f"{dist}/WHEEL": wheel.encode(),
        f"{dist}/top_level.txt": f"{name}\n".encode(),
    }
    record = "".join(f"{path},{_record_hash(data)},{len(data)}\n" for path, data in files.items())
    files[f"{dist}/RECORD"] = (record + f"{dist}/RECORD,,\n").encode()
    return files


def build_wheel(folder: Path, version: str | None = None) -> Path:
    """Write folder/<package>-<version>-py3-none-any.whl from the wasm build in folder; record it in the manifest."""
    folder = Path(folder)
    info = json.loads((folder / "manifest.json").read_text())
    if not info.get("wasm"):
        raise EmitError(f"{folder}: no wasm build in manifest.json; the pyodide target builds the wasm first")
    name = package_name(info)
    version = str(version or info.get("model_version") or DEFAULT_VERSION)
    if not _PEP440.match(version):
        raise EmitError(f"wheel version '{version}' is not a PEP 440 version such as 1.0.0")
    wasm = (folder / info["wasm"]["file"]).read_bytes()
    blob = info.get("weights", {})
    weights = (folder / blob["file"]).read_bytes() if blob.get("mode") == "file" else None
    files = wheel_files(info, wasm, name, version, weights)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for path, data in files.items():
            zi = zipfile.ZipInfo(path, date_time=_ZIP_DATE)
            zi.external_attr = 0o644 << 16
            zi.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(zi, data)
    filename = f"{name}-{version}-py3-none-any.whl"
    path = folder / filename
    path.write_bytes(buf.getvalue())
    info["pyodide"] = {"wheel": filename, "package": name, "version": version, "wheel_bytes": path.stat().st_size}
    (folder / "manifest.json").write_text(json.dumps(info, indent=2) + "\n")
    return path
