"""The C emitter: a lowered, planned Program → a self-contained C folder."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import jinja2
import numpy as np

from .. import __version__
from ..ir import ARENA, VIEW, Program
from ..ops.custom import custom_ops_used, write_custom_sources
from ..resources import runtime_c
from .storage import DTYPE_CODES, WeightLayout, blob_bytes, manifest_entry, plan_weight_storage
from .weights import string_literal_lines

_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(Path(__file__).parent / "templates")),
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
    undefined=jinja2.StrictUndefined,
)
_ENV.filters["cstr"] = lambda s: str(s).replace("\\", "\\\\").replace('"', '\\"')


def tensor_info(prog: Program, name: str) -> dict:
    b = prog.buffers[name]
    return {"name": prog.public(name), "dtype": np.dtype(b.dtype).name, "shape": list(b.shape), "size": b.size}


def signature(prog: Program, with_arena: bool = True) -> str:
    params = ["void *arena"] if with_arena else []
    params += [f"const {prog.buffers[i].ctype} *{prog.buffers[i].cname}" for i in prog.inputs]
    params += [f"{prog.buffers[o].ctype} *{prog.buffers[o].cname}" for o in prog.outputs]
    return ", ".join(params) or "void"


def kernels_used(prog: Program) -> list[str]:
    return sorted({k for s in prog.steps for k in s.kernels})


def features_used(prog: Program) -> list[str]:
    return sorted({f for s in prog.steps for f in s.features})


def runtime_header(prog: Program) -> str:
    """emit_runtime.h as exported: the model's runtime features defined first, so that the kernels compile the
    optional parts it uses (and only those) however the folder is built."""
    head = "".join(f"#ifndef {f}\n#define {f} 1\n#endif\n" for f in features_used(prog))
    if head:
        head = "/* what this model's kernels use of their optional parts (onnx-emit export) */\n" + head
    return head + (runtime_c() / "emit_runtime.h").read_text()


def c_sources(kernels: list[str]) -> list[str]:
    return ["model.c"] + [f"{k}.c" for k in kernels]


def referenced_weights(prog: Program) -> list:
    """Weights some step reads; shape-only constants (Reshape's shape, ...) are not emitted."""
    code = "\n".join(s.code for s in prog.steps)
    used = set(re.findall(r"(?<![0-9A-Za-z_])(w\d+_[0-9A-Za-z_]*)\.v\b", code))
    return [b for b in prog.buffers.values() if b.storage == "weight" and b.cname.removesuffix(".v") in used]


_STORED_CTYPES = {"f16": "uint16_t", "int8": "int8_t", "blocks": "float"}


def _weights(layout: WeightLayout, embed: bool) -> list[dict]:
    """What model.c.j2 needs of each weight: the literals are rendered only when the weights are embedded."""
    out = []
    for w in layout.weights:
        out.append(
            {
                "onnx_name": w.onnx_name.replace("*/", "* /"),
                "dtype": w.dtype,
                "shape": w.shape,
                "ctype": w.ctype,
                "size": w.size,
                "nbytes": len(w.data),
                "symbol": w.symbol,
                "form": w.form,
                "stored_ctype": _STORED_CTYPES.get(w.form, w.ctype),
                "stored_count": len(w.data) // 4 if w.form == "blocks" else w.size,
                "scale_ctype": "uint32_t" if w.form == "blocks" else "float",
                "literal": string_literal_lines(w.data) if embed and w.data else "",
                "scale_literal": string_literal_lines(w.scales) if embed and w.scales else "",
                "scale_bytes": len(w.scales),
                "channels": w.channels,
                "outer": w.outer,
                "inner": w.inner,
                "block": w.block,
                "offset": w.offset,
                "scale_offset": w.scale_offset,
            }
        )
    return out


def runtime_files(prog: Program, layout: WeightLayout, threads: int = 1) -> list[str]:
    """The runtime .c files the model calls: its steps' kernels, plus the weight loader and expanders, plus the
    thread pool when a multithreaded kernel is used with --threads N."""
    files = set(kernels_used(prog))
    if threads > 1 and "gemm" in files:
        files.add("threads")
    if layout.mode == "file" or any(w.expanded for w in layout.weights):
        files.add("weights")
    if any(w.form == "f16" for w in layout.weights):
        files.add("narrow")
    return sorted(files)


def _locals(prog: Program) -> list[str]:
    """A pointer into the arena per buffer placed there, and per view into part of one (a Concat's input, a Split's
    output: at its place inside the root's memory)."""
    return [
        f"{b.ctype} *{b.cname} = ({b.ctype} *)(mem + {prog.root(b.name).offset + prog.root_at(b.name)});"
        for b in prog.buffers.values()
        if b.storage == ARENA or (b.storage == VIEW and prog.root_at(b.name) and prog.root(b.name).storage == ARENA)
    ]


def thread_flags(threads: int) -> dict:
    """Compiler and linker flags of a --threads N build (POSIX threads), else none."""
    return {"cflags": [f"-DEK_THREADS={threads}", "-pthread"], "ldflags": ["-pthread"]} if threads > 1 else {}


def manifest(prog: Program, source: str, layout: WeightLayout, kernels: list[str], custom: list[str], threads: int = 1) -> dict:
    p = prog.name
    functions = {"run": f"{p}_run", "run_static": f"{p}_run_static"}
    functions |= {"load_weights": f"{p}_load_weights"} if layout.mode == "file" else {"init": f"{p}_init"}
    return {
        "format": "onnx-emit/1",
        "version": __version__,
        "prefix": p,
        "source": source,
        "opset": prog.opset,
        "inputs": [tensor_info(prog, i) for i in prog.inputs],
        "outputs": [tensor_info(prog, o) for o in prog.outputs],
        "arena_bytes": prog.arena_bytes,
        "weight_bytes": layout.stored_bytes,
        "weights": manifest_entry(layout),
        "kernels": kernels,
        "features": features_used(prog),
        "sources": c_sources(kernels) + custom,
        "custom_ops": [f"{o.domain}::{o.op_type}" for o in custom_ops_used(prog)],
        "functions": functions,
        "signature": signature(prog),
        "threads": threads,
        **thread_flags(threads),
    }


def _hash_initializer(digest: bytes) -> str:
    return ", ".join(f"0x{b:02x}" for b in digest)


def write_c_folder(prog: Program, out: str | Path, source: str = "model.onnx", weights: str = "embed",
                   weight_dtype: str = "f32", threads: int = 1) -> dict:
    """model.c, model.h, build files, the runtime kernels it calls, manifest.json and (--weights file)
    model.weights into `out`; returns the manifest."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    layout = plan_weight_storage(prog, referenced_weights(prog), weights, weight_dtype)
    kernels = runtime_files(prog, layout, threads)
    ins = [tensor_info(prog, i) for i in prog.inputs]
    outs = [tensor_info(prog, o) for o in prog.outputs]
    wlist = _weights(layout, embed=weights == "embed")
    ctx = {
        "prefix": prog.name,
        "PREFIX": prog.name.upper(),
        "version": __version__,
        "source": Path(source).name.replace("*/", "* /"),
        "inputs": ins,
        "outputs": outs,
        "max_rank": max([len(t["shape"]) for t in ins + outs] + [1]),
        "arena_bytes": prog.arena_bytes,
        "weight_bytes": layout.stored_bytes,
        "signature": signature(prog),
        "static_signature": signature(prog, with_arena=False),
        "params": [prog.buffers[n].cname for n in prog.inputs + prog.outputs],  # (void)-ed: a model may ignore an input
        "static_call": ", ".join([f"{prog.name}_static_arena.bytes"] + [prog.buffers[n].cname for n in prog.inputs + prog.outputs]),
        "weights": wlist,
        "expanded": [w for w in wlist if w["form"] != "raw" and w["nbytes"]],
        "weight_mode": weights,
        "weight_dtype": weight_dtype,
        "dtype_code": DTYPE_CODES[weight_dtype],
        "payload_bytes": layout.payload_bytes,
        "blob_bytes": layout.blob_bytes,
        "layout_hash": _hash_initializer(layout.layout_hash),
        "locals": _locals(prog),
        "steps": [{"label": f"{s.node.op_type} '{s.node.name}'".replace("*/", "* /"), "code": s.code} for s in prog.steps if s.code],
        "kernels": kernels,
        "custom_headers": [o.header for o in custom_ops_used(prog)],
        "threads": threads,
        "thread_cflags": " ".join(thread_flags(threads).get("cflags", [])),
    }
    custom = write_custom_sources(prog, out, lambda name, **kw: _ENV.get_template(name).render(version=__version__, **kw))
    ctx["sources"] = c_sources(kernels) + custom
    (out / "model.c").write_text(_ENV.get_template("model.c.j2").render(**ctx))
    (out / "model.h").write_text(_ENV.get_template("model.h.j2").render(**ctx))
    (out / "Makefile").write_text(_ENV.get_template("Makefile.j2").render(**ctx))
    (out / "CMakeLists.txt").write_text(_ENV.get_template("CMakeLists.txt.j2").render(**ctx))
    rt = runtime_c()
    if kernels:
        (out / "emit_runtime.h").write_text(runtime_header(prog))
        for k in kernels:
            shutil.copy(rt / f"{k}.c", out / f"{k}.c")
    if weights == "file":
        (out / "model.weights").write_bytes(blob_bytes(layout))
    elif (out / "model.weights").exists():
        (out / "model.weights").unlink()  # a stale blob beside an embedded build would mislead
    info = manifest(prog, str(source), layout, kernels, custom, threads)
    (out / "manifest.json").write_text(json.dumps(info, indent=2) + "\n")
    return info
