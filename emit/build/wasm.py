"""Wasm builder: the C folder → a standalone model.wasm (emcc, no imports) plus the JS side
(model.mjs loader, model.d.ts, index.html) rendered from wasm/."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

import jinja2
import numpy as np

from .. import __version__
from ..errors import EmitError
from ..ir import c_type
from ..resources import asset_dir
from ..targets import target_config
from ..wasm_runner import WEIGHTS_ERRORS
from .object_cache import compiled, is_runtime_kernel, run_compiler

WASM_ABI_VERSION = 1
# the runners' weights error messages, in the JS API's words (its method is loadWeights)
_JS_WEIGHTS_ERRORS = {code: text.replace("load_weights", "loadWeights") for code, text in WEIGHTS_ERRORS.items()}
_PAGE = 65536


def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(asset_dir("wasm"))),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["tojson"] = lambda v: json.dumps(v)
    return env


def find_emcc(cfg: dict) -> str:
    cc = shutil.which(cfg.get("compiler", "emcc"))
    if cc is None:
        raise EmitError(f"emcc not found: {cfg.get('install_hint', 'install emscripten')}")
    return cc


def memory_bytes(info: dict, cfg: dict) -> int:
    """Linear memory for the static data (weights, arena, I/O buffers) + stack + slack, whole 64 KiB pages."""
    io = sum(t["size"] * np.dtype(t["dtype"]).itemsize for t in info["inputs"] + info["outputs"])
    # embedded weights, or the buffer model.weights is copied into; plus float32 copies of narrow ones
    weights = (file_weights_bytes(info) or info["weight_bytes"]) + info.get("weights", {}).get("expanded_bytes", 0)
    need = weights + info["arena_bytes"] + io + int(cfg["stack_bytes"]) + int(cfg["slack_bytes"])
    return -(-need // _PAGE) * _PAGE


def file_weights_bytes(info: dict) -> int:
    """model.weights' size when the weights are a separate file (--weights file), else 0."""
    w = info.get("weights", {})
    return int(w.get("blob_bytes", 0)) if w.get("mode") == "file" else 0


def write_glue(folder: Path, info: dict) -> Path:
    def t(d: dict) -> dict:
        return {**d, "ctype": c_type(d["dtype"])}

    ins, outs = [t(d) for d in info["inputs"]], [t(d) for d in info["outputs"]]
    args = [f"emit_in{i}" for i in range(len(ins))] + [f"emit_out{i}" for i in range(len(outs))]
    text = _env().get_template("glue.c.j2").render(
        prefix=info["prefix"], version=__version__, inputs=ins, outputs=outs, call_args=", ".join(args),
        blob_bytes=file_weights_bytes(info),
    )
    path = folder / "emit_wasm.c"
    path.write_text(text)
    return path


def wasm_sections(data: bytes) -> dict[int, int]:
    """Section id → payload bytes of a wasm binary (1 type, 2 import, 7 export, 10 code, 11 data, ...)."""
    if data[:4] != b"\0asm":
        raise EmitError("not a WebAssembly binary")
    sizes: dict[int, int] = {}
    pos = 8
    while pos < len(data):
        sid = data[pos]
        pos += 1
        n, shift = 0, 0
        while True:
            b = data[pos]
            pos += 1
            n |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                break
        sizes[sid] = sizes.get(sid, 0) + n
        pos += n
    return sizes


def size_split(path: Path) -> dict:
    """The .wasm's bytes: data (weights and other constants), code (everything else)."""
    total = path.stat().st_size
    sections = wasm_sections(path.read_bytes())
    data = sections.get(11, 0)
    return {"wasm_bytes": total, "data_bytes": data, "code_bytes": total - data, "imports": sections.get(2, 0)}


def _emcc(folder: Path, cmd: list[str]) -> None:
    run_compiler(cmd, "wasm build", cwd=folder)


def build_wasm(folder: Path, simd: bool = True) -> Path:
    """Compile folder's C into folder/model.wasm and write model.mjs, model.d.ts, index.html beside it."""
    cfg = target_config("wasm")
    emcc = find_emcc(cfg)
    info = json.loads((folder / "manifest.json").read_text())
    glue = write_glue(folder, info)
    mem = memory_bytes(info, cfg)
    exports = ["_emit_input", "_emit_output", "_emit_run", "_emit_abi_version"]
    if file_weights_bytes(info):
        exports += ["_emit_weights_buffer", "_emit_weights_capacity", "_emit_load_weights"]
    flags = [*cfg["cflags"], *(cfg["simd_cflags"] if simd else [])]
    link = ["-o", "model.wasm", "-sSTANDALONE_WASM", "--no-entry", f"-sEXPORTED_FUNCTIONS={','.join(exports)}",
            f"-sINITIAL_MEMORY={mem}", "-sALLOW_MEMORY_GROWTH=0", f"-sTOTAL_STACK={int(cfg['stack_bytes'])}",
            "-sFILESYSTEM=0", "-sERROR_ON_UNDEFINED_SYMBOLS=1"]
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="emit-wasm-") as tmp:
        # the runtime kernels at the target's -O3; the generated model (straight-line loops, one per step) and
        # the glue with model_cflags added (-O2: -O3's unrolled copies of every loop doubled the code for
        # no measurable speed)
        objects = []
        for k, src in enumerate([*info["sources"], glue.name]):
            if is_runtime_kernel(src):  # the same in every export: compiled once per (text, flags, emcc)
                obj = str(compiled([emcc, *flags], (folder / src).resolve(), Path(tmp), lambda cmd: _emcc(folder, cmd)))
            else:  # model.c, the glue, a custom operator's kernel
                extra = cfg.get("model_cflags", []) if src in ("model.c", glue.name) else []
                obj = str(Path(tmp) / f"{k}_{Path(src).stem}.o")
                _emcc(folder, [emcc, *flags, *extra, "-c", src, "-o", obj])
            objects.append(obj)
        _emcc(folder, [emcc, *flags, *objects, *link])
    wasm = folder / "model.wasm"
    sizes = size_split(wasm)
    if sizes["imports"]:
        raise EmitError("wasm build produced a module with imports; the generated code must not call libc I/O")
    info["wasm"] = {
        "file": "model.wasm",
        "loader": "model.mjs",
        "abi": WASM_ABI_VERSION,
        "simd": simd,
        "memory_bytes": mem,
        "build_seconds": round(time.perf_counter() - t0, 2),
        **{k: v for k, v in sizes.items() if k != "imports"},
    }
    (folder / "manifest.json").write_text(json.dumps(info, indent=2) + "\n")
    write_js(folder, info)
    return wasm


def js_meta(info: dict) -> dict:
    def t(d: dict) -> dict:
        return {"name": d["name"], "dtype": d["dtype"], "shape": d["shape"]}

    w = info.get("weights", {})
    weights = {"mode": "file", "file": w["file"], "bytes": w["blob_bytes"]} if w.get("mode") == "file" else {"mode": "embed"}
    return {"prefix": info["prefix"], "abi": WASM_ABI_VERSION, "inputs": [t(d) for d in info["inputs"]],
            "outputs": [t(d) for d in info["outputs"]], "weights": weights}


def write_js(folder: Path, info: dict) -> None:
    env = _env()
    meta = js_meta(info)
    for tpl, name in (("model.mjs.j2", "model.mjs"), ("model.d.ts.j2", "model.d.ts"), ("index.html.j2", "index.html")):
        (folder / name).write_text(env.get_template(tpl).render(meta=meta, version=__version__, info=info,
                                                                weights_errors=_JS_WEIGHTS_ERRORS))
