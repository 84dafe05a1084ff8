"""The C emitter: a lowered, planned Program → a self-contained C folder."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import jinja2
import numpy as np

from .. import __version__
from ..ir import ARENA, Program
from ..resources import runtime_c
from .weights import little_endian_bytes, string_literal_lines

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


def c_sources(prog: Program) -> list[str]:
    return ["model.c"] + [f"{k}.c" for k in kernels_used(prog)]


def referenced_weights(prog: Program) -> list:
    """Weights some step reads; shape-only constants (Reshape's shape, ...) are not emitted."""
    code = "\n".join(s.code for s in prog.steps)
    used = set(re.findall(r"(?<![0-9A-Za-z_])(w\d+_[0-9A-Za-z_]*)\.v\b", code))
    return [b for b in prog.buffers.values() if b.storage == "weight" and b.cname.removesuffix(".v") in used]


def _weights(prog: Program) -> list[dict]:
    out = []
    for b in referenced_weights(prog):
        out.append(
            {
                "onnx_name": prog.public(b.name).replace("*/", "* /"),
                "dtype": np.dtype(b.dtype).name,
                "shape": list(b.shape),
                "ctype": b.ctype,
                "size": b.size,
                "nbytes": b.nbytes,
                "symbol": b.cname.removesuffix(".v"),
                "literal": string_literal_lines(little_endian_bytes(b.data)) if b.nbytes else "",
            }
        )
    return out


def _locals(prog: Program) -> list[str]:
    return [
        f"{b.ctype} *{b.cname} = ({b.ctype} *)(mem + {b.offset});"
        for b in prog.buffers.values()
        if b.storage == ARENA
    ]


def manifest(prog: Program, source: str) -> dict:
    return {
        "format": "onnx-emit/1",
        "version": __version__,
        "prefix": prog.name,
        "source": source,
        "opset": prog.opset,
        "inputs": [tensor_info(prog, i) for i in prog.inputs],
        "outputs": [tensor_info(prog, o) for o in prog.outputs],
        "arena_bytes": prog.arena_bytes,
        "weight_bytes": sum(b.nbytes for b in referenced_weights(prog)),
        "kernels": kernels_used(prog),
        "sources": c_sources(prog),
        "functions": {"run": f"{prog.name}_run", "run_static": f"{prog.name}_run_static"},
        "signature": signature(prog),
    }


def write_c_folder(prog: Program, out: str | Path, source: str = "model.onnx") -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ins = [tensor_info(prog, i) for i in prog.inputs]
    outs = [tensor_info(prog, o) for o in prog.outputs]
    ctx = {
        "prefix": prog.name,
        "PREFIX": prog.name.upper(),
        "version": __version__,
        "source": Path(source).name.replace("*/", "* /"),
        "inputs": ins,
        "outputs": outs,
        "max_rank": max([len(t["shape"]) for t in ins + outs] + [1]),
        "arena_bytes": prog.arena_bytes,
        "weight_bytes": sum(b.nbytes for b in referenced_weights(prog)),
        "signature": signature(prog),
        "static_signature": signature(prog, with_arena=False),
        "params": [prog.buffers[n].cname for n in prog.inputs + prog.outputs],  # (void)-ed: a model may ignore an input
        "static_call": ", ".join([f"{prog.name}_static_arena.bytes"] + [prog.buffers[n].cname for n in prog.inputs + prog.outputs]),
        "weights": _weights(prog),
        "locals": _locals(prog),
        "steps": [{"label": f"{s.node.op_type} '{s.node.name}'".replace("*/", "* /"), "code": s.code} for s in prog.steps if s.code],
        "kernels": kernels_used(prog),
        "sources": c_sources(prog),
    }
    (out / "model.c").write_text(_ENV.get_template("model.c.j2").render(**ctx))
    (out / "model.h").write_text(_ENV.get_template("model.h.j2").render(**ctx))
    (out / "Makefile").write_text(_ENV.get_template("Makefile.j2").render(**ctx))
    (out / "CMakeLists.txt").write_text(_ENV.get_template("CMakeLists.txt.j2").render(**ctx))
    rt = runtime_c()
    if ctx["kernels"]:
        shutil.copy(rt / "emit_runtime.h", out / "emit_runtime.h")
        for k in ctx["kernels"]:
            shutil.copy(rt / f"{k}.c", out / f"{k}.c")
    info = manifest(prog, str(source))
    (out / "manifest.json").write_text(json.dumps(info, indent=2) + "\n")
    return info
